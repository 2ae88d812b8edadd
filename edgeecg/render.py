"""Render 12-lead ECG signals as printout images, clean or photographed-looking, with exact ground truth.

Training on PTB-XL needs images that look like the scanned printouts the model
meets in the clinic, and a page reader/digitizer needs to be scored against
the truth. So every render returns the BGR image AND, in output pixels moved
by the same rotation/perspective as the image: the grid quadrilateral, a
per-panel trace mask, each panel's box and which samples each panel plots.

The default page is a standard 3x4 + rhythm printout: rows I/aVR/V1/V4,
II/aVL/V2/V5, III/aVF/V3/V6, each column showing the next 2.5 s of the record
(as ECG carts print them), then a 10 s lead-II rhythm strip; 25 mm/s,
10 mm/mV, a 1 mV x 0.2 s calibration pulse at the start of each row, 1 mm /
5 mm pink grid in an outline box. Sizes are defined in millimetres on a
280 x 199 mm page and scaled by `px_per_mm`; the default gives 1106 x 786
pixels, the size of the shared Mendeley scans. `RenderOptions` also picks the
other standard layouts (`edgeecg.layouts`), simultaneous columns, grid
styles and paper tones, a full-page grid, the calibration's place and a
cart's measurement header; `random_options` draws a realistic mix of them.

Module map: `render_geometry` (where things sit), `render_grid` (paper and
grid), `render_text` (labels and headers), `render_photo` (distortions).
Torch-free: numpy and OpenCV only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from . import layouts, render_geometry, render_grid, render_photo, render_text
from .errors import EdgeECGError
from .layouts import GAIN_MM_PER_MV, LEADS, SPEED_MM_PER_S, Panel
from .render_geometry import GRID_BOX_MM, PAGE_MM, PULSE_MM, SHIFT, PrintGeometry, page_size, to_fixed
from .render_grid import GRID_STYLES, PAPER_TONES, style_colours

__all__ = ["DEFAULT_PX_PER_MM", "GAIN_MM_PER_MV", "GRID_BOX_MM", "GRID_STYLES", "LEADS", "PAGE_MM", "PAPER_TONES",
           "SPEED_MM_PER_S", "RenderOptions", "RenderResult", "page_position", "page_size", "random_options",
           "record_seed", "render_printout", "renderer_sources"]

DEFAULT_PX_PER_MM = 3.95  # 280 x 199 mm -> 1106 x 786 px, like the shared scans
INK = render_text.INK
STREAMS = ("grid", "marks", "geometry", "crease", "lighting", "blur", "noise", "jpeg", "header")  # append only
TICK_MM = 2.0  # half-height of a short column-separator tick
SEPARATOR_SPAN_MM = (11.0, 6.0)  # a separator line runs from this far above the first grid row to below the last
# how often random_options draws each layout and paper tone: 3x4+1 on white paper is what most carts print
LAYOUT_WEIGHTS = {"3x4": 0.15, "3x4+1": 0.4, "3x4+2": 0.1, "3x4+3": 0.1, "6x2": 0.15, "12x1": 0.1}
PAPER_WEIGHTS = {"white": 0.55, "cream": 0.2, "pinkish": 0.15, "grey": 0.1}


@dataclass(frozen=True)
class RenderOptions:
    """How to draw the printout, and how much of each photo-like distortion to add.

    The defaults draw the 3x4+1 page described in the module docstring. Each
    distortion is off at 0; otherwise its value is the largest amount, and the
    amount used is drawn from the render's seed.
    """

    px_per_mm: float = DEFAULT_PX_PER_MM
    remove_baseline: bool = True  # subtract each lead's median, as a cart's baseline filter would
    trace_mm: float = 0.3
    minor_line_mm: float = 0.15
    major_line_mm: float = 0.25
    minor_bgr: tuple[int, int, int] = (236, 232, 248)
    major_bgr: tuple[int, int, int] = (220, 212, 242)
    border_bgr: tuple[int, int, int] = (180, 170, 238)
    paper_bgr: tuple[int, int, int] = (255, 255, 255)
    rotation_deg: float = 0.0
    perspective: float = 0.0  # corner shift as a fraction of the page size
    crease: float = 0.0  # darkening of fold lines and wrinkles, 0..1
    blur_sigma: float = 0.0  # pixels
    noise_std: float = 0.0  # grey levels
    jpeg_quality: int = 0  # lowest JPEG quality used (0 = no JPEG round trip)
    lighting: float = 0.0  # brightness drop across the image, 0..1
    grid_color_jitter: float = 0.0  # 0..1, how far the grid colour moves towards another hue
    grid_width_jitter: float = 0.0  # relative change of the grid line widths
    handwriting: int = 0  # most pen marks added
    layout: str = "3x4+1"  # a key of edgeecg.layouts.LAYOUTS
    simultaneous: bool = False  # every column shows the record's first window instead of successive ones
    rhythm_leads: tuple[str, ...] | None = None  # rhythm strips printed under the grid; None = the layout's own
    outline_box: bool = True  # outline around the grid box
    full_page_grid: bool = False  # grid over the whole page under the header, no outline (third-party generators)
    calibration: str = "left"  # 1 mV pulse at each row's "left" or "right" end, or "none"
    lead_labels: bool = True
    separators: bool = True  # marks between the columns of the panel grid
    separator_ticks: bool = False  # short ticks at each row's baseline instead of lines across the rows
    dotted_minor: bool = False  # minor grid as dots at the 1 mm crossings
    machine_header: bool = False  # a cart's patient and measurement block above the grid, drawn from the seed

    @classmethod
    def photo(cls, px_per_mm: float = DEFAULT_PX_PER_MM) -> "RenderOptions":
        """Every distortion on at a moderate strength: a phone photo or a tired scan of a printout."""
        return cls(
            px_per_mm=px_per_mm, rotation_deg=4.0, perspective=0.04, crease=0.3, blur_sigma=1.2,
            noise_std=6.0, jpeg_quality=35, lighting=0.35, grid_color_jitter=0.6,
            grid_width_jitter=0.5, handwriting=3,
        )

    def with_style(self, grid: str = "pink", paper: str = "white") -> "RenderOptions":
        """These options with a named grid style (`GRID_STYLES`) on a named paper tone (`PAPER_TONES`)."""
        return replace(self, **style_colours(grid, paper))

    @property
    def geometric(self) -> bool:
        return self.rotation_deg > 0 or self.perspective > 0

    def plan(self) -> PrintGeometry:
        """Where this page's panels, rows and pulses go; ValueError on an unknown layout, lead or calibration."""
        return PrintGeometry.plan(self.layout, self.simultaneous, self.rhythm_leads, self.full_page_grid, self.calibration)


