"""Evaluation metrics and report figures (edgeecg.metrics / edgeecg.train.plots)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from edgeecg.backends import sigmoid, softmax
from edgeecg.errors import EdgeECGError
from edgeecg.metrics import (
    aggregate_folds,
    brier_score,
    classification_metrics,
    ece_noise_floor,
    expected_calibration_error,
    fit_temperature,
    format_summary,
    multilabel_metrics,
)
from edgeecg.train.plots import plot_confusion, plot_training_curves

CLASSES = ["abnormal_heartbeat", "history_of_mi", "myocardial_infarction", "normal"]


def _assert_plain_json(value) -> None:
    """Only Python builtins all the way down, so json.dumps never meets a numpy type."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            _assert_plain_json(item)
    else:
        assert type(value) in (int, float, str), f"{value!r} is {type(value)}"


def _random_problem(seed: int = 0, n: int = 200, k: int = 4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    return y, softmax(logits)


def test_perfect_predictor_scores_one_everywhere():
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    probs = np.full((8, 4), 0.1 / 3)
    probs[np.arange(8), y] = 0.9
    m = classification_metrics(y, probs, CLASSES)
    for key in ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "auc_roc_macro", "auprc_macro"):
        assert m[key] == pytest.approx(1.0), key
    # Always right at 0.9 confidence: under-confident by exactly 0.1.
    assert m["ece"] == pytest.approx(0.1)
    assert m["brier"] == pytest.approx(0.1**2 + 3 * (0.1 / 3) ** 2)
    assert m["confusion_matrix"] == (2 * np.eye(4, dtype=int)).tolist()
    assert m["per_class"]["normal"]["support"] == 2
    assert m["auc_undefined_classes"] == []


def test_ece_of_crafted_overconfident_predictor():
    # Four predictions at 0.9 confidence, three right; two at 0.6, one right.
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    y = np.array([0, 0, 0, 1, 0, 1])
    by_hand = 4 / 6 * abs(0.75 - 0.9) + 2 / 6 * abs(0.5 - 0.6)
    assert expected_calibration_error(probs, y) == pytest.approx(by_hand)
    # With one bin the gap is pooled: |mean accuracy - mean confidence|.
    assert expected_calibration_error(probs, y, bins=1) == pytest.approx(abs(4 / 6 - (4 * 0.9 + 2 * 0.6) / 6))


def test_ece_noise_floor_is_what_a_calibrated_model_shows_on_few_files():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(4, 0.5), size=250)
    labels = [np.array([rng.choice(4, p=p) for p in probs]) for _ in range(100)]  # calibrated by construction
    measured = np.mean([expected_calibration_error(probs, y) for y in labels])
    floor = ece_noise_floor(probs)
    assert floor == pytest.approx(measured, rel=0.15) and floor > 0.03  # binning noise on 250 files
    assert ece_noise_floor(np.tile(probs, (8, 1))) < floor / 2  # shrinks with the number of files
    assert ece_noise_floor(np.eye(4)[rng.integers(0, 4, 50)]) == 0.0  # certain and right: no noise


def test_brier_matches_its_definition():
    y, probs = _random_problem()
    by_hand = np.mean([sum((probs[i, c] - (c == y[i])) ** 2 for c in range(4)) for i in range(len(y))])
    assert brier_score(probs, y) == pytest.approx(by_hand)


def test_brier_matches_sklearn_multiclass_where_available():
    import inspect

    from sklearn.metrics import brier_score_loss

    if "scale_by_half" not in inspect.signature(brier_score_loss).parameters:
        pytest.skip("scikit-learn < 1.7 has no multiclass Brier score")
    y, probs = _random_problem(seed=3)
    assert brier_score(probs, y) == pytest.approx(brier_score_loss(y, probs, labels=[0, 1, 2, 3], scale_by_half=False))


def test_metrics_match_sklearn_on_random_problem():
    y, probs = _random_problem()
    m = classification_metrics(y, probs, CLASSES)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(np.mean(pred == y))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["auc_roc_macro"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["auc_roc_weighted"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="weighted"))
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == len(y) and np.trace(cm) == np.sum(pred == y)
    assert np.allclose(np.array(m["confusion_matrix_normalized"]), cm / cm.sum(1, keepdims=True))
    assert [m["per_class"][c]["support"] for c in CLASSES] == np.bincount(y, minlength=4).tolist()
    _assert_plain_json(m)
    json.dumps(m)


