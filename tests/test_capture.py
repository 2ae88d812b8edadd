"""Capture: a good frame from a camera/video, and new images from a watched folder."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeecg import capture
from edgeecg.capture import DEFAULT_SHARPNESS, capture_frame, sharpness, watch_folder
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import decode_image, read_image
from helpers_onnx import run_cli, write_tiny_model

REPO = Path(__file__).resolve().parents[1]
FRAME = (640, 456)  # a phone-video-sized view of the page


@pytest.fixture(scope="module")
def page(mendeley_dir: Path) -> np.ndarray:
    scan = cv2.imread(str(next(iter(sorted((mendeley_dir / "normal").glob("*.jpg"))))))
    return cv2.resize(scan, FRAME, interpolation=cv2.INTER_AREA)


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, FRAME)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def steadied_video(tmp_path_factory, page) -> Path:
    """The camera focuses (blurred frames, then a moving sharp one) and then holds still on the page."""
    blurred = [cv2.GaussianBlur(page, (0, 0), sigma) for sigma in (8, 6, 4, 3)]
    moving = [np.roll(page, 40, axis=1)]
    return write_video(tmp_path_factory.mktemp("video") / "steady.avi", blurred + moving + [page] * 4)


def test_returns_a_sharp_steady_frame_of_the_page(steadied_video, page):
    frame = capture_frame(steadied_video)
    assert frame.shape == page.shape
    assert sharpness(frame) > DEFAULT_SHARPNESS
    assert np.abs(frame.astype(int) - page).mean() < 5  # the still page, not a blurred or moving frame


def test_blurred_frames_alone_are_not_enough(tmp_path, page):
    video = write_video(tmp_path / "blur.avi", [cv2.GaussianBlur(page, (0, 0), 6)] * 6)
    with pytest.raises(EdgeECGError, match="no sharp, steady frame showing an ECG grid in 6 frames.*sharpness"):
        capture_frame(video)


def test_max_frames_stops_before_the_page_is_still(steadied_video):
    with pytest.raises(EdgeECGError, match="in 5 frames"):
        capture_frame(steadied_video, max_frames=5)


def test_video_of_noise_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "noise.avi", [rng.integers(0, 256, FRAME[::-1] + (3,), np.uint8) for _ in range(8)])
    with pytest.raises(EdgeECGError, match="no sharp, steady frame showing an ECG grid.*steady"):
        capture_frame(video)


def test_sharp_steady_frames_without_a_grid_are_refused(tmp_path):
    text = np.full(FRAME[::-1] + (3,), 255, np.uint8)
    for y in range(40, 440, 30):
        cv2.putText(text, "no trace here, only words", (20, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    video = write_video(tmp_path / "text.avi", [text] * 5)
    with pytest.raises(EdgeECGError, match="showed no ECG grid"):
        capture_frame(video)
    assert capture_frame(video, require_grid=False).shape == text.shape  # for --no-crop


def test_missing_sources_are_clear_errors(tmp_path):
    with pytest.raises(EdgeECGError, match="no such camera device or video file"):
        capture_frame(tmp_path / "absent.avi")
    with pytest.raises(EdgeECGError, match="cannot open camera 97"):
        capture_frame(97)
    not_video = tmp_path / "notes.avi"
    not_video.write_text("not a video\n")
    with pytest.raises(EdgeECGError, match="notes.avi"):
        capture_frame(not_video)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_cli_camera_from_a_video_file(steadied_video, tiny_model, monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", tiny_model, "--json", "--camera", steadied_video)
    assert code == 0, err
    result = json.loads(out)
    assert result["path"] == f"camera:{steadied_video}" and "label" in result
    noise = write_video(tmp_path / "n.avi", [np.zeros(FRAME[::-1] + (3,), np.uint8)] * 3)
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", tiny_model, "--camera", noise)
    assert code == 2 and out == "" and err.startswith("error: ") and err.strip().count("\n") == 0


def _write_slowly(path: Path, data: bytes, pause_s: float) -> None:
    """Write a file in two halves with a pause, like a scanner streaming a page."""
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        time.sleep(pause_s)
        fh.write(data[len(data) // 2 :])


@pytest.mark.timeout(60)
def test_watch_hands_over_only_new_complete_images(tmp_path, mendeley_dir):
    scan = next(iter(sorted((mendeley_dir / "normal").glob("*.jpg")))).read_bytes()
    (tmp_path / "old.jpg").write_bytes(scan)  # already there: not new
    seen: list[tuple[str, tuple]] = []

    def on_image(path: Path, data: bytes) -> None:
        seen.append((path.name, read_image(path).shape))  # raises if the file were half-written
        assert data == path.read_bytes()

    def scanner() -> None:
        time.sleep(0.2)
        (tmp_path / "notes.txt").write_text("ignored")
        _write_slowly(tmp_path / "new.jpg", scan, pause_s=0.3)
        (tmp_path / "second.jpg").write_bytes(scan)

    writer = threading.Thread(target=scanner)
    writer.start()
    handled = watch_folder(tmp_path, on_image, poll_s=0.05, settle_s=0.5, stop_after=2)
    writer.join()
    assert handled == 2
    assert sorted(name for name, _ in seen) == ["new.jpg", "second.jpg"]


def test_watch_refuses_a_missing_folder(tmp_path):
    with pytest.raises(EdgeECGError, match="no such folder to watch"):
        watch_folder(tmp_path / "absent", print)


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform == "win32", reason="sends POSIX signals")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_watch_classifies_new_scans_until_stopped(tmp_path, tiny_model, mendeley_dir, stop):
    """Ctrl-C at a terminal, or SIGTERM from a service manager: the watch ends with its summary, exit code 0."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # a shell starts a background job (a CI script run with `&`) with Ctrl-C ignored, and the watcher would inherit
    # that: start it as from a terminal, where Ctrl-C stops it (a handled signal is reset to its default on exec)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "edgeecg.cli", "infer", "--model", str(tiny_model), "--json", "--watch", str(inbox)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert "watching" in watcher.stderr.readline()
        scan = next(iter(sorted((mendeley_dir / "normal").glob("*.jpg"))))
        (inbox / "scan.jpg").write_bytes(scan.read_bytes())
        result = json.loads(watcher.stdout.readline())
        assert result["path"] == str(inbox / "scan.jpg") and "label" in result
        watcher.send_signal(stop)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0
    assert "stopped: 1 input(s): 1 classified, 0 refused, 0 failed" in err and "Traceback" not in err


