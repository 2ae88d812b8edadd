"""Printout renderer: layout geometry, grid quad, seeded distortions, and the `edgeecg render` command."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from dataclasses import replace
from functools import lru_cache

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeecg.errors import EdgeECGError
from edgeecg.layouts import LAYOUTS
from edgeecg.render import (
    DEFAULT_PX_PER_MM, GAIN_MM_PER_MV, GRID_STYLES, LEADS, PAPER_TONES, SPEED_MM_PER_S, RenderOptions, page_position,
    page_size, random_options, record_seed, render_printout,
)
from local_data import local_scans

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


def test_default_page_matches_the_shipped_scans():
    sizes = {cv2.imread(str(path)).shape[1::-1] for path, _ in local_scans()}
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


# --- layouts, page styles and ground truth -------------------------------------------------------------------

LAYOUT_CASES = [(name, simultaneous) for name in LAYOUTS for simultaneous in (False, True)]
FS = 100.0


def small_beats(fs: float = FS) -> np.ndarray:
    """10 s of 12 leads: spikes and T-like waves at 75 bpm, under half the smallest row pitch so no rows touch."""
    t = np.arange(int(10 * fs)) / fs
    phase = (t * 1.25) % 1.0
    beat = np.exp(-(((phase - 0.3) / 0.01) ** 2)) * 0.5 + 0.15 * np.exp(-(((phase - 0.6) / 0.06) ** 2))
    return (beat[:, None] * np.linspace(-1.0, 1.0, len(LEADS))[None, :] + 0.2).astype(np.float32)


@lru_cache(maxsize=None)
def layout_render(name: str, simultaneous: bool, **changes):
    return render_printout(small_beats(), FS, RenderOptions(layout=name, simultaneous=simultaneous, **changes), seed=5)


def box_region(result, k: int, margin_px: float) -> np.ndarray:
    """Pixels within `margin_px` of lead box k."""
    region = np.zeros(result.trace_mask.shape, np.uint8)
    cv2.fillConvexPoly(region, np.round(result.lead_boxes[k]).astype(np.int32), 1)
    size = 2 * math.ceil(margin_px) + 1
    return cv2.dilate(region, np.ones((size, size), np.uint8)).astype(bool)


def trace_half_width(result) -> float:
    return RenderOptions().trace_mm * result.px_per_mm / 2 + 1


@pytest.mark.parametrize("name, simultaneous", LAYOUT_CASES)
def test_every_panel_is_drawn_on_dark_ink(name, simultaneous):
    result = layout_render(name, simultaneous)
    expected = LAYOUTS[name].panels(simultaneous)
    assert result.layout_name == name and result.simultaneous == simultaneous and list(result.panels) == expected
    assert result.trace_mask.shape == result.image.shape[:2] and result.trace_mask.dtype == np.uint8
    assert set(np.unique(result.trace_mask)) == set(range(len(expected) + 1))
    shade = result.image.max(axis=2)[result.trace_mask > 0]
    assert (shade < 110).mean() >= 0.9 and shade.max() < 230  # anti-aliased ink: a few edge pixels are grey


@pytest.mark.parametrize("name, simultaneous", LAYOUT_CASES)
def test_known_samples_land_on_their_panel_mask(name, simultaneous):
    result = layout_render(name, simultaneous)
    signal = small_beats()
    for k, panel in enumerate(result.panels):
        for t in np.linspace(panel.t0, panel.t1, 7)[1:-1]:
            i = round(t * FS)
            x, y = np.round(result.sample_pixel(panel.lead, i / FS, float(signal[i, LEADS.index(panel.lead)]), panel.rhythm))
            assert (result.trace_mask[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] == k + 1).any(), (panel, t)


@pytest.mark.parametrize("name, simultaneous", LAYOUT_CASES)
def test_sample_ranges_are_the_panels_time_spans(name, simultaneous):
    result = layout_render(name, simultaneous)
    n = small_beats().shape[0]
    assert result.sample_ranges.shape == (len(result.panels), 2)
    for panel, (first, last) in zip(result.panels, result.sample_ranges):
        assert (first - 1) / FS < panel.t0 <= first / FS + 1e-9
        assert last / FS <= panel.t1 + 1e-9 and (last == n - 1 or (last + 1) / FS > panel.t1)


@pytest.mark.parametrize("name, simultaneous", LAYOUT_CASES)
def test_lead_boxes_hold_their_traces(name, simultaneous):
    result = layout_render(name, simultaneous)
    assert result.lead_boxes.shape == (len(result.panels), 4, 2) and result.lead_boxes.dtype == np.float32
    for k in range(len(result.panels)):
        assert box_region(result, k, trace_half_width(result))[result.trace_mask == k + 1].all()
    tops = result.lead_boxes[:, :, 1]
    assert (tops.min() >= result.grid_quad[:, 1].min() - 1) and (tops.max() <= result.grid_quad[:, 1].max() + 1)


def test_geometric_distortions_move_mask_and_boxes_with_the_image():
    options = RenderOptions(layout="6x2", rotation_deg=6, perspective=0.05)
    clean = layout_render("6x2", False)
    moved = render_printout(small_beats(), FS, options, seed=5)
    assert not np.allclose(moved.homography, np.eye(3))
    ink = moved.image.max(axis=2)[moved.trace_mask > 0]
    assert (ink < 180).mean() >= 0.98  # resampling greys the thin trace; the mask stays on it
    signal = small_beats()
    for k, panel in enumerate(moved.panels):
        assert box_region(moved, k, trace_half_width(moved) + 1)[moved.trace_mask == k + 1].all()
        i = round((panel.t0 + panel.t1) / 2 * FS)
        x, y = np.round(moved.sample_pixel(panel.lead, i / FS, float(signal[i, LEADS.index(panel.lead)]), panel.rhythm))
        assert (moved.trace_mask[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] == k + 1).any()
        corners = cv2.perspectiveTransform(clean.lead_boxes[k].reshape(-1, 1, 2).astype(np.float64), moved.homography)
        np.testing.assert_allclose(corners.reshape(4, 2), moved.lead_boxes[k], atol=1e-3)


def test_photo_distortions_keep_the_mask_on_the_trace():
    result = render_printout(small_beats(), FS, RenderOptions.photo(), seed=2)
    clean = render_printout(small_beats(), FS, replace(RenderOptions.photo(), crease=0, lighting=0, blur_sigma=0,
                                                       noise_std=0, jpeg_quality=0, handwriting=0), seed=2)
    np.testing.assert_array_equal(result.trace_mask, clean.trace_mask)  # only geometry moves the ground truth
    ink = clean.image.max(axis=2)[clean.trace_mask > 0]
    assert (ink < 180).mean() >= 0.98


def outline_pixels(image: np.ndarray) -> int:
    """Pixels in the outline's colour: far redder than the pink grid lines."""
    return int((image[..., 2].astype(int) - image[..., 1].astype(int) > 50).sum())


