"""How good and how fast each bench row is: accuracy, agreement with the reference, the Pareto front."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .backends import probabilities
from .bench_measure import BenchSettings
from .bench_rows import RowSpec
from .errors import EdgeECGError
from .metrics import classification_metrics


def score_row(
    row: RowSpec, logits: np.ndarray, labels: Sequence[str], reference_probs: np.ndarray, reference_classes: list[str]
) -> dict[str, float]:
    """Accuracy and macro-F1 on the labels; top-1 agreement and |delta p| against the reference row."""
    classes = list(row.contract.classes)
    if logits.shape != (len(labels), len(classes)):
        expected = (len(labels), len(classes))
        raise EdgeECGError(f"{row.label}: returned logits of shape {logits.shape}, expected {expected}")
    if not np.all(np.isfinite(logits)):
        raise EdgeECGError(f"{row.label}: returned non-finite outputs (NaN/inf)")
    probs = probabilities(logits, row.contract).astype(np.float64)
    metrics = classification_metrics(np.array([classes.index(label) for label in labels]), probs, classes)
    reference = reference_probs[:, [reference_classes.index(c) for c in classes]].astype(np.float64)
    delta = np.abs(probs - reference)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["f1_macro"],
        "agreement": float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1))),
        "mean_abs_dprob": float(delta.mean()),
        "max_abs_dprob": float(delta.max()),
    }


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> list[bool]:
    """True for each point that no other point dominates (as fast or faster AND as accurate or more, better in one).

    Points with a missing (NaN) latency or accuracy are never on the front.
    """
    points = [(float(t), float(a)) for t, a in zip(latency, accuracy, strict=True)]
    valid = [math.isfinite(t) and math.isfinite(a) for t, a in points]
    front = []
    for i, (t, a) in enumerate(points):
        dominated = any(
            valid[j] and t2 <= t and a2 >= a and (t2 < t or a2 > a) for j, (t2, a2) in enumerate(points) if j != i
        )
        front.append(valid[i] and not dominated)
    return front


def model_size_mb(path: Path) -> float:
    """Size on disk, counting an ONNX model's external-data file (MODEL.onnx.data / MODEL.data) if present."""
    extras = [path.with_name(path.name + ".data"), path.with_suffix(".data")]
    return (path.stat().st_size + sum(p.stat().st_size for p in extras if p.is_file())) / 1e6


def report_rows(rows: list[RowSpec], measured: list[dict], labels: list[str], settings: BenchSettings) -> list[dict]:
    """Score every row against the labels and its family's reference (`bench_rows.by_family`); mark the Pareto front.

    `speedup_vs_reference` and `speedup_vs_ort_fp32` divide the family reference's (and the family's
    ONNX Runtime FP32 CPU row's) batch-1 latency by the row's: the INT8 targets are stated that way.
    """
    reports = []
    for family in dict.fromkeys(r.family for r in rows):
        index = [i for i, r in enumerate(rows) if r.family == family]
        reference, fp32 = index[0], next((i for i in index if _is_ort_fp32(rows[i])), None)
        reference_probs = probabilities(measured[reference]["logits"], rows[reference].contract)
        for i in index:
            scores = score_row(rows[i], measured[i]["logits"], labels, reference_probs,
                               list(rows[reference].contract.classes))
            latency = measured[i]["latency_ms"]["p50"]
            scores.update(reference=rows[reference].label,
                          speedup_vs_reference=_ratio(measured[reference]["latency_ms"]["p50"], latency),
                          speedup_vs_ort_fp32=None if fp32 is None else _ratio(
                              measured[fp32]["latency_ms"]["p50"], latency))
            reports.append((i, _row_report(rows[i], measured[i], scores, settings, is_reference=i == reference)))
    reports = [report for _, report in sorted(reports, key=lambda pair: pair[0])]
    front = pareto_front([r["latency_ms_p50"] for r in reports], [r["accuracy"] for r in reports])
    for row_report, on_front in zip(reports, front):
        row_report["pareto"] = on_front
    return reports


def _is_ort_fp32(row: RowSpec) -> bool:
    return (row.backend, row.precision, row.device) == ("onnxruntime", "fp32", "cpu")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _row_report(row: RowSpec, result: dict, scores: dict, settings: BenchSettings, is_reference: bool) -> dict:
    throughput = {str(size): float(value) for size, value in sorted(result["throughput"].items())}
    largest = max(settings.batches)
    return {
        "model": row.model,
        "backend": row.backend,
        "precision": row.precision,
        "device": row.device,
        "path": str(row.path),
        "is_reference": is_reference,
        **scores,
        "latency_ms_p50": result["latency_ms"]["p50"],
        "latency_ms_p90": result["latency_ms"]["p90"],
        "latency_ms_p99": result["latency_ms"]["p99"],
        "latency_ms_mean": result["latency_ms"]["mean"],
        "e2e_ms_p50": result["e2e_ms"]["p50"],
        "e2e_ms_p99": result["e2e_ms"]["p99"],
        "e2e_stages_ms_p50": result["e2e_stages_ms_p50"],
        "throughput": throughput,
        "throughput_batch": largest,
        "throughput_img_s": throughput[str(largest)],
        "size_mb": model_size_mb(row.path),
        "load_s": result["load_s"],
        "rss_before_load_mb": result["rss_before_load_mb"],
        "peak_rss_mb": result["peak_rss_mb"],
        "gpu_mem_mb": result["gpu_mem_mb"],
    }
