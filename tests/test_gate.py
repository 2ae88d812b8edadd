"""The quality gate refuses what it cannot read, with a reason, and lets readable ECGs through."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeecg.gate import assess, beats_per_minute
from edgeecg.render import RenderOptions, render_printout
from edgeecg.synthetic import synthetic_ecg
from local_data import local_scans

FS = 500.0


@pytest.fixture(scope="module")
def page() -> np.ndarray:
    return render_printout(synthetic_ecg(11, FS), FS, RenderOptions(), seed=11).image


def test_a_readable_page_passes_with_its_evidence(page):
    verdict = assess(page)
    assert verdict.readable and verdict.reason is None
    assert verdict.evidence["leads_found"] == 12 and verdict.evidence["layout"] == "3x4+1"
    assert 40 <= verdict.evidence["heart_rate_bpm"] <= 110
    assert verdict.reading is not None and not verdict.reading.partial


def test_heart_rate_is_counted_from_the_qrs_complexes():
    for seed in range(3):
        signal = synthetic_ecg(seed, FS)
        rng = np.random.default_rng(seed)  # synthetic_ecg draws its onset, then its heart rate, first
        rng.uniform(0.0, 0.5)
        true_bpm = rng.uniform(55, 95)
        assert beats_per_minute(signal[:, 1], FS) == pytest.approx(true_bpm, rel=0.15)
    assert beats_per_minute(np.full(400, np.nan), FS) is None


def test_erased_traces_blank_grid_and_flat_lines_are_refused(page):
    erased = page.copy()
    erased[cv2.cvtColor(page, cv2.COLOR_BGR2GRAY) < 150] = 255
    assert assess(erased).reason == "no trace on the grid"
    flat = render_printout(np.zeros((5000, 12), np.float32), FS, RenderOptions(), seed=1).image
    assert not assess(flat).readable


def test_non_ecg_images_are_refused(text_page):
    text = cv2.imread(str(text_page))
    assert assess(text).reason == "no ECG grid found"
    noise = np.random.default_rng(0).integers(0, 256, (700, 1000, 3), dtype=np.uint8)
    assert assess(noise).reason == "no ECG grid found"
    scene = np.zeros((600, 900, 3), np.uint8)
    cv2.rectangle(scene, (100, 100), (500, 400), (40, 120, 200), -1)
    cv2.circle(scene, (600, 300), 120, (200, 200, 50), -1)
    assert assess(cv2.GaussianBlur(scene, (0, 0), 3)).reason == "no trace on the grid"


def test_blurred_pages_are_refused(page):
    """A blur this strong (1.5 mm) leaves no stroke dark enough to trace: refused before any pen width is read."""
    assert assess(cv2.GaussianBlur(page, (0, 0), 6)).reason == "no trace on the grid"


def test_a_partial_capture_is_refused_unless_allowed(page):
    top = page[: int(page.shape[0] * 0.52)]
    verdict = assess(top)
    assert verdict.reason is not None and verdict.reason.startswith("only ") and verdict.reason.endswith(" of 12 leads")
    assert assess(top, allow_partial=True).readable


def test_rows_shorter_than_a_record_are_refused(page):
    """A page cut down the middle (or a grid read at twice its scale) gives rows of about 5 s: every standard
    layout prints 10 s a row, so the panels' timing cannot be read and no diagnosis is given."""
    left = page[:, : int(page.shape[1] * 0.55)]
    verdict = assess(left, allow_partial=True)
    assert verdict.reason is not None and verdict.reason.startswith("rows span "), verdict
    assert 3.0 < verdict.evidence["row_seconds"] < 7.0
    assert 9.5 < assess(page).evidence["row_seconds"] < 10.5


def test_rhythm_strips_of_the_same_lead_are_refused(page, monkeypatch):
    """Carts print strips of different leads; two of one lead mean the rows were misread (an LUDB printout
    re-saved as JPEG q20 read its washed-out grid lines as rows: 3x4+3 with strips V1, III, III)."""
    from dataclasses import replace

    import edgeecg.gate as gate

    reading = gate.digitize(page)
    strip = next(p for p in reading.panels if p.rhythm)
    twice = replace(reading, panels=reading.panels + [replace(strip, row=strip.row + 1)])
    monkeypatch.setattr(gate, "digitize", lambda image, rate: twice)
    verdict = assess(page)
    assert verdict.reason == "rhythm strips read as the same lead (II, II): the page's rows are misread"


def _refusals(files: list[Path]) -> dict[str, str | None]:
    return {path.name: assess(cv2.imread(str(path))).reason for path in files}


def test_shipped_scans_pass():
    refused = _refusals([path for path, _ in local_scans()][::4])
    assert not any(refused.values()), refused


def test_shared_scans_pass(shared_mendeley_dir):
    refused = _refusals(sorted(shared_mendeley_dir.rglob("*.jpg"))[::93])
    assert not any(refused.values()), refused
