"""Group k-fold CV on a labelled folder (image or signal branch): data -> SSL -> k-fold fine-tuning -> final model.

Everything lands in one run folder: config.json, train.log, metrics.json, timing.json,
plots, per-fold results, resumable checkpoints and `final_model.pt` for export.
A run interrupted at any point continues with `edgeecg train --resume RUN_DIR`
and loses at most the epoch in progress. The steps every recipe shares are in
`recipe`; this module is the part that is cross-validation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgeecg.atomic import write_text
from edgeecg.backends import softmax
from edgeecg.metrics import (aggregate_folds, brier_score, classification_metrics, ece_noise_floor,
                             expected_calibration_error, fit_temperature, format_summary)

from . import distributed
from .config import TrainConfig
from .data import ImageTable, group_kfold, load_table, one_per_group
from .loops import device_name
from .plots import plot_confusion
from .recipe import finish, pretrain_weights, save_final, start, timing_record


def limit_groups(table: ImageTable, per_class: int, seed: int) -> ImageTable:
    """Keep at most `per_class` duplicate groups per class (all their files), chosen with `seed`."""
    rng = np.random.default_rng(seed)
    keep_groups: set[int] = set()
    for c in range(len(table.classes)):
        groups = np.unique(table.groups[table.labels == c])
        keep_groups.update(rng.permutation(groups)[:per_class].tolist())
    return table.subset(np.nonzero(np.isin(table.groups, list(keep_groups)))[0])


def run_table(cfg: TrainConfig, workers: int = 2) -> ImageTable:
    """The labelled files a run folds and trains on: its data less the excluded listings, capped per class."""
    table = load_table(cfg.data, cfg.exclude, workers=workers)
    return limit_groups(table, cfg.max_per_class, cfg.seed) if cfg.max_per_class else table


def final_training_table(cfg: TrainConfig) -> ImageTable:
    """The files the run's final model trained on (one per duplicate group with --dedup-train)."""
    table = run_table(cfg)
    return table.subset(one_per_group(table)) if cfg.dedup_train else table


