"""Straighten a photographed grid by its own lines, where the region's outline leans and the grid does not.

The page reader outlines the grid region from its edges (a printed box, the
ruled area, the sheet against a desk). On a phone photo a header block, a
shadow or the sheet's edge can pull one corner off, and the warp from such a
quad leaves the grid lines leaning: the rows then slope across the page and
the panels drift out of their time windows. The grid lines themselves say
how the page lies:

1. in each tile of the upright region, the slope at which the grid ink's
   profile is sharpest is the local slope of the level lines (and, across,
   of the upright ones);
2. mapped back into the input image, the level lines of all tiles meet at one
   vanishing point and the upright lines at another (parallel lines of a
   plane under perspective);
3. the region's four sides are redrawn through those points, each through
   the middle of the side it replaces.

A region whose lines lean by less than MIN_LEAN in every tile is left as it
was outlined, so scans and straight renders are read exactly as before.
"""

from __future__ import annotations

import cv2
import numpy as np

TILES = 2  # tiles per axis: 4 local slopes of each line family
BLOCK_PX = 16  # the profile of a tile is built from blocks this wide (lines drift < 1.2 px across one)
MAX_SLOPE = 0.07  # about 4 degrees: a worse lean is a misread region, not a correctable one
COARSE_SLOPES = 15  # slopes tried over +-MAX_SLOPE ...
FINE_STEP = 0.0025  # ... then around the best at this step (1 px over 400)
MIN_LEAN = 0.006  # below this lean (0.35 degrees, 6 px over 1000) in every tile the region is kept
MIN_SHARPENING = 1.5  # a tile counts when its best slope's profile is this much sharper than a typical slope's
MIN_TILES = 3  # a vanishing point from at least this many tiles' lines ...
MAX_DISAGREEMENT = 0.01  # ... each passing within this angle (radians, its sine) of it


def straighten(quad: np.ndarray, grid: np.ndarray) -> np.ndarray | None:
    """A quad (input pixels, clockwise from top-left) whose warp makes the grid lines level and upright, or
    None when the lines in `grid` (the grid-ink map of the region `quad` warped upright, trace zeroed) do not
    lean or cannot be measured."""
    level_tiles, upright_tiles = _tiles(grid, 1), _tiles(grid, 0)
    if not any(_leans(tile, offsets) for _, _, tile, offsets in level_tiles + upright_tiles):
        return None  # the usual case, settled with three slopes per tile
    level, upright = _tile_slopes(level_tiles), _tile_slopes(upright_tiles)
    if level is None or upright is None:
        return None
    if max(np.abs(level[:, 2]).max(), np.abs(upright[:, 2]).max()) < MIN_LEAN:
        return None
    # in coordinates centred on the region and scaled to its size, so the least squares below are well posed
    centre, size = quad.mean(axis=0), float(np.abs(quad - quad.mean(axis=0)).max())
    region = ((quad - centre) / size).astype(np.float32)
    h, w = grid.shape
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    to_input = cv2.getPerspectiveTransform(corners, region).astype(np.float64)
    # tile centres and directions in upright pixels (x, y): level lines run (1, s), upright ones (s, 1)
    vanish_level = _meeting_point([((x, y), (x + 1.0, y + s)) for x, y, s in level], to_input)
    vanish_upright = _meeting_point([((y, x), (y + s, x + 1.0)) for x, y, s in upright], to_input)
    if vanish_level is None or vanish_upright is None:
        return None
    sides_mid = [(region[i] + region[(i + 1) % 4]) / 2 for i in range(4)]  # top, right, bottom, left
    top, bottom = (np.cross(_homogeneous(sides_mid[i]), vanish_level) for i in (0, 2))
    right, left = (np.cross(_homogeneous(sides_mid[i]), vanish_upright) for i in (1, 3))
    new = [np.cross(a, b) for a, b in ((left, top), (top, right), (right, bottom), (bottom, left))]
    if any(abs(p[2]) < 1e-12 for p in new):
        return None
    new = np.array([p[:2] / p[2] for p in new], np.float32)
    if not cv2.isContourConvex(new) or not 0.5 < cv2.contourArea(new) / cv2.contourArea(region) < 2:
        return None
    return (new * size + centre).astype(np.float32)


