"""Digitize a 12-lead printout: page -> rows of trace -> layout and leads -> calibrated signals in mV.

The page reader (`edgeecg.page`) gives the upright grid and its scale; the
tracer (`edgeecg.trace`) gives one curve per row. This module reads what the
rows mean:

- calibration pulses (the 1 mV step at either end of a row) are found, cut
  off the trace and used to confirm or correct the mV scale;
- the layout follows from the number of rows; six rows are 6x2 or 3x4 plus
  three rhythm strips, told apart by Einthoven/Goldberger's laws
  (I + III = II, aVR + aVL + aVF = 0) on the panels where they differ;
- a rhythm strip's lead, and whether the columns show successive or the same
  time windows, are both read by correlating the strip with the panels;
- each panel is resampled at the record time it shows, NaN elsewhere.

Nothing here decides a diagnosis; the quality figures say how much of each
lead the page really gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

import cv2
import numpy as np

from .crop import NoGridFound
from .errors import EdgeECGError
from .layouts import GAIN_MM_PER_MV, LAYOUTS, LEADS, RECORD_S, SPEED_MM_PER_S, Layout, Panel
from .page import PageGeometry, ink_masks, read_page, running_extreme
from .trace import TraceRow, assign_rows, find_baselines, sample_curve, trace_rows

DEFAULT_RATE = 500.0
PULSE_MM = (3.0, 25.0)  # a calibration pulse is between 3 and 25 mm tall (5, 10 or 20 mm/mV) ...
PULSE_WIDTH_MM = (1.5, 8.0)  # ... and 1.5 to 8 mm wide (0.06-0.32 s at 25 mm/s)
PULSE_SEARCH_MM = 8.0  # it starts within this distance of its row's end
THICK_PEN_PX = 5  # a pen this wide (px) draws a pulse's upright edges several columns wide
RECORD_SNAP = 0.03  # rows within 3 % of a standard 10 s record are taken as one
RECORD_SPAN_TOLERANCE = 0.2  # rows span RECORD_S within this share (read to a few pen widths: within 1 %)
MIN_LEAD_COVERAGE = 0.5  # a lead with less of its printed span readable does not count as found
STRIP_STEP_S = 0.004  # a strip's lag behind its panel is sought in steps of this ...
STRIP_MAX_LAG_STEPS = 6  # ... up to this many either way (24 ms: about 2.4 px at 25 mm/s and 4 px/mm)
SIMULTANEOUS_AGREEMENT = 0.5  # without a strip: columns whose beats correlate this well show the same window
JOIN_SEARCH_MM = 1.0  # the join between two panels of a row is sought this far either side of where the row's start puts it
JOIN_GAP_PX = 1.5  # curve points further apart than this along x leave a gap there (an erased separator)
JOIN_AGREEMENT_PX = 1.5  # marks of one page's joins this close agree on where they lie
ROW_EDGE_AGREEMENT_MM = 1.5  # rows whose first (or last) ink lies this close start (or end) together
TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}  # clockwise turns
ROWS_TO_LAYOUT = {3: "3x4", 4: "3x4+1", 5: "3x4+2", 12: "12x1"}


class NoTraceFound(EdgeECGError):
    """A grid was found but no row of trace on it."""


@dataclass(frozen=True)
class LeadQuality:
    """How much of one lead the page gave: `coverage` of its printed time span, and a confidence."""

    coverage: float
    confidence: float
    seconds: float  # record time the lead is printed for


@dataclass
class Digitized:
    """Signals read from one page, with everything needed to check and audit them."""

    signal: np.ndarray  # float32 (n_samples, 12) in mV, LEADS order; NaN where nothing is plotted
    rate: float
    layout: str
    simultaneous: bool
    panels: list[Panel]
    quality: dict[str, LeadQuality]
    px_per_mm: tuple[float, float]
    mm_per_s: float
    mm_per_mv: float
    mm_per_mv_source: str  # "pulse" when read from a calibration pulse, else "default"
    geometry: PageGeometry = field(repr=False)
    rows: list[TraceRow] = field(repr=False)
    panel_boxes: list[tuple[Panel, tuple[float, float, float, float]]] = field(repr=False)  # panel, (x0, x1, top, bottom) upright px
    pulses: tuple[int, int] = (0, 0)  # pulses of a standard height pointing up, and pointing down (upside down)
    turned_deg: int = 0  # the page was read turned this far clockwise (a scan upside down or on its side)

    @property
    def leads_found(self) -> list[str]:
        return [lead for lead in LEADS if self.quality[lead].coverage >= MIN_LEAD_COVERAGE]

    @property
    def partial(self) -> bool:
        return len(self.leads_found) < len(LEADS)

    @property
    def pen_mm(self) -> float:
        """How wide the trace is drawn (a blurred photo smears it wide)."""
        return float(np.median([row.pen_px for row in self.rows])) / self.px_per_mm[1]

    def summary(self) -> dict:
        """JSON-ready description: layout, scale and per-lead quality."""
        return {
            "layout": self.layout,
            "columns": "simultaneous" if self.simultaneous else "successive",
            "rhythm_leads": [p.lead for p in self.panels if p.rhythm],
            "scale": {"px_per_mm": [round(v, 4) for v in self.px_per_mm], "mm_per_s": self.mm_per_s,
                      "mm_per_mv": round(self.mm_per_mv, 3), "mm_per_mv_from": self.mm_per_mv_source},
            "rate_hz": self.rate,
            "turned_deg": self.turned_deg,
            "partial": self.partial,
            "leads_found": self.leads_found,
            "quality": {lead: {"coverage": round(q.coverage, 3), "confidence": round(q.confidence, 3)}
                        for lead, q in self.quality.items()},
        }


def digitize(
    image_bgr: np.ndarray,
    rate: float = DEFAULT_RATE,
    layout: str | None = None,
    mm_per_s: float = SPEED_MM_PER_S,
    mm_per_mv: float | None = None,
) -> Digitized:
    """Read the 12 leads of a printout as signals in mV at `rate` Hz.

    `layout` (a key of `LAYOUTS`) skips layout detection; `mm_per_mv` fixes the
    gain instead of reading it from a calibration pulse (default 10 mm/mV when
    no pulse is printed). Raises NoGridFound or NoTraceFound when the page
    cannot be read.
    """
    if not rate > 0:
        raise EdgeECGError(f"sampling rate must be positive, got {rate}")
    if layout is not None and layout not in LAYOUTS:
        raise EdgeECGError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    read = partial(_read_leads, rate=rate, layout=layout, mm_per_s=mm_per_s, mm_per_mv=mm_per_mv)
    try:
        reading, failure = read(image_bgr), None
    except (NoGridFound, NoTraceFound) as exc:
        reading, failure = None, exc
    turns = _turns_to_try(reading, image_bgr.shape)
    for degrees in turns:
        try:
            turned = read(cv2.rotate(image_bgr, TURNS[degrees]))
        except (NoGridFound, NoTraceFound):
            continue
        if _points_up(turned) and _spans_a_record(turned):
            return _as_turned(turned, degrees, image_bgr.shape)
    if reading is None:
        raise failure
    return reading


def _turns_to_try(reading: Digitized | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Which turns of the page may read it right side up: none for a page that reads as a record.

    The calibration pulse is the page's own "this way up" mark, a step up from
    the baseline at a row's start or end. Pulses that all point down mean the
    page is upside down. A page whose region (the frame, when nothing could be
    read) is taller than wide, a landscape printout scanned on its side, and
    that reads as no record or shows no pulse, may be on its side. A turned
    reading counts only when its pulses then point up: without a pulse nothing
    tells 90 from 270 degrees.
    """
    if reading is not None and _points_down(reading):
        return (180,)
    upright = reading.geometry.upright.shape if reading is not None else shape
    if upright[0] > upright[1] and (reading is None or not _spans_a_record(reading) or reading.pulses == (0, 0)):
        return (90, 270)
    return ()


