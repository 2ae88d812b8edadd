"""Where everything sits on a rendered page, in millimetres: grid box, trace rows, panels, calibration pulses.

The renderer draws from this one description and `RenderResult` answers
"where is this sample?" from it, so the picture and its ground truth cannot
drift apart. Rows are spread evenly over the grid box: the row pitch is the
box height over the rows in whole millimetres (38 mm for the four rows of the
default 3x4+1 page), and the spare height goes two thirds above the first row,
one third below the last, since QRS peaks mostly rise. Every row is 265 mm
wide (the default grid box), centred in the grid box: room for a calibration
pulse at one end and a 10 s trace at 25 mm/s. Plain numbers, no drawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .layouts import GAIN_MM_PER_MV, LEADS, SPEED_MM_PER_S, Layout, Panel, layout

PAGE_MM = (280.0, 199.0)
GRID_BOX_MM = (7.5, 37.0, 265.0, 155.0)  # left, top, width, height: whole 5 mm squares, under the header
FULL_PAGE_GRID_TOP_MM = 35.0  # a full-page grid starts just under the header text and runs off the page
ROW_MM = GRID_BOX_MM[2]  # width of a trace row: calibration pulse + 10 s trace
TRACE_START_MM = 12.5  # from the row's calibration end: room for the pulse
# 1 mV x 0.2 s pulse with 2 mm of baseline each side, from its start at the row's baseline
PULSE_MM = np.array([[0, 0], [2, 0], [2, -GAIN_MM_PER_MV], [2 + 0.2 * SPEED_MM_PER_S, -GAIN_MM_PER_MV],
                     [2 + 0.2 * SPEED_MM_PER_S, 0], [4 + 0.2 * SPEED_MM_PER_S, 0]])
PULSE_INSET_MM = 2.0  # from the row's end to the pulse
CALIBRATIONS = ("left", "right", "none")


@dataclass(frozen=True)
class PrintGeometry:
    """The page plan of one render: which panels, where their rows and columns lie, where the pulses go."""

    layout: Layout  # with the rhythm strips actually printed
    simultaneous: bool
    panels: tuple[Panel, ...]
    grid_box_mm: tuple[float, float, float, float]  # left, top, width, height
    row_left_mm: float
    trace_start_mm: float  # page x of the first column's first sample
    first_baseline_mm: float
    row_pitch_mm: float
    calibration: str

    @classmethod
    def plan(cls, layout_name: str = "3x4+1", simultaneous: bool = False, rhythm_leads: tuple[str, ...] | None = None,
             full_page_grid: bool = False, calibration: str = "left") -> "PrintGeometry":
        """The plan for these options; ValueError on an unknown layout, lead or calibration place."""
        chosen = layout(layout_name)
        if rhythm_leads is not None:
            unknown = [lead for lead in rhythm_leads if lead not in LEADS]
            if unknown:
                raise ValueError(f"unknown rhythm lead(s) {unknown}; expected some of {LEADS}")
            chosen = chosen.with_rhythm(tuple(rhythm_leads))
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
        box = (0.0, FULL_PAGE_GRID_TOP_MM, PAGE_MM[0], PAGE_MM[1] - FULL_PAGE_GRID_TOP_MM) if full_page_grid else GRID_BOX_MM
        pitch = float(math.floor(box[3] / chosen.rows))
        spare = box[3] - chosen.rows * pitch
        row_left = box[0] + (box[2] - ROW_MM) / 2
        if calibration == "right":
            trace_start = row_left + ROW_MM - TRACE_START_MM - chosen.duration_s * SPEED_MM_PER_S
        else:
            trace_start = row_left + TRACE_START_MM
        return cls(chosen, simultaneous, tuple(chosen.panels(simultaneous)), box, row_left, trace_start,
                   box[1] + spare * 2 / 3 + pitch / 2, pitch, calibration)

    @property
    def column_mm(self) -> float:
        return self.layout.column_s * SPEED_MM_PER_S

    def baseline_mm(self, row: int) -> float:
        return self.first_baseline_mm + row * self.row_pitch_mm

    def shift_s(self, panel: Panel) -> float:
        """Seconds to add to a record time of `panel` to get its distance from the row's trace start.

        Exactly 0.0 when columns show successive windows (the panel sits where its time would be).
        """
        return panel.column * self.layout.column_s - panel.t0

    def panel_index(self, lead: str, t: float, rhythm: bool = False) -> int:
        """Which panel prints lead `lead` at record time `t` (a rhythm strip when `rhythm`); ValueError if none."""
        if lead not in LEADS:
            raise ValueError(f"unknown lead {lead!r}; expected one of {LEADS}")
        matches = [k for k, panel in enumerate(self.panels) if panel.lead == lead and panel.rhythm == rhythm]
        if not matches:
            where = "a rhythm strip" if rhythm else "the panel grid"
            raise ValueError(f"layout {self.layout.name} has no lead {lead} in {where}")
        panel = self.panels[matches[0]]
        if not panel.t0 <= t <= panel.t1:
            raise ValueError(f"lead {lead} is printed from {panel.t0:g} to {panel.t1:g} s")
        return matches[0]

    def position_mm(self, panel_index: int, t: float, mv: float) -> tuple[float, float]:
        """Page millimetres (x, y) of value `mv` (baseline removed) at record time `t` in that panel."""
        panel = self.panels[panel_index]
        return (self.trace_start_mm + (t + self.shift_s(panel)) * SPEED_MM_PER_S,
                self.baseline_mm(panel.row) - mv * GAIN_MM_PER_MV)

    def panel_box_mm(self, panel: Panel) -> np.ndarray:
        """Corners (4, 2) of a panel, clockwise from top-left: its time span, half a row pitch about its baseline."""
        left = self.trace_start_mm + panel.column * self.column_mm
        right = left + (panel.t1 - panel.t0) * SPEED_MM_PER_S
        top, bottom = (self.baseline_mm(panel.row) + side * self.row_pitch_mm / 2 for side in (-1, 1))
        return np.array([[left, top], [right, top], [right, bottom], [left, bottom]])

    def pulse_left_mm(self) -> float:
        """Page x where each row's calibration pulse starts."""
        if self.calibration == "right":
            return self.row_left_mm + ROW_MM - PULSE_INSET_MM - PULSE_MM[-1, 0]
        return self.row_left_mm + PULSE_INSET_MM

    def grid_box_corners(self, px_per_mm: float) -> np.ndarray:
        """Corners (4, 2) of the grid box in page pixels, clockwise from top-left."""
        left, top, width, height = (v * px_per_mm for v in self.grid_box_mm)
        return np.array([[left, top], [left + width, top], [left + width, top + height], [left, top + height]])


def page_size(px_per_mm: float) -> tuple[int, int]:
    """(width, height) in pixels of the page at this resolution."""
    return round(PAGE_MM[0] * px_per_mm), round(PAGE_MM[1] * px_per_mm)


SHIFT = 4  # OpenCV fixed-point bits: sub-pixel precise polylines


def to_fixed(points) -> np.ndarray:
    """Pixel coordinates as OpenCV's fixed-point integers (with `shift=SHIFT`)."""
    return np.round(np.asarray(points) * (1 << SHIFT)).astype(np.int32)
