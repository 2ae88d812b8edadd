"""Selective prediction: answer only when confident enough, with the threshold chosen for a target risk.

A calibrated classifier's top probability orders its answers from surest to
least sure. Accepting only answers above a threshold trades coverage (the
share answered) for risk (the error rate among them). The risk-coverage curve
shows the whole trade and its area (AURC, lower is better) summarises it. The
threshold is chosen on out-of-fold validation predictions, never on a test set.
Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import softmax
from .errors import EdgeECGError


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


def out_of_fold(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of every validation file of every fold of a training run, at the run's
    temperature: each scored by a model that never trained on it."""
    folds = sorted(Path(run, "folds").glob("fold*.json"))
    if not folds:
        raise EdgeECGError(f"{run}: no folds/fold*.json with validation logits")
    records = [json.loads(f.read_text()) for f in folds]
    if any("validation_logits" not in r for r in records):
        raise EdgeECGError(f"{run}: its folds hold no validation logits (a run from before they were kept)")
    logits = np.concatenate([np.asarray(r["validation_logits"], np.float64) for r in records])
    labels = np.concatenate([np.asarray(r["validation_labels"], int) for r in records])
    temperature = json.loads(Path(run, "metrics.json").read_text()).get("calibration", {}).get("temperature", 1.0)
    return softmax(logits, temperature), labels


def selective_record(run: Path, target_risk: float) -> dict:
    """What a model's contract carries for selective prediction, chosen on the run's validation folds."""
    probs, labels = out_of_fold(run)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    curve = risk_coverage(confidence, correct)
    threshold = threshold_for_risk(curve, target_risk)
    accepted = confidence >= threshold
    return {"target_risk": target_risk, "min_confidence": round(threshold, 6),
            "validation_coverage": round(float(accepted.mean()), 4),
            "validation_risk": round(float((~correct[accepted]).mean()) if accepted.any() else 0.0, 4),
            "validation_aurc": round(curve.aurc, 5), "validation_files": int(len(labels))}
