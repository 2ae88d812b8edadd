"""The cropper returns the report's grid box (no header, footer or borders) and refuses non-ECG images."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeecg.crop import NoGridFound, find_trace_quad, has_ecg_grid, warp_quad
from edgeecg.errors import EdgeECGError

# The grid box of the shared scans' report template, clockwise from top-left, in
# pixels of the 1106x786 scans. All 928 scans are printouts of one template, so
# the box is fixed. It was measured on every shared scan as the centre line of
# the box's thin red outline: the peak of the redness (R - (G+B)/2) profile
# across each side, averaged along the side (left over rows 200-700, top and
# bottom over columns 100-1000). Per scan the peaks were left 34.08-34.14,
# top 141.98-142.07, right 1086.06-1086.07, bottom 757.27-757.89.
REFERENCE_BOX = np.array([[34, 142], [1086, 142], [1086, 758], [34, 758]], np.float32)
MIN_SCAN_IOU = 0.95


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter, _ = cv2.intersectConvexConvex(a, b)
    return inter / (cv2.contourArea(a) + cv2.contourArea(b) - inter)


def scan_files(mendeley_dir: Path, per_class: int | None) -> list[Path]:
    """Every scan, or `per_class` evenly spaced scans of each class (a stratified slice)."""
    with open(mendeley_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row["file"])
    files = []
    for label in sorted(by_label):
        names = sorted(by_label[label])
        if per_class is not None:
            names = [names[i] for i in np.linspace(0, len(names) - 1, per_class).round().astype(int)]
        files += [mendeley_dir / name for name in names]
    return files


def scan_ious(files: list[Path]) -> np.ndarray:
    return np.array([polygon_iou(find_trace_quad(cv2.imread(str(f))), REFERENCE_BOX) for f in files])


def test_quad_is_clockwise_from_top_left_float32(mendeley_dir):
    quad = find_trace_quad(cv2.imread(str(scan_files(mendeley_dir, 1)[0])))
    assert quad.dtype == np.float32 and quad.shape == (4, 2)
    tl, tr, br, bl = quad
    assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1]


def test_scan_slice_crops_the_grid_box(mendeley_dir):
    ious = scan_ious(scan_files(mendeley_dir, 10))
    assert len(ious) == 40
    assert ious.min() >= MIN_SCAN_IOU, f"min IoU {ious.min():.4f}"


@pytest.mark.slow
def test_every_scan_crops_the_grid_box(mendeley_dir):
    files = scan_files(mendeley_dir, None)
    ious = scan_ious(files)
    print(f"\n{len(ious)} scans: min IoU {ious.min():.4f}, median {np.median(ious):.4f}")
    assert ious.min() >= MIN_SCAN_IOU, f"worst {files[int(ious.argmin())].name}: IoU {ious.min():.4f}"


def test_warp_gives_upright_region_of_quad_size(mendeley_dir):
    image = cv2.imread(str(scan_files(mendeley_dir, 1)[0]))
    crop = warp_quad(image, REFERENCE_BOX)
    assert crop.shape == (616, 1052, 3)  # mean side lengths of the quad
    wider = warp_quad(image, REFERENCE_BOX, margin=0.05)
    assert wider.shape[1] > crop.shape[1] and wider.shape[0] > crop.shape[0]


def non_ecg_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = 786, 1106
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return {
        "noise": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "white page": np.full((h, w, 3), 255, np.uint8),
        "colour gradient": np.dstack([x / w * 255, y / h * 255, 255 - x / w * 255]).astype(np.uint8),
    }


@pytest.mark.parametrize("name", sorted(non_ecg_images()))
def test_non_ecg_image_raises_no_grid_found(name):
    image = non_ecg_images()[name]
    with pytest.raises(NoGridFound, match="no ECG grid found"):
        find_trace_quad(image)
    assert not has_ecg_grid(image)


def test_no_grid_found_is_a_user_facing_error():
    assert issubclass(NoGridFound, EdgeECGError)
