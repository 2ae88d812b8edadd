"""Follow the ECG trace: find the rows of trace on the upright grid and turn each into a curve y(x).

Rows are where trace ink piles up horizontally (a trace spends most of its
time near its baseline). Each connected stroke of ink is given to the row
whose baseline it runs along; a stroke that runs along two baselines (a tall
QRS touching the next row's trace) is split between them at mid-way, and a
stroke that runs along none goes to the row it lies closest to when it is
tall (a QRS broken by JPEG) and is dropped when it is short (a lead label, a
separator tick, a speck). Within a row, each pixel column's run of ink becomes
one point: its centre, or its far end where it reaches past both neighbouring
columns, so R peaks and S troughs keep their full height. Column runs that are not the trace (text
above it) are skipped by following the stroke from the left.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .crop import components, nonzero_xy

MIN_ROW_GAP_MM = 8.0  # baselines are at least this far apart (12 x 1 layouts on A4: about 15 mm)
MIN_ROW_COVER = 0.35  # a trace row has ink near its baseline over at least this share of the width ...
MIN_SPAN_COVER = 0.5  # ... and of its own span
BASELINE_BAND_MM = 2.0  # a stroke "runs along" a baseline when it has ink this close to it ...
BAND_OF_PITCH = 0.12  # ... but never more than this share of the row pitch
ALONG_MM = 3.0  # ... over at least this many millimetres of x
TEXT_HEIGHT_MM = 4.5  # a stroke off every baseline and shorter than this is a label, tick or speck
MAX_GAP_MM = 1.5  # a break in the trace shorter than this is bridged; a longer one is left as NaN


@dataclass(frozen=True)
class TraceRow:
    """One row of trace: its baseline and its curve in upright-region pixels."""

    baseline_y: float
    x: np.ndarray  # float64, increasing: where the curve has a point
    y: np.ndarray  # float64: the curve's y there (image rows grow downwards)
    x_start: float  # first and last column with trace ink
    x_end: float
    pen_px: float = 1.0  # the stroke's width where it runs flat


def find_baselines(trace: np.ndarray, px_per_mm_y: float) -> list[float]:
    """The y of each trace row's baseline, top to bottom (peaks of the ink's row profile)."""
    profile = trace.sum(axis=1).astype(np.float64)
    sigma = max(1.0, 0.6 * px_per_mm_y)
    smooth = cv2.GaussianBlur(profile.reshape(-1, 1), (1, 0), sigmaX=0.1, sigmaY=sigma).ravel()
    min_gap = MIN_ROW_GAP_MM * px_per_mm_y
    peaks = [y for y in range(1, len(smooth) - 1) if smooth[y] >= smooth[y - 1] and smooth[y] > smooth[y + 1]]
    peaks.sort(key=lambda y: -smooth[y])
    chosen: list[int] = []
    for y in peaks:
        if smooth[y] < 0.15 * smooth[peaks[0]]:
            break
        if all(abs(y - c) >= min_gap for c in chosen):
            chosen.append(y)
    return sorted(_refine_baseline(trace, y, px_per_mm_y) for y in chosen if _covers_row(trace, y, px_per_mm_y))


def _covers_row(trace: np.ndarray, y: int, ppm: float) -> bool:
    """A row of trace (not a line of text): ink near y over most of its horizontal extent."""
    reach = MIN_ROW_GAP_MM / 2 * ppm  # as far as the next row allows: a wandering baseline stays within it
    band = trace[max(0, int(y - reach)): int(y + reach) + 1]
    # a faint trace on a photo breaks into dashes: columns within a bridgeable break of ink count as inked
    inked = band.any(axis=0).astype(np.uint8)[None, :]
    gap = max(1, int(MAX_GAP_MM * ppm)) | 1
    columns = np.nonzero(cv2.morphologyEx(inked, cv2.MORPH_CLOSE, np.ones((1, gap), np.uint8)).ravel())[0]
    if len(columns) < 2:
        return False
    width = trace.shape[1]
    span = columns[-1] - columns[0] + 1
    # a line of text is inked over part of its span only; a trace runs on with few breaks
    return len(columns) >= MIN_ROW_COVER * width and span >= 0.4 * width and len(columns) >= MIN_SPAN_COVER * span


def _refine_baseline(trace: np.ndarray, y: int, ppm: float) -> float:
    """The most common y of the ink within a few mm of a row's profile peak (the isoelectric line)."""
    reach = int(3 * ppm)
    band = trace[max(0, y - reach): y + reach + 1]
    weights = band.sum(axis=1).astype(np.float64)
    if weights.sum() == 0:
        return float(y)
    top = max(0, y - reach)
    core = np.argmax(weights)
    lo, hi = max(0, core - 2), min(len(weights), core + 3)
    return float(top + np.average(np.arange(lo, hi), weights=weights[lo:hi] + 1e-9))