def calibrate(folds: list[dict]) -> dict:
    """Temperature scaling on out-of-fold validation logits.

    Each fold's after-scaling ECE/Brier uses a temperature fitted on the *other*
    folds only, so the improvement reported is not measured on the data it was
    fitted to; the shipped temperature is then fitted on all folds. ECE is also
    given over all out-of-fold files at once (less binning noise than a fold's
    few hundred) and beside the noise floor a calibrated model would show on
    folds of this size (`ece_noise_floor`).
    """
    logits = [np.asarray(f["validation_logits"]) for f in folds]
    labels = [np.asarray(f["validation_labels"]) for f in folds]
    before, after, scaled = [], [], []
    for k in range(len(folds)):
        rest = [i for i in range(len(folds)) if i != k]
        t = fit_temperature(np.concatenate([logits[i] for i in rest]), np.concatenate([labels[i] for i in rest]))
        scaled.append(softmax(logits[k], t))
        for scores, probs in ((before, softmax(logits[k], 1.0)), (after, scaled[-1])):
            scores.append((expected_calibration_error(probs, labels[k]), brier_score(probs, labels[k])))
    temperature = fit_temperature(np.concatenate(logits), np.concatenate(labels))
    every_label = np.concatenate(labels)
    return {"temperature": temperature, "method": "temperature scaling, cross-fitted over folds",
            "ece_before": float(np.mean([b[0] for b in before])), "ece_after": float(np.mean([a[0] for a in after])),
            "ece_noise_floor": float(np.mean([ece_noise_floor(p) for p in scaled])),
            "ece_pooled_before": expected_calibration_error(softmax(np.concatenate(logits), 1.0), every_label),
            "ece_pooled_after": expected_calibration_error(np.concatenate(scaled), every_label),
            "brier_before": float(np.mean([b[1] for b in before])),
            "brier_after": float(np.mean([a[1] for a in after]))}


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) the whole recipe; returns the run folder."""
    distributed.check_batch_split({"--batch": cfg.batch, **({"--ssl-batch": cfg.ssl_batch} if cfg.ssl else {})})
    distributed.barrier()  # under DDP: every rank has passed its checks before rank 0 writes anything
    with start(cfg, f"{cfg.modality} branch") as session:
        run, modality = session.run, session.modality
        table = run_table(cfg, workers=max(1, cfg.workers))
        counts = ", ".join(f"{c}: {(table.labels == i).sum()}" for i, c in enumerate(table.classes))
        run.log(f"{len(table)} images in {table.n_groups} duplicate groups ({counts})")
        task = run.progress.add_task(modality.loading, total=len(table))
        images = modality.inputs(table, lambda: run.progress.advance(task), run.log)
        run.progress.remove_task(task)
        splits = group_kfold(table, cfg.folds, cfg.seed)
        run.log(f"{cfg.folds}-fold stratified group split: no duplicate group spans train and validation")
        if run.main:
            write_text(run.dir / "splits.json", json.dumps(
                [{"fold": k, "validation": [str(table.items[i].path) for i in va]}
                 for k, (_, va) in enumerate(splits, 1)], indent=1))
        n_classes = len(table.classes)
        distinct = one_per_group(table)

        def train_index(idx: np.ndarray) -> np.ndarray:
            return idx[np.isin(idx, distinct)] if cfg.dedup_train else idx

        ssl = pretrain_weights(session, images[train_index(np.arange(len(table)))], n_classes, "SSL pretraining loss")
        folds = []
        for k, (tr, va) in enumerate(splits, 1):
            result_file = run.dir / "folds" / f"fold{k}.json"
            earlier = distributed.from_main(
                lambda: json.loads(result_file.read_text()) if result_file.is_file() else None)
            if earlier is not None:
                folds.append(earlier)
                run.log(f"fold {k}: done earlier, accuracy {folds[-1]['metrics']['accuracy']:.4f}")
                continue
            tr = train_index(tr)
            run.log(f"fold {k}/{cfg.folds}: {len(tr)} training images, {len(va)} validation images "
                    f"({len(np.unique(table.groups[va]))} groups)")
            fitted = session.fit(n_classes, ssl.weights, images[tr], table.labels[tr], images[va], table.labels[va],
                                 name=f"fold{k}", tag=f"Fold {k}", title=f"Fine-tuning, fold {k}")
            if not run.main:  # rank 0 evaluates and reports; the others only need the best epoch
                folds.append({"best_epoch": fitted.best_epoch})
                continue
            tick = time.perf_counter()
            logits = modality.predict(fitted.model, images[va], session.device)
            eval_seconds = time.perf_counter() - tick
            probs = softmax(logits)
            va_distinct = va[np.isin(va, distinct)]
            fold = {
                "fold": k, "best_epoch": fitted.best_epoch, "epochs_run": fitted.epochs_run,
                "training_seconds": fitted.seconds, "evaluation_seconds": eval_seconds,
                "average_epoch_seconds": fitted.seconds / max(fitted.epochs_run, 1),
                "metrics": classification_metrics(table.labels[va], probs, table.classes),
                "metrics_distinct_images": classification_metrics(
                    table.labels[va_distinct], softmax(logits[np.isin(va, distinct)]), table.classes),
                "history": fitted.history,
                "validation_logits": logits.tolist(), "validation_labels": table.labels[va].tolist(),
            }
            run.write_json(f"folds/fold{k}.json", fold)
            folds.append(fold)
            run.log(f"fold {k}: accuracy {fold['metrics']['accuracy']:.4f}, "
                    f"macro-F1 {fold['metrics']['f1_macro']:.4f} (best epoch {fitted.best_epoch})")

        final_epochs = cfg.final_epochs or int(np.median([f["best_epoch"] for f in folds]))
        all_train = train_index(np.arange(len(table)))

        def fit_final():
            run.log(f"final model: {len(all_train)} images, {final_epochs} epochs (median best epoch over folds)")
            return session.fit(n_classes, ssl.weights, images[all_train], table.labels[all_train], name="final",
                               tag="Final", title="Final model (all training data)", epochs=final_epochs)

        if not run.main:  # under DDP the other ranks join the final fit, then leave the reports to rank 0
            fit_final()
            return run.dir
        summary = aggregate_folds([f["metrics"] for f in folds])
        summary_distinct = aggregate_folds([f["metrics_distinct_images"] for f in folds])
        plot_confusion(np.array(summary["confusion_matrix_normalized"]["mean"]),
                       np.array(summary["confusion_matrix_normalized"]["std"]), table.classes,
                       run.dir / "confusion_matrix.png", f"{cfg.folds}-fold group CV, mean ± std")
        run.log(format_summary(summary))
        calibration = calibrate(folds)
        run.log(f"temperature scaling: T = {calibration['temperature']:.3f}, ECE {calibration['ece_before']:.4f} -> "
                f"{calibration['ece_after']:.4f} (noise floor {calibration['ece_noise_floor']:.4f}; all out-of-fold "
                f"files {calibration['ece_pooled_before']:.4f} -> {calibration['ece_pooled_after']:.4f}), Brier "
                f"{calibration['brier_before']:.4f} -> {calibration['brier_after']:.4f} (cross-fitted over folds)")

        final = fit_final()
        contract = modality.contract(
            table.classes, model_version=session.model_version, temperature=calibration["temperature"],
            train_manifest_sha256=table.subset(all_train).manifest_sha256(),
            extra={"cv_accuracy_mean": summary["accuracy"]["mean"], "cv_folds": cfg.folds},
        )
        save_final(session, final.model, contract)

        cv_seconds = sum(f["training_seconds"] + f["evaluation_seconds"] for f in folds)
        total = session.elapsed()
        timing = {
            "fold_training_time_seconds": [f["training_seconds"] for f in folds],
            "average_epoch_time_seconds": float(np.mean([f["average_epoch_seconds"] for f in folds])),
            "total_cv_time_seconds": cv_seconds,
            "evaluation_time_seconds": sum(f["evaluation_seconds"] for f in folds),
            **ssl.timing(),
            "final_model_training_seconds": final.seconds,
            "summary": {"ssl_time_seconds": ssl.seconds, "cv_time_seconds": cv_seconds,
                        "total_time_seconds": total, "average_time_per_fold_seconds": cv_seconds / len(folds),
                        "this_session_wall_seconds": total},
            **timing_record(session.device), "device_name": device_name(session.device),
        }
        finish(session, timing, {
            "data": {"source": cfg.data, "images": len(table), "duplicate_groups": table.n_groups,
                     "classes": table.classes, "train_manifest_sha256": contract.train_manifest_sha256},
            "mean_std": summary, "mean_std_distinct_images": summary_distinct, "calibration": calibration,
            "folds": [{k: v for k, v in f.items() if k not in ("validation_logits", "validation_labels")}
                      for f in folds],
            "ssl_history": ssl.history,
        }, f"SSL time {ssl.seconds:.1f}s | CV time {cv_seconds:.1f}s | total {total:.1f}s | "
           f"average per fold {cv_seconds / len(folds):.1f}s")
    return run.dir