def test_outline_box_can_be_left_off():
    boxed = layout_render("3x4+1", False)
    perimeter = 2 * np.ptp(boxed.grid_quad, axis=0).sum()
    assert outline_pixels(boxed.image) >= 0.9 * perimeter  # a line of outline colour all round (traces cross it)
    assert outline_pixels(layout_render("3x4+1", False, outline_box=False).image) == 0


def test_full_page_grid_covers_the_page_under_the_header_without_an_outline():
    result = render_printout(small_beats(), FS, RenderOptions(full_page_grid=True), header="ID : 1\nDevice: X", seed=5)
    height, width = result.image.shape[:2]
    top = result.grid_quad[:, 1].min()
    np.testing.assert_allclose(np.ptp(result.grid_quad[:, 0]), width, atol=1)
    assert result.grid_quad[:, 1].max() >= height - 1
    assert outline_pixels(result.image) == 0
    grid = pink(result.image)
    assert grid[round(top) + 1 :, :3].any() and grid[round(top) + 1 :, -3:].any() and grid[-3:].any()
    assert not grid[: math.floor(top) - 1].any()
    assert dark(result.image)[: math.floor(top)].any()  # the header text sits above the grid


def grid_tint(result) -> np.ndarray:
    """Mean darkening of the grid box by its grid lines, per channel (trace and text ink left out)."""
    left, top = np.ceil(result.grid_quad.min(axis=0)).astype(int) + 2
    right, bottom = np.floor(result.grid_quad.max(axis=0)).astype(int) - 2
    inside = result.image[top:bottom, left:right].reshape(-1, 3).astype(float)
    inside = inside[inside.max(axis=1) >= 110]
    return 255.0 - inside.mean(axis=0)


