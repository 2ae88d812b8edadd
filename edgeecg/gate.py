"""The quality gate: is there an ECG on this page that the runtime could actually read?

A classifier answers whatever it is shown, so blank grid paper, a page with
its traces erased or a chart on graph paper get confident diagnoses. The gate
asks the page reader instead, and refuses with a plain reason:

- "no ECG grid found": no ruled grid (a text page, a scene, a photo of a desk);
- "no trace on the grid": the grid is there but nothing is drawn on it;
- "image too blurred": the trace is smeared wider than any printer draws it;
- "only N of 12 leads": part of the page is missing (a partial capture);
- "rows span N s, not a 10 s record": every standard layout prints 10 s per row at
  25 mm/s; rows read far shorter or longer mean the grid's scale was misread (a
  photo's faint grid) or the page is cut, and every lead's timing would be wrong;
- "no heartbeat in the traces": what is drawn has no beats at a human rate
  (a bar chart, scribbles), or is flat;
- "rhythm strips read as the same lead": carts print two or three strips of
  different leads, so the rows were misread (grid lines traced as trace on a
  page whose grid colour a heavy JPEG washed out).

Torch-free; it reuses the digitizer's reading, which the signal model needs anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .crop import NoGridFound
from .digitize import RECORD_SPAN_TOLERANCE, Digitized, NoTraceFound, digitize
from .layouts import LEADS, RECORD_S
from .page import running_extreme

MAX_PEN_MM = 2.0  # printers draw 0.2-0.5 mm lines (a coarse JPEG or a phone photo smears them to 1-1.7 mm); wider is out of focus
MIN_BPM, MAX_BPM = 20.0, 250.0
MIN_RATED_S = 1.0  # a lead needs this much plotted time to count its beats
MIN_BEAT_LEADS = 3  # this many leads with enough plotted time (or half of them) must show beats at a human rate
MIN_LEAD_PTP_MV = 0.05  # a lead that moves less than this is a flat line
BEAT_GAP_S = 0.25  # two beats are at least this far apart (240 bpm)


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: `reason` is None when the page can be diagnosed."""

    reason: str | None
    evidence: dict = field(default_factory=dict)
    reading: Digitized | None = field(default=None, repr=False, compare=False)

    @property
    def readable(self) -> bool:
        return self.reason is None


def assess(image_bgr: np.ndarray, allow_partial: bool = False, rate: float = 500.0) -> Verdict:
    """Read the page and say whether it holds a diagnosable 12-lead ECG, with the evidence."""
    try:
        reading = digitize(image_bgr, rate=rate)
    except NoGridFound:
        return Verdict("no ECG grid found", {"grid": False})
    except NoTraceFound:
        return Verdict("no trace on the grid", {"grid": True, "trace": False})
    evidence = {"grid": True, "trace": True, "layout": reading.layout, "leads_found": len(reading.leads_found),
                "pen_mm": round(reading.pen_mm, 3)}
    if reading.pen_mm > MAX_PEN_MM:
        return Verdict("image too blurred", evidence, reading)
    moving = [i for i, lead in enumerate(LEADS) if lead in reading.leads_found and _ptp(reading.signal[:, i]) >= MIN_LEAD_PTP_MV]
    rates = [bpm for bpm in (beats_per_minute(reading.signal[:, i], reading.rate) for i in moving) if bpm is not None]
    human = [bpm for bpm in rates if MIN_BPM <= bpm <= MAX_BPM]
    evidence.update(moving_leads=len(moving), heart_rate_bpm=round(float(np.median(human)), 1) if human else None)
    if len(human) < min(MIN_BEAT_LEADS, len(rates) / 2) or not rates:
        return Verdict("no heartbeat in the traces", evidence, reading)
    row_s = len(reading.signal) / reading.rate
    evidence["row_seconds"] = round(row_s, 2)
    if abs(row_s / RECORD_S - 1) > RECORD_SPAN_TOLERANCE:
        return Verdict(f"rows span {row_s:.1f} s, not a {RECORD_S:g} s record (grid scale misread, or the page is cut)",
                       evidence, reading)
    strips = [panel.lead for panel in reading.panels if panel.rhythm]
    if len(set(strips)) < len(strips):
        return Verdict(f"rhythm strips read as the same lead ({', '.join(strips)}): the page's rows are misread",
                       evidence, reading)
    if reading.partial and not allow_partial:
        return Verdict(f"only {len(reading.leads_found)} of 12 leads", evidence, reading)
    return Verdict(None, evidence, reading)


def _ptp(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.ptp(finite)) if len(finite) else 0.0


def beats_per_minute(values: np.ndarray, rate: float) -> float | None:
    """Heart rate from the QRS complexes of one lead's plotted stretches (None when under 1 s is plotted).

    A QRS is where the trace moves fastest: a peak of |slope| (smoothed over
    40 ms) above half of the lead's 98th percentile, and the highest within
    BEAT_GAP_S either side of it, so the pen's jitter on a photo is no beat.
    """
    plotted = np.isfinite(values)
    if plotted.sum() < MIN_RATED_S * rate:
        return None
    width = max(1, int(0.04 * rate))
    slope = np.abs(np.diff(np.where(plotted, values, np.nan)))
    activity = np.convolve(np.nan_to_num(slope), np.ones(width) / width, mode="same").astype(np.float32)
    gap = int(BEAT_GAP_S * rate)
    local_max = maximum_filter(activity, 2 * gap + 1)
    peaks = np.nonzero((activity == local_max) & (activity > 0.5 * np.percentile(activity[plotted[1:]], 98)))[0]
    return 60.0 * len(peaks) / (plotted.sum() / rate)


def maximum_filter(values: np.ndarray, size: int) -> np.ndarray:
    """Running maximum of a float32 array over an odd `size` samples: OpenCV's 1 x size dilation, bit for bit,
    built by doubling (4x faster for a beat gap's 251 samples)."""
    return running_extreme(values.reshape(1, -1), size, 1, cv2.max).ravel()
