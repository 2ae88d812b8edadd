"""The paper and its ECG grid: colour styles, minor/major lines (solid or dotted minor), the outline box.

Real printouts come on pink, red, orange, green or grey grids, or black on
white, on paper of several tones; a page reader must meet them all. The grid
is drawn from a cached line-coverage index image and a colour look-up table,
so a new colour or tone costs one LUT, not a redraw.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .render_geometry import SHIFT, PrintGeometry, page_size, to_fixed

if TYPE_CHECKING:
    from .render import RenderOptions

BGR = tuple[int, int, int]
# grid style -> (minor, major, outline) line colours on white paper, BGR
GRID_STYLES: dict[str, tuple[BGR, BGR, BGR]] = {
    "pink": ((236, 232, 248), (220, 212, 242), (180, 170, 238)),
    "red": ((205, 205, 250), (150, 150, 245), (100, 100, 235)),
    "orange": ((200, 225, 255), (130, 185, 250), (80, 140, 240)),
    "grey": ((225, 225, 225), (180, 180, 180), (140, 140, 140)),
    "green": ((215, 240, 215), (160, 215, 160), (110, 180, 110)),
    "black": ((170, 170, 170), (90, 90, 90), (40, 40, 40)),
}
PAPER_TONES: dict[str, BGR] = {
    "white": (255, 255, 255), "cream": (225, 245, 252), "pinkish": (240, 238, 255), "grey": (228, 228, 228),
}
GRID_HUES = ((150, 120, 245), (120, 120, 230), (110, 160, 240), (170, 170, 170), (200, 150, 190))
DOT_SCALE = 2.0  # a minor-grid dot is this many minor line widths across: thinner dots vanish on print


def style_colours(grid: str = "pink", paper: str = "white") -> dict[str, BGR]:
    """RenderOptions colour fields for a named grid style on a named paper tone (grid ink darkens the paper)."""
    if grid not in GRID_STYLES:
        raise ValueError(f"unknown grid style {grid!r}; known: {', '.join(GRID_STYLES)}")
    if paper not in PAPER_TONES:
        raise ValueError(f"unknown paper tone {paper!r}; known: {', '.join(PAPER_TONES)}")
    tone = np.array(PAPER_TONES[paper], float)

    def on_paper(colour: BGR) -> BGR:
        return tuple(int(v) for v in np.round(np.array(colour) * tone / 255))

    minor, major, border = GRID_STYLES[grid]
    return {"minor_bgr": on_paper(minor), "major_bgr": on_paper(major), "border_bgr": on_paper(border),
            "paper_bgr": PAPER_TONES[paper]}


def draw_paper(options: "RenderOptions", geometry: PrintGeometry, rng: np.random.Generator) -> np.ndarray:
    """The blank page: paper tone, grid lines over the grid box and, if asked for, its outline."""
    minor, major, border = (np.array(c, float) for c in (options.minor_bgr, options.major_bgr, options.border_bgr))
    minor_w, major_w = options.minor_line_mm, options.major_line_mm
    if options.grid_color_jitter > 0:
        hue = np.array(GRID_HUES[rng.integers(len(GRID_HUES))], float)
        mix = options.grid_color_jitter * rng.uniform()
        darken = 1 + options.grid_color_jitter * rng.uniform(-0.5, 0.5)

        def shift(colour: np.ndarray, hue_depth: float) -> np.ndarray:
            return np.clip(255 - ((1 - mix) * (255 - colour) + mix * (255 - hue) * hue_depth) * darken, 0, 255)

        minor, major, border = shift(minor, 0.7), shift(major, 1.0), shift(border, 1.0)
    if options.grid_width_jitter > 0:
        minor_w *= 1 + options.grid_width_jitter * rng.uniform(-1, 1)
        major_w *= 1 + options.grid_width_jitter * rng.uniform(-1, 1)
    ppm = options.px_per_mm
    # widths rounded to 0.05 px so jittered renders reuse a few cached line images
    index = _grid_index(ppm, geometry.grid_box_mm, round(minor_w * ppm * 20) / 20, round(major_w * ppm * 20) / 20,
                        options.dotted_minor)
    levels = np.arange(256)
    minor_a, major_a = (levels >> 4)[:, None] / 15.0, (levels & 15)[:, None] / 15.0
    paper = np.array(options.paper_bgr, float)
    lut = paper - np.maximum(minor_a * (paper - minor), major_a * (paper - major))
    page = cv2.LUT(index, np.clip(lut, 0, 255).astype(np.uint8).reshape(256, 1, 3))
    if options.outline_box and not options.full_page_grid:
        cv2.polylines(page, [to_fixed(geometry.grid_box_corners(ppm))], True, tuple(int(v) for v in border),
                      max(1, round(0.3 * ppm)), cv2.LINE_AA, shift=SHIFT)
    return page


def _grid_index(ppm: float, box_mm: tuple[float, ...], minor_px: float, major_px: float, dotted: bool) -> np.ndarray:
    """3-channel uint8 LUT index: high nibble = minor-line coverage, low nibble = major-line coverage (0-15)."""
    minor = _grid_lines(ppm, box_mm, 1.0, minor_px * DOT_SCALE, True) if dotted else _grid_lines(ppm, box_mm, 1.0, minor_px)
    index = cv2.bitwise_or(minor << 4, _grid_lines(ppm, box_mm, 5.0, major_px))
    return cv2.merge([index, index, index])


@lru_cache(maxsize=32)
def _grid_lines(ppm: float, box_mm: tuple[float, ...], step_mm: float, line_px: float, dots: bool = False) -> np.ndarray:
    """Anti-aliased coverage (0-15) of the grid lines every `step_mm` inside the grid box (their crossings if `dots`)."""
    width, height = page_size(ppm)
    left, top, box_w, box_h = box_mm

    def coverage(n_px: int, start_mm: float, length_mm: float) -> np.ndarray:
        """Fraction of each pixel covered by the nearest line (a box filter), in 16ths."""
        centres = np.arange(n_px, dtype=np.float64)
        k = np.clip(np.round((centres / ppm - start_mm) / step_mm), 0, round(length_mm / step_mm))
        line = (start_mm + k * step_mm) * ppm
        overlap = np.minimum(centres + 0.5, line + line_px / 2) - np.maximum(centres - 0.5, line - line_px / 2)
        return np.round(np.clip(overlap, 0, 1) * 15).astype(np.uint8)

    across = coverage(width, left, box_w)[None, :] * _span(height, top, box_h, ppm)[:, None]
    down = coverage(height, top, box_h)[:, None] * _span(width, left, box_w, ppm)[None, :]
    if dots:
        return (across.astype(np.uint16) * down // 15).astype(np.uint8)
    return np.maximum(across, down).astype(np.uint8)


def _span(n_px: int, start_mm: float, length_mm: float, ppm: float) -> np.ndarray:
    """Pixels whose centre lies within [start, start + length] mm (half a pixel of slack)."""
    centres = np.arange(n_px)
    return (centres >= start_mm * ppm - 0.5) & (centres <= (start_mm + length_mm) * ppm + 0.5)
