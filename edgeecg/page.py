"""Read a printout's geometry: where the ECG grid is, upright, and how many pixels make a millimetre.

Any common printout is ruled with a grid of 1 mm minor and 5 mm major lines,
in any ink (pink, red, orange, green, grey, black, dotted or solid), with or
without an outline box. That grid is the page's ruler:

1. ink maps: each pixel's darkness relative to the local paper level, per
   channel. Trace and text ink is dark in every channel; grid ink is lighter
   or coloured (dark in some channels only); a grey or black grid is told
   from the trace by its thin, straight, page-long lines, lighter than the trace,
   or where a photo breaks them, by their place on the grid's lattice;
2. the grid region: the outline box when the template prints one (the
   cropper of `edgeecg.crop`, which also corrects a phone photo's
   perspective), otherwise the largest quadrilateral covering the ruled area;
   where the grid lines still lean inside it, it is redrawn along them
   (`edgeecg.straighten`);
3. the scale: the period of the grid lines along each axis of the upright
   region, from the spectrum of its grid-ink profile. The 5 mm major period
   is the robust one (a JPEG may smear the minor dots); whether a period is
   1 mm or 5 mm is decided by the 10 s width of a standard trace row.

No torch: numpy and OpenCV only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .crop import (SIDE_BAND, WORK_SIDE, NoGridFound, _as_bgr, _coarse_quad, _refine_quad, _trace_quad_in, components,
                   find_trace_quad, nonzero_xy, order_clockwise)
from .straighten import straighten

READ_KERNEL_PX = 11  # the paper-level neighbourhood while the scale is not yet known (2.5 mm at 4.4 px/mm)
PAPER_KERNEL_MM = 2.5  # the paper level is the brightest level within this distance (wider than any line)
TRACE_DARKNESS = 0.3  # a pixel this much darker than the paper, in grey, is trace/text ink ...
FAINT_TRACE_DARKNESS = 0.12  # ... and so is a fainter one joined to such ink (thin R-peak tips, blur)
GRID_DARKNESS = 0.05  # grid ink is at least this much darker than the paper in some channel
LONG_LINE_MM = 45.0  # a flat trace does not run 1.8 s without a wiggle: level ink this long is a ruled line
MIN_GREY_GRID_LINES = 10  # this many level ruled lines across the grey-ink map ...
MAX_RULED_SPACING_MM = 5.5  # ... typically no further apart than a 5 mm square (trace rows are >= 8 mm apart) ...
RULED_ROW_SHARE = 0.3  # (a ruled line fills this share of its pixel row): a grey or black grid ...
MAX_GREY_GRID_DARKNESS = 0.8  # ... when they are lighter than this share of the trace's darkness ...
GREY_GRID_CUTS = (0.3, 0.55)  # ... and then the trace thresholds sit this far from the lines' darkness to the trace's
RULED_RUN_MM = 3.0  # a ruled line is level (or upright) ink at least this long; a trace crosses it in less
NOISE_RUN_PX = 3  # px: the run along a line over which a photo's noise is averaged before its darkness is taken
RULED_LINE_SHARE = 0.025  # the level lattice lines (>= 5 % of the region's pixels) cover more than this share ...
LATTICE_DARKNESS = FAINT_TRACE_DARKNESS / 2  # ... darker than this when they need removing (else no faint trace joins)
EDGE_MM = 0.4  # ink this close to the region's edge is the page's frame, not trace
SEPARATOR_MM = 65.0  # a column separator spans the panel rows (>= 75 mm); a QRS stroke, even 6 mV at 10 mm/mV, 60 mm at most
STRAIGHT_MM = 25.0  # straight strokes this long are separators (upright) or creases and sheet edges (slanted) ...
SLANT_DEG = 15.0  # ... slanted: this far from both level and upright (a QRS stroke is within ~10 degrees of upright)
# A phone photo is ~4000 px across (~14 px/mm on a page filling the frame); reading it at full size costs ~10x a
# scan's time for no gain: 1800 px still gives ~6 px/mm on a full A4 frame (the shared scans have 4).
MAX_READ_SIDE = 1800
SMALL_REGION_SHARE = 0.6  # a region this small in that copy (a sheet on a desk) is read again at more of its own size
MIN_PX_PER_MM, MAX_PX_PER_MM = 1.2, 40.0  # 1.2 px/mm is a 300 px wide page: below that no trace is readable
MIN_PAPER_SHARE = 0.55  # paper is at least this bright relative to the brightest paper in view
MIN_GRID_DENSITY = 0.12  # share of a 15 x 15 window (about 3 squares of 5 mm) on grid ink ...
MIN_LINE_DENSITY = 0.02  # ... and on level or upright lines of it (one such line across the window: 0.07)
MIN_GRID_COVER = 0.08  # the ruled area covers at least this much of the frame
MIN_PERIODICITY = 50.0  # the grid's spectral peak over the median power of its profile (real grids: hundreds; noise: about 10)
SUBHARMONIC_SHARE = 0.15  # a sub-harmonic this strong (of the strongest peak's power) is the true period
SHARPNESS_SIDE = 640  # pixels: the copy on which the two candidate regions are compared ...
SHARPNESS_KERNEL = 5  # px: the paper-level neighbourhood on that copy
OUTLINE_PREFERENCE = 1.15  # ... and a printed box wins unless the ruled area's grid lines are this much sharper
MAX_SHEET_SHARE = 0.95  # a sheet of paper outlined against its surroundings covers less of the frame than this
MIN_SCALE_DISAGREEMENT = 1.2  # two readings of the grid's period differ when their scales are this far apart
STRAIGHTEN_PASSES = 3  # at most this many redraws of the region by its grid lines' lean (`edgeecg.straighten`)
MIN_OUTLINE_SHARE = 0.6  # a printed box frames at least this much of the ruled area (else it is some other box)


@dataclass(frozen=True)
class PageGeometry:
    """The grid region of a page, straightened, and its scale."""

    quad: np.ndarray  # float32 4x2: the region's corners in input pixels, clockwise from top-left
    upright: np.ndarray  # BGR uint8: the region warped upright (rows of trace run along x)
    px_per_mm: tuple[float, float]  # (along x, along y) of `upright`
    grid_period_px: tuple[float, float]  # measured period of the grid lines (x, y) in `upright` pixels
    grid_period_mm: float  # along x: 1.0 when the minor lines set the period, 5.0 when only major lines show
    outline_box: bool  # True when the region came from a printed outline box
    ink: tuple[np.ndarray, np.ndarray] = field(repr=False, default=None)  # `darkness` of `upright` (grey, grid)
    ink_kernel_px: int = READ_KERNEL_PX  # the paper-level neighbourhood `ink` was measured with
    brightest: np.ndarray = field(repr=False, default=None)  # uint8 `_brightest(upright, ink_kernel_px)`, its by-product

    def to_input(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) points of `upright` back to input-image pixels (for overlays)."""
        h, w = self.upright.shape[:2]
        corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
        matrix = cv2.getPerspectiveTransform(corners, self.quad.astype(np.float32))
        pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(pts, matrix).reshape(-1, 2)


