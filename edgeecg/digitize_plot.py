"""Draw what the digitizer read over the page, for a person to check it at a glance."""

from __future__ import annotations

import cv2
import numpy as np

from .digitize import Digitized

TRACE_BGR = (255, 120, 0)  # blue-ish: stands out on pink, red, green and grey grids
BOX_BGR = (0, 160, 0)
GRID_BGR = (0, 200, 255)


def overlay(image_bgr: np.ndarray, result: Digitized) -> np.ndarray:
    """The page with the grid region, each panel's box and lead name, and the read curves drawn on it."""
    canvas = image_bgr.copy() if image_bgr.ndim == 3 else cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
    geometry = result.geometry
    thickness = max(1, round(0.25 * min(result.px_per_mm)))
    cv2.polylines(canvas, [np.round(geometry.quad).astype(np.int32)], True, GRID_BGR, thickness, cv2.LINE_AA)
    ppm_x, ppm_y = result.px_per_mm
    for panel, (x0, x1, top, bottom) in result.panel_boxes:
        box = geometry.to_input(np.array([[x0, top], [x1, top], [x1, bottom], [x0, bottom]]))
        cv2.polylines(canvas, [np.round(box).astype(np.int32)], True, BOX_BGR, 1, cv2.LINE_AA)
        label = panel.lead + (" (rhythm)" if panel.rhythm else "")
        quality = result.quality[panel.lead]
        corner = tuple(int(v) for v in np.round(box[0] + [3, 3 + 3 * ppm_y]))
        cv2.putText(canvas, f"{label} {quality.coverage:.0%}", corner, cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * ppm_y / 4, BOX_BGR, 1, cv2.LINE_AA)
    for row in result.rows:
        points = geometry.to_input(np.column_stack([row.x, row.y]))
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, TRACE_BGR, thickness, cv2.LINE_AA)
    return canvas

