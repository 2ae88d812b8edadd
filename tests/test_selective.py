"""Selective prediction: the risk-coverage curve and the threshold for a target risk."""

from __future__ import annotations

import numpy as np
import pytest

from edgeecg.selective import risk_coverage, threshold_for_risk


def test_curve_orders_answers_from_surest():
    confidence = np.array([0.9, 0.5, 0.8, 0.6])
    correct = np.array([True, False, True, False])
    curve = risk_coverage(confidence, correct)
    assert curve.coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert curve.risk.tolist() == [0.0, 0.0, pytest.approx(1 / 3), 0.5]
    assert curve.aurc == pytest.approx(np.mean([0, 0, 1 / 3, 0.5]))


def test_threshold_keeps_the_risk_and_the_largest_coverage():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.25, 1.0, 2000)
    correct = rng.uniform(size=2000) < confidence  # surer answers are right more often
    curve = risk_coverage(confidence, correct)
    for target in (0.05, 0.1, 0.2):
        threshold = threshold_for_risk(curve, target)
        accepted = confidence >= threshold
        assert (~correct[accepted]).mean() <= target
        # the largest coverage that meets it: accepting down to any lower confidence breaks the target
        for lower in confidence[~accepted]:
            assert (~correct[confidence >= lower]).mean() > target


def test_no_coverage_meets_an_impossible_target():
    curve = risk_coverage(np.array([0.9, 0.8]), np.array([False, True]))
    threshold = threshold_for_risk(curve, 0.0)
    assert threshold > 0.9
    with pytest.raises(ValueError):
        threshold_for_risk(curve, 1.5)


def test_tied_confidences_are_not_split():
    curve = risk_coverage(np.array([0.9, 0.7, 0.7]), np.array([True, True, False]))
    assert threshold_for_risk(curve, 0.0) > 0.7  # accepting 0.7 would let in the wrong one too