_DEFAULT_PLAN = RenderOptions().plan()


@dataclass(frozen=True)
class RenderResult:
    """A rendered printout and its ground truth, all in output pixels (after the image's own homography).

    `image` BGR uint8; `grid_quad` float32 (4, 2) grid box corners, clockwise from top-left;
    `trace_mask` uint8 (H, W): 0 background, k + 1 where panel k's trace is drawn (a later panel wins
    where traces cross); `lead_boxes` float32 (n_panels, 4, 2): each panel's time span across and half
    a row pitch above and below its baseline, clockwise from top-left; `sample_ranges` int64
    (n_panels, 2): first and last sample index plotted (a panel's closed [t0, t1]: the boundary sample
    is drawn in both neighbours, so the trace is continuous; last < first where nothing is drawn).
    """

    image: np.ndarray
    grid_quad: np.ndarray
    homography: np.ndarray  # 3x3: undistorted page pixels -> output pixels
    px_per_mm: float
    baseline_mv: np.ndarray = field(repr=False)  # (12,) offset removed from each lead
    geometry: PrintGeometry = field(repr=False)
    trace_mask: np.ndarray = field(repr=False)
    lead_boxes: np.ndarray = field(repr=False)
    sample_ranges: np.ndarray = field(repr=False)

    @property
    def layout_name(self) -> str:
        return self.geometry.layout.name

    @property
    def simultaneous(self) -> bool:
        return self.geometry.simultaneous

    @property
    def panels(self) -> tuple[Panel, ...]:
        """Every printed panel (rhythm strips with the leads actually printed), in `trace_mask` label order."""
        return self.geometry.panels

    def sample_pixel(self, lead: str, t: float, mv: float, rhythm: bool = False) -> np.ndarray:
        """Output pixel (x, y) where lead `lead` at time `t` s with value `mv` (as given to the renderer) is drawn.

        `rhythm` picks the rhythm strip of that lead instead of its panel in the grid.
        """
        return self.panel_pixel(self.geometry.panel_index(lead, t, rhythm), t, mv)

    def panel_pixel(self, panel_index: int, t: float, mv: float) -> np.ndarray:
        """Output pixel (x, y) of value `mv` (as given to the renderer) at record time `t` in panel `panel_index`."""
        offset = float(self.baseline_mv[LEADS.index(self.panels[panel_index].lead)])
        point = np.array(self.geometry.position_mm(panel_index, t, mv - offset)) * self.px_per_mm
        return render_photo.move_points(point, self.homography)


