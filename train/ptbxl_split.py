"""PTB-XL's fixed split, shared by both PTB-XL recipes: rendered printouts (`ptbxl_train`) and signals (`ptbxl_signal`).

Split: PTB-XL's `strat_fold` (patient-disjoint). Data with fold 10 (the full
release) uses the standard train 1-8 / validation 9 / test 10; data without it
(the shared subset, folds 1-9) uses 1-7 / 8 / 9. Set EDGEECG_PTBXL_SPLIT to
override, e.g. `EDGEECG_PTBXL_SPLIT=1-8/9/10` (train/validation/test; commas or
ranges in each part). `--max-per-class N` keeps, in each split, records until
every superclass has N positives (or all there are); 0 keeps everything.
`--folds`, `--dedup-train` and `--final-epochs` do not apply: the validation
fold picks the best epoch, and that model is the final one.

Both recipes then evaluate alike (multi-label, one temperature fitted on the
validation fold's logits, every test view scored with it) and report alike, so
their metrics.json and model contracts can be read side by side.
"""

from __future__ import annotations

import hashlib
import math
import os
import re

import numpy as np
import pandas as pd

from edgeecg.backends import sigmoid
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.metrics import fit_temperature, multilabel_metrics

from . import ptbxl
from .finetune import FitResult
from .recipe import Session, finish, save_final, timing_record
from .run_folder import Run

SPLIT_ENV = "EDGEECG_PTBXL_SPLIT"
STANDARD_SPLIT = ((1, 2, 3, 4, 5, 6, 7, 8), (9,), (10,))  # the PTB-XL paper's recommended split
SUBSET_SPLIT = (ptbxl.DEFAULT_TRAIN_FOLDS, ptbxl.DEFAULT_VAL_FOLDS, ptbxl.DEFAULT_TEST_FOLDS)
SPLIT_NAMES = ("train", "validation", "test")
CLASSES = list(ptbxl.SUPERCLASSES)
Folds = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def parse_split(text: str) -> Folds:
    """'1-8/9/10' -> ((1..8), (9,), (10,)): train / validation / test strat_folds."""
    parts = text.split("/")
    if len(parts) != 3:
        raise EdgeECGError(f"{SPLIT_ENV}={text!r}: expected TRAIN/VALIDATION/TEST folds, e.g. 1-8/9/10")
    folds = []
    for part in parts:
        values: list[int] = []
        for item in filter(None, (s.strip() for s in part.split(","))):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
            if not match:
                raise EdgeECGError(f"{SPLIT_ENV}={text!r}: {item!r} is not a fold number or range")
            first, last = int(match[1]), int(match[2] or match[1])
            values.extend(range(first, last + 1))
        if not values:
            raise EdgeECGError(f"{SPLIT_ENV}={text!r}: every part needs at least one fold")
        folds.append(tuple(values))
    return folds[0], folds[1], folds[2]


def choose_split(df: pd.DataFrame) -> Folds:
    """EDGEECG_PTBXL_SPLIT if set; else the standard split when fold 10 is present, the subset's otherwise."""
    if os.environ.get(SPLIT_ENV):
        return parse_split(os.environ[SPLIT_ENV])
    return STANDARD_SPLIT if 10 in set(df["strat_fold"].tolist()) else SUBSET_SPLIT