def _points_up(reading: Digitized) -> bool:
    """Pulses pointing up on at least half the rows, and three times as many as pointing down."""
    up, down = reading.pulses
    return up >= max(2, len(reading.rows) / 2) and up >= 3 * down


def _points_down(reading: Digitized) -> bool:
    """Pulses pointing down on at least half the rows, and three times as many as pointing up."""
    up, down = reading.pulses
    return down >= max(2, len(reading.rows) / 2) and down >= 3 * up


def _spans_a_record(reading: Digitized) -> bool:
    """The rows span a standard record's RECORD_S within RECORD_SPAN_TOLERANCE."""
    return abs(len(reading.signal) / reading.rate / RECORD_S - 1) <= RECORD_SPAN_TOLERANCE


def _as_turned(reading: Digitized, degrees: int, shape: tuple[int, ...]) -> Digitized:
    """A reading of the page turned `degrees` clockwise, its region's corners put back in the page's pixels."""
    h, w = shape[:2]
    x, y = reading.geometry.quad[:, 0], reading.geometry.quad[:, 1]
    back = {90: (y, h - 1 - x), 180: (w - 1 - x, h - 1 - y), 270: (w - 1 - y, x)}[degrees]
    geometry = replace(reading.geometry, quad=np.column_stack(back).astype(np.float32))
    return replace(reading, geometry=geometry, turned_deg=degrees)