def assign_rows(trace: np.ndarray, baselines: list[float], px_per_mm: float) -> np.ndarray:
    """int32 label image: 0 no trace, r + 1 for ink belonging to row r."""
    # strokes are found with 1-pixel breaks bridged: JPEG and thin pens break a trace into dashes
    bridged = cv2.morphologyEx(trace, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    count, labels, stats = components(bridged)
    base = np.asarray(baselines)
    xs, ys = nonzero_xy(trace)
    comp = labels[ys, xs]
    # (component, row): how many distinct columns have ink within the row's baseline band
    pitch = float(np.min(np.diff(base))) if len(base) > 1 else np.inf
    band = min(BASELINE_BAND_MM * px_per_mm, BAND_OF_PITCH * pitch)  # tight rows: a pulse top nears the next baseline
    near = np.abs(ys[:, None] - base[None, :]) <= band
    touches = np.zeros((count, len(base)), np.int64)
    for r in range(len(base)):
        hit = near[:, r]
        keys = np.unique(comp[hit].astype(np.int64) * trace.shape[1] + xs[hit])
        touches[:, r] = np.bincount(keys // trace.shape[1], minlength=count)
    runs_along = touches >= ALONG_MM * px_per_mm
    rows_along = runs_along.sum(axis=1)[comp]  # per ink pixel: how many rows its stroke runs along ...
    touching = touches.max(axis=1)[comp]  # ... and its stroke's most columns near any one baseline
    out = np.zeros(trace.shape, np.int32)
    # one row along: the whole stroke; several: split at mid-way between their baselines
    single = rows_along == 1
    out[ys[single], xs[single]] = np.argmax(runs_along[comp[single]], axis=1) + 1
    multi = rows_along > 1
    if multi.any():
        distance = np.abs(ys[multi, None] - base[None, :]) + np.where(runs_along[comp[multi]], 0.0, np.inf)
        out[ys[multi], xs[multi]] = np.argmin(distance, axis=1) + 1
    # a short piece of trace near a baseline belongs to that row
    brushing = (rows_along == 0) & (touching > 0)
    out[ys[brushing], xs[brushing]] = np.argmax(touches[comp[brushing]], axis=1) + 1
    # off every baseline: a tall stroke (a QRS broken off) goes to the nearest row; labels and ticks are dropped
    tall = stats[:, cv2.CC_STAT_HEIGHT] >= TEXT_HEIGHT_MM * px_per_mm
    orphan = (touching == 0) & tall[comp]
    out[ys[orphan], xs[orphan]] = np.argmin(np.abs(ys[orphan, None] - base[None, :]), axis=1) + 1
    return out


def trace_rows(rows: np.ndarray, weight: np.ndarray, baselines: list[float]) -> list[TraceRow]:
    """Curve of each row from its ink (`rows` from `assign_rows`; `weight`: ink darkness, for sub-pixel centres)."""
    xs, ys = nonzero_xy(rows)
    labels = rows[ys, xs]
    traced = []
    for row, baseline_y in enumerate(baselines):
        band = ys[labels == row + 1]
        if len(band) == 0:
            continue
        top, bottom = int(band.min()), int(band.max()) + 1  # work on the row's own band only
        found = _trace_band(rows[top:bottom] == row + 1, weight[top:bottom], baseline_y - top)
        if found is not None:
            x, y, first, last, pen = found
            traced.append(TraceRow(baseline_y, x, y + top, first, last, pen))
    return traced


def _trace_band(mask: np.ndarray, weight: np.ndarray, baseline_y: float):
    """(x, y, first column, last column, pen width) of the curve drawn in `mask`, one point per pixel column."""
    columns = np.nonzero(mask.any(axis=0))[0]
    if len(columns) < 2:
        return None
    chosen = _follow_stroke(_column_runs(mask), baseline_y)
    pen = _line_width(chosen)
    x, y = _column_points(chosen, pen, _run_centroids(chosen, np.where(mask, weight, 0.0)))
    return x, y, float(columns[0]), float(columns[-1]), pen


def _column_runs(mask: np.ndarray) -> np.ndarray:
    """(N, 3) float64 rows of (x, top, bottom) for every vertical run of ink, sorted by x then top."""
    # work on columns laid out contiguously (x-major, as the runs are listed): nonzero on a transposed view is slow
    padded = np.zeros((mask.shape[1], mask.shape[0] + 2), bool)
    padded[:, 1:-1] = mask.T
    starts = padded[:, 1:-1] & ~padded[:, :-2]
    ends = padded[:, 1:-1] & ~padded[:, 2:]
    sy, sx = nonzero_xy(starts)  # (column, row) of the transposed layout, x-major as np.nonzero lists them
    ey, ex = nonzero_xy(ends)
    return np.column_stack([sx, sy, ey]).astype(np.float64)


def _follow_stroke(runs: np.ndarray, baseline_y: float) -> np.ndarray:
    """One run per column: the only one, or where several share a column, the one nearest the stroke."""
    xs = runs[:, 0].astype(np.int64)
    first = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.nonzero(first)[0]
    per_column = np.diff(np.r_[starts, len(xs)])
    if (per_column == 1).all():
        return runs
    picks = starts.copy()
    shared = np.nonzero(per_column > 1)[0]
    # a shared column looks at the pick in the column before it when that is within 3 px, else at the baseline
    before = starts[np.maximum(shared - 1, 0)]
    follows = (shared > 0) & ~(runs[before, 0] < runs[starts[shared], 0] - 3)
    chained = follows & (per_column[np.maximum(shared - 1, 0)] > 1)  # ... which is itself shared: walked in order
    free = shared[~chained]  # the column before holds one run (its pick is known) or is too far
    reference = np.where(follows[~chained], 0.5 * (runs[before[~chained], 1] + runs[before[~chained], 2]), baseline_y)
    group = np.repeat(np.arange(len(free)), per_column[free])
    index = np.repeat(starts[free] - np.r_[0, np.cumsum(per_column[free])[:-1]], per_column[free]) + np.arange(len(group))
    gaps = np.maximum(0.0, np.maximum(runs[index, 1] - reference[group], reference[group] - runs[index, 2]))
    nearest = gaps == np.minimum.reduceat(gaps, np.r_[0, np.cumsum(per_column[free])[:-1]])[group]
    _, first_nearest = np.unique(group[nearest], return_index=True)  # the first nearest, as np.argmin
    picks[free] = index[nearest][first_nearest]
    # the chained ones in order, each looking at the pick before it (plain floats: the groups are tiny, and
    # numpy's per-call cost would dominate)
    for g in shared[chained].tolist():
        start = int(starts[g])
        group_runs = runs[start: start + int(per_column[g])].tolist()
        previous = runs[picks[g - 1]]
        reference = 0.5 * (float(previous[1]) + float(previous[2]))
        gap_list = [max(0.0, max(top - reference, reference - bottom)) for _, top, bottom in group_runs]
        picks[g] = start + gap_list.index(min(gap_list))
    return runs[picks]


def _line_width(runs: np.ndarray) -> float:
    """Pen width in pixels: the typical height of a column run where the trace is flat."""
    heights = runs[:, 2] - runs[:, 1] + 1
    return float(np.percentile(heights, 25))


def _run_centroids(runs: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Darkness-weighted centre of each (x, top, bottom) run: the stroke's centre to a fraction of a pixel."""
    h, w = weight.shape
    # running sums down each column (a zero row on top): the mass in float32 as weight is. Added row by row, the
    # same sums as np.cumsum(axis=0) (one add per element, in order) at a third of its cost (it strides down columns)
    cumulative = np.zeros((h + 1, w), weight.dtype)
    moment = np.zeros((h + 1, w), np.float64)
    weighted = weight * np.arange(h)[:, None]
    for i in range(h):
        np.add(cumulative[i], weight[i], out=cumulative[i + 1])
        np.add(moment[i], weighted[i], out=moment[i + 1])
    x, top, bottom = runs[:, 0].astype(int), runs[:, 1].astype(int), runs[:, 2].astype(int) + 1
    mass = cumulative[bottom, x].astype(np.float64) - cumulative[top, x].astype(np.float64)
    centre = (moment[bottom, x] - moment[top, x]) / np.maximum(mass, 1e-9)
    return np.where(mass > 0, centre, (runs[:, 1] + runs[:, 2]) / 2)


def _column_points(runs: np.ndarray, width: float, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the curve, one point per column: the run's centre, except where the run reaches
    past both neighbours (an R peak or S trough drawn within a few columns), where its far end is kept."""
    x, top, bottom = runs[:, 0], runs[:, 1] + (width - 1) / 2, runs[:, 2] - (width - 1) / 2
    top, bottom = np.minimum(top, bottom), np.maximum(top, bottom)
    y = np.where(bottom - top > 1.0, (top + bottom) / 2, centres)
    if len(x) < 3:
        return x, y
    tall = (bottom - top) > 1.0
    prev_top, next_top = np.concatenate([top[:1], top[:-1]]), np.concatenate([top[1:], top[-1:]])
    prev_bottom, next_bottom = np.concatenate([bottom[:1], bottom[:-1]]), np.concatenate([bottom[1:], bottom[-1:]])
    peak = tall & (top < prev_top) & (top <= next_top)
    trough = tall & (bottom > prev_bottom) & (bottom >= next_bottom)
    y = np.where(peak & ~trough, top, np.where(trough & ~peak, bottom, y))
    return x, y


def sample_curve(row: TraceRow, x_from: float | np.ndarray, x_to: float | np.ndarray, n: int,
                 px_per_mm_x: float) -> np.ndarray:
    """The row's y at n evenly spaced x in [x_from, x_to); NaN where the trace has a gap.
    With (m, 1) arrays of window ends, (m, n): each window as it alone would give, in one call."""
    xs = x_from + (np.arange(n) + 0.5) * (x_to - x_from) / n
    if len(row.x) < 2:
        return np.full(xs.shape, np.nan)
    y = np.interp(xs, row.x, row.y, left=np.nan, right=np.nan)
    # a sample further than MAX_GAP_MM from any curve point is a gap, not a straight line
    nearest = np.searchsorted(row.x, xs).clip(1, len(row.x) - 1)
    distance = np.minimum(np.abs(row.x[nearest] - xs), np.abs(row.x[nearest - 1] - xs))
    y[distance > MAX_GAP_MM * px_per_mm_x] = np.nan
    return y
