"""Evaluation metrics for SimCardioNet runs: one place for every number we report.

Part of the torch-free runtime (numpy, scikit-learn, scipy) because training,
`edgeecg export` and `edgeecg bench` all score predictions with it; the
probabilities it scores come from the runtime's `edgeecg.backends.softmax` /
`sigmoid`, the same ones `edgeecg infer` reports. Every returned value is a
plain Python int/float/str/list/dict so the dicts go straight to `json.dumps`.

NaN conventions (the only places NaN appears; `json.dumps` writes it as `NaN`):
- AUC-ROC / AUPRC of a class that has no positives (or, for AUC-ROC, no
  negatives) in `y_true` is undefined: its per-class value is NaN, it is listed
  in `auc_undefined_classes`, and macro/weighted averages are taken over the
  remaining classes (NaN only if none remain).
- Per-class precision/recall/F1 are NaN where their denominator is zero
  (e.g. recall of a class absent from `y_true`), so fold means are not dragged
  down by made-up zeros; the macro/weighted averages use sklearn's
  zero_division=0 as usual.
- A row of the row-normalised confusion matrix for a class absent from
  `y_true` is NaN (sklearn would write zeros, which would bias fold means).
- `aggregate_folds` skips NaN folds per metric (`nanmean`/`nanstd`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from .errors import EdgeECGError

ECE_BINS = 15
MULTILABEL_THRESHOLD = 0.5
# Temperature search range: T in [1e-2, 1e2], searched on log T so it stays positive.
_LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-1 ECE (Guo et al. 2017): sum over equal-width confidence bins of (n_b/N)|acc_b - conf_b|.

    Bins are right-closed, (lo, hi], with the first bin also taking confidence 0.
    scikit-learn has only the binary reliability curve (`calibration_curve`),
    which drops bin counts, so the weighting is done here.
    """
    probs, y_true = _check_multiclass(probs, y_true)
    if bins < 1:
        raise EdgeECGError(f"ECE needs at least one bin, got {bins}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    inner_edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    which = np.searchsorted(inner_edges, confidence, side="left")
    count = np.bincount(which, minlength=bins)
    gap = np.abs(
        np.bincount(which, weights=correct, minlength=bins) - np.bincount(which, weights=confidence, minlength=bins)
    )
    # |sum(correct) - sum(conf)| / N per bin == (n_b / N) * |acc_b - conf_b|.
    return float(gap.sum() / count.sum())


def ece_noise_floor(probs: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model with these confidences would still show on this many files.

    Binned ECE is biased upwards on small sets: each bin's accuracy is a
    sample mean. Labels drawn from the predicted probabilities themselves
    (calibrated by construction) give the ECE expected from that noise alone,
    so a measured ECE is read against it. Seeded, so a report is reproducible.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    floors = []
    for _ in range(draws):
        drawn = (rng.random((len(probs), 1)) > cumulative).sum(axis=1).clip(0, probs.shape[1] - 1)
        floors.append(expected_calibration_error(probs, drawn, bins))
    return float(np.mean(floors))


def brier_score(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Multiclass Brier score: mean over samples of sum over classes of (p_k - onehot_k)^2.

    Range [0, 2] (the original Brier 1950 definition, not halved). Written out
    because scikit-learn's `brier_score_loss` accepts multiclass input only
    from 1.7, and the runtime supports scikit-learn >= 1.3.
    """
    probs, y_true = _check_multiclass(probs, y_true)
    onehot = np.eye(probs.shape[1])[y_true]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, task: str = "multiclass") -> float:
    """Temperature T > 0 that minimises validation NLL of softmax(logits / T) (Guo et al. 2017).

    task="multilabel" fits one shared T for sigmoid outputs by mean binary
    cross-entropy; `y_true` is then N x K of {0,1}. The NLL is computed from
    log-softmax / logaddexp rather than sklearn's `log_loss`, which clips
    probabilities and so flattens the objective for over-confident logits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if task == "multiclass":
        _, labels = _check_multiclass(logits, y_true)

        def nll(log_t: float) -> float:
            log_p = log_softmax(logits / math.exp(log_t), axis=1)
            return float(-log_p[np.arange(len(labels)), labels].mean())

    elif task == "multilabel":
        targets = _check_multilabel(logits, y_true)

        def nll(log_t: float) -> float:
            z = logits / math.exp(log_t)
            # log sigmoid(z) = -logaddexp(0, -z), stable for large |z|.
            return float((targets * np.logaddexp(0.0, -z) + (1 - targets) * np.logaddexp(0.0, z)).mean())

    else:
        raise EdgeECGError(f"unknown task {task!r}; expected 'multiclass' or 'multilabel'")
    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """All single-label (multiclass) metrics for one fold, as a JSON-ready dict.

    Keys: task, n_samples, classes, accuracy, {precision,recall,f1}_{macro,weighted},
    auc_roc_{macro,weighted}, auprc_{macro,weighted}, auc_undefined_classes, ece,
    brier, per_class {name: precision, recall, f1, support, auc_roc, auprc},
    confusion_matrix (counts, rows = true class), confusion_matrix_normalized.

    Macro/weighted precision/recall/F1 follow sklearn's default label set (classes
    seen in y_true or predictions; zero_division=0); AUC-ROC is one-vs-rest per class.
    """
    probs, y_true = _check_multiclass(probs, y_true, classes)
    k = len(classes)
    y_pred = probs.argmax(axis=1)
    all_labels = list(range(k))
    metrics: dict[str, Any] = {
        "task": "multiclass",
        "n_samples": int(len(y_true)),
        "classes": list(classes),
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        metrics[f"precision_{average}"] = float(p)
        metrics[f"recall_{average}"] = float(r)
        metrics[f"f1_{average}"] = float(f)
    prevalence = np.bincount(y_true, minlength=k).astype(np.float64)
    auc, ap = _per_class_ranking(np.eye(k, dtype=int)[y_true], probs)
    metrics.update(
        auc_roc_macro=_nan_average(auc),
        auc_roc_weighted=_nan_average(auc, prevalence),
        auprc_macro=_nan_average(ap),
        auprc_weighted=_nan_average(ap, prevalence),
        auc_undefined_classes=[name for name, value in zip(classes, auc) if math.isnan(value)],
    )
    metrics["ece"] = expected_calibration_error(probs, y_true)
    metrics["brier"] = brier_score(probs, y_true)

    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=all_labels, average=None, zero_division=np.nan
    )
    metrics["per_class"] = {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(support[i]),
            "auc_roc": auc[i],
            "auprc": ap[i],
        }
        for i, name in enumerate(classes)
    }
    counts = confusion_matrix(y_true, y_pred, labels=all_labels)
    row_sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.where(row_sums > 0, counts / row_sums, np.nan)
    metrics["confusion_matrix"] = counts.astype(int).tolist()
    metrics["confusion_matrix_normalized"] = [[float(v) for v in row] for row in normalized]
    return metrics


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """Multi-label metrics (PTB-XL superclasses, sigmoid outputs) for one fold.

    Keys: task, n_samples, classes, threshold, auc_roc_macro (the headline),
    auprc_macro, auc_undefined_classes, {precision,recall,f1}_macro at the
    threshold, ece (the mean over classes of each sigmoid output's binary
    ECE: is a 0.8 for MI right 80 % of the time?), per_class {name: auc_roc,
    auprc, precision, recall, f1, ece, support},
    single_label {n_samples, accuracy, precision_macro, recall_macro, f1_macro}:
    samples with exactly one positive label scored by argmax, comparable with
    the single-label Mendeley task (metrics NaN when there are no such samples).
    """
    targets = _check_multilabel(probs, y_true, classes).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    predicted = (probs >= MULTILABEL_THRESHOLD).astype(int)
    metrics: dict[str, Any] = {
        "task": "multilabel",
        "n_samples": int(len(targets)),
        "classes": list(classes),
        "threshold": MULTILABEL_THRESHOLD,
    }
    auc, ap = _per_class_ranking(targets, probs)
    metrics.update(
        auc_roc_macro=_nan_average(auc),
        auprc_macro=_nan_average(ap),
        auc_undefined_classes=[name for name, value in zip(classes, auc) if math.isnan(value)],
    )
    p, r, f, _ = precision_recall_fscore_support(targets, predicted, average="macro", zero_division=0)
    metrics.update(precision_macro=float(p), recall_macro=float(r), f1_macro=float(f))
    p, r, f, support = precision_recall_fscore_support(targets, predicted, average=None, zero_division=np.nan)
    ece = [expected_calibration_error(np.column_stack([1 - probs[:, i], probs[:, i]]), targets[:, i])
           for i in range(len(classes))]
    metrics["ece"] = float(np.mean(ece))
    metrics["per_class"] = {
        name: {
            "auc_roc": auc[i],
            "auprc": ap[i],
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "ece": ece[i],
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }

    single = targets.sum(axis=1) == 1
    view: dict[str, Any] = {"n_samples": int(single.sum())}
    if single.any():
        true_single = targets[single].argmax(axis=1)
        pred_single = probs[single].argmax(axis=1)
        view["accuracy"] = float(accuracy_score(true_single, pred_single))
        p, r, f, _ = precision_recall_fscore_support(true_single, pred_single, average="macro", zero_division=0)
        view.update(precision_macro=float(p), recall_macro=float(r), f1_macro=float(f))
    else:
        view.update(accuracy=math.nan, precision_macro=math.nan, recall_macro=math.nan, f1_macro=math.nan)
    metrics["single_label"] = view
    return metrics


def aggregate_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and population std (ddof=0) over folds of every numeric metric.

    The result mirrors a fold dict, with each int/float leaf (nested per_class
    and single_label included) and confusion_matrix_normalized (element-wise)
    replaced by {"mean": ..., "std": ...}, e.g. agg["accuracy"]["mean"],
    agg["per_class"]["normal"]["f1"]["std"], agg["confusion_matrix_normalized"]["mean"].
    Top level also has n_folds, task, classes and auc_undefined_folds
    ({class name: folds where its AUC was undefined}, only classes that had any).
    NaN folds are skipped per value (a value NaN in every fold stays NaN).
    ddof=0 because the k folds are the whole CV, not a sample drawn from one.
    """
    if not fold_metrics:
        raise EdgeECGError("no fold metrics to aggregate")
    first = fold_metrics[0]
    undefined: dict[str, int] = {}
    for fold in fold_metrics:
        for name in fold.get("auc_undefined_classes", []):
            undefined[name] = undefined.get(name, 0) + 1
    return {
        "n_folds": len(fold_metrics),
        "task": first.get("task", "multiclass"),
        "classes": list(first.get("classes", [])),
        "auc_undefined_folds": undefined,
        **_aggregate_tree(fold_metrics),
    }


def format_summary(aggregated: Mapping[str, Any]) -> str:
    """Short "metric  mean ± std" block for the terminal, headline metrics first."""
    multilabel = aggregated.get("task") == "multilabel"
    if multilabel:
        headline = ["auc_roc_macro", "auprc_macro", "f1_macro"]
    else:
        headline = ["accuracy", "f1_macro", "precision_macro", "recall_macro", "auc_roc_macro", "auprc_macro", "ece", "brier"]
    lines = [f"{aggregated['task']} metrics over {aggregated['n_folds']} fold(s) (mean ± std)"]
    lines += [f"  {key:<18}{_pm(aggregated[key])}" for key in headline if key in aggregated]
    if "single_label" in aggregated:
        view = aggregated["single_label"]
        lines.append(f"  single-label view (~{view['n_samples']['mean']:.0f} samples/fold):")
        lines += [f"    {key:<16}{_pm(view[key])}" for key in ("accuracy", "f1_macro")]
    per_class_key = "auc_roc" if multilabel else "f1"
    lines.append(f"  per-class {per_class_key}:")
    for name, values in aggregated.get("per_class", {}).items():
        if per_class_key in values:
            lines.append(f"    {name:<24}{_pm(values[per_class_key])}")
    missing = aggregated.get("auc_undefined_folds", {})
    if missing:
        listed = ", ".join(f"{name} ({count} fold(s))" for name, count in missing.items())
        lines.append(f"  AUC skipped where a class had no positives/negatives: {listed}")
    return "\n".join(lines)


def _pm(stat: Mapping[str, float]) -> str:
    return "n/a" if math.isnan(stat["mean"]) else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _per_class_ranking(targets: np.ndarray, scores: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-class one-vs-rest AUC-ROC and average precision; NaN where undefined.

    Done per column because sklearn either raises (< 1.6) or warns and returns
    NaN for a class without positives, depending on its version.
    """
    auc: list[float] = []
    ap: list[float] = []
    for column, score in zip(targets.T, scores.T):
        positives = int(column.sum())
        auc.append(float(roc_auc_score(column, score)) if 0 < positives < len(column) else math.nan)
        ap.append(float(average_precision_score(column, score)) if positives > 0 else math.nan)
    return auc, ap


def _nan_average(values: Sequence[float], weights: np.ndarray | None = None) -> float:
    values_arr = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values_arr)
    if weights is not None:
        keep &= weights > 0
    if not keep.any():
        return math.nan
    return float(np.average(values_arr[keep], weights=None if weights is None else weights[keep]))


def _aggregate_tree(nodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """{"mean", "std"} over folds for each numeric leaf; strings and lists of names are dropped."""
    tree: dict[str, Any] = {}
    for key, value in nodes[0].items():
        if isinstance(value, Mapping):
            tree[key] = _aggregate_tree([node[key] for node in nodes])
        elif key == "confusion_matrix_normalized":
            stack = np.asarray([node[key] for node in nodes], dtype=np.float64)
            tree[key] = {"mean": _nan_stat(np.nanmean, stack).tolist(), "std": _nan_stat(np.nanstd, stack).tolist()}
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            column = np.asarray([node[key] for node in nodes], dtype=np.float64)
            tree[key] = {"mean": float(_nan_stat(np.nanmean, column)), "std": float(_nan_stat(np.nanstd, column))}
    return tree


def _nan_stat(stat, values: np.ndarray) -> np.ndarray:
    """nanmean/nanstd over folds (axis 0) without the all-NaN RuntimeWarning; all-NaN stays NaN."""
    all_nan = np.isnan(values).all(axis=0)
    filled = np.where(all_nan, 0.0, values)
    return np.where(all_nan, np.nan, stat(filled, axis=0))


def _check_multiclass(
    probs: np.ndarray, y_true: np.ndarray, classes: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(y_true)
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs) or len(labels) == 0:
        raise EdgeECGError(
            f"expected N x K scores and N integer labels (N > 0), got shapes {probs.shape} and {labels.shape}"
        )
    if classes is not None and probs.shape[1] != len(classes):
        raise EdgeECGError(f"model gives {probs.shape[1]} class scores but {len(classes)} class names were given")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise EdgeECGError(f"labels must be integers in [0, {probs.shape[1] - 1}]")
    return probs, labels.astype(np.int64)


def _check_multilabel(scores: np.ndarray, y_true: np.ndarray, classes: Sequence[str] | None = None) -> np.ndarray:
    scores = np.asarray(scores)
    targets = np.asarray(y_true)
    if scores.ndim != 2 or targets.shape != scores.shape or len(targets) == 0:
        raise EdgeECGError(f"expected matching N x K targets and scores (N > 0), got {targets.shape} and {scores.shape}")
    if classes is not None and scores.shape[1] != len(classes):
        raise EdgeECGError(f"model gives {scores.shape[1]} class scores but {len(classes)} class names were given")
    if not np.isin(targets, (0, 1)).all():
        raise EdgeECGError("multi-label targets must be 0 or 1")
    return targets.astype(np.float64)