def page_position(lead: str, t: float, mv: float, px_per_mm: float = DEFAULT_PX_PER_MM, rhythm: bool = False,
                  geometry: PrintGeometry | None = None) -> np.ndarray:
    """Undistorted page pixel (x, y) of a displayed value; `rhythm` picks that lead's rhythm strip.

    `geometry` is the page plan (`RenderOptions.plan()`, `RenderResult.geometry`); None is the default page.
    """
    plan = geometry or _DEFAULT_PLAN
    return np.array(plan.position_mm(plan.panel_index(lead, t, rhythm), t, mv)) * px_per_mm


def record_seed(seed: int, ecg_id: int) -> int:
    """One independent render seed per (run seed, record), so a record's image ignores the order and count rendered."""
    return int(np.random.SeedSequence([seed, ecg_id]).generate_state(1)[0])


def renderer_sources() -> list[Path]:
    """The source files that decide a render's pixels: hash them to know when cached renders are stale."""
    modules = (layouts, render_geometry, render_grid, render_text, render_photo)
    return [Path(__file__), *(Path(module.__file__) for module in modules)]


def render_printout(
    signal_mv: np.ndarray,
    fs: float,
    options: RenderOptions | None = None,
    header: str | None = None,
    seed: int | None = None,
) -> RenderResult:
    """Draw a 12-lead record ((samples, 12) mV, columns in `LEADS` order) as a printout.

    `header` (lines separated by newlines) is printed under an "ECG REPORT"
    title above the grid; None leaves that area blank. NaN samples draw as 0;
    values beyond the grid box are clipped to its edge, as a printer's would be.
    The same seed and options always give the same image.
    """
    options = options or RenderOptions()
    signal = np.asarray(signal_mv, dtype=np.float32)
    if signal.ndim != 2 or signal.shape[1] != len(LEADS) or signal.shape[0] < 2:
        raise EdgeECGError(f"a record to render must be (samples, 12) in mV, got shape {signal.shape}")
    if not fs > 0:
        raise EdgeECGError(f"sampling rate must be positive, got {fs}")
    if options.px_per_mm <= 0:
        raise EdgeECGError(f"px_per_mm must be positive, got {options.px_per_mm}")
    try:
        geometry = options.plan()
    except ValueError as exc:
        raise EdgeECGError(str(exc)) from None
    streams = dict(zip(STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(STREAMS)))))

    baseline = np.nan_to_num(np.nanmedian(signal, axis=0)) if options.remove_baseline else np.zeros(len(LEADS))
    shown = np.nan_to_num(signal - baseline.astype(np.float32))
    ppm = options.px_per_mm
    page = render_grid.draw_paper(options, geometry, streams["grid"])
    traces, sample_ranges = _panel_traces(shown, fs, geometry, ppm)
    labels = _draw_traces(page, traces, geometry, options)
    _draw_text(page, geometry, options, header, streams["header"])
    if options.handwriting > 0:
        render_photo.draw_pen_marks(page, options.handwriting, ppm, streams["marks"])

    homography = np.eye(3)
    if options.geometric:
        homography = render_photo.page_homography(page.shape, options, streams["geometry"])
        labels = render_photo.move_labels(labels, homography)
    image = render_photo.photograph(page, homography, options, streams)
    quad = render_photo.move_points(geometry.grid_box_corners(ppm), homography).astype(np.float32)
    boxes = np.stack([geometry.panel_box_mm(panel) * ppm for panel in geometry.panels])
    return RenderResult(image, quad, homography, ppm, baseline.astype(np.float32), geometry, labels,
                        render_photo.move_points(boxes, homography).astype(np.float32), sample_ranges)


def _panel_traces(shown: np.ndarray, fs: float, geometry: PrintGeometry, ppm: float) -> tuple[list, np.ndarray]:
    """Each panel's polyline (fixed-point page pixels; None when it has under two samples) and its sample range."""
    n = shown.shape[0]
    x0 = geometry.trace_start_mm * ppm
    top, bottom = geometry.grid_box_mm[1] * ppm, (geometry.grid_box_mm[1] + geometry.grid_box_mm[3]) * ppm
    times = np.arange(n) / fs
    lines, ranges = [], []
    for panel in geometry.panels:
        first, last = int(math.ceil(panel.t0 * fs - 1e-9)), min(n - 1, int(math.floor(panel.t1 * fs + 1e-9)))
        if last - first < 1:
            lines.append(None)
            ranges.append((first, first - 1))
            continue
        xs = x0 + (times[first : last + 1] + geometry.shift_s(panel)) * SPEED_MM_PER_S * ppm
        ys = geometry.baseline_mm(panel.row) * ppm - shown[first : last + 1, LEADS.index(panel.lead)] * GAIN_MM_PER_MV * ppm
        lines.append(to_fixed(np.stack([xs, np.clip(ys, top, bottom)], axis=1)))
        ranges.append((first, last))
    return lines, np.array(ranges, dtype=np.int64).reshape(-1, 2)


