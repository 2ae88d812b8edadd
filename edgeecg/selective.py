"""Selective prediction: answer only when confident enough, with the threshold chosen for a target risk.

A calibrated classifier's top probability orders its answers from surest to
least sure. Accepting only answers above a threshold trades coverage (the
share answered) for risk (the error rate among them). The risk-coverage curve
shows the whole trade and its area (AURC, lower is better) summarises it. The
threshold is chosen on out-of-fold validation predictions, never on a test set.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RiskCoverage:
    """Coverage and risk when accepting the k surest answers, for k = 1..n, and the area under the curve."""

    thresholds: np.ndarray  # confidence of the k-th surest answer
    coverage: np.ndarray
    risk: np.ndarray
    aurc: float


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """The risk-coverage curve of answers with these confidences (ties keep their order) and correctness."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, bool)
    if confidence.shape != correct.shape or confidence.ndim != 1 or len(confidence) == 0:
        raise ValueError("confidence and correct must be 1-D arrays of the same, non-zero length")
    order = np.argsort(-confidence, kind="stable")
    errors = np.cumsum(~correct[order])
    accepted = np.arange(1, len(order) + 1)
    risk = errors / accepted
    coverage = accepted / len(order)
    return RiskCoverage(confidence[order], coverage, risk, float(np.mean(risk)))


def threshold_for_risk(curve: RiskCoverage, target_risk: float) -> float:
    """The lowest confidence threshold whose accepted answers err at most `target_risk` (the largest coverage
    that meets it); above every confidence (answer nothing) when no coverage does."""
    if not 0.0 <= target_risk <= 1.0:
        raise ValueError(f"target risk must lie in [0, 1], got {target_risk}")
    # accept down to a confidence only where every answer at or above it keeps the risk in bounds
    ok = np.nonzero(curve.risk <= target_risk)[0]
    if len(ok) == 0:
        return float(np.nextafter(curve.thresholds[0], np.inf))
    last = ok[-1]
    tied = curve.thresholds == curve.thresholds[last]
    if tied[last + 1:].any():  # a threshold cannot split tied confidences: accept none of the tie
        return float(np.nextafter(curve.thresholds[last], np.inf))
    return float(curve.thresholds[last])
