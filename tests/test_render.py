"""Printout renderer: layout geometry, grid quad, seeded distortions, and the `edgeecg render` command."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeecg.errors import EdgeECGError
from edgeecg.render import (
    DEFAULT_PX_PER_MM, GAIN_MM_PER_MV, LEADS, SPEED_MM_PER_S, RenderOptions, page_size, render_printout,
)

STEPS = {"V1": (6.0, 7.0), "II": (1.0, 1.5)}  # lead -> 1 mV between these times (s), 0 elsewhere


def step_signal(fs: float) -> np.ndarray:
    t = np.arange(int(10 * fs)) / fs
    signal = np.zeros((t.size, len(LEADS)), np.float32)
    for lead, (start, stop) in STEPS.items():
        signal[(t >= start - 1e-9) & (t < stop - 1e-9), LEADS.index(lead)] = 1.0
    return signal


def dark(image: np.ndarray) -> np.ndarray:
    return image.max(axis=2) < 110


def dark_y(mask: np.ndarray, x: float, near_y: float, window: float) -> float:
    """Centre row of the trace in column x, looking within `window` px of near_y."""
    rows = np.nonzero(mask[:, round(x)])[0]
    rows = rows[np.abs(rows - near_y) <= window]
    assert rows.size, f"no trace near ({x:.1f}, {near_y:.1f})"
    return float(rows.mean())


def dark_x(mask: np.ndarray, y: float, near_x: float, window: float) -> float:
    cols = np.nonzero(mask[round(y)])[0]
    cols = cols[np.abs(cols - near_x) <= window]
    assert cols.size, f"no trace near ({near_x:.1f}, {y:.1f})"
    return float(cols.mean())


@pytest.mark.parametrize("ppm, fs", [(DEFAULT_PX_PER_MM, 100.0), (6.0, 500.0)])
def test_steps_land_where_paper_speed_and_gain_put_them(ppm, fs):
    result = render_printout(step_signal(fs), fs, RenderOptions(px_per_mm=ppm))
    mask = dark(result.image)
    mv_px, s_px = GAIN_MM_PER_MV * ppm, SPEED_MM_PER_S * ppm
    edges = {}
    for lead, rhythm in (("V1", False), ("II", False), ("II", True)):
        start, _ = STEPS[lead]
        for t, mv in ((start + 0.25, 1.0), (start - 0.25, 0.0)):
            expected = result.sample_pixel(lead, t, mv, rhythm)
            assert abs(dark_y(mask, expected[0], expected[1], 0.4 * mv_px) - expected[1]) <= 1.5
        top = dark_y(mask, result.sample_pixel(lead, start + 0.25, 1.0, rhythm)[0], result.sample_pixel(lead, start, 1.0, rhythm)[1], 0.4 * mv_px)
        base = dark_y(mask, result.sample_pixel(lead, start - 0.25, 0.0, rhythm)[0], result.sample_pixel(lead, start, 0.0, rhythm)[1], 0.4 * mv_px)
        assert base - top == pytest.approx(mv_px, abs=2.0)  # 10 mm per mV
        edge = result.sample_pixel(lead, start, 0.5, rhythm)
        edges[lead, rhythm] = dark_x(mask, edge[1], edge[0], 0.1 * s_px)
        assert abs(edges[lead, rhythm] - edge[0]) <= 1.5
    # 25 mm/s: the V1 step (6.0 s) is 5 s right of the lead-II step (1.0 s); the two II copies line up
    assert edges["V1", False] - edges["II", True] == pytest.approx(5 * s_px, abs=2.0)
    assert edges["II", False] == pytest.approx(edges["II", True], abs=1.0)


def test_calibration_pulse_is_one_millivolt_tall():
    ppm = DEFAULT_PX_PER_MM
    result = render_printout(step_signal(100), 100)
    mask = dark(result.image)
    baseline = result.sample_pixel("I", 0.0, 0.0)[1]
    pulse_x = result.grid_quad[0, 0] + 6.5 * ppm  # middle of the pulse's flat top
    top = dark_y(mask, pulse_x, baseline - GAIN_MM_PER_MV * ppm, 3)
    assert baseline - top == pytest.approx(GAIN_MM_PER_MV * ppm, abs=1.5)


def pink(image: np.ndarray) -> np.ndarray:
    return image[..., 2].astype(int) - image[..., 1].astype(int) > 20


def test_quad_of_undistorted_render_is_the_drawn_grid_box():
    result = render_printout(step_signal(100), 100, header="ID : 1")
    ys, xs = np.nonzero(pink(result.image))
    quad = result.grid_quad
    assert quad.dtype == np.float32 and quad.shape == (4, 2)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max(), ys.max()],
                               [quad[:, 0].min(), quad[:, 1].min(), quad[:, 0].max(), quad[:, 1].max()], atol=1.5)
    assert quad[0, 0] < quad[1, 0] and quad[1, 1] < quad[2, 1] and quad[3, 0] < quad[2, 0]  # clockwise from top-left


def test_quad_and_samples_follow_rotation_and_tilt():
    result = render_printout(step_signal(100), 100, RenderOptions(rotation_deg=6, perspective=0.05), seed=3)
    assert not np.allclose(result.homography, np.eye(3))
    grid = pink(result.image)
    inside = np.zeros(grid.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(result.grid_quad).astype(np.int32), 1)
    inside = cv2.dilate(inside, np.ones((5, 5), np.uint8))
    assert not (grid & (inside == 0)).any()
    points = np.column_stack(np.nonzero(grid)[::-1])
    for corner in result.grid_quad:
        assert np.linalg.norm(points - corner, axis=1).min() <= 2.5
    trace = np.column_stack(np.nonzero(dark(result.image))[::-1])
    for t, mv in ((6.5, 1.0), (5.5, 0.0)):
        assert np.linalg.norm(trace - result.sample_pixel("V1", t, mv), axis=1).min() <= 2.0


def test_default_page_matches_the_shared_scans(mendeley_dir):
    with open(mendeley_dir / "manifest.csv", newline="") as fh:
        sizes = {(int(r["width"]), int(r["height"])) for r in csv.DictReader(fh)}
    assert page_size(DEFAULT_PX_PER_MM) in sizes
    assert render_printout(step_signal(100), 100).image.shape == (*page_size(DEFAULT_PX_PER_MM)[::-1], 3)


def test_distortions_are_reproducible_from_the_seed():
    signal = step_signal(100)
    photo = RenderOptions.photo()
    first = render_printout(signal, 100, photo, header="ID : 1", seed=7)
    again = render_printout(signal, 100, photo, header="ID : 1", seed=7)
    other = render_printout(signal, 100, photo, header="ID : 1", seed=8)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.grid_quad, again.grid_quad)
    assert not np.array_equal(first.image, other.image)
    # each distortion draws from its own stream: the geometry is the same with the others switched off
    geometry_only = RenderOptions(rotation_deg=photo.rotation_deg, perspective=photo.perspective)
    np.testing.assert_allclose(render_printout(signal, 100, geometry_only, seed=7).grid_quad, first.grid_quad)


def test_undistorted_render_ignores_the_seed():
    signal = step_signal(100)
    np.testing.assert_array_equal(render_printout(signal, 100, seed=1).image, render_printout(signal, 100, seed=2).image)


@pytest.mark.parametrize("change", [
    {"rotation_deg": 3.0}, {"perspective": 0.03}, {"crease": 0.3}, {"blur_sigma": 1.5}, {"noise_std": 5.0},
    {"jpeg_quality": 30}, {"lighting": 0.3}, {"grid_color_jitter": 1.0}, {"grid_width_jitter": 0.8}, {"handwriting": 3},
])
def test_each_distortion_changes_the_image(change):
    signal = step_signal(100)
    clean = render_printout(signal, 100, seed=11).image
    distorted = render_printout(signal, 100, replace(RenderOptions(), **change), seed=11).image
    assert distorted.shape == clean.shape and distorted.dtype == np.uint8
    assert np.abs(distorted.astype(int) - clean).mean() > 0.05


def test_bad_signals_are_user_errors():
    with pytest.raises(EdgeECGError, match="samples, 12"):
        render_printout(np.zeros((1000, 11)), 100)
    with pytest.raises(EdgeECGError, match="sampling rate"):
        render_printout(np.zeros((1000, 12)), 0)


def test_missing_samples_draw_as_zero():
    signal = step_signal(100)
    with_gap = signal.copy()
    with_gap[100:120, LEADS.index("I")] = np.nan
    signal[100:120, LEADS.index("I")] = 0.0
    np.testing.assert_array_equal(render_printout(with_gap, 100).image, render_printout(signal, 100).image)


def test_renderer_and_command_do_not_import_torch():
    code = "import sys, edgeecg.render, edgeecg.render_cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_render_command_writes_images_and_manifest(ptbxl_dir, tmp_path):
    from edgeecg.render_cli import render
    from edgeecg.train import ptbxl

    out = tmp_path / "out"
    result = CliRunner().invoke(render, [str(ptbxl_dir), "--out", str(out), "--limit", "3", "--distort", "--seed", "1"])
    assert result.exit_code == 0, result.output
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    table = ptbxl.load_ptbxl(ptbxl_dir).iloc[:3]
    assert [int(r["ecg_id"]) for r in rows] == list(table.index)
    for row, (ecg_id, record) in zip(rows, table.iterrows()):
        image = cv2.imread(str(out / row["file"]))
        assert image is not None and image.shape == (*page_size(DEFAULT_PX_PER_MM)[::-1], 3)
        assert row["labels"] == "|".join(record["superclasses"])
        assert int(row["strat_fold"]) == record["strat_fold"]
        assert [int(row[c]) for c in ptbxl.SUPERCLASSES] == [record[c] for c in ptbxl.SUPERCLASSES]
        quad = np.array([float(row[f"quad_{c}_{a}"]) for c in ("tl", "tr", "br", "bl") for a in ("x", "y")])
        assert ((quad >= 0) & (quad <= max(image.shape))).all()
    assert not list(out.glob(".*.tmp"))


def test_render_command_on_a_bad_folder_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "edgeecg.cli", "render", str(tmp_path), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "not a PTB-XL folder" in run.stderr
    assert not (tmp_path / "o").exists()


def test_render_command_names_the_extra_when_wfdb_is_missing(monkeypatch):
    from edgeecg import render_cli

    monkeypatch.setitem(sys.modules, "wfdb", None)
    monkeypatch.delitem(sys.modules, "edgeecg.train.ptbxl", raising=False)
    with pytest.raises(EdgeECGError, match=r"\.\[train\]"):
        render_cli._ptbxl_module()