def _read_leads(image_bgr: np.ndarray, rate: float, layout: str | None, mm_per_s: float,
                mm_per_mv: float | None) -> Digitized:
    """`digitize` of the page as it lies."""
    geometry = read_page(image_bgr, RECORD_S, mm_per_s)
    ppm_x, ppm_y = geometry.px_per_mm
    trace, weight = ink_masks(geometry)
    baselines = find_baselines(trace, ppm_y)
    if not baselines:
        raise NoTraceFound("no trace on the grid")
    labels = assign_rows(trace, baselines, (ppm_x + ppm_y) / 2)
    rows = trace_rows(labels, weight, baselines)
    if not rows:
        raise NoTraceFound("no trace on the grid")

    rows, pulse_heights, pulses_down = _cut_pulses(rows, ppm_x, ppm_y)
    gain, gain_source = _gain(pulse_heights, mm_per_mv, len(rows))
    start, end = _row_span(rows, ROW_EDGE_AGREEMENT_MM * ppm_x, RECORD_S * mm_per_s * ppm_x)
    duration = (end - start) / ppm_x / mm_per_s
    if abs(duration / RECORD_S - 1) <= RECORD_SNAP:
        duration = RECORD_S  # the rows' ends are read to a pen width or so; a standard record is 10 s
    if duration < 1.0:
        raise NoTraceFound("no trace on the grid (rows shorter than 1 s)")

    def values(row: TraceRow, t0: float, t1: float, n: int, keep: tuple[float, float] = (-np.inf, np.inf)) -> np.ndarray:
        x0, x1 = start + t0 * mm_per_s * ppm_x, start + t1 * mm_per_s * ppm_x
        inside = (row.x > keep[0]) & (row.x < keep[1])
        if not inside.all():
            row = replace(row, x=row.x[inside], y=row.y[inside])
        return (row.baseline_y - sample_curve(row, x0, x1, n, ppm_x)) / ppm_y / gain

    chosen = LAYOUTS[layout] if layout else _layout_from_rows(rows, duration, values)
    chosen = Layout(chosen.name, chosen.grid, chosen.rhythm, duration)
    chosen, simultaneous, lags = _read_rhythm_and_columns(chosen, rows, values)
    for k, lag in enumerate(lags):  # put each strip on its panels' time axis
        strip = rows[len(chosen.grid) + k]
        rows[len(chosen.grid) + k] = replace(strip, x=strip.x - lag * mm_per_s * ppm_x)
    panels = [p for p in chosen.panels(simultaneous) if p.row < len(rows)]

    n = int(round(duration * rate))
    signal = np.full((n, len(LEADS)), np.nan, np.float32)
    printed = np.zeros((n, len(LEADS)), bool)
    boxes = []
    pitch = float(np.median(np.diff(baselines))) if len(baselines) > 1 else trace.shape[0] / 2
    column_px = chosen.column_s * mm_per_s * ppm_x
    joins = start + column_px * np.arange(1, chosen.columns)  # where one panel of a row ends and the next begins
    joins = joins + _join_offset(rows[:len(chosen.grid)], joins, ppm_x)
    for panel in sorted(panels, key=lambda p: not p.rhythm):  # strips first: panels fill what they miss
        display = (panel.column * chosen.column_s, panel.column * chosen.column_s + (panel.t1 - panel.t0))
        first, last = int(round(panel.t0 * rate)), min(n, int(round(panel.t1 * rate)))
        row = rows[panel.row]
        keep = (-np.inf, np.inf)
        if not panel.rhythm:  # neither the pen's jump between panels nor the next panel's trace is this panel's
            reach = row.pen_px / 2 + 1  # the jump is a pen wide, its anti-aliased edge a pixel more
            keep = (joins[panel.column - 1] + reach if panel.column > 0 else -np.inf,
                    joins[panel.column] - reach if panel.column < chosen.columns - 1 else np.inf)
        samples = values(row, display[0], display[1], last - first, keep)
        column = LEADS.index(panel.lead)
        target = signal[first:last, column]
        signal[first:last, column] = np.where(np.isnan(target), samples, target)
        printed[first:last, column] = True
        x0, x1 = (start + t * mm_per_s * ppm_x for t in display)
        boxes.append((panel, (x0, x1, row.baseline_y - pitch / 2, row.baseline_y + pitch / 2)))
    quality = _quality(signal, printed, rate)
    return Digitized(signal, rate, chosen.name, simultaneous, panels, quality, geometry.px_per_mm, mm_per_s,
                     gain, gain_source, geometry, rows, boxes,
                     (sum(_standard_gain(h) is not None for h in pulse_heights), pulses_down))


