"""The standard 12-lead printout layouts, shared by the renderer and the page reader.

A layout names which lead each panel shows and which stretch of the record it
covers. Rows are listed top to bottom; a row of one panel spanning the whole
record is a rhythm strip. Columns either show successive windows of the record
(column c of n shows [c, c + 1) * duration / n, as most carts print them) or
all show the same first window ("simultaneous", as on the Mendeley template).
Torch-free and OpenCV-free: plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
RECORD_S = 10.0  # a standard resting ECG: 10 s
SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0

GRID_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
GRID_6X2 = (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6"))
GRID_12X1 = tuple((lead,) for lead in LEADS)
# The rhythm strips carts print under a 3x4 grid, by how many there are.
RHYTHM_STRIPS = {0: (), 1: ("II",), 2: ("II", "V1"), 3: ("V1", "II", "V5")}


@dataclass(frozen=True)
class Panel:
    """One printed stretch of one lead: row/column on the page and the record time it covers."""

    row: int
    column: int
    lead: str
    t0: float  # seconds from the record's start
    t1: float
    rhythm: bool = False  # a full-width strip under the grid


@dataclass(frozen=True)
class Layout:
    """A printout layout: the grid of lead panels plus rhythm strips under it."""

    name: str
    grid: tuple[tuple[str, ...], ...]  # leads per row of the panel grid
    rhythm: tuple[str, ...] = ()  # leads of the rhythm strips printed under the grid, top to bottom
    duration_s: float = RECORD_S

    @property
    def columns(self) -> int:
        return len(self.grid[0])

    @property
    def rows(self) -> int:
        """Trace rows on the page: grid rows plus rhythm strips."""
        return len(self.grid) + len(self.rhythm)

    @property
    def column_s(self) -> float:
        return self.duration_s / self.columns

    def panels(self, simultaneous: bool = False) -> list[Panel]:
        """Every panel of the page, row by row, each with the record time it shows."""
        width = self.column_s
        found = [
            Panel(row, column, lead, (0.0 if simultaneous else column * width), (0.0 if simultaneous else column * width) + width)
            for row, leads in enumerate(self.grid)
            for column, lead in enumerate(leads)
        ]
        found += [Panel(len(self.grid) + k, 0, lead, 0.0, self.duration_s, rhythm=True) for k, lead in enumerate(self.rhythm)]
        return found

    def with_rhythm(self, rhythm: tuple[str, ...]) -> "Layout":
        """The same layout with other rhythm-strip leads (a strip's lead is read from the page, not assumed)."""
        return Layout(self.name, self.grid, tuple(rhythm), self.duration_s)


LAYOUTS: dict[str, Layout] = {
    "3x4": Layout("3x4", GRID_3X4),
    "3x4+1": Layout("3x4+1", GRID_3X4, RHYTHM_STRIPS[1]),
    "3x4+2": Layout("3x4+2", GRID_3X4, RHYTHM_STRIPS[2]),
    "3x4+3": Layout("3x4+3", GRID_3X4, RHYTHM_STRIPS[3]),
    "6x2": Layout("6x2", GRID_6X2),
    "12x1": Layout("12x1", GRID_12X1),
}


def layout(name: str) -> Layout:
    """The layout called `name` (see `LAYOUTS`), or a ValueError naming the known ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}") from None
