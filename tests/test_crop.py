"""The cropper returns the report's grid box (no header, footer or borders) and refuses non-ECG images."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeecg.crop import NoGridFound, find_trace_quad, has_ecg_grid, warp_quad
from edgeecg.errors import EdgeECGError
from local_data import local_scans

# The grid box of the shared scans' report template, clockwise from top-left, in
# pixels of the 1106x786 scans. All 928 scans are printouts of one template, so
# the box is fixed. It was measured on every shared scan as the centre line of
# the box's thin red outline: the peak of the redness (R - (G+B)/2) profile
# across each side, averaged along the side (left over rows 200-700, top and
# bottom over columns 100-1000). Per scan the peaks were left 34.08-34.14,
# top 141.98-142.07, right 1086.06-1086.07, bottom 757.27-757.89.
REFERENCE_BOX = np.array([[34, 142], [1086, 142], [1086, 758], [34, 758]], np.float32)
MIN_SCAN_IOU = 0.95
LOCAL_SCANS = [path for path, _ in local_scans()]  # the repository's own scans of that template


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    inter, _ = cv2.intersectConvexConvex(a, b)
    return inter / (cv2.contourArea(a) + cv2.contourArea(b) - inter)


def scan_files(mendeley_dir: Path, per_class: int | None) -> list[Path]:
    """Every scan of the shared set, or `per_class` evenly spaced scans of each class (a stratified slice)."""
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


def test_quad_is_clockwise_from_top_left_float32():
    quad = find_trace_quad(cv2.imread(str(LOCAL_SCANS[0])))
    assert quad.dtype == np.float32 and quad.shape == (4, 2)
    tl, tr, br, bl = quad
    assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1]


def test_local_scans_crop_the_grid_box():
    ious = scan_ious(LOCAL_SCANS)
    assert len(ious) == 43
    assert ious.min() >= MIN_SCAN_IOU, f"min IoU {ious.min():.4f}"


def test_shared_scan_slice_crops_the_grid_box(shared_mendeley_dir):
    ious = scan_ious(scan_files(shared_mendeley_dir, 10))
    assert len(ious) == 40
    assert ious.min() >= MIN_SCAN_IOU, f"min IoU {ious.min():.4f}"


@pytest.mark.slow
def test_every_scan_crops_the_grid_box(shared_mendeley_dir):
    files = scan_files(shared_mendeley_dir, None)
    ious = scan_ious(files)
    print(f"\n{len(ious)} scans: min IoU {ious.min():.4f}, median {np.median(ious):.4f}")
    assert ious.min() >= MIN_SCAN_IOU, f"worst {files[int(ious.argmin())].name}: IoU {ious.min():.4f}"


def test_warp_gives_upright_region_of_quad_size():
    image = cv2.imread(str(LOCAL_SCANS[0]))
    crop = warp_quad(image, REFERENCE_BOX)
    assert crop.shape == (616, 1052, 3)  # mean side lengths of the quad
    wider = warp_quad(image, REFERENCE_BOX, margin=0.05)  # 5 % of the size added on every side
    assert abs(wider.shape[1] - 1.1 * 1052) <= 1 and abs(wider.shape[0] - 1.1 * 616) <= 1
    with pytest.raises(EdgeECGError, match="4 corners"):
        warp_quad(image, REFERENCE_BOX[:3])


def natural_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour gradient plus structure at several scales, like a photo of a scene."""
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(x * [0, 0, 120] + y * [0, 100, 0] + (1 - x) * [140, 0, 0] + [50, 80, 60], (h, w, 3))
    image = image.astype(np.float32)
    for cell, amplitude in [(80, 30), (24, 15), (8, 8), (3, 4)]:  # smooth noise: coarse random field, upsampled
        coarse = rng.normal(0, 1, (h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        image += amplitude * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.uint8)


def text_page(h: int, w: int) -> np.ndarray:
    """A printed page of text inside a thin grey frame: lines and a box, but no grid."""
    page = np.full((h, w, 3), 250, np.uint8)
    for i, y in enumerate(range(70, h - 50, 28)):
        words = " ".join(f"word{(i * 7 + j) % 13}" for j in range(i % 5 + 6))
        cv2.putText(page, words, (60, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (30, 30, 30), 1, cv2.LINE_AA)
    cv2.rectangle(page, (30, 30), (w - 30, h - 30), (170, 170, 170), 2)
    return page


@functools.lru_cache(maxsize=1)
def non_ecg_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = 786, 1106
    return {
        "noise": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        "white page": np.full((h, w, 3), 255, np.uint8),
        "natural-like gradient": natural_like(rng, h, w),
        "text page": text_page(h, w),
    }


@pytest.mark.parametrize("name", sorted(non_ecg_images()))
def test_non_ecg_image_raises_no_grid_found(name):
    image = non_ecg_images()[name]
    with pytest.raises(NoGridFound, match="no ECG grid found"):
        find_trace_quad(image)
    assert not has_ecg_grid(image)


def test_no_grid_found_is_a_user_facing_error():
    assert issubclass(NoGridFound, EdgeECGError)


def test_unusable_arrays_are_refused_with_one_line_errors():
    with pytest.raises(NoGridFound):
        find_trace_quad(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(EdgeECGError, match="8-bit"):
        find_trace_quad(np.zeros((786, 1106, 3), np.float32))


@pytest.mark.parametrize("layout", ["2-D", "HxWx1", "BGRA"])
def test_grayscale_and_bgra_scans_crop_the_grid_box(layout):
    for path in LOCAL_SCANS[::6]:
        image = cv2.imread(str(path))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        converted = {
            "2-D": gray,
            "HxWx1": gray[:, :, None],
            "BGRA": cv2.cvtColor(image, cv2.COLOR_BGR2BGRA),
        }[layout]
        assert polygon_iou(find_trace_quad(converted), REFERENCE_BOX) >= MIN_SCAN_IOU, path.name


def photo_like(scan: np.ndarray, rng: np.random.Generator, size=(1280, 960)) -> tuple[np.ndarray, np.ndarray]:
    """(phone-photo-like image of the whole page, scan -> photo homography).

    Rotation +-10 deg, perspective tilt, a grey-to-brown desk around the page,
    Gaussian blur, a shadow-like brightness ramp (down to 45-70 %) and a warm
    colour cast. The page is shrunk until all four of its corners are in frame.
    """
    h, w = scan.shape[:2]
    out_w, out_h = size
    angle = np.deg2rad(rng.uniform(-10, 10))
    tilt = rng.uniform(-1, 1, 2) * 2.5e-4
    shift = rng.uniform(-0.03, 0.03, 2) * size
    page = np.array([[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]], np.float32)
    scale = rng.uniform(0.8, 0.95) * min(out_w / w, out_h / h)
    while True:
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        to_centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
        rotate = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        perspective = np.eye(3)
        perspective[2, :2] = tilt / scale
        to_frame = np.array([[1, 0, out_w / 2 + shift[0]], [0, 1, out_h / 2 + shift[1]], [0, 0, 1]])
        homography = to_frame @ perspective @ rotate @ to_centre
        homography /= homography[2, 2]
        corners = cv2.perspectiveTransform(page, homography)[0]
        if corners.min() >= 0 and (corners[:, 0] < out_w).all() and (corners[:, 1] < out_h).all():
            break
        scale *= 0.97
    grey = rng.uniform(50, 160)
    green = grey * rng.uniform(0.8, 1.0)
    desk = [green * rng.uniform(0.7, 1.0), green, grey]
    photo = cv2.warpPerspective(scan, homography, size, flags=cv2.INTER_LINEAR, borderValue=desk)
    photo = cv2.GaussianBlur(photo, (0, 0), rng.uniform(0.5, 2.0))
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(theta) * np.linspace(0, 1, out_w, dtype=np.float32)[None, :]
    ramp = ramp + np.sin(theta) * np.linspace(0, 1, out_h, dtype=np.float32)[:, None]
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    light = (1.0 - rng.uniform(0.3, 0.55) * ramp)[..., None]
    cast = np.array([rng.uniform(0.9, 1.0), rng.uniform(0.95, 1.0), 1.0], np.float32)
    return np.clip(photo * (light * cast), 0, 255).astype(np.uint8), homography


def photo_ious(files: list[Path], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ious = []
    for path in files:
        photo, homography = photo_like(cv2.imread(str(path)), rng)
        truth = cv2.perspectiveTransform(REFERENCE_BOX[None], homography)[0]
        try:
            ious.append(polygon_iou(find_trace_quad(photo), truth))
        except NoGridFound:
            ious.append(0.0)
    return np.array(ious)


def test_photo_like_scans_crop_the_transformed_grid_box():
    ious = photo_ious(LOCAL_SCANS[::4], seed=1)
    print(f"\n{len(ious)} photo-like scans: min IoU {ious.min():.4f}, median {np.median(ious):.4f}")
    assert np.median(ious) >= 0.90


@pytest.mark.slow
def test_many_photo_like_scans_crop_the_transformed_grid_box(shared_mendeley_dir):
    ious = photo_ious(scan_files(shared_mendeley_dir, 50), seed=2)
    print(f"\n{len(ious)} photo-like scans: min IoU {ious.min():.4f}, median {np.median(ious):.4f}")
    assert np.median(ious) >= 0.90


def test_warp_of_a_photo_matches_the_scan_crop():
    path = LOCAL_SCANS[0]
    scan = cv2.imread(str(path))
    photo, _ = photo_like(scan, np.random.default_rng(5))
    size = (256, 150)
    from_scan = cv2.resize(cv2.cvtColor(warp_quad(scan, REFERENCE_BOX), cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA)
    from_photo = cv2.resize(
        cv2.cvtColor(warp_quad(photo, find_trace_quad(photo)), cv2.COLOR_BGR2GRAY), size, interpolation=cv2.INTER_AREA
    )
    upright = np.corrcoef(from_scan.ravel(), from_photo.ravel())[0, 1]
    upside_down = np.corrcoef(from_scan.ravel(), from_photo[::-1, ::-1].ravel())[0, 1]
    print(f"\nupright {upright:.3f} upside down {upside_down:.3f}")
    assert upright > 0.6 and upright > upside_down + 0.3


def rendered_signal() -> np.ndarray:
    """10 s of 12 leads at 100 Hz: narrow spikes at 75 bpm on a small T-like wave."""
    t = np.arange(1000) / 100.0
    phase = (t * 1.25) % 1.0
    beat = np.exp(-(((phase - 0.3) / 0.01) ** 2)) + 0.25 * np.exp(-(((phase - 0.6) / 0.06) ** 2))
    return (beat[:, None] * np.linspace(-0.5, 1.2, 12)[None, :]).astype(np.float32)


@pytest.mark.parametrize("style,seeds", [("clean", [0]), ("photo", [0, 1, 2])])
def test_rendered_printouts_crop_to_their_grid_box(style, seeds):
    from edgeecg.render import RenderOptions, render_printout

    options = RenderOptions() if style == "clean" else RenderOptions.photo()
    for seed in seeds:
        result = render_printout(rendered_signal(), 100.0, options, header="ID : 00001", seed=seed)
        assert polygon_iou(find_trace_quad(result.image), result.grid_quad) >= MIN_SCAN_IOU, f"seed {seed}"