def _row_span(rows: list[TraceRow], tolerance: float, record_px: float) -> tuple[float, float]:
    """(start, end) x of the record on the page. Every row of a standard page starts at the record's start and
    ends at its end, but on a photo a stroke at the sheet's edge or a pulse's remnant can join a row's trace and
    move its first (or last) ink by millimetres: the rows that agree within `tolerance` outvote it, even when
    they are not the majority; where two groups are as large, the pair of edges a standard record's length
    (`record_px`) apart wins."""
    starts = _agreeing_edges([r.x_start for r in rows], tolerance)
    ends = _agreeing_edges([r.x_end for r in rows], tolerance)
    return min(((a, b) for a in starts for b in ends), key=lambda pair: abs(pair[1] - pair[0] - record_px))


def _agreeing_edges(edges: list[float], tolerance: float) -> list[float]:
    """The median edge of each largest group of edges within `tolerance` of one another; the median of all
    when no two agree."""
    edges = np.asarray(edges, np.float64)
    near = np.abs(edges[:, None] - edges[None, :]) <= tolerance
    counts = near.sum(axis=1)
    if counts.max() < 2:
        return [float(np.median(edges))]
    groups = dict.fromkeys(tuple(np.flatnonzero(near[i])) for i in np.flatnonzero(counts == counts.max()))
    return [float(np.median(edges[list(group)])) for group in groups]


