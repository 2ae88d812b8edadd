"""The whole SimCardioNet recipe, top to bottom: data -> SSL -> k-fold fine-tuning -> final model.

Everything lands in one run folder: config.json, train.log, metrics.json, timing.json,
plots, per-fold results, resumable checkpoints and `final_model.pt` for export.
A run interrupted at any point continues with `edgeecg train --resume RUN_DIR`
and loses at most the epoch in progress.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

import edgeecg
from edgeecg.atomic import write_text
from edgeecg.backends import softmax
from edgeecg.errors import EdgeECGError
from edgeecg.metrics import (aggregate_folds, brier_score, classification_metrics, expected_calibration_error,
                             fit_temperature, format_summary)

from . import distributed
from .checkpoint import FINAL_MODEL, save_checkpoint
from .config import TrainConfig, parse_unfreeze
from .data import ImageTable, group_kfold, load_table, one_per_group
from .finetune import fit
from .loops import device_name, pick_device, seed_everything
from .modality import modality_for
from .plots import plot_confusion, plot_training_curves
from .run_folder import Run
from .ssl import pretrain


def limit_groups(table: ImageTable, per_class: int, seed: int) -> ImageTable:
    """Keep at most `per_class` duplicate groups per class (all their files), chosen with `seed`."""
    rng = np.random.default_rng(seed)
    keep_groups: set[int] = set()
    for c in range(len(table.classes)):
        groups = np.unique(table.groups[table.labels == c])
        keep_groups.update(rng.permutation(groups)[:per_class].tolist())
    return table.subset(np.nonzero(np.isin(table.groups, list(keep_groups)))[0])


def calibrate(folds: list[dict]) -> dict:
    """Temperature scaling on out-of-fold validation logits.

    Each fold's after-scaling ECE/Brier uses a temperature fitted on the *other*
    folds only, so the improvement reported is not measured on the data it was
    fitted to; the shipped temperature is then fitted on all folds.
    """
    logits = [np.asarray(f["validation_logits"]) for f in folds]
    labels = [np.asarray(f["validation_labels"]) for f in folds]
    before, after = [], []
    for k in range(len(folds)):
        rest = [i for i in range(len(folds)) if i != k]
        t = fit_temperature(np.concatenate([logits[i] for i in rest]), np.concatenate([labels[i] for i in rest]))
        for scores, temperature in ((before, 1.0), (after, t)):
            probs = softmax(logits[k], temperature)
            scores.append((expected_calibration_error(probs, labels[k]), brier_score(probs, labels[k])))
    temperature = fit_temperature(np.concatenate(logits), np.concatenate(labels))
    return {"temperature": temperature, "method": "temperature scaling, cross-fitted over folds",
            "ece_before": float(np.mean([b[0] for b in before])), "ece_after": float(np.mean([a[0] for a in after])),
            "brier_before": float(np.mean([b[1] for b in before])),
            "brier_after": float(np.mean([a[1] for a in after]))}


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) the whole recipe; returns the run folder."""
    distributed.check_batch_split({"--batch": cfg.batch, **({"--ssl-batch": cfg.ssl_batch} if cfg.ssl else {})})
    distributed.barrier()  # under DDP: every rank has passed its checks before rank 0 writes anything
    run = Run(cfg)
    if run.main:
        cfg.save(run.dir / "config.json")
    started = time.perf_counter()
    device = distributed.rank_device(pick_device(cfg.device))
    torch.set_float32_matmul_precision("high")
    seed_everything(cfg.seed)
    modality = modality_for(cfg)
    with run.progress:
        run.log(f"edgeecg {edgeecg.__version__} | device {device} | run folder {run.dir} | {modality.name} branch")
        table = load_table(cfg.data, cfg.exclude, workers=max(1, cfg.workers))
        if cfg.max_per_class:
            table = limit_groups(table, cfg.max_per_class, cfg.seed)
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
        schedule = parse_unfreeze(cfg.unfreeze)
        distinct = one_per_group(table)

        def train_index(idx: np.ndarray) -> np.ndarray:
            return idx[np.isin(idx, distinct)] if cfg.dedup_train else idx

        ssl_weights, ssl_seconds, ssl_history = None, 0.0, []
        if cfg.ssl:
            model = modality.fresh_model(n_classes).to(device)
            ssl_history, ssl_seconds = pretrain(model, images[train_index(np.arange(len(table)))], cfg, device,
                                                run.dir / "checkpoints" / "ssl_last.pt", run.log, run.progress)
            ssl_weights = {k: v.cpu() for k, v in model.state_dict().items()}
            if ssl_history and run.main:
                plot_training_curves(ssl_history, run.dir / "ssl_curve.png", "SSL pretraining loss")

        def fresh_model():
            return modality.fresh_model(n_classes, ssl_weights).to(device)

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
            fitted = fit(fresh_model(), images[tr], table.labels[tr], cfg, schedule, device,
                         run.dir / "checkpoints" / f"fold{k}_last.pt", run.log, run.progress, f"Fold {k}",
                         images[va], table.labels[va], modality=modality)
            if not run.main:  # rank 0 evaluates and reports; the others only need the best epoch
                folds.append({"best_epoch": fitted.best_epoch})
                continue
            tick = time.perf_counter()
            logits = modality.predict(fitted.model, images[va], device)
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
            plot_training_curves(fitted.history, run.dir / f"fold{k}_curves.png", f"Fine-tuning, fold {k}")
            run.write_json(f"folds/fold{k}.json", fold)
            folds.append(fold)
            run.log(f"fold {k}: accuracy {fold['metrics']['accuracy']:.4f}, "
                    f"macro-F1 {fold['metrics']['f1_macro']:.4f} (best epoch {fitted.best_epoch})")

        final_epochs = cfg.final_epochs or int(np.median([f["best_epoch"] for f in folds]))
        all_train = train_index(np.arange(len(table)))

        def fit_final():
            run.log(f"final model: {len(all_train)} images, {final_epochs} epochs (median best epoch over folds)")
            return fit(fresh_model(), images[all_train], table.labels[all_train], cfg, schedule, device,
                       run.dir / "checkpoints" / "final_last.pt", run.log, run.progress, "Final", epochs=final_epochs,
                       modality=modality)

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
                f"{calibration['ece_after']:.4f}, Brier {calibration['brier_before']:.4f} -> "
                f"{calibration['brier_after']:.4f} (cross-fitted over folds)")

        final = fit_final()
        plot_training_curves(final.history, run.dir / "final_curves.png", "Final model (all training data)")
        contract = modality.contract(
            table.classes, model_version=f"{edgeecg.__version__}+{run.dir.name}",
            temperature=calibration["temperature"], train_manifest_sha256=table.subset(all_train).manifest_sha256(),
            extra={"cv_accuracy_mean": summary["accuracy"]["mean"], "cv_folds": cfg.folds},
        )
        save_checkpoint(run.dir / FINAL_MODEL, {
            "model_config": modality.model_config(n_classes).to_dict(), "state_dict": {k: v.cpu() for k, v in final.model.state_dict().items()},
            "contract": contract.__dict__, "train_config": cfg.__dict__})

        cv_seconds = sum(f["training_seconds"] + f["evaluation_seconds"] for f in folds)
        total = time.perf_counter() - started
        timing = {
            "fold_training_time_seconds": [f["training_seconds"] for f in folds],
            "average_epoch_time_seconds": float(np.mean([f["average_epoch_seconds"] for f in folds])),
            "total_cv_time_seconds": cv_seconds,
            "evaluation_time_seconds": sum(f["evaluation_seconds"] for f in folds),
            "ssl_time_seconds": ssl_seconds,
            "ssl_average_epoch_time_seconds": ssl_seconds / max(len(ssl_history), 1),
            "final_model_training_seconds": final.seconds,
            "summary": {"ssl_time_seconds": ssl_seconds, "cv_time_seconds": cv_seconds,
                        "total_time_seconds": total, "average_time_per_fold_seconds": cv_seconds / len(folds),
                        "this_session_wall_seconds": total},
            "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        run.write_json("timing.json", timing)
        run.write_json("metrics.json", {
            "data": {"source": cfg.data, "images": len(table), "duplicate_groups": table.n_groups,
                     "classes": table.classes, "train_manifest_sha256": contract.train_manifest_sha256},
            "mean_std": summary, "mean_std_distinct_images": summary_distinct, "calibration": calibration,
            "folds": [{k: v for k, v in f.items() if k not in ("validation_logits", "validation_labels")}
                      for f in folds],
            "ssl_history": ssl_history, "timing": timing,
        })
        run.log(f"SSL time {ssl_seconds:.1f}s | CV time {cv_seconds:.1f}s | total {total:.1f}s | "
                f"average per fold {cv_seconds / len(folds):.1f}s")
        run.log(f"wrote {run.dir / 'metrics.json'} and {run.dir / FINAL_MODEL}")
    return run.dir


def resume(run_dir: Path) -> Path:
    """Continue an interrupted run with the configuration it was started with."""
    config = Path(run_dir) / "config.json"
    cfg = distributed.from_main(lambda: TrainConfig.load(config) if config.is_file() else None)
    if cfg is None:
        raise EdgeECGError(f"{run_dir}: not a run folder (no config.json)")
    cfg.out = str(run_dir)
    return dispatch(cfg)


def dispatch(cfg: TrainConfig) -> Path:
    """The recipe `cfg` names: a labelled folder (image or signal branch), PTB-XL renders or PTB-XL signals."""
    if cfg.dataset == "ptbxl" and cfg.modality == "signal":
        from .ptbxl_signal import run_ptbxl_signal

        return run_ptbxl_signal(cfg)
    if cfg.dataset == "ptbxl":
        from .ptbxl_train import run_ptbxl

        return run_ptbxl(cfg)
    return train(cfg)