def test_grid_styles_colour_the_grid_in_their_own_hue():
    tints = {}
    for style in GRID_STYLES:
        options = RenderOptions(outline_box=False).with_style(style)
        tint = grid_tint(render_printout(small_beats(), FS, options))
        expected = 255.0 - np.array(options.major_bgr, float)
        assert tint @ expected / np.linalg.norm(tint) / np.linalg.norm(expected) > 0.98, style
        tints[style] = tint
    assert RenderOptions().with_style("pink") == RenderOptions()
    names = list(tints)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert np.abs(tints[first] - tints[second]).max() > 2, (first, second)


def test_paper_tones_and_dotted_minor_grid():
    for tone, bgr in PAPER_TONES.items():
        image = render_printout(small_beats(), FS, RenderOptions().with_style("red", tone)).image
        assert tuple(image[3, 3]) == bgr  # the page's corner is bare paper
    solid = layout_render("3x4+1", False, outline_box=False)
    dotted = layout_render("3x4+1", False, outline_box=False, dotted_minor=True)
    assert 0 < grid_tint(dotted).sum() < grid_tint(solid).sum()


def pulse_ink(result, side: str) -> np.ndarray:
    """Dark pixels of the page's trace rows beside the panels, left or right of them."""
    mask = dark(result.image)
    left, right = result.lead_boxes[:, :, 0].min(), result.lead_boxes[:, :, 0].max()
    top, bottom = result.lead_boxes[:, :, 1].min(), result.lead_boxes[:, :, 1].max()
    rows = mask[math.ceil(top) : math.floor(bottom)]
    return rows[:, : math.floor(left) - 2] if side == "left" else rows[:, math.ceil(right) + 2 :]


@pytest.mark.parametrize("calibration", ["left", "right", "none"])
def test_calibration_pulse_sits_where_asked(calibration):
    result = layout_render("3x4+1", False, calibration=calibration)
    for side in ("left", "right"):
        assert pulse_ink(result, side).any() == (side == calibration), side
    if calibration == "none":
        return
    ppm, row_top = result.px_per_mm, math.ceil(result.lead_boxes[:, :, 1].min())
    ys, xs = np.nonzero(pulse_ink(result, calibration))
    first_row = ys < np.ptp(result.lead_boxes[0, :, 1])
    baseline = result.sample_pixel("I", 0.0, float(result.baseline_mv[0]))[1] - row_top
    top = ys[first_row].min()
    assert baseline - top == pytest.approx(GAIN_MM_PER_MV * ppm, abs=1.5)  # 1 mV tall
    top_run = xs[first_row][ys[first_row] <= top + 1]
    assert np.ptp(top_run) == pytest.approx(0.2 * SPEED_MM_PER_S * ppm, abs=2.0)  # 0.2 s wide


def test_rhythm_strips_can_show_other_leads():
    result = layout_render("3x4+1", False, rhythm_leads=("III", "V1"))
    strips = [panel for panel in result.panels if panel.rhythm]
    assert [panel.lead for panel in strips] == ["III", "V1"]
    assert result.sample_pixel("III", 5.0, 0.0, rhythm=True)[1] < result.sample_pixel("V1", 5.0, 0.0, rhythm=True)[1]
    with pytest.raises(ValueError, match="rhythm strip"):
        result.sample_pixel("II", 5.0, 0.0, rhythm=True)