def _join_offset(rows: list[TraceRow], joins: np.ndarray, ppm_x: float) -> float:
    """How far (px) the joins between panels lie from where the rows' start puts them.

    Each row marks each join: a gap where a separator was erased, else the
    pen's jump from one lead to the next (the largest step near the join). A
    QRS near a join marks it wrongly, but joins of one page share the offset
    (the start of a row is read to a pen width), so the most common mark wins.
    """
    reach = JOIN_SEARCH_MM * ppm_x
    marks = []
    for row in rows:
        for join in joins:
            first, stop = np.searchsorted(row.x, [join - reach, join + reach])  # and a point beyond either end
            x, y = row.x[max(0, first - 1): stop + 1], row.y[max(0, first - 1): stop + 1]
            if len(x) < 2:
                continue
            wide = np.diff(x)
            step = np.abs(np.diff(y)) + np.where(wide > JOIN_GAP_PX, np.inf, 0.0)  # a gap beats any step
            k = int(np.argmax(step))
            mark = (x[k] + x[k + 1]) / 2 - join
            if step[k] >= 2 * row.pen_px and abs(mark) <= reach:
                marks.append(mark)
    if len(marks) < 2:
        return 0.0
    marks = np.array(marks)
    agree = [np.abs(marks - m) <= JOIN_AGREEMENT_PX for m in marks]
    best = max(agree, key=lambda a: a.sum())
    if best.sum() < max(2, 0.4 * len(marks)):
        return 0.0
    return float(np.median(marks[best]))


def _cut_pulses(rows: list[TraceRow], ppm_x: float, ppm_y: float) -> tuple[list[TraceRow], list[float], int]:
    """Each row without its calibration pulse(s), the pulses' heights in mm, and how many pulses of a standard
    height point down (the page upside down: sought where the row shows none pointing up, and left in the row)."""
    heights, cut, down = [], [], 0
    for row in rows:
        x, y, x_start, x_end = row.x, row.y, row.x_start, row.x_end
        for side in (1, -1):
            found = _pulse(x, y, row.baseline_y, side, ppm_x, ppm_y, row.pen_px)
            if found is None:
                inverted = _pulse(x, 2 * row.baseline_y - y, row.baseline_y, side, ppm_x, ppm_y, row.pen_px)
                down += inverted is not None and _standard_gain(inverted[0]) is not None
                continue
            height, edge = found
            heights.append(height)
            keep = x > edge if side == 1 else x < edge
            x, y = x[keep], y[keep]
            if len(x) == 0:
                break
            x_start, x_end = float(x[0]), float(x[-1])
        if len(x) >= 2:
            cut.append(TraceRow(row.baseline_y, x, y, x_start, x_end, row.pen_px))
    return cut, heights, down


def _pulse(x: np.ndarray, y: np.ndarray, baseline: float, side: int, ppm_x: float, ppm_y: float,
           pen_px: float) -> tuple[float, float] | None:
    """(height mm, x where the trace beside it may start) of a pulse at the row's start (side 1) or end (-1).

    Works on the curve's upper envelope per pixel column, so the pulse's
    vertical edges (one column holding both its foot and its top) count as high.
    A thick pen (a large photo) draws each edge several columns wide, and the
    curve runs through the middle of those columns, half-way up: on such a
    page, where the envelope shows no pulse, it is sought again with dips
    narrower than the pen filled (a closing), and taken at a standard height only.
    """
    if len(x) < 4:
        return None
    columns = np.rint(x if side == 1 else -x).astype(np.int64)
    origin = columns.min()
    reach = int((PULSE_SEARCH_MM + PULSE_WIDTH_MM[1] + 4) * ppm_x)
    near = columns <= origin + reach
    envelope = np.full(reach + 1, -np.inf)
    np.maximum.at(envelope, columns[near] - origin, (baseline - y[near]) / ppm_y)
    found = _pulse_in(envelope, ppm_x)
    if found is None and pen_px >= THICK_PEN_PX:
        # the closing can also join a raised ST stretch into a low plateau: a pulse found only there must have
        # a standard height
        found = _pulse_in(_closing(envelope, int(round(pen_px))), ppm_x)
        if found is not None and _standard_gain(found[0]) is None:
            found = None
    if found is None:
        return None
    top, stop = found
    return top, side * float(origin + stop + _trace_gap(envelope, stop, ppm_x))


