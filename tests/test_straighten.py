"""The page reader redraws a region whose outline leans by the lean of the grid lines inside it."""

from __future__ import annotations

import math

import numpy as np
import pytest

import edgeecg.page as page_module
from edgeecg.digitize import digitize
from edgeecg.layouts import LEADS
from edgeecg.render import RenderOptions, render_printout
from edgeecg.signal_score import score_lead
from edgeecg.straighten import _meeting_point, straighten
from edgeecg.synthetic import synthetic_ecg

FS = 500.0


def _photo(seed: int = 2):
    """A page photographed at an angle (perspective and a slight rotation, nothing else)."""
    signal = synthetic_ecg(seed, FS)
    options = RenderOptions(layout="3x4+1", perspective=0.05, rotation_deg=2.0)
    return signal, render_printout(signal, FS, options, seed=seed)


def _off_quad(quad: np.ndarray) -> np.ndarray:
    """The grid's corners with the top-left one pulled up and left, as a header block beside the grid pulls it."""
    off = quad.copy()
    off[0] -= [0.02 * (quad[1, 0] - quad[0, 0]), 0.08 * (quad[3, 1] - quad[0, 1])]
    return off


def _side_angles(quad: np.ndarray) -> np.ndarray:
    """Direction (degrees) of each side, top, right, bottom, left."""
    sides = np.roll(quad, -1, axis=0) - quad
    return np.degrees(np.arctan2(sides[:, 1], sides[:, 0]))


def test_a_leaning_region_is_redrawn_along_the_grid_lines():
    _, page = _photo()
    off = _off_quad(page.grid_quad)
    assert np.abs(_side_angles(off) - _side_angles(page.grid_quad)).max() > 2.0  # the outline leans
    geometry = page_module._measure(page.image, off, False, 10.0, 25.0)
    error = np.abs((_side_angles(geometry.quad) - _side_angles(page.grid_quad) + 180) % 360 - 180)
    assert error.max() < 0.4, error
    assert math.isclose(*geometry.px_per_mm, rel_tol=0.03)  # a square grid once the page lies flat


def test_a_region_whose_lines_do_not_lean_is_kept_as_outlined():
    _, page = _photo()
    maps = page_module._upright_maps(page.image, page.grid_quad)
    assert straighten(page.grid_quad, maps[-1]) is None
    blank = np.zeros((400, 600), np.float32)  # no grid lines at all: nothing to straighten by
    assert straighten(page.grid_quad, blank) is None


@pytest.mark.parametrize("seed", [2, 5])
def test_leads_are_read_from_a_leaning_outline(monkeypatch, seed):
    """The region finder's outline is off by a corner: the rows are still read level, at the right times."""
    signal, page = _photo(seed)
    monkeypatch.setattr(page_module, "_grid_quad", lambda image: (_off_quad(page.grid_quad), False))
    result = digitize(page.image, rate=FS)
    truth = signal - page.baseline_mv
    scores = [s for s in (score_lead(truth[:, i], result.signal[:, i], FS) for i in range(len(LEADS))) if s]
    assert result.layout == "3x4+1" and len(scores) == len(LEADS)
    assert np.median([s.pearson_r for s in scores]) > 0.9
    assert min(s.pearson_r for s in scores) > 0.5


def test_a_tile_whose_line_misses_the_others_meeting_point_is_left_out():
    """Level lines of four tiles; one tile's reading follows a crease at 4 degrees instead of the grid."""
    identity = np.eye(3)
    level = [((0.0, y), (1.0, y)) for y in (0.0, 1.0, 2.0)]
    crease = ((5.0, 1.5), (6.0, 1.57))
    meeting = _meeting_point(level + [crease], identity)
    assert meeting is not None and abs(meeting[1]) < 1e-6 * abs(meeting[0])  # at infinity, along x
    assert _meeting_point(level[:2] + [crease], identity) is None  # too few tiles left to outvote it