def _tiles(grid: np.ndarray, axis: int) -> list[tuple[float, float, np.ndarray, np.ndarray]]:
    """(x, y, block profiles, block offsets) per tile for the lines running along `axis` (1: level, 0: upright;
    for upright lines x and y swap roles): the tile's centre, each block's profile across the lines (a block
    is BLOCK_PX pixels along them, averaged) and each block's distance from the tile's centre along them."""
    grid = np.asarray(grid, np.float32)
    if axis == 1:
        h, w = grid.shape
        blocks = max(2 * TILES, w // BLOCK_PX)
        profiles = cv2.resize(grid, (blocks, h), interpolation=cv2.INTER_AREA)
    else:
        w, h = grid.shape
        blocks = max(2 * TILES, w // BLOCK_PX)
        profiles = cv2.resize(grid, (h, blocks), interpolation=cv2.INTER_AREA).T
    block_x = (np.arange(blocks) + 0.5) * w / blocks
    return [(float(block_x[columns].mean()), float(rows.mean()), profiles[rows[0]: rows[-1] + 1, columns],
             block_x[columns] - block_x[columns].mean())
            for rows in np.array_split(np.arange(h), TILES) for columns in np.array_split(np.arange(blocks), TILES)]


def _leans(tile: np.ndarray, offsets: np.ndarray) -> bool:
    """Whether the tile's profile is sharper at a lean of MIN_LEAN either way than level."""
    scores = _sharpness(tile, offsets, np.array([-MIN_LEAN, 0.0, MIN_LEAN]))
    return scores is not None and scores.max() > scores[1]


def _tile_slopes(tiles: list[tuple[float, float, np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """(k, 3) rows of (x, y, slope) for the tiles whose lines show (slope dy/dx in upright pixels); None when
    fewer than MIN_TILES do."""
    found = [(x, y, slope) for x, y, tile, offsets in tiles
             if (slope := _sharpest_slope(tile, offsets)) is not None]
    return np.array(found) if len(found) >= MIN_TILES else None


def _sharpest_slope(tile: np.ndarray, offsets: np.ndarray) -> float | None:
    """The slope at which the tile's blocks, shifted by slope * offset rows, add up to the sharpest profile;
    None when no slope stands out (no lines here, or only the trace's holes in them)."""
    coarse = np.linspace(-MAX_SLOPE, MAX_SLOPE, COARSE_SLOPES)
    scores = _sharpness(tile, offsets, coarse)
    if scores is None:
        return None
    best, step = coarse[int(np.argmax(scores))], coarse[1] - coarse[0]
    fine = np.clip(np.arange(best - step, best + step + FINE_STEP / 2, FINE_STEP), -MAX_SLOPE, MAX_SLOPE)
    fine_scores = _sharpness(tile, offsets, fine)
    if not fine_scores.max() > MIN_SHARPENING * np.median(scores):
        return None
    return float(fine[int(np.argmax(fine_scores))])


def _sharpness(tile: np.ndarray, offsets: np.ndarray, slopes: np.ndarray) -> np.ndarray | None:
    """Per slope, the variance of the tile's profile with each block shifted by slope * its offset (rows, linear
    between rows); None when the tile is too short to shift."""
    margin = int(np.ceil(MAX_SLOPE * np.abs(offsets).max())) + 2
    if tile.shape[0] <= 4 * margin:
        return None
    rows = np.arange(margin, tile.shape[0] - margin, dtype=np.float32)
    shifted = rows[None, :, None] + (slopes[:, None, None] * offsets[None, None, :]).astype(np.float32)
    low = np.floor(shifted)
    frac = shifted - low
    low = low.astype(np.intp)
    columns = np.arange(tile.shape[1])[None, None, :]
    profile = (tile[low, columns] * (1 - frac) + tile[low + 1, columns] * frac).mean(axis=2)
    return profile.var(axis=1)


def _homogeneous(point: np.ndarray) -> np.ndarray:
    return np.array([point[0], point[1], 1.0])


def _unit_line(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The homogeneous line through points a and b, scaled so that (a, b) of it is a unit normal."""
    line = np.cross(a, b)
    return line / np.hypot(line[0], line[1])


def _meeting_point(segments: list[tuple[tuple[float, float], tuple[float, float]]],
                   to_input: np.ndarray) -> np.ndarray | None:
    """The homogeneous input-image point where the lines through the upright point pairs `segments` meet (least
    squares: the smallest singular vector). A tile whose line misses it by more than MAX_DISAGREEMENT is left
    out while MIN_TILES remain (a crease or shadow edge can outshine the grid in one tile); None when the
    lines still disagree."""
    points = [[to_input @ _homogeneous(p) for p in pair] for pair in segments]
    points = [[p / p[2] for p in pair] for pair in points]
    lines = [_unit_line(a, b) for a, b in points]
    while True:
        meeting = np.linalg.svd(np.array(lines))[2][-1]
        # how far each line turns from the direction from its tile towards the meeting point (sine of the angle)
        towards = [meeting[:2] - meeting[2] * a[:2] for a, _ in points]
        misses = [abs(line[0] * t[0] + line[1] * t[1]) / max(float(np.hypot(*t)), 1e-12)
                  for line, t in zip(lines, towards)]
        worst = int(np.argmax(misses))
        if misses[worst] <= MAX_DISAGREEMENT:
            return meeting
        if len(lines) <= MIN_TILES:
            return None
        del lines[worst], points[worst]