def test_class_absent_from_fold_does_not_crash_auc():
    y, probs = _random_problem()
    keep = y != 2
    y, probs = y[keep], probs[keep]
    m = classification_metrics(y, probs, CLASSES)
    assert m["auc_undefined_classes"] == ["myocardial_infarction"]
    assert math.isnan(m["per_class"]["myocardial_infarction"]["auc_roc"])
    assert math.isnan(m["per_class"]["myocardial_infarction"]["auprc"])
    present = [roc_auc_score(y == c, probs[:, c]) for c in (0, 1, 3)]
    assert m["auc_roc_macro"] == pytest.approx(np.mean(present))
    assert all(math.isnan(v) for v in m["confusion_matrix_normalized"][2])
    absent = m["per_class"]["myocardial_infarction"]
    assert absent["support"] == 0 and math.isnan(absent["recall"])
    # sklearn's macro averages over classes seen in truth or predictions; an absent but
    # predicted class counts as recall 0 there (zero_division=0).
    assert (probs.argmax(1) == 2).any()
    assert m["recall_macro"] == pytest.approx(sum(m["per_class"][CLASSES[c]]["recall"] for c in (0, 1, 3)) / 4)
    _assert_plain_json(m)


def _fold(acc: float, f1_normal: float, cm_row0: list[float], auc_mi: float) -> dict:
    return {
        "task": "multiclass",
        "classes": ["mi", "normal"],
        "accuracy": acc,
        "auc_undefined_classes": ["mi"] if math.isnan(auc_mi) else [],
        "per_class": {"mi": {"auc_roc": auc_mi, "support": 3}, "normal": {"f1": f1_normal, "support": 5}},
        "confusion_matrix": [[1, 2], [3, 4]],
        "confusion_matrix_normalized": [cm_row0, [0.5, 0.5]],
    }


def test_aggregate_mean_and_population_std():
    agg = aggregate_folds([_fold(0.8, 0.6, [0.9, 0.1], 0.7), _fold(0.9, 1.0, [0.7, 0.3], math.nan)])
    assert agg["n_folds"] == 2 and agg["classes"] == ["mi", "normal"]
    assert agg["accuracy"]["mean"] == pytest.approx(0.85)
    assert agg["accuracy"]["std"] == pytest.approx(0.05)  # ddof=0: |a - b| / 2
    assert agg["per_class"]["normal"]["f1"]["mean"] == pytest.approx(0.8)
    assert agg["per_class"]["normal"]["f1"]["std"] == pytest.approx(0.2)
    # NaN fold skipped: one defined value, zero spread.
    assert agg["per_class"]["mi"]["auc_roc"]["mean"] == pytest.approx(0.7)
    assert agg["per_class"]["mi"]["auc_roc"]["std"] == pytest.approx(0.0)
    assert agg["auc_undefined_folds"] == {"mi": 1}
    assert np.allclose(agg["confusion_matrix_normalized"]["mean"], [[0.8, 0.2], [0.5, 0.5]])
    assert np.allclose(agg["confusion_matrix_normalized"]["std"], [[0.1, 0.1], [0.0, 0.0]])
    assert "confusion_matrix" not in agg and "auc_undefined_classes" not in agg  # counts and name lists are not averaged
    _assert_plain_json(agg)
    summary = format_summary(agg)
    assert "accuracy" in summary and "0.850 ± 0.050" in summary and "mi (1 fold(s))" in summary


def test_aggregate_of_real_folds_and_summary():
    folds = [classification_metrics(*_random_problem(seed), CLASSES) for seed in range(3)]
    agg = aggregate_folds(folds)
    assert agg["f1_macro"]["mean"] == pytest.approx(np.mean([f["f1_macro"] for f in folds]))
    assert agg["ece"]["std"] == pytest.approx(np.std([f["ece"] for f in folds]))
    assert set(agg["per_class"]) == set(CLASSES)
    json.dumps(agg)
    assert "normal" in format_summary(agg)


def test_aggregate_refuses_no_folds():
    with pytest.raises(EdgeECGError):
        aggregate_folds([])


def test_temperature_fit_recovers_true_temperature():
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=4.0, size=(20000, 4))
    true_t = 2.5
    p = softmax(logits, true_t)
    y = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.05)


def test_multilabel_temperature_fit_recovers_true_temperature():
    rng = np.random.default_rng(8)
    logits = rng.normal(scale=4.0, size=(10000, 5))
    true_t = 0.6
    targets = (rng.random(logits.shape) < sigmoid(logits, true_t)).astype(int)
    assert fit_temperature(logits, targets, task="multilabel") == pytest.approx(true_t, rel=0.05)


def test_softmax_and_sigmoid_temperature():
    logits = np.array([[2.0, 0.0, -1.0]])
    assert softmax(logits).sum() == pytest.approx(1.0)
    assert softmax(logits, 100.0).max() < softmax(logits).max()  # hotter = flatter
    assert sigmoid(np.array([0.0]))[0] == pytest.approx(0.5)
    with pytest.raises(EdgeECGError):
        softmax(logits, 0.0)


def test_bad_inputs_raise_one_clear_error():
    y, probs = _random_problem(n=10)
    with pytest.raises(EdgeECGError, match="class names"):
        classification_metrics(y, probs, CLASSES[:3])
    with pytest.raises(EdgeECGError, match="labels"):
        classification_metrics(y + 4, probs, CLASSES)