def _draw_traces(page: np.ndarray, traces: list, geometry: PrintGeometry, options: RenderOptions) -> np.ndarray:
    """Traces and calibration pulses (one anti-aliased polylines call), then the column separators.

    Returns the trace label image: the same polylines drawn without anti-aliasing, panel k as k + 1.
    """
    ppm = options.px_per_mm
    pulses = []
    if geometry.calibration != "none":
        pulses = [to_fixed((PULSE_MM + [geometry.pulse_left_mm(), geometry.baseline_mm(row)]) * ppm)
                  for row in range(geometry.layout.rows)]
    thickness = max(1, round(options.trace_mm * ppm))
    drawn = [line for line in traces if line is not None]
    cv2.polylines(page, drawn + pulses, False, INK, thickness, cv2.LINE_AA, shift=SHIFT)
    labels = np.zeros(page.shape[:2], np.uint8)
    for k, line in enumerate(traces):
        if line is not None:
            cv2.polylines(labels, [line], False, k + 1, thickness, cv2.LINE_8, shift=SHIFT)
    if options.separators and geometry.layout.columns > 1:
        cv2.polylines(page, _separators(geometry, ppm, options.separator_ticks), False, INK, 1, cv2.LINE_AA, shift=SHIFT)
    return labels


def _separators(geometry: PrintGeometry, ppm: float, ticks: bool) -> list[np.ndarray]:
    """Column separators of the panel grid: lines across its rows, or short ticks at each row's baseline."""
    layout = geometry.layout
    xs = geometry.trace_start_mm * ppm + np.arange(1, layout.columns) * layout.column_s * SPEED_MM_PER_S * ppm
    last_row = len(layout.grid) - 1
    if ticks:
        spans = [((geometry.baseline_mm(row) - TICK_MM) * ppm, (geometry.baseline_mm(row) + TICK_MM) * ppm)
                 for row in range(last_row + 1)]
    else:
        above, below = SEPARATOR_SPAN_MM
        spans = [((geometry.baseline_mm(0) - above) * ppm, (geometry.baseline_mm(last_row) + below) * ppm)]
    return [to_fixed([[x, top], [x, bottom]]) for top, bottom in spans for x in xs]


def _draw_text(page: np.ndarray, geometry: PrintGeometry, options: RenderOptions, header: str | None,
               rng: np.random.Generator) -> None:
    """Lead labels (unless switched off), the footer, and the report header and measurement block when asked for."""
    ppm = options.px_per_mm
    if options.lead_labels:
        render_text.draw_lead_labels(page, geometry, ppm)
    render_text.draw_footer(page, geometry, ppm)
    if header is not None:
        render_text.draw_header(page, ppm, header)
    if options.machine_header:
        render_text.draw_machine_header(page, ppm, rng)


def random_options(seed: int, photo: bool = False, layout: str | None = None,
                   px_per_mm: float = DEFAULT_PX_PER_MM) -> RenderOptions:
    """A realistic random page style for test sets: layout, columns, grid style and paper, calibration, header.

    `photo` adds the distortions of `RenderOptions.photo`; `layout` fixes the layout instead of drawing it.
    """
    rng = np.random.default_rng([seed, 0x57])
    # every draw is made whatever is fixed or kept, so fixing the layout leaves the rest of the style as drawn
    drawn_layout = str(rng.choice(list(LAYOUT_WEIGHTS), p=list(LAYOUT_WEIGHTS.values())))
    other_strip, swap_strip = str(rng.choice(("II", "V1", "V5", "III"))), rng.random() < 0.25
    chosen = layout or drawn_layout
    rhythm = layouts.layout(chosen).rhythm
    if len(rhythm) == 1 and swap_strip:
        rhythm = (other_strip,)
    full_page = rng.random() < 0.3
    grid, paper = str(rng.choice(list(GRID_STYLES))), str(rng.choice(list(PAPER_WEIGHTS), p=list(PAPER_WEIGHTS.values())))
    styled = (RenderOptions.photo(px_per_mm) if photo else RenderOptions(px_per_mm=px_per_mm)).with_style(grid, paper)
    return replace(
        styled, layout=chosen, simultaneous=rng.random() < 0.3, rhythm_leads=rhythm, trace_mm=rng.uniform(0.2, 0.45),
        full_page_grid=full_page, outline_box=not full_page and rng.random() < 0.7,
        calibration=str(rng.choice(("left", "right", "none"), p=(0.7, 0.15, 0.15))),
        lead_labels=rng.random() < 0.9, separators=rng.random() < 0.7, separator_ticks=rng.random() < 0.4,
        dotted_minor=rng.random() < 0.15, machine_header=rng.random() < 0.5,
    )
