"""Capture: a good frame from a camera/video, and new images from a watched folder."""

from __future__ import annotations

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

from edgeecg.capture import DEFAULT_SHARPNESS, capture_frame, sharpness, watch_folder
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
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

    def on_image(path: Path) -> None:
        seen.append((path.name, read_image(path).shape))  # raises if the file were half-written

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
@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_cli_watch_classifies_new_scans_until_ctrl_c(tmp_path, tiny_model, mendeley_dir):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "edgeecg.cli", "infer", "--model", str(tiny_model), "--json", "--watch", str(inbox)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )
    try:
        assert "watching" in watcher.stderr.readline()
        scan = next(iter(sorted((mendeley_dir / "normal").glob("*.jpg"))))
        (inbox / "scan.jpg").write_bytes(scan.read_bytes())
        result = json.loads(watcher.stdout.readline())
        assert result["path"] == str(inbox / "scan.jpg") and "label" in result
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0
    assert "stopped: 1 image(s) classified, 0 failed" in err and "Traceback" not in err