def _small_image(index: int, suffix: str) -> bytes:
    """A distinct 64 x 64 image (noise seeded by `index`): small, so 300 of them are written in seconds."""
    pixels = np.random.default_rng(index).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return cv2.imencode(suffix, pixels)[1].tobytes()


def _bursty_writes(folder: Path, count: int, quiet_s: float, handed: dict[str, int], lock) -> list[str]:
    """Write `count` images the ways scanners and people do: at once, in quick chunks, stalled longer than
    the quiet period mid-file, renamed into place, and over an earlier file once that one was handed over.
    Returns the sha256 of every version written."""
    written: list[str] = []
    rng = np.random.default_rng(7)

    def write(index: int) -> None:
        kind = index % 5
        data = _small_image(index, ".png" if index % 2 else ".jpg")
        name = folder / f"scan{index % 60 if kind == 4 else index}{'.png' if index % 2 else '.jpg'}"
        if kind == 4:  # an overwrite: only once the earlier version at this name was handed over
            while name.exists() and not _was_handed(name, handed, lock):
                time.sleep(0.01)
        written.append(hashlib.sha256(data).hexdigest())
        if kind == 1:  # chunked, quicker than the quiet period
            with open(name, "wb") as fh:
                for part in np.array_split(np.frombuffer(data, np.uint8), 4):
                    fh.write(part.tobytes())
                    fh.flush()
                    time.sleep(quiet_s / 10)
        elif kind == 2:  # stalls for longer than the quiet period mid-file
            _write_slowly(name, data, pause_s=quiet_s * 2.5)
        elif kind == 3:  # renamed into place from a hidden temporary name
            hidden = folder / f".{name.name}.part"
            hidden.write_bytes(data)
            os.replace(hidden, name)
        else:
            name.write_bytes(data)

    def writer(indices) -> None:
        for index in indices:
            time.sleep(float(rng.uniform(0, quiet_s / 3)))
            write(int(index))

    threads = [threading.Thread(target=writer, args=(range(t, count, 6),)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return written


def _was_handed(name: Path, handed: dict[str, int], lock) -> bool:
    try:
        digest = hashlib.sha256(name.read_bytes()).hexdigest()
    except FileNotFoundError:
        return True
    with lock:
        return digest in handed


@pytest.mark.timeout(60)
def test_watch_hands_over_300_bursty_writes_exactly_once(tmp_path):
    quiet_s = 0.15
    handed: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def on_image(path: Path, data: bytes) -> None:
        assert decode_image(data, path.name).shape == (64, 64, 3)  # complete, never half-written
        with lock:
            digest = hashlib.sha256(data).hexdigest()
            handed[digest] = handed.get(digest, 0) + 1

    written: list[str] = []
    writers = threading.Thread(target=lambda: written.extend(_bursty_writes(tmp_path, 300, quiet_s, handed, lock)))
    writers.start()
    watcher = threading.Thread(target=lambda: watch_folder(
        tmp_path, on_image, poll_s=0.02, settle_s=quiet_s, stop_after=300,
        on_error=lambda path, message: errors.append(message)))
    watcher.start()
    writers.join()
    watcher.join(timeout=30)
    assert not watcher.is_alive() and errors == []
    assert len(written) == 300 and sorted(handed) == sorted(written)
    assert set(handed.values()) == {1}


@pytest.mark.timeout(30)
def test_watch_skips_the_same_content_and_gives_up_on_a_file_cut_short(tmp_path):
    handed: list[tuple[str, int]] = []
    scan = _small_image(1, ".jpg")

    def scanner() -> None:
        time.sleep(0.1)
        (tmp_path / "a.jpg").write_bytes(scan)
        time.sleep(0.5)
        os.utime(tmp_path / "a.jpg", ns=(time.time_ns(), time.time_ns()))  # touched: same bytes, new time
        (tmp_path / "a.jpg").write_bytes(scan)  # rewritten with the same bytes
        (tmp_path / "cut.jpg").write_bytes(scan[: len(scan) // 2])  # never finished
        time.sleep(0.3)
        (tmp_path / "b.jpg").write_bytes(_small_image(2, ".jpg"))

    writer = threading.Thread(target=scanner)
    writer.start()
    watch_folder(tmp_path, lambda path, data: handed.append((path.name, len(data))), poll_s=0.02, settle_s=0.1,
                 stop_after=3, give_up_s=0.6)
    writer.join()
    assert sorted(name for name, _ in handed) == ["a.jpg", "b.jpg", "cut.jpg"]
    assert [n for name, n in handed if name == "cut.jpg"] == [len(scan) // 2]


@pytest.mark.timeout(30)
def test_watch_reports_an_unreadable_file_and_goes_on(tmp_path, monkeypatch):
    real_open = open

    def no_permission(path, *args, **kwargs):  # chmod 000 does not stop root, so refuse as the OS would
        if Path(path).name == "locked.jpg":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(capture, "open", no_permission, raising=False)
    handed, errors = [], []

    def scanner() -> None:
        time.sleep(0.1)
        (tmp_path / "locked.jpg").write_bytes(_small_image(1, ".jpg"))
        time.sleep(0.3)
        (tmp_path / "fine.jpg").write_bytes(_small_image(2, ".jpg"))

    writer = threading.Thread(target=scanner)
    writer.start()
    watch_folder(tmp_path, lambda path, data: handed.append(path.name), poll_s=0.02, settle_s=0.1, stop_after=1,
                 on_error=lambda path, message: errors.append((path.name, message)))
    writer.join()
    assert handed == ["fine.jpg"]
    assert errors == [("locked.jpg", f"{tmp_path / 'locked.jpg'}: cannot read (Permission denied)")]
