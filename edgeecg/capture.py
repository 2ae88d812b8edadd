"""Image sources besides files: a camera (or video) frame worth classifying, and a watched folder.

A phone or document camera held over a printout produces many useless frames
(motion blur, hand still moving, page not yet in view). `capture_frame` waits,
without showing anything, for a frame that is sharp (variance of the
Laplacian), steady (a few consecutive frames barely differ) and shows an ECG
grid. `watch_folder` serves a scanner that drops files into a folder: each new
image is handed over exactly once, as the bytes it was checked with: after its
size, time and inode have stayed the same for a quiet period, re-checked while
it is read, complete by its format's end marker (a stalled write is waited for,
not reported) and with content not already handed over under that name.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .crop import has_ecg_grid
from .datasets import is_image
from .errors import EdgeECGError
from .imageio import looks_complete

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


Signature = tuple[int, int, int]  # size, mtime_ns, inode: any change means the file is not settled


def watch_folder(
    folder: str | Path,
    callback: Callable[[Path, bytes], None],
    poll_s: float = 0.25,
    settle_s: float = 1.0,
    stop_after: int | None = None,
    on_ready: Callable[[], None] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
    give_up_s: float = 30.0,
) -> int:
    """Call `callback(path, data)` once for each image that appears (or is rewritten) in `folder`; returns how many.

    Images already there at the start are left alone. A file is handed over once its size, mtime and inode
    have not changed for `settle_s` (the quiet period) and once more while it is read; a file whose bytes
    stop before its format's end is retried until `give_up_s` after it settled, then handed over (the
    reader reports it). The same content at the same name is handed over once. Polls every `poll_s`;
    Ctrl-C, SIGTERM (a service manager stopping the box's watcher) or `stop_after` handed-over images ends
    the watch. An unreadable file or folder goes to
    `on_error(path, message)` (default: ignored) and the watch goes on; the callback handles its own errors.
    `on_ready()` is called once the images already there are recorded.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeECGError(f"{folder}: no such folder to watch")
    watch = _Watch(folder, callback, settle_s, give_up_s, on_error or (lambda path, message: None))
    if on_ready is not None:
        on_ready()
    # signal handlers can only be set on the main thread; a watch run elsewhere stops by stop_after alone
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    try:
        while stop_after is None or watch.handled < stop_after:
            watch.poll(time.monotonic(), stop_after)
            if stop_after is None or watch.handled < stop_after:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        pass
    finally:
        if on_main:  # None: the handler before was set outside Python; the default is the nearest to it
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return watch.handled


def _interrupt(signum: int, frame) -> None:
    """SIGTERM ends a watch as Ctrl-C does, so the caller still reports what was done."""
    raise KeyboardInterrupt


class _Watch:
    """The state of one watched folder between polls."""

    def __init__(self, folder, callback, settle_s, give_up_s, on_error) -> None:
        self.folder, self.callback, self.on_error = folder, callback, on_error
        self.settle_s, self.give_up_s = settle_s, give_up_s
        self.folder_error: str | None = None
        self.seen: dict[str, Signature] = self._snapshot() or {}  # handled, reported, or there at the start
        self.pending: dict[str, tuple[Signature, float]] = {}  # signature and since when it has not changed
        self.digests: dict[str, str] = {}  # content handed over, per name
        self.handled = 0

    def poll(self, now: float, stop_after: int | None) -> None:
        current = self._snapshot()
        if current is None:
            return
        for path, signature in sorted(current.items()):
            if stop_after is not None and self.handled >= stop_after:
                break
            if self.seen.get(path) == signature:
                continue
            first = self.pending.get(path)
            if first is None or first[0] != signature:
                self.pending[path] = (signature, now)
            elif now - first[1] >= self.settle_s:
                self._settled(path, signature, now - first[1] >= self.settle_s + self.give_up_s)
        self.seen = {p: s for p, s in self.seen.items() if p in current}
        self.pending = {p: v for p, v in self.pending.items() if p in current}
        self.digests = {p: d for p, d in self.digests.items() if p in current}

    def _settled(self, path: str, signature: Signature, waited_long: bool) -> None:
        """Read a settled file; hand it over if it is still the same file, complete and new content."""
        try:
            data = _read_unchanged(Path(path), signature)
        except EdgeECGError as exc:
            self.seen[path] = signature
            del self.pending[path]
            self.on_error(Path(path), str(exc))
            return
        if data is None:  # changed while it was read: it has not settled after all
            del self.pending[path]
            return
        if not looks_complete(data) and not waited_long:
            return  # a stalled write: stays pending, read again at the next poll
        self.seen[path] = signature
        del self.pending[path]
        digest = hashlib.sha256(data).hexdigest()
        if self.digests.get(path) == digest:
            return  # touched or rewritten with the same bytes: already handed over
        self.digests[path] = digest
        self.handled += 1
        self.callback(Path(path), data)

    def _snapshot(self) -> dict[str, Signature] | None:
        """The folder's images now, or None when it cannot be listed (said once, then retried)."""
        try:
            found = _snapshot(self.folder)
        except OSError as exc:
            message = f"cannot list the watched folder ({exc.strerror or type(exc).__name__}); retrying"
            if message != self.folder_error:
                self.on_error(self.folder, message)
            self.folder_error = message
            return None
        self.folder_error = None
        return found


def _read_unchanged(path: Path, signature: Signature) -> bytes | None:
    """The file's bytes if it is still the file of `signature` before and after reading, else None."""
    try:
        with open(path, "rb") as fh:
            if _signature(os.fstat(fh.fileno())) != signature:
                return None
            data = fh.read(signature[0] + 1)
        after = _signature(os.stat(path))  # a rename may have put another file at this name meanwhile
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EdgeECGError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    return data if after == signature and len(data) == signature[0] else None


def _signature(info: os.stat_result) -> Signature:
    return info.st_size, info.st_mtime_ns, info.st_ino


def _snapshot(folder: Path) -> dict[str, Signature]:
    """path -> signature of the visible regular files directly in `folder` with an image suffix."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not is_image(Path(entry.name)):
                continue
            try:
                if entry.is_file():
                    found[entry.path] = _signature(entry.stat())
            except OSError:  # removed between listing and stat, or unreadable: the next poll sees it again
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