def test_page_position_follows_the_chosen_layout():
    default = layout_render("3x4+1", False)
    np.testing.assert_allclose(page_position("V1", 6.5, 0.3), default.sample_pixel("V1", 6.5, 0.3 + default.baseline_mv[6]))
    result = layout_render("6x2", True)
    expected = page_position("V6", 2.0, 0.1, rhythm=False, geometry=result.geometry)
    np.testing.assert_allclose(result.sample_pixel("V6", 2.0, 0.1 + result.baseline_mv[LEADS.index("V6")]), expected)
    with pytest.raises(ValueError, match="printed from"):
        page_position("V6", 7.0, 0.0, geometry=result.geometry)  # simultaneous: every column shows 0-5 s


@pytest.mark.parametrize("change, message", [
    ({"layout": "4x3"}, "unknown layout"), ({"calibration": "top"}, "calibration"),
    ({"rhythm_leads": ("X",)}, "rhythm lead"),
])
def test_bad_page_options_are_user_errors(change, message):
    with pytest.raises(EdgeECGError, match=message):
        render_printout(small_beats(), FS, RenderOptions(**change))


def changed_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.nonzero((first != second).any(axis=(1, 2)))[0]


def test_labels_separators_and_machine_header_switch_on_and_off():
    default = layout_render("3x4+1", False)
    unlabelled = layout_render("3x4+1", False, lead_labels=False)
    assert dark(unlabelled.image).sum() < dark(default.image).sum()
    np.testing.assert_array_equal(unlabelled.trace_mask, default.trace_mask)
    lines = layout_render("3x4+1", False, separators=True)
    ticks = layout_render("3x4+1", False, separator_ticks=True)
    bare = layout_render("3x4+1", False, separators=False)
    boundary = round(float(lines.lead_boxes[1, 0, 0]))  # where column 1 starts
    between_rows = slice(round(float(lines.lead_boxes[0, 2, 1])) - 5, round(float(lines.lead_boxes[0, 2, 1])) + 5)
    assert dark(lines.image)[between_rows, boundary].any()
    assert not dark(ticks.image)[between_rows, boundary].any() and not dark(bare.image)[between_rows, boundary].any()
    assert dark(ticks.image).sum() > dark(bare.image).sum()
    header = render_printout(small_beats(), FS, RenderOptions(machine_header=True), seed=5)
    other = render_printout(small_beats(), FS, RenderOptions(machine_header=True), seed=6)
    grid_top = default.grid_quad[:, 1].min()
    assert changed_rows(header.image, default.image).max() < grid_top
    assert changed_rows(header.image, other.image).size > 0


def test_random_options_are_reproducible_varied_and_renderable():
    drawn = [random_options(seed) for seed in range(40)]
    assert drawn[3] == random_options(3) and random_options(3, layout="12x1").layout == "12x1"
    assert len({options.layout for options in drawn}) >= 4 and len({options.major_bgr for options in drawn}) >= 4
    assert all(not options.geometric for options in drawn) and random_options(3, photo=True).geometric
    for seed in range(4):
        result = render_printout(small_beats(), FS, random_options(seed, photo=True), header="ID : 1", seed=seed)
        assert set(np.unique(result.trace_mask)) == set(range(len(result.panels) + 1))


def test_record_seed_lives_in_the_renderer():
    from edgeecg import render_cli

    assert render_cli.record_seed is record_seed
    assert record_seed(0, 1) != record_seed(0, 2) and record_seed(0, 1) == record_seed(0, 1)


def test_render_command_draws_the_chosen_layout(ptbxl_dir, tmp_path):
    from edgeecg.render_cli import render

    out = tmp_path / "out"
    args = [str(ptbxl_dir), "--out", str(out), "--limit", "2", "--layout", "6x2", "--simultaneous", "--style", "green"]
    result = CliRunner().invoke(render, args)
    assert result.exit_code == 0, result.output
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["layout"], r["simultaneous"], r["rhythm_leads"]) for r in rows] == [("6x2", "1", "")] * 2
    random_out = tmp_path / "random"
    result = CliRunner().invoke(render, [str(ptbxl_dir), "--out", str(random_out), "--limit", "2", "--random-style"])
    assert result.exit_code == 0, result.output
    with open(random_out / "manifest.csv", newline="") as fh:
        assert all(row["layout"] in LAYOUTS for row in csv.DictReader(fh))
