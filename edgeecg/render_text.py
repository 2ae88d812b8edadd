"""The printed text of a page: lead labels, the footer, the report header and a cart's measurement block.

Text is ink a page reader must tell from the traces, so it sits where carts
print it: labels just above each panel's start, the report header and the
measurements above the grid, the settings line under it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .layouts import SPEED_MM_PER_S
from .render_geometry import GRID_BOX_MM, PAGE_MM, PrintGeometry

INK = (0, 0, 0)
LABEL_MM = 2.6  # lead label height
SURNAMES = ("DOE", "ROE", "SMITH", "GARCIA", "MULLER", "ROSSI", "TANAKA", "NOVAK", "SILVA", "KOWALSKI", "OKAFOR",
            "LINDQVIST")
DETAIL_ROWS_MM = tuple(26.5 + 3.3 * i for i in range(3))  # baselines of the lines under the header rule


def put_text(page: np.ndarray, text: str, x_mm: float, y_mm: float, height_mm: float, ppm: float,
             font: int = cv2.FONT_HERSHEY_COMPLEX, color=INK, thickness: int = 1) -> None:
    """Text with its baseline's left end at (x, y) mm, `height_mm` tall."""
    scale = cv2.getFontScaleFromHeight(font, max(1, round(height_mm * ppm)), thickness)
    cv2.putText(page, text, (round(x_mm * ppm), round(y_mm * ppm)), font, scale, color, thickness, cv2.LINE_AA)


def draw_lead_labels(page: np.ndarray, geometry: PrintGeometry, ppm: float) -> None:
    """Each panel's lead name just above its baseline, at its left end."""
    for panel in geometry.panels:
        x = geometry.trace_start_mm + panel.column * geometry.layout.column_s * SPEED_MM_PER_S + 0.8
        put_text(page, panel.lead, x, geometry.baseline_mm(panel.row) - 3, LABEL_MM, ppm)


def draw_footer(page: np.ndarray, geometry: PrintGeometry, ppm: float) -> None:
    """The cart's settings line under the grid, naming the layout as carts do (e.g. 4*2.5s+1r)."""
    layout = geometry.layout
    strips = f"+{len(layout.rhythm)}r" if layout.rhythm else ""
    put_text(page, f"0.67~25Hz  AC50  25mm/s  10mm/mV  {layout.columns}*{layout.column_s:g}s{strips}",
             GRID_BOX_MM[0], PAGE_MM[1] - 3, 2.0, ppm)


def draw_header(page: np.ndarray, ppm: float, header: str) -> None:
    """The "ECG REPORT" title, up to three header lines, a rule and the signature fields."""
    title_w = cv2.getTextSize("ECG REPORT", cv2.FONT_HERSHEY_TRIPLEX,
                              cv2.getFontScaleFromHeight(cv2.FONT_HERSHEY_TRIPLEX, round(4 * ppm)), 1)[0][0]
    put_text(page, "ECG REPORT", PAGE_MM[0] / 2 - title_w / ppm / 2, 7.0, 4.0, ppm, cv2.FONT_HERSHEY_TRIPLEX)
    for i, line in enumerate(header.splitlines()[:3]):
        put_text(page, line, GRID_BOX_MM[0], 11.5 + 3.6 * i, 2.3, ppm)
    rule_y = 22.0 * ppm
    cv2.line(page, (round(GRID_BOX_MM[0] * ppm), round(rule_y)), (round(page.shape[1] - GRID_BOX_MM[0] * ppm), round(rule_y)),
             INK, max(1, round(0.5 * ppm)), cv2.LINE_AA)
    for line, y in zip(("Technician :", "Ref-Phys. :", "Report Confirmed by:"), DETAIL_ROWS_MM):
        put_text(page, line, 198.0, y, 2.3, ppm)


def machine_header_lines(rng: np.random.Generator) -> tuple[str, str, str]:
    """A fake patient and plausible cart measurements (HR, PR, QRS, QT/QTc by Bazett, P-R-T axes)."""
    heart_rate = int(rng.integers(45, 121))
    qtc = int(rng.integers(370, 471))
    qt = round(qtc * math.sqrt(60 / heart_rate))
    name = f"{rng.choice(SURNAMES)}, {chr(ord('A') + int(rng.integers(26)))}."
    axes = " ".join(str(int(rng.integers(lo, hi))) for lo, hi in ((-30, 91), (-60, 121), (-30, 121)))
    return (f"Name: {name}   ID: {int(rng.integers(10**6, 10**7))}   Age: {int(rng.integers(18, 91))}   "
            f"Sex: {'MF'[int(rng.integers(2))]}",
            f"Vent. rate: {heart_rate} bpm   PR: {int(rng.integers(120, 221))} ms   QRS: {int(rng.integers(70, 131))} ms",
            f"QT/QTc: {qt}/{qtc} ms   P-R-T axes: {axes}")


def draw_machine_header(page: np.ndarray, ppm: float, rng: np.random.Generator) -> None:
    """The measurement block a cart prints under the header rule, left of the signature fields."""
    for line, y in zip(machine_header_lines(rng), DETAIL_ROWS_MM):
        put_text(page, line, GRID_BOX_MM[0], y, 2.3, ppm)