def cap_records(df: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """Records picked (rarest class first) until every superclass has `per_class` positives or none are left."""
    if per_class <= 0:
        return df
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    order = sorted(CLASSES, key=lambda c: int(df[c].sum()))
    for name in order:
        have = int(df.loc[chosen, name].sum())
        taken = set(chosen)
        candidates = [i for i in df.index[df[name] == 1] if i not in taken]
        chosen.extend(rng.permutation(candidates)[: max(0, per_class - have)].tolist())
    return df.loc[sorted(chosen)]


def load_split(session: Session) -> tuple[Folds, ptbxl.Split]:
    """The records of each part of the split, capped by --max-per-class; an empty part is an error."""
    cfg, log = session.cfg, session.run.log
    table = ptbxl.load_ptbxl(cfg.data)
    folds = choose_split(table)
    parts = ptbxl.split_records(table, *folds)
    split = ptbxl.Split(*(cap_records(part, cfg.max_per_class, cfg.seed) for part in parts))
    if cfg.max_per_class:
        log(f"--max-per-class {cfg.max_per_class}: records kept until each superclass has that many "
            f"positives per split")
    for name, part in zip(("training", "validation", "test"), split):
        if part.empty:
            raise EdgeECGError(f"the {name} split holds no records with a diagnostic superclass")
    log(f"strat_fold split: train {list(folds[0])} ({len(split.train)} records), validation "
        f"{list(folds[1])} ({len(split.val)}), test {list(folds[2])} ({len(split.test)})")
    return folds, split


def write_splits(run: Run, folds: Folds, rows: dict[str, pd.DataFrame]) -> None:
    """splits.json: the strat_folds of each part and the ecg_ids each evaluated set was made of."""
    run.write_json("splits.json", {"folds": dict(zip(SPLIT_NAMES, folds)),
                                   "ecg_ids": {name: [int(i) for i in part.index] for name, part in rows.items()}})


def records_sha256(rows: pd.DataFrame, *settings: str) -> str:
    """Hash of the sorted (ecg_id, superclasses) training list, plus any settings lines: what the model saw."""
    lines = sorted(f"ptbxl:{int(i)},{'|'.join(r['superclasses'])}" for i, r in rows.iterrows())
    return hashlib.sha256("\n".join([*lines, *settings]).encode()).hexdigest()


def finite(value: float | None) -> float | None:
    """NaN (e.g. AUC of a class without positives in a tiny test set) as None, which JSON can hold."""
    return None if value is None or math.isnan(value) else float(value)


def _metrics_lines(name: str, metrics: dict) -> list[str]:
    view = metrics["single_label"]
    per_class = ", ".join(f"{c} AUC {v['auc_roc']:.3f} F1 {v['f1']:.3f}" for c, v in metrics["per_class"].items())
    return [f"{name}: {metrics['n_samples']} records, macro AUC-ROC {metrics['auc_roc_macro']:.4f}, "
            f"macro F1 {metrics['f1_macro']:.4f} (threshold {metrics['threshold']})",
            f"  per class: {per_class}",
            f"  single-label view ({view['n_samples']} records with one superclass): accuracy "
            f"{view['accuracy']:.4f}, macro precision {view['precision_macro']:.4f}, "
            f"recall {view['recall_macro']:.4f}, F1 {view['f1_macro']:.4f}"]


def evaluate(session: Session, model, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, dict, float]:
    """Temperature from the "validation" set's logits, then every set's multi-label metrics at it (logged).

    Returns the temperature, the metrics per set (in `sets` order) and the seconds it all took.
    """
    started = session.elapsed()
    logits = {name: session.modality.predict(model, x, session.device) for name, (x, _) in sets.items()}
    temperature = fit_temperature(logits["validation"], sets["validation"][1], task="multilabel")
    results = {name: multilabel_metrics(y, sigmoid(logits[name], temperature), CLASSES)
               for name, (_, y) in sets.items()}
    seconds = session.elapsed() - started
    session.run.log(f"temperature scaling on validation logits (sigmoid, shared T): T = {temperature:.3f}")
    for name, metrics in results.items():
        for line in _metrics_lines(name, metrics):
            session.run.log(line)
    return temperature, results, seconds


def split_contract(session: Session, folds: Folds, temperature: float, test: dict, name: str, dataset: str,
                   manifest: str, **extra) -> ModelContract:
    """A PTB-XL model's contract: multi-label superclasses, the split it was trained on and its test scores."""
    return session.modality.contract(
        CLASSES, task="multilabel", temperature=temperature, name=name, model_version=session.model_version,
        train_manifest_sha256=manifest,
        extra={"dataset": dataset, "strat_folds": dict(zip(SPLIT_NAMES, map(list, folds))),
               "test_records": test["n_samples"], "test_auc_roc_macro": finite(test["auc_roc_macro"]), **extra})


def finish_split(session: Session, folds: Folds, fitted: FitResult, contract: ModelContract, eval_seconds: float,
                 data: dict, reports: dict, timing: dict, summary: str = "") -> None:
    """Save the final model and write the reports both PTB-XL recipes share.

    `data`, `reports` and `timing` are the recipe's own entries (what its inputs were, its evaluated
    sets, its set-up seconds); fine-tuning, calibration and evaluation are added here.
    """
    save_final(session, fitted.model, contract)
    total = session.elapsed()
    cfg = session.cfg
    timing = {**timing, "finetune_seconds": fitted.seconds,
              "average_epoch_time_seconds": fitted.seconds / max(fitted.epochs_run, 1),
              "evaluation_time_seconds": eval_seconds, "total_time_seconds": total, **timing_record(session.device)}
    metrics = {
        "data": {"source": cfg.data, "dataset": "ptbxl", "classes": CLASSES,
                 "strat_folds": dict(zip(SPLIT_NAMES, folds)), "max_per_class": cfg.max_per_class, **data},
        **reports,
        "calibration": {"temperature": contract.temperature, "method": "temperature scaling (shared T, sigmoid BCE) "
                        "fitted on the validation fold; test metrics use it"},
        "best_epoch": fitted.best_epoch, "epochs_run": fitted.epochs_run, "history": fitted.history,
    }
    finish(session, timing, metrics,
           f"{summary}fine-tuning {fitted.seconds:.1f}s (best epoch {fitted.best_epoch}) | total {total:.1f}s")
