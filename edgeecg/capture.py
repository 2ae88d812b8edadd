"""Image sources besides files: a camera (or video) frame worth classifying, and a watched folder.

A phone or document camera held over a printout produces many useless frames
(motion blur, hand still moving, page not yet in view). `capture_frame` waits,
without showing anything, for a frame that is sharp (variance of the
Laplacian), steady (a few consecutive frames barely differ) and shows an ECG
grid. `watch_folder` serves a scanner that drops files into a folder: each new
image is handed over once its size has stopped changing, so a half-written
scan is never read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .crop import has_ecg_grid
from .datasets import is_image
from .errors import EdgeECGError

SHARPNESS_WIDTH = 640  # frames are measured at this width, so thresholds do not depend on resolution
STABILITY_WIDTH = 160  # small enough to average out sensor noise
# Variance of the Laplacian at 640 px wide: scans of the Mendeley printouts give about 3000,
# the same blurred with a 2-pixel Gaussian (at 1106 px wide) about 90, with a 4-pixel one under 10.
DEFAULT_SHARPNESS = 100.0
DEFAULT_STABILITY = 3.0  # mean absolute grey-level change between consecutive frames (0-255)


def sharpness(frame_bgr: np.ndarray) -> float:
    """Variance of the Laplacian of the frame, scaled to SHARPNESS_WIDTH: high when in focus."""
    grey = _grey(frame_bgr, SHARPNESS_WIDTH)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def frame_change(previous_small: np.ndarray, current_small: np.ndarray) -> float:
    """Mean absolute difference between two downscaled grey frames: low when camera and page are still."""
    return float(cv2.absdiff(previous_small, current_small).mean())


def capture_frame(
    source: int | str,
    sharpness_threshold: float = DEFAULT_SHARPNESS,
    stability_threshold: float = DEFAULT_STABILITY,
    stable_frames: int = 3,
    timeout_s: float = 30.0,
    max_frames: int | None = None,
    require_grid: bool = True,
) -> np.ndarray:
    """First frame (BGR) of a camera index or video file that is sharp, steady for `stable_frames` and shows a grid.

    `require_grid=False` drops the grid test (for `--no-crop`, printouts without a pink grid).
    """
    camera = _camera_index(source)
    name = f"camera {camera}" if camera is not None else str(source)
    if camera is None and "://" not in str(source) and not Path(source).exists():
        raise EdgeECGError(f"{source}: no such camera device or video file")
    capture = cv2.VideoCapture(camera if camera is not None else str(source))
    if not capture.isOpened():
        raise EdgeECGError(f"cannot open {name}")
    deadline = time.monotonic() + timeout_s
    frames = run = grid_checks = 0
    best = 0.0
    previous = None
    try:
        while True:
            if time.monotonic() > deadline or (max_frames is not None and frames >= max_frames):
                break
            ok, frame = capture.read()
            if not ok or frame is None:
                if camera is None:
                    break  # the video ended
                raise EdgeECGError(f"{name} stopped delivering frames (disconnected?)")
            frames += 1
            sharp = sharpness(frame)
            best = max(best, sharp)
            small = _grey(frame, STABILITY_WIDTH)
            steady = previous is not None and frame_change(previous, small) <= stability_threshold
            previous = small
            if sharp < sharpness_threshold:
                run = 0
            else:
                run = run + 1 if steady else 1
            if run >= stable_frames:
                if not require_grid:
                    return frame
                grid_checks += 1
                if has_ecg_grid(frame):
                    return frame
    finally:
        capture.release()
    if frames == 0:
        raise EdgeECGError(f"{name} delivered no frames")
    if grid_checks:
        why = f"{grid_checks} sharp, steady frame(s) showed no ECG grid"
    elif best >= sharpness_threshold:
        why = f"sharp frames, but never {stable_frames} steady ones in a row: hold the camera still"
    else:
        why = f"sharpness at most {best:.0f}, needs {sharpness_threshold:g}: focus, light or distance"
    raise EdgeECGError(f"{name}: no sharp, steady frame showing an ECG grid in {frames} frames ({why})")


def watch_folder(
    folder: str | Path,
    callback: Callable[[Path], None],
    poll_s: float = 1.0,
    settle_s: float = 1.0,
    stop_after: int | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Call `callback(path)` for each image that appears (or is rewritten) in `folder`; returns how many.

    Images already there at the start are left alone. A file is handed over once its size
    and modification time have not changed for `settle_s`. Polls with os.scandir every
    `poll_s`; Ctrl-C or `stop_after` handled images ends the watch. The callback handles
    its own errors. `on_ready()` is called once the images already there are recorded:
    anything written after it counts as new.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeECGError(f"{folder}: no such folder to watch")
    seen = _snapshot(folder)  # path -> (size, mtime) of images already handled or present at start
    pending: dict[str, tuple[tuple[int, int], float]] = {}  # path -> (signature, time first seen so)
    handled = 0
    if on_ready is not None:
        on_ready()
    try:
        while True:
            now = time.monotonic()
            current = _snapshot(folder)
            for path, signature in sorted(current.items()):
                if seen.get(path) == signature:
                    continue
                first = pending.get(path)
                if first is None or first[0] != signature:
                    pending[path] = (signature, now)
                elif signature[0] > 0 and now - first[1] >= settle_s:
                    del pending[path]
                    seen[path] = signature
                    handled += 1
                    callback(Path(path))
                    if stop_after is not None and handled >= stop_after:
                        return handled
            seen = {p: s for p, s in seen.items() if p in current}
            pending = {p: v for p, v in pending.items() if p in current}
            time.sleep(poll_s)
    except KeyboardInterrupt:
        return handled


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of the visible image files directly in `folder`."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not is_image(Path(entry.name)):
                continue
            try:
                if entry.is_file():
                    stat = entry.stat()
                    found[entry.path] = (stat.st_size, stat.st_mtime_ns)
            except FileNotFoundError:  # removed between listing and stat
                continue
    return found


def _camera_index(source: int | str) -> int | None:
    if isinstance(source, int):
        return source
    text = str(source).strip()
    return int(text) if text.isdigit() else None


def _grey(frame_bgr: np.ndarray, width: int) -> np.ndarray:
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
    h, w = grey.shape[:2]
    return cv2.resize(grey, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