def darkness(image_bgr: np.ndarray, kernel_px: int) -> tuple[np.ndarray, np.ndarray]:
    """(grey-ink darkness, grid-ink darkness) as float32 (H, W) maps, 0 on paper and up to 1 on black.

    Each channel's darkness is 1 - pixel / local paper level (the brightest
    level nearby, so shading cancels). Grey ink (trace, text) is dark in every
    channel alike; coloured grid ink, however dark, is much darker in some
    channels than in others. So grey-ink darkness is the lightest channel's
    darkness less the spread between channels, and grid-ink darkness is the
    darkest channel's.
    """
    return _darkness(image_bgr, kernel_px)[:2]


def _darkness(image_bgr: np.ndarray, kernel_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`darkness`, and `_brightest` at the same kernel: the max of the channels' local maxima it takes anyway."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel_px, kernel_px))
    ratios, brightest, paper = [], None, None  # pixel / paper level, per channel
    for channel in cv2.split(image_bgr):
        # the local maximum on the 8-bit plane (a quarter of the memory traffic), its mean straight into float
        local_max = cv2.dilate(channel, kernel)
        brightest = local_max if brightest is None else cv2.max(brightest, local_max)
        paper = cv2.boxFilter(local_max, cv2.CV_32F, (kernel_px * 2 + 1, kernel_px * 2 + 1), dst=paper)
        ratios.append(cv2.divide(channel, cv2.max(paper, 1.0, dst=paper), dtype=cv2.CV_32F))  # 8-bit read as float
    # a channel's darkness is 1 - its ratio, and float 1 - q never rises with q: the lightest channel's darkness
    # is exactly 1 - the largest ratio (one subtraction per map instead of one per channel). All in place: fresh
    # page-sized buffers cost more than the arithmetic
    largest = cv2.max(ratios[0], ratios[1])
    smallest = cv2.min(ratios[0], ratios[1], dst=ratios[0])
    lightest = cv2.subtract(1.0, cv2.max(largest, ratios[2], dst=largest), dst=largest)
    darkest = cv2.subtract(1.0, cv2.min(smallest, ratios[2], dst=smallest), dst=smallest)
    grey = np.multiply(lightest, 2.0, out=lightest)  # 2 * lightest - darkest, in place
    return np.subtract(grey, darkest, out=grey), darkest, brightest


def _darkness_reach(kernel_px: int) -> int:
    """How far (px) `darkness` looks from a pixel: the dilation's half-width plus the box filter's.
    Its value at a pixel this far inside a crop's edge is the same as on the whole image."""
    return kernel_px // 2 + kernel_px


def ink_masks(page: PageGeometry) -> tuple[np.ndarray, np.ndarray]:
    """The trace ink as a uint8 mask of the upright grid region, and the grey-ink darkness (float32) that
    weighs each trace pixel when a stroke's centre is sought between pixels.

    Trace ink is dark in every channel. Straight lines longer than any trace
    feature (grid lines of a black grid, separator bars, the outline box) are
    removed from it.
    """
    px_per_mm = sum(page.px_per_mm) / 2
    kernel = _odd(PAPER_KERNEL_MM * px_per_mm)
    # the paper level needs a neighbourhood wider than any line; the reader's own is reused when it is wide enough
    if kernel <= 1.5 * page.ink_kernel_px:
        grey_ink = page.ink[0]
        brightest = page.brightest if kernel == page.ink_kernel_px else _brightest(page.upright, kernel)
    else:
        grey_ink, _, brightest = _darkness(page.upright, kernel)
    long_h = _odd(LONG_LINE_MM * px_per_mm)
    thresholds = _trace_thresholds(grey_ink, long_h, page.px_per_mm[1])
    if thresholds is None:  # no unbroken ruled lines: a photo's are sought by their position
        grey_ink = _without_ruled_lines(grey_ink, page, px_per_mm)
        trace = _hysteresis(grey_ink, FAINT_TRACE_DARKNESS, TRACE_DARKNESS)
    else:
        trace = _grey_grid_trace(grey_ink, long_h, thresholds)
    trace = cv2.bitwise_and(trace, _paper_above(brightest))  # a photo's desk beside the page is no trace
    straight = _line_open(trace, long_h, 1)
    segments = _long_segments(trace, STRAIGHT_MM * px_per_mm)
    straight = cv2.bitwise_or(straight, _upright_bars(trace, segments, STRAIGHT_MM * px_per_mm,
                                                      SEPARATOR_MM * px_per_mm))
    straight = cv2.bitwise_or(straight, _slanted_lines(trace.shape, segments))
    straight = cv2.dilate(straight, np.ones((3, 3), np.uint8))
    trace = cv2.bitwise_and(trace, cv2.bitwise_not(straight))
    edge = max(2, int(round(EDGE_MM * px_per_mm)))  # a page's own edge or frame line, never trace
    trace[:edge], trace[-edge:], trace[:, :edge], trace[:, -edge:] = 0, 0, 0, 0
    return trace, np.clip(grey_ink, 0.0, 1.0)


def _grey_grid_trace(grey_ink: np.ndarray, long_h: int, thresholds: tuple[float, float]) -> np.ndarray:
    """uint8 trace mask on a grey or black grid of unbroken ruled lines: ink above `_trace_thresholds`, and ink
    that stays as dark as trace once the ruled lines' own darkness is taken off.

    The raised thresholds keep a trace clearly darker than the lines. A thin
    pen (a pixel wide, softened by JPEG: a red-grid printout scanned in
    greyscale) is barely darker than a major line and breaks into dashes
    there. Off the lines it keeps its full darkness: a pixel less the darkness
    of the level and upright ruled lines through it (long openings, the lines
    being unbroken) still reaches TRACE_DARKNESS; a line alone drops to none.
    """
    ink = cv2.max(grey_ink, 0.0)
    level = _line_open(cv2.blur(ink, (NOISE_RUN_PX, 1)), long_h, 1)
    upright = _line_open(cv2.blur(ink, (1, NOISE_RUN_PX)), long_h, 0)
    off_lines = cv2.subtract(grey_ink, cv2.max(level, upright)) > TRACE_DARKNESS
    low, high = thresholds
    return _connected_to(((grey_ink > low) | off_lines).view(np.uint8), (grey_ink > high) | off_lines)


def _without_ruled_lines(grey_ink: np.ndarray, page: PageGeometry, px_per_mm: float) -> np.ndarray:
    """`grey_ink` less the darkness of the grid lines it shows, where they show dark enough to pass for trace.

    A grey or black grid (or a coloured one a photo has washed out) is as grey
    as the trace. On a photo its lines are too broken and drifting to be found
    as page-long lines, and darkness alone cannot tell them from a faint trace.
    Their position can: they lie on the grid's lattice. Each pixel's ruled-line
    darkness is the darkness of level and upright ink at the same place one and
    two 5 mm periods away (`_lattice_floor`): a line is there, a trace is not
    (it is no periodic pattern). So the trace keeps its darkness off the
    lattice, and on it only what it has beyond the line's own darkness (a trace
    running along or across a line stays); a coloured grid, light in this map,
    leaves it unchanged.
    """
    period_5mm = [period * 5.0 / page.grid_period_mm for period in page.grid_period_px]
    run = _odd(RULED_RUN_MM * px_per_mm)
    ink = cv2.max(grey_ink, 0.0)
    level = cv2.blur(ink, (NOISE_RUN_PX, 1))
    # the level lines alone tell (a coloured page, most pages, is spared the upright ones' cost). Opening and
    # lattice floor are mins and maxes, which commute with a threshold: the test runs on the 8-bit mask
    dark = _lattice_floor(_line_open(cv2.compare(level, LATTICE_DARKNESS, cv2.CMP_GT), run, 1), period_5mm[1], 0)
    if cv2.countNonZero(dark) <= RULED_LINE_SHARE * dark.size:
        return grey_ink  # no grid lines dark enough to be taken for trace
    level = _lattice_floor(_line_open(level, run, 1), period_5mm[1], 0)
    upright = _line_open(cv2.blur(ink, (1, NOISE_RUN_PX)), run, 0)
    return cv2.subtract(grey_ink, cv2.max(level, _lattice_floor(upright, period_5mm[0], 1)))


def _lattice_floor(ink: np.ndarray, period: float, axis: int) -> np.ndarray:
    """Per pixel of `ink`, the darkness it shares with the pixels one and two periods away along `axis`
    (0: above and below): the second lowest of those four, as one may hold a trace crossing the line.
    `ink` is float32 darkness or a uint8 mask of it above some level (the floor's, as min and max commute with it).

    A ruled line repeats there; a trace (even a flat stretch, or a 5 mm wide calibration pulse) does not.
    Off the page a neighbour does not count: near its edge the lowest of those on it is taken.
    """
    size = ink.shape[axis]
    shifts = [int(round(k * period)) for k in (-2, -1, 1, 2)]
    reach = max(abs(s) for s in shifts)
    pads = (reach, reach, 0, 0) if axis == 0 else (0, 0, reach, reach)
    padded = cv2.copyMakeBorder(ink, *pads, cv2.BORDER_CONSTANT, value=255 if ink.dtype == np.uint8 else np.inf)
    a, b, c, d = (padded[reach + s: reach + s + size] if axis == 0 else padded[:, reach + s: reach + s + size]
                  for s in shifts)
    low1, high1, low2, high2 = cv2.min(a, b), cv2.max(a, b), cv2.min(c, d), cv2.max(c, d)
    floor = cv2.min(cv2.max(low1, low2), cv2.min(high1, high2))  # the second lowest of four
    index = np.arange(size)
    on_page = sum(((index + s >= 0) & (index + s < size)).astype(np.int8) for s in shifts)
    near = index[on_page < 3]  # near the edge two neighbours at most are on the page: both must agree
    lowest = cv2.min(low1, low2)
    if axis == 0:
        floor[near] = lowest[near]
    else:
        floor[:, near] = lowest[:, near]
    return floor


def _line_open(image: np.ndarray, length: int, axis: int) -> np.ndarray:
    """cv2.morphologyEx(image, cv2.MORPH_OPEN, a line of odd `length` along `axis`) (1: level, 0: upright),
    bit for bit: min and max are exact, so their running extremes can be built by doubling, in
    log2(length) passes where OpenCV spends `length` comparisons per pixel (5x faster for a 45 mm line)."""
    return running_extreme(running_extreme(image, length, axis, cv2.min), length, axis, cv2.max)


def running_extreme(image: np.ndarray, length: int, axis: int, extreme) -> np.ndarray:
    """`extreme` (cv2.min or cv2.max) of the odd `length` pixels centred on each along `axis`; pixels
    beyond the image do not count (OpenCV's default morphology border)."""
    half, size = length // 2, image.shape[axis]
    if image.dtype == np.uint8:
        fill = 255 if extreme is cv2.min else 0
    else:
        fill = np.inf if extreme is cv2.min else -np.inf
    pads = (0, 0, half, half) if axis == 1 else (half, half, 0, 0)
    run = cv2.copyMakeBorder(image, *pads, cv2.BORDER_CONSTANT, value=fill)
    part = (lambda a, b: run[:, a:b]) if axis == 1 else (lambda a, b: run[a:b])
    width = 1  # `run` holds the extreme of `width` pixels from each
    while 2 * width <= length:
        run = extreme(part(0, -width), part(width, None))
        width *= 2
    return extreme(part(0, size), part(length - width, length - width + size))


def _trace_thresholds(grey_ink: np.ndarray, long_h: int, px_per_mm_y: float) -> tuple[float, float] | None:
    """(low, high) grey-ink darkness of trace ink for `_hysteresis` where a grey or black grid shows unbroken
    ruled lines; None where it does not (the fixed thresholds then hold, after `_without_ruled_lines`).

    A coloured grid is light in the grey-ink map and the fixed thresholds hold.
    A grey or black grid (a photocopy, a greyscale scan, a black-ruled cart) is
    as grey as the trace: at the fixed thresholds every grid line touching the
    trace would be taken with it. There both thresholds are raised between the
    ruled lines' darkness (level lines `long_h` px long, spaced as a grid's)
    and the trace's (the darkest ink in view), where only the trace and its
    crossings remain (`_grey_grid_trace` adds a thin trace's fainter pixels).
    """
    faint = cv2.compare(grey_ink, FAINT_TRACE_DARKNESS, cv2.CMP_GT)
    lines = _line_open(faint, long_h, 1)
    ruled_rows = cv2.reduce(lines, 1, cv2.REDUCE_AVG, dtype=cv2.CV_32F).ravel() > RULED_ROW_SHARE * 255
    starts = np.nonzero(np.diff(ruled_rows.astype(np.int8), prepend=0) == 1)[0]
    if len(starts) < MIN_GREY_GRID_LINES or np.median(np.diff(starts)) > MAX_RULED_SPACING_MM * px_per_mm_y:
        return None  # creases, frame lines or the flat rows of a 12x1 trace: no grid
    ruled = float(np.percentile(grey_ink[lines > 0], 90))
    ink = float(np.percentile(grey_ink, 99.5))
    if ruled > MAX_GREY_GRID_DARKNESS * ink:
        return None
    low, high = (ruled + cut * max(0.0, ink - ruled) for cut in GREY_GRID_CUTS)
    return max(FAINT_TRACE_DARKNESS, low), max(TRACE_DARKNESS, high)


def on_paper(image_bgr: np.ndarray, kernel_px: int) -> np.ndarray:
    """bool mask of pixels on paper: near something at least MIN_PAPER_SHARE as bright as the brightest
    paper in view. A desk or a deep shadow around a photographed page is not paper."""
    return _paper_mask(image_bgr, kernel_px) > 0


def _paper_mask(image_bgr: np.ndarray, kernel_px: int) -> np.ndarray:
    """`on_paper` as a uint8 mask (255 on paper), for OpenCV's bitwise operations."""
    return _paper_above(_brightest(image_bgr, kernel_px))


def _brightest(image_bgr: np.ndarray, kernel_px: int) -> np.ndarray:
    """uint8: the brightest level of any channel within a kernel_px square of each pixel."""
    blue, green, red = cv2.split(image_bgr)  # cv2's max: numpy's max over the channel axis is ~20x slower
    return cv2.dilate(cv2.max(cv2.max(blue, green), red), np.ones((kernel_px, kernel_px), np.uint8))


def _paper_above(brightest: np.ndarray) -> np.ndarray:
    """`_paper_mask` from `_brightest` levels: 255 where they reach MIN_PAPER_SHARE of the brightest paper's."""
    # an 8-bit level is above a threshold exactly when it is above the threshold's integer part
    return cv2.compare(brightest, math.floor(MIN_PAPER_SHARE * _percentile_u8(brightest, 95)), cv2.CMP_GT)


def _percentile_u8(image: np.ndarray, q: float) -> float:
    """np.percentile(image, q) (linear interpolation) of a uint8 image, from its histogram instead of a sort."""
    counts = np.cumsum(cv2.calcHist([image], [0], None, [256], [0, 256]).ravel())
    rank = q / 100 * (image.size - 1)
    below, above = np.searchsorted(counts, [np.floor(rank) + 1, np.ceil(rank) + 1])
    return float(below + (rank - np.floor(rank)) * (above - below))


def _hysteresis(value: np.ndarray, low: float, high: float) -> np.ndarray:
    """uint8 mask of pixels above `low` that are connected to a pixel above `high`."""
    return _connected_to((value > low).view(np.uint8), value > high)


def _connected_to(weak: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """uint8 mask of the 8-connected components of the 0/1 uint8 mask `weak` that hold a `strong` pixel
    (`strong` lies within `weak`)."""
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    held = np.zeros(count, np.uint8)  # per component: 1 when it holds a strong pixel
    held[labels[strong]] = 1
    held[0] = 0
    return np.take(held, labels)  # the 8-bit mask straight from the table (faster than indexing, then casting)


def _long_segments(trace: np.ndarray, min_length: float) -> np.ndarray:
    """(n, 4) int x1, y1, x2, y2 of the straight strokes at least `min_length` long in the trace mask."""
    lines = cv2.HoughLinesP(trace, 1, np.pi / 360, threshold=int(0.7 * min_length),
                            minLineLength=int(min_length), maxLineGap=2)
    return np.zeros((0, 4), np.int32) if lines is None else lines.reshape(-1, 4)


def _upright_bars(trace: np.ndarray, segments: np.ndarray, min_length: float, min_run: float) -> np.ndarray:
    """uint8 mask of the near-vertical straight `segments` (column separators), grown to their ink's full run.

    A separator is straight, even when a photo leaves it a degree or two off
    vertical, and runs across the panel rows. A QRS stroke can be straight and
    25 mm tall too (hypertrophy: 3-6 mV, 30-60 mm at 10 mm/mV), so a line counts
    only when the unbroken upright ink through it is at least `min_run` long.
    """
    bars = np.zeros_like(trace)
    for x1, y1, x2, y2 in segments:
        upright = abs(x2 - x1) <= 0.05 * abs(y2 - y1)  # within about 3 degrees of vertical
        if upright and _upright_run(trace, x1, y1, x2, y2) >= min_run:
            cv2.line(bars, (int(x1), int(y1)), (int(x2), int(y2)), 1, 2)
    if not bars.any():
        return bars
    # Hough finds the bar between the traces it crosses; the rest of it is any tall upright run in its columns
    columns = cv2.dilate(bars.any(axis=0).astype(np.uint8)[None, :], np.ones((1, 5), np.uint8))
    upright_runs = _line_open(trace, _odd(min_length / 3), 0)
    return cv2.bitwise_or(bars, upright_runs * columns)


def _slanted_lines(shape: tuple[int, ...], segments: np.ndarray) -> np.ndarray:
    """uint8 mask of the straight `segments` that slant between SLANT_DEG from level and from upright: a crease,
    a fold's shadow or a sheet's edge on a photo. No ECG stroke runs that straight that long on a slant: a QRS
    stroke is near upright, a baseline near level, and a wave is curved."""
    lines = np.zeros(shape[:2], np.uint8)
    low, high = np.tan(np.radians(SLANT_DEG)), np.tan(np.radians(90 - SLANT_DEG))
    for x1, y1, x2, y2 in segments:
        rise, run = abs(int(y2) - int(y1)), abs(int(x2) - int(x1))
        if low * run <= rise <= high * run:
            cv2.line(lines, (int(x1), int(y1)), (int(x2), int(y2)), 1, 2)
    return lines


def _upright_run(trace: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> int:
    """Length in px of the unbroken ink through a near-vertical line, in its column and the two beside it.

    Hough finds a separator in pieces between the traces crossing it; the ink
    itself runs on through the crossings.
    """
    x = int(round((x1 + x2) / 2))
    top, bottom = min(y1, y2), max(y1, y2)
    gaps = np.flatnonzero(~trace[:, max(0, x - 1): x + 2].any(axis=1))
    above, below = gaps[gaps < top], gaps[gaps > bottom]
    start = above[-1] + 1 if len(above) else 0
    end = below[0] if len(below) else trace.shape[0]
    return int(end - start)


def read_page(image_bgr: np.ndarray, row_span_s: float = 10.0, speed_mm_per_s: float = 25.0) -> PageGeometry:
    """Find the grid, straighten it and measure its scale; NoGridFound when there is none.

    `row_span_s` and `speed_mm_per_s` only settle whether the measured grid
    period is the 1 mm or the 5 mm one (a row of trace spans about
    row_span_s * speed mm); the scale itself always comes from the grid.
    A frame larger than MAX_READ_SIDE is read from a copy of that size; the
    returned quad is in the input's pixels all the same. A region filling
    less than SMALL_REGION_SHARE of that copy (a sheet photographed on a desk)
    is then measured again from a copy of the frame where it is MAX_READ_SIDE
    across (or from the frame itself), so it keeps the resolution it has.
    """
    if image_bgr.ndim == 2:
        image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    h, w = image_bgr.shape[:2]
    if max(h, w) <= MAX_READ_SIDE:
        return _read_page(image_bgr, row_span_s, speed_mm_per_s)
    copy, to_input = _at_most(image_bgr, MAX_READ_SIDE)
    page = _read_page(copy, row_span_s, speed_mm_per_s)
    longest = _longest_side(page.quad)
    if longest <= SMALL_REGION_SHARE * MAX_READ_SIDE:
        finer, to_input_finer = _at_most(image_bgr, round(max(copy.shape[:2]) * MAX_READ_SIDE / longest))
        page = _measure(finer, page.quad * to_input / to_input_finer, page.outline_box, row_span_s, speed_mm_per_s)
        to_input = to_input_finer
    return replace(page, quad=(page.quad * to_input).astype(np.float32))


def _at_most(image: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(the image, or a copy `side` px along its longer side when it is larger; input px per copy px, x and y)."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image, np.ones(2, np.float32)
    size = (max(2, round(w * side / max(h, w))), max(2, round(h * side / max(h, w))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.array([w / size[0], h / size[1]], np.float32)


def _longest_side(quad: np.ndarray) -> float:
    return float(np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1).max())


def _read_page(image_bgr: np.ndarray, row_span_s: float, speed_mm_per_s: float) -> PageGeometry:
    try:
        quad, outline = _grid_quad(image_bgr)
        return _measure(image_bgr, quad, outline, row_span_s, speed_mm_per_s)
    except NoGridFound:
        # a faint grid on a photographed page can escape both the box and the ruled-area finders (blur and JPEG
        # leave its lines too thin at their working size), and a skewed region smears its period: the sheet of
        # paper against the desk still outlines it. Only pages that failed take this path.
        paper = _paper_quad(image_bgr, *_working_copy(image_bgr))
        if paper is None:
            raise
        return _measure(image_bgr, paper, False, row_span_s, speed_mm_per_s)


def _measure(image_bgr: np.ndarray, quad: np.ndarray, outline: bool, row_span_s: float,
             speed_mm_per_s: float) -> PageGeometry:
    """Straighten the region `quad` outlines (by its grid lines where they lean in it) and measure the grid's
    period and scale in it."""
    upright, grey_ink, grid_ink, brightest, trace, grid = _upright_maps(image_bgr, quad)
    for _ in range(STRAIGHTEN_PASSES):  # a strong perspective is measured better once the region is nearly straight
        straight = straighten(quad, grid)
        if straight is None:
            break
        quad = straight
        upright, grey_ink, grid_ink, brightest, trace, grid = _upright_maps(image_bgr, quad)
    spectrum_x = _spectrum(grid.mean(axis=0))
    period_x = None if spectrum_x is None else _spectral_period(spectrum_x, None)
    if period_x is None:
        raise NoGridFound()
    row_mm = row_span_s * speed_mm_per_s
    span = _trace_span(trace)
    period_mm = _period_in_mm(span, grid, period_x, row_mm)
    # a sub-harmonic that is not the grid's (shading, a crease) can double the period: keep the strongest line's
    # own period when it gives a clearly different scale that puts the rows nearer a record's length
    strongest = _spectral_period(spectrum_x, None, comb=False) if span else None
    if strongest is not None:
        strongest_mm = _period_in_mm(span, grid, strongest, row_mm)
        if (abs(math.log(strongest / strongest_mm * period_mm / period_x)) > math.log(MIN_SCALE_DISAGREEMENT)
                and _span_error(span, strongest / strongest_mm, row_mm) < _span_error(span, period_x / period_mm, row_mm)):
            period_x, period_mm = strongest, strongest_mm
    # the grid is square: y's period is sought near x's, at whichever spacing (1 or 5 mm) shows better along y
    profile_y = grid.mean(axis=1)
    spectrum_y = _spectrum(profile_y)
    candidates = [] if spectrum_y is None else [
        (p, mm) for mm in (1.0, 5.0) for p in [_spectral_period(spectrum_y, near=period_x / period_mm * mm)] if p is not None]
    if not candidates:
        raise NoGridFound()
    period_y, period_mm_y = max(candidates, key=lambda c: _line_strength(profile_y, c[0]))
    ppm = (period_x / period_mm, period_y / period_mm_y)
    if not all(MIN_PX_PER_MM <= v <= MAX_PX_PER_MM for v in ppm) or max(ppm) > 1.25 * min(ppm):
        raise NoGridFound("no ECG grid found (grid spacing not readable)")
    return PageGeometry(quad.astype(np.float32), upright, ppm, (period_x, period_y), period_mm, outline,
                        (grey_ink, grid_ink), READ_KERNEL_PX, brightest)


def _upright_maps(image_bgr: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, ...]:
    """The region warped upright, its `_darkness` maps, its trace ink and its grid ink with the trace zeroed."""
    upright = _warp(image_bgr, quad)
    grey_ink, grid_ink, brightest = _darkness(upright, READ_KERNEL_PX)
    trace = grey_ink > TRACE_DARKNESS
    return upright, grey_ink, grid_ink, brightest, trace, np.where(trace, 0.0, grid_ink)


def _grid_quad(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """(corners, from an outline box?): the printed box when it frames most of the ruled area and
    straightens the grid at least as well as the ruled area's own outline does, else that outline. On a
    photo of a sheet against its surroundings, the sheet's outline stands in for the ruled area's where it
    straightens the grid more sharply: creases, shading and a faint grid can leave the ruled area a poor
    outline of the page, whose grid is printed square to its edges."""
    small, factor = _working_copy(image)  # the box finder's working copy too (same size rule)
    try:
        outline = _box_quad(image, small, factor)
    except NoGridFound:
        outline = None
    try:
        ruled = _ruled_quad(image, small, factor)
    except NoGridFound:
        if outline is None:
            raise
        return outline, True
    paper = _paper_quad(image, small, factor)
    if outline is None and paper is None:
        return ruled, False  # nothing to compare the ruled area's outline with
    scale = SHARPNESS_SIDE / max(image.shape[:2])
    view = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)  # one copy for every quad
    ruled_sharpness = _sharpness(view, ruled * scale)
    if paper is not None and (paper_sharpness := _sharpness(view, paper * scale)) > ruled_sharpness:
        ruled, ruled_sharpness = paper, paper_sharpness
    if outline is None or cv2.contourArea(outline) < MIN_OUTLINE_SHARE * cv2.contourArea(ruled):
        return ruled, False
    # a box read off grid lines of a page that prints none can be skewed: the right quad makes the lines upright,
    # so they stand out sharply in the profiles of the region's centre (which both quads cover)
    if _sharpness(view, outline * scale) * OUTLINE_PREFERENCE >= ruled_sharpness:
        return outline, True
    return ruled, False


def _box_quad(image: np.ndarray, small: np.ndarray, factor: int) -> np.ndarray:
    """`find_trace_quad(image)`, on `_working_copy`'s copy `small` where the image needs no conversion."""
    bgr, colour = _as_bgr(image)
    return _trace_quad_in(small, 1.0 / factor, colour) if bgr is image else find_trace_quad(image)


def _sharpness(small: np.ndarray, quad: np.ndarray) -> float:
    """How sharply the grid lines stand out in the column and row profiles of the central part of the
    region once `quad` (in `small`'s pixels) is warped upright (a leaning warp smears them): the weaker
    axis's contrast."""
    upright = _warp(small, quad)
    h, w = upright.shape[:2]
    top, bottom, left, right = h // 5, h - h // 5, w // 5, w - w // 5
    reach = _darkness_reach(SHARPNESS_KERNEL)
    if min(top, left) >= reach:
        # darkness at a pixel depends on the pixels within its reach only: measure the centre and that margin
        upright = upright[top - reach: bottom + reach, left - reach: right + reach]
        top, bottom, left, right = reach, reach + bottom - top, reach, reach + right - left
    grey_ink, grid_ink = darkness(upright, SHARPNESS_KERNEL)
    grid = np.where(grey_ink > TRACE_DARKNESS, 0.0, grid_ink)
    centre = grid[top:bottom, left:right]
    return min(_contrast(centre.mean(axis=0)), _contrast(centre.mean(axis=1)))


def _contrast(profile: np.ndarray) -> float:
    """Peaks over the typical level of a profile of line darkness."""
    return float((np.percentile(profile, 97) - np.median(profile)) / max(float(profile.mean()), 1e-6))


def _odd(value: float) -> int:
    return max(3, int(round(value)) | 1)


def _warp(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    tl, tr, br, bl = quad
    width = max(2, round((np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2))
    height = max(2, round((np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2))
    dst = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(quad.astype(np.float32), dst), (width, height),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _ruled_quad(image: np.ndarray, small: np.ndarray, factor: int) -> np.ndarray:
    """Largest quadrilateral covering the ruled (grid-ink) area, for pages without an outline box
    (found on `_working_copy`'s copy `small` of `image`)."""
    grey_ink, grid_ink, brightest = _darkness(small, 7)
    grid = ((grid_ink > GRID_DARKNESS) & (grey_ink < TRACE_DARKNESS) & (_paper_above(brightest) > 0)).astype(np.uint8)
    # ruled paper is dense with grid ink, part of it in level or upright lines (creases, text, shading and
    # a desk are slanted, short or grainy)
    lines = cv2.bitwise_or(cv2.morphologyEx(grid, cv2.MORPH_OPEN, np.ones((1, 7), np.uint8)),
                           cv2.morphologyEx(grid, cv2.MORPH_OPEN, np.ones((7, 1), np.uint8)))
    dense = cv2.blur(grid.astype(np.float32), (15, 15)) > MIN_GRID_DENSITY
    ruled = (dense & (cv2.blur(lines.astype(np.float32), (15, 15)) > MIN_LINE_DENSITY)).astype(np.uint8)
    ruled = cv2.morphologyEx(ruled, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    count, labels, stats = components(ruled)
    if count < 2:
        raise NoGridFound()
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[largest, cv2.CC_STAT_AREA] < MIN_GRID_COVER * ruled.size:
        raise NoGridFound()
    quad = _region_quad((labels == largest).astype(np.uint8), factor, image.shape[1::-1])
    if quad is None:
        raise NoGridFound()
    return quad


def _paper_quad(image: np.ndarray, small: np.ndarray, factor: int) -> np.ndarray | None:
    """The largest sheet of paper in view (bright against a desk or shadow), or None when none stands out
    (found on `_working_copy`'s copy `small` of `image`)."""
    h, w = image.shape[:2]
    paper = cv2.morphologyEx(_paper_mask(small, 7), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats = components(paper)
    if count < 2:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if not MIN_GRID_COVER * paper.size <= stats[largest, cv2.CC_STAT_AREA] <= MAX_SHEET_SHARE * paper.size:
        return None  # no sheet, or paper filling the frame (as below, without fitting its outline)
    quad = _region_quad((labels == largest).astype(np.uint8), factor, (w, h))
    # paper that fills the frame outlines nothing: the frame itself is no evidence of where a grid lies
    if quad is None or cv2.contourArea(quad.astype(np.float32)) > MAX_SHEET_SHARE * w * h:
        return None
    return quad


def _working_copy(image: np.ndarray) -> tuple[np.ndarray, int]:
    """(copy at most about WORK_SIDE px across, integer reduction factor): INTER_AREA stays on its fast path.
    The same copy as the box finder's (`crop._downscale`), so one serves both."""
    h, w = image.shape[:2]
    factor = max(1, -(-max(h, w) // WORK_SIDE))
    return (cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA) if factor > 1 else image,
            factor)


def _region_quad(region: np.ndarray, factor: int, size: tuple[int, int]) -> np.ndarray | None:
    """The quadrilateral outlining a uint8 region mask found on a copy shrunk `factor` times, in the pixels of
    the original (`size` = its width, height); None when the region has no four corners."""
    framed = cv2.copyMakeBorder(region, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # the frame's edge counts as edge
    edge_xs, edge_ys = nonzero_xy(framed - cv2.erode(framed, np.ones((3, 3), np.uint8)))
    edge = np.column_stack([edge_xs - 1, edge_ys - 1]).clip(0, [region.shape[1] - 1, region.shape[0] - 1])
    quad = _coarse_quad(edge.astype(np.int32))  # the hull of a region is the hull of its edge
    if quad is None:
        return None
    # the largest inscribed quad leans on corners that stick out (a header block): fit each side to the edge instead
    quad = _refine_quad(edge.astype(np.float32), quad, SIDE_BAND * max(region.shape))
    return order_clockwise(np.clip((quad + 0.5) * factor - 0.5, 0, [size[0] - 1, size[1] - 1]))


def _spectrum(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """(power, frequencies, the band grid lines can repeat in, its median power) of a grid-ink profile's fast
    part, zero-padded 16x; None when the profile is too short. One profile's serves each `near` sought in it."""
    n = len(profile)
    if n < 32:
        return None
    # shading, creases and the trace rows vary slowly; grid lines repeat fast: keep only the fast part
    width = max(9, n // 16) | 1
    trend = np.convolve(np.pad(profile, width // 2, mode="reflect"), np.ones(width) / width, mode="valid")
    profile = (profile - trend) * np.hanning(n)
    pad = 16 * n
    power = np.abs(np.fft.rfft(profile, pad)) ** 2
    freqs = np.fft.rfftfreq(pad)
    whole = (freqs >= 1.0 / (5 * MAX_PX_PER_MM)) & (freqs <= 1.0 / 2.2)
    return power, freqs, whole, float(np.median(power[whole]))


def _spectral_period(spectrum: tuple[np.ndarray, np.ndarray, np.ndarray, float], near: float | None,
                     comb: bool = True) -> float | None:
    """Period in pixels of the strongest line repetition in a grid-ink profile (its `_spectrum`), refined on
    its harmonics.

    `near` (pixels) restricts the search to within 20 % of that period: the
    other axis of the same grid, which differs by a photo's foreshortening only.
    `comb=False` keeps the strongest line's own period even where a sub-harmonic
    comb suggests a longer one.
    """
    power, freqs, whole, typical = spectrum
    pad = 2 * (len(power) - 1)
    band = whole & (freqs >= 1.0 / (1.2 * near)) & (freqs <= 1.0 / (0.8 * near)) if near is not None else whole
    if not band.any() or power[band].max() <= 0:
        return None
    peak = int(np.argmax(np.where(band, power, 0.0)))
    if power[peak] < MIN_PERIODICITY * typical:
        return None
    fundamental = _refine_peak(power, peak) / pad
    # the strongest peak may be a harmonic (2.5 mm of a 5 mm grid, or the 1 mm lines of one): the true
    # period is the longest whose every harmonic below the peak is really there (a comb, not shading)
    for k in (() if near is not None or not comb else (5, 4, 3, 2)):
        lines = [_peak_near(power, j * fundamental / k * pad) for j in range(1, k)]
        if freqs[lines[0]] >= 1.0 / (5 * MAX_PX_PER_MM) and all(power[i] > SUBHARMONIC_SHARE * power[peak] for i in lines):
            fundamental = _refine_peak(power, lines[0]) / pad
            break
    # A harmonic pins the period down more precisely; use the highest strong one below Nyquist/2.
    best = fundamental
    for k in range(2, 12):
        f = k * fundamental
        if f > 0.4:
            break
        local = _peak_near(power, f * pad, 8 * k)
        if power[local] > 0.1 * power[peak]:
            best = _refine_peak(power, local) / pad / k
    return float(1.0 / best)


def _line_strength(profile: np.ndarray, period: float) -> float:
    """How strongly the profile repeats with this period (power at its frequency over the median)."""
    profile = profile - profile.mean()
    n = len(profile)
    phase = np.exp(-2j * np.pi * np.arange(n) / period)
    return float(np.abs(np.dot(profile, phase)) ** 2 / max(np.median(np.abs(np.fft.rfft(profile)) ** 2), 1e-12))


def _peak_near(power: np.ndarray, index: float, reach: int = 8) -> int:
    """Index of the largest power within `reach` bins of `index`."""
    window = slice(max(int(round(index)) - reach, 1), int(round(index)) + reach + 1)
    return int(np.argmax(power[window])) + window.start


def _refine_peak(power: np.ndarray, index: int) -> float:
    """Sub-bin position of a spectral peak (parabola through the log power of it and its neighbours)."""
    if index <= 0 or index >= len(power) - 1:
        return float(index)
    a, b, c = np.log(power[index - 1: index + 2] + 1e-30)
    denominator = a - 2 * b + c
    return float(index + (0.5 * (a - c) / denominator if denominator < 0 else 0.0))


def _period_in_mm(span_px: float | None, grid: np.ndarray, period_px: float, row_mm: float) -> float:
    """1 or 5: which grid spacing the measured period is.

    The widest run of trace ink across the region (`span_px`) is a full row
    (about `row_mm` long): take the reading that puts it closer to that length.
    A page without trace falls back on the grid itself: with the 1 mm period,
    every fifth line is darker.
    """
    if not span_px:
        profile = grid.mean(axis=0)
        phase = (np.arange(len(profile)) / period_px).astype(int) % 5
        sums = np.bincount(phase, weights=profile, minlength=5)
        return 1.0 if sums.max() > 1.3 * np.median(sums) else 5.0
    errors = {mm: _span_error(span_px, period_px / mm, row_mm) for mm in (1.0, 5.0)}
    return min(errors, key=errors.get)


def _trace_span(trace: np.ndarray) -> float | None:
    """Pixels from the first column holding trace ink to the last (None with fewer than two such columns)."""
    columns = np.nonzero(trace.any(axis=0))[0]
    return float(columns[-1] - columns[0]) if len(columns) >= 2 else None


def _span_error(span_px: float, px_per_mm: float, row_mm: float) -> float:
    """|log| of how far a run of trace ink `span_px` long, at this scale, is from a row's length."""
    return abs(math.log(span_px / px_per_mm / row_mm))