def test_multilabel_metrics_and_single_label_view():
    classes = ["NORM", "MI", "STTC", "CD", "HYP"]
    targets = np.array([
        [1, 0, 0, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],  # two labels: not in the single-label view
        [0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1],
        [1, 0, 0, 0, 0],
    ])
    probs = np.array([
        [0.9, 0.1, 0.1, 0.1, 0.1],
        [0.2, 0.3, 0.6, 0.1, 0.1],  # single label MI, argmax STTC: wrong
        [0.1, 0.8, 0.7, 0.1, 0.1],
        [0.1, 0.1, 0.1, 0.8, 0.2],
        [0.1, 0.2, 0.1, 0.1, 0.7],
        [0.7, 0.1, 0.2, 0.1, 0.1],
    ])
    m = multilabel_metrics(targets, probs, classes)
    assert m["single_label"]["n_samples"] == 5
    assert m["single_label"]["accuracy"] == pytest.approx(4 / 5)
    per_class_auc = [roc_auc_score(targets[:, i], probs[:, i]) for i in range(5)]
    assert m["auc_roc_macro"] == pytest.approx(np.mean(per_class_auc))
    assert m["per_class"]["MI"]["auc_roc"] == pytest.approx(per_class_auc[1])
    # MI at 0.5: predicted only for row 2 (right), missed in row 1.
    assert m["per_class"]["MI"]["precision"] == pytest.approx(1.0)
    assert m["per_class"]["MI"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["MI"]["support"] == 2
    # MI's binary ECE: confidences 0.9 x3 (right), 0.7 (wrong), 0.8 x2 (right) -> (0.3 + 0.7 + 0.4) / 6
    assert m["per_class"]["MI"]["ece"] == pytest.approx(1.4 / 6)
    assert m["ece"] == pytest.approx(np.mean([m["per_class"][c]["ece"] for c in classes]))
    _assert_plain_json(m)
    agg = aggregate_folds([m, m])
    assert agg["single_label"]["accuracy"]["mean"] == pytest.approx(0.8)
    assert "auc_roc_macro" in format_summary(agg)


def test_multilabel_with_no_single_label_samples_and_absent_class():
    targets = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 1]])
    probs = np.array([[0.9, 0.8, 0.1], [0.8, 0.2, 0.9], [0.7, 0.6, 0.6]])
    m = multilabel_metrics(targets, probs, ["a", "b", "c"])
    assert m["single_label"]["n_samples"] == 0 and math.isnan(m["single_label"]["accuracy"])
    assert m["auc_undefined_classes"] == ["a"]  # positive in every sample


def test_plot_confusion_writes_png(tmp_path):
    folds = [classification_metrics(*_random_problem(seed), CLASSES) for seed in range(2)]
    agg = aggregate_folds(folds)
    out = plot_confusion(agg["confusion_matrix_normalized"]["mean"], agg["confusion_matrix_normalized"]["std"],
                         CLASSES, tmp_path / "figs" / "cm.png", "Mendeley, 2 folds")
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 100
    plot_confusion(folds[0]["confusion_matrix_normalized"], None, CLASSES, tmp_path / "cm_one.png", "fold 1")
    assert cv2.imread(str(tmp_path / "cm_one.png")) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm_one.png", "figs"]  # no temp files left
    with pytest.raises(EdgeECGError):
        plot_confusion([[1.0]], None, CLASSES, tmp_path / "bad.png", "wrong shape")


def test_plot_training_curves_supervised_and_ssl(tmp_path):
    supervised = [
        {"epoch": e, "train_loss": 1.0 / e, "train_acc": 1 - 0.5 / e, **({"val_loss": 1.2 / e, "val_acc": 0.9 - 0.4 / e} if e % 2 == 0 else {})}
        for e in range(1, 7)
    ]
    ssl = [{"epoch": e, "loss": 5.0 - 0.3 * e} for e in range(1, 5)]
    two_panels = cv2.imread(str(plot_training_curves(supervised, tmp_path / "curves.png", "fine-tune")))
    one_panel = cv2.imread(str(plot_training_curves(ssl, tmp_path / "ssl.png", "SimCLR")))
    assert two_panels is not None and one_panel is not None
    assert two_panels.shape[1] > one_panel.shape[1]  # accuracy panel added only when logged
    with pytest.raises(EdgeECGError):
        plot_training_curves([], tmp_path / "empty.png", "nothing")


def test_modules_never_import_torch():
    code = "import sys, edgeecg.metrics, edgeecg.train.plots; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_killed_plot_write_leaves_no_temporary_file_for_long(tmp_path):
    dead = 2**22 + 12345  # above pid_max on Linux: no such process
    left = tmp_path / f".curves.png.{dead}.k1ll3d.tmp"  # what a writer killed mid-save used to leave
    left.write_bytes(b"")
    plot_training_curves([{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}], tmp_path / "c.png", "t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png"]