def _pulse_in(envelope: np.ndarray, ppm_x: float) -> tuple[float, int] | None:
    """(height mm, column past its far edge) of the first pulse-shaped run of `envelope`, if any."""
    high = envelope > PULSE_MM[0]
    edges = np.diff(np.r_[0, high.astype(np.int8), 0])
    for first, stop in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
        if first > PULSE_SEARCH_MM * ppm_x:
            break
        width = (stop - first) / ppm_x
        plateau = envelope[first:stop]
        top = float(np.median(plateau[plateau >= 0.8 * plateau.max()]))  # the edge columns aside
        flat = np.mean(np.abs(plateau - top) <= 0.08 * top)  # a pulse is flat-topped (its edge columns aside); a QRS is not
        if PULSE_WIDTH_MM[0] <= width <= PULSE_WIDTH_MM[1] and PULSE_MM[0] <= top <= PULSE_MM[1] and flat >= 0.6:
            return top, int(stop)
    return None


def _closing(values: np.ndarray, width: int) -> np.ndarray:
    """`values` with every dip narrower than `width` samples filled to the lower of its two sides: a
    grey-level closing by a window of `width` | 1 samples (`page.running_extreme`; beyond the ends nothing
    counts)."""
    if width < 2 or len(values) < 3:
        return values
    row = values.reshape(1, -1)
    return running_extreme(running_extreme(row, width | 1, 1, cv2.max), width | 1, 1, cv2.min).ravel()


def _trace_gap(envelope: np.ndarray, after: int, ppm_x: float) -> float:
    """Columns from a pulse's far edge to where the trace proper begins: the next gap in the ink,
    or 2.5 mm when pulse and trace are one stroke (the short flat piece carts draw after the pulse)."""
    inked = np.isfinite(envelope[after: after + int(4 * ppm_x)])
    gap = np.nonzero(~inked)[0]
    if len(gap) and gap[0] < len(inked) - 1:
        resume = np.nonzero(inked[gap[0]:])[0]
        if len(resume):
            return float(gap[0] + resume[0])
    return 2.5 * ppm_x


def _gain(pulse_heights: list[float], fixed: float | None, rows: int) -> tuple[float, str]:
    """mm per mV: as given; else from the pulses when most rows print one and they agree on a standard
    gain (5, 10 or 20 mm/mV, within 20 %); else the standard 10. A lone step-shaped wave, or pulses of
    no standard height, are more likely misread than a cart printing an odd gain."""
    if fixed is not None:
        if not fixed > 0:
            raise EdgeECGError(f"mm per mV must be positive, got {fixed}")
        return float(fixed), "given"
    if len(pulse_heights) < max(1, rows / 2):
        return GAIN_MM_PER_MV, "default"
    standard = _standard_gain(float(np.median(pulse_heights)))
    return (GAIN_MM_PER_MV, "default") if standard is None else (standard, "pulse")


def _standard_gain(pulse_mm: float) -> float | None:
    """The standard gain (5, 10 or 20 mm/mV) a 1 mV pulse this tall shows, within 20 %; None for any other."""
    for standard in (5.0, 10.0, 20.0):
        if abs(pulse_mm / standard - 1) <= 0.2:
            return standard
    return None


def _layout_from_rows(rows: list[TraceRow], duration: float, values) -> Layout:
    """The standard layout with this many rows; six rows are 6x2 or 3x4+3, told apart by the limb-lead laws."""
    count = len(rows)
    if count in ROWS_TO_LAYOUT:
        return LAYOUTS[ROWS_TO_LAYOUT[count]]
    if count == 6:
        n = 250
        window = (duration / 4, duration / 2)  # 2.5-5 s: I, II, III on 6x2; aVR, aVL, aVF on 3x4
        a, b, c = (values(rows[i], *window, n) for i in range(3))
        both = np.isfinite(a) & np.isfinite(b) & np.isfinite(c)
        if both.sum() < n // 4:  # too little of the three rows read there to test the laws
            return LAYOUTS["3x4+3"]
        a, b, c = a[both], b[both], c[both]
        einthoven, goldberger = np.abs(a - b + c).mean(), np.abs(a + b + c).mean()
        return LAYOUTS["6x2" if einthoven < goldberger else "3x4+3"]
    if count < 3:
        return LAYOUTS["3x4"]  # a partial capture: read what rows there are as the top of a 3x4 page
    return LAYOUTS["12x1"] if count > 6 else LAYOUTS["3x4+3"]


def _read_rhythm_and_columns(layout: Layout, rows: list[TraceRow], values) -> tuple[Layout, bool, list[float]]:
    """Whether columns are simultaneous; each rhythm strip's lead (the panel it matches sample by sample)
    and its lag behind that panel in seconds (carts may start the strip a few ms apart)."""
    if layout.columns == 1:
        return layout, False, []
    n = 250
    strip_rows = [len(layout.grid) + k for k in range(len(layout.rhythm)) if len(layout.grid) + k < len(rows)]
    simultaneous = _simultaneous(layout, rows, values, strip_rows, n)
    fine = int(round(layout.column_s / STRIP_STEP_S))
    panels = [p for p in layout.panels(simultaneous) if not p.rhythm and p.row < len(rows)]
    drawn = np.concatenate([_windows(values, rows[row], [(p.column * layout.column_s, (p.column + 1) * layout.column_s)
                                                         for p in panels if p.row == row], fine)
                            for row in dict.fromkeys(p.row for p in panels)])  # panels are listed row by row
    coarse_steps = list(range(-STRIP_MAX_LAG_STEPS, STRIP_MAX_LAG_STEPS + 1, 2))
    leads, lags = [], []
    for r in strip_rows:
        # every panel on every other step, then the best one's neighbouring steps: the strip is sampled once per
        # time window and step (the panels of one column share it), all candidates scored in one batch
        windows = list(dict.fromkeys((p.t0, p.t1) for p in panels))
        shifted = _windows(values, rows[r], [(t0 + step * STRIP_STEP_S, t1 + step * STRIP_STEP_S)
                                             for t0, t1 in windows for step in coarse_steps], fine)
        pick = [windows.index((p.t0, p.t1)) * len(coarse_steps) + k for p in panels for k in range(len(coarse_steps))]
        coarse = _likeness(shifted[pick], np.repeat(drawn, len(coarse_steps), axis=0))
        best = int(np.argmax(coarse))  # the first best, as max() over the candidates in this order
        panel, step = panels[best // len(coarse_steps)], coarse_steps[best % len(coarse_steps)]
        near = [s for s in (step - 1, step + 1) if abs(s) <= STRIP_MAX_LAG_STEPS]
        scores = _likeness(_windows(values, rows[r], [(panel.t0 + s * STRIP_STEP_S, panel.t1 + s * STRIP_STEP_S)
                                                      for s in near], fine),
                           np.repeat(drawn[best // len(coarse_steps)][None], len(near), axis=0))
        fine_steps = {step: coarse[best], **dict(zip(near, scores))}
        leads.append(panel.lead)
        lags.append(max(fine_steps, key=fine_steps.get) * STRIP_STEP_S)
    return layout.with_rhythm(tuple(leads) or layout.rhythm), simultaneous, lags


def _windows(values, row: TraceRow, spans: list[tuple[float, float]], n: int) -> np.ndarray:
    """(len(spans), n): `values` of one row over each (t0, t1) window, sampled in one call (as each alone)."""
    return values(row, np.array([t0 for t0, _ in spans])[:, None], np.array([t1 for _, t1 in spans])[:, None], n)


def _simultaneous(layout: Layout, rows: list[TraceRow], values, strip_rows: list[int], n: int) -> bool:
    """Do all columns show the record's first window? Beats fall at the same moments in every lead, so
    compare each later column's beat activity with the strip's at both candidate times (or, with no strip,
    with the first column's)."""
    width = layout.column_s
    later = [(row, column) for row in range(min(len(layout.grid), len(rows))) for column in range(1, layout.columns)]
    if not later:
        return False
    spans = [(column * width, (column + 1) * width) for column in range(layout.columns)]
    # each row's beat activity in every column window, a row's windows sampled in one call
    activity = {row: [_activity(v) for v in _windows(values, rows[row], spans, n)]
                for row in dict.fromkeys([row for row, _ in later] + strip_rows)}
    same, successive = [], []
    for row, column in later:
        panel = activity[row][column]
        same += [_correlation(panel, activity[r][0]) for r in strip_rows or [row]]
        successive += [_correlation(panel, activity[r][column]) for r in strip_rows]
    if not strip_rows:
        return float(np.mean(same)) > SIMULTANEOUS_AGREEMENT
    return float(np.mean(same)) > float(np.mean(successive))


def _activity(values: np.ndarray) -> np.ndarray:
    """Where the pen moves fast: |slope|, which peaks at every QRS whatever the lead."""
    read = values[np.isfinite(values)]  # the median of what is read: np.nanmedian's, without its overhead
    return np.abs(np.diff(np.nan_to_num(values - np.median(read) if len(read) else values)))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two waveforms: the panel ends (labels, separators) left out."""
    trim = len(a) // 8
    a, b = a[trim: len(a) - trim], b[trim: len(b) - trim]
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 10 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return -1.0
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _likeness(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How alike two drawings of a waveform are, sample by sample (1 identical, <= 0 unrelated), per row
    of two (m, n) arrays (-1 where fewer than 10 samples of a pair are read).

    The same lead drawn twice differs by the digitizer's error only, and that
    error is sparse: a sharp R peak or S trough read a pixel off in time or
    height, everywhere else the two agree. Two leads of one heart share beats
    and look alike in shape, but differ a little everywhere (P and T waves, ST
    levels). So the error is the mean absolute difference, which a few large
    misreads at the peaks cannot dominate as they dominate a squared error
    (with it, a similar lead often out-scored the strip's own). The panel
    ends (labels, separators) and a constant offset are left out.
    """
    n = a.shape[1]
    trim = n // 8
    a, b = a[:, trim: n - trim], b[:, trim: n - trim]
    ok = ~(np.isnan(a) | np.isnan(b))
    counts = ok.sum(axis=1)
    if not ok.all():  # each pair's read samples to the front, in order: a row's sums then add up as its own would
        order = np.argsort(~ok, axis=1, kind="stable")
        a, b = np.take_along_axis(a, order, axis=1), np.take_along_axis(b, order, axis=1)
    likeness = np.full(len(a), -1.0)
    for k in np.unique(counts[counts >= 10]).tolist():  # rows with as many read samples, together
        same = counts == k
        x, y = a[same, :k], b[same, :k]
        x, y = x - np.median(x, axis=1, keepdims=True), y - np.median(y, axis=1, keepdims=True)
        error = np.mean(np.abs(x - y), axis=1)
        likeness[same] = 1.0 - error / np.maximum(np.mean(np.abs(x), axis=1) + np.mean(np.abs(y), axis=1), 1e-9) * 2
    return likeness


def _quality(signal: np.ndarray, printed: np.ndarray, rate: float) -> dict[str, LeadQuality]:
    quality = {}
    for i, lead in enumerate(LEADS):
        span = printed[:, i].sum()
        read = (~np.isnan(signal[:, i]) & printed[:, i]).sum()
        coverage = float(read / span) if span else 0.0
        flat = span > 0 and np.nanstd(signal[printed[:, i], i]) < 0.005 if read else True
        quality[lead] = LeadQuality(coverage, 0.0 if flat else coverage, float(span / rate))
    return quality

