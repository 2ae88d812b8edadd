"""PTB-XL from the recorded signals: the signal branch trained on true 12-lead recordings (multi-label superclasses).

Same split discipline as the image run (`ptbxl_train`: strat_fold train 1-7 /
validation 8 / test 9 on the shared subset, 1-8 / 9 / 10 on the full release,
EDGEECG_PTBXL_SPLIT to override), BCE with early stopping on the validation
fold's macro AUC, temperature fitted on the validation fold, one evaluation on
the test fold. Training records are panel-masked (`--panel-mask`, a 3x4+1
page's 2.5 s panels) part of the time, so the trunk also knows what the
digitizer hands it; the test fold is scored on the full recordings (`test`)
once more as a correctly read 3x4+1 page would give them (`test_panels`), and
as the runtime reads them from pages of random styles drawn by the renderer,
clean and photo-like (`test_digitized_clean`, `test_digitized_photo`).
`--digitized-renders` also trains on such pages of every training record.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import edgeecg
from edgeecg.backends import sigmoid
from edgeecg.errors import EdgeECGError
from edgeecg.metrics import fit_temperature, multilabel_metrics
from edgeecg.signal_input import SignalSpec, resample

from . import ptbxl
from .checkpoint import FINAL_MODEL, save_checkpoint
from .config import TrainConfig
from .finetune import fit
from .loops import pick_device, seed_everything
from .plots import plot_training_curves
from .ptbxl_train import CLASSES, _finite, cap_records, choose_split, log_results, record_lines
from .run_folder import Run
from .signal_data import digitized_renders, masked_copy
from .signal_modality import SignalModality


RENDER_PHOTO_SHARE = 0.5  # of the training pages drawn for --digitized-renders, this share is photo-like


def read_split(root: str, rows: pd.DataFrame, spec: SignalSpec) -> np.ndarray:
    """(records, spec.length, 12) mV at the model's rate."""
    out = np.empty((len(rows), spec.length, len(ptbxl.LEADS)), np.float32)
    for i, (_, row) in enumerate(rows.iterrows()):
        signal = ptbxl.read_signal(root, row)
        out[i] = resample(signal.mv, signal.fs, spec.rate, spec.length)
    return out


def run_ptbxl_signal(cfg: TrainConfig) -> Path:
    """Read signals -> fine-tune (validation fold) -> temperature -> evaluate on the test fold."""
    run = Run(cfg)
    cfg.save(run.dir / "config.json")
    started = time.perf_counter()
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    modality = SignalModality(cfg)
    with run.progress:
        run.log(f"edgeecg {edgeecg.__version__} | device {device} | run folder {run.dir} | PTB-XL signals")
        table = ptbxl.load_ptbxl(cfg.data)
        folds = choose_split(table)
        split = ptbxl.Split(*(cap_records(part, cfg.max_per_class, cfg.seed)
                              for part in ptbxl.split_records(table, *folds)))
        for name, part in zip(("training", "validation", "test"), split):
            if part.empty:
                raise EdgeECGError(f"the {name} split holds no records with a diagnostic superclass")
        run.log(f"strat_fold split: train {list(folds[0])} ({len(split.train)} records), validation "
                f"{list(folds[1])} ({len(split.val)}), test {list(folds[2])} ({len(split.test)})")
        signals = {name: read_split(cfg.data, rows, modality.spec)
                   for name, rows in (("train", split.train), ("validation", split.val), ("test", split.test))}
        signals["test_panels"] = masked_copy(signals["test"], modality.spec.rate, cfg.seed)
        labels = {"train": ptbxl.multi_hot(split.train), "validation": ptbxl.multi_hot(split.val),
                  "test": ptbxl.multi_hot(split.test), "test_panels": ptbxl.multi_hot(split.test)}
        test_ids = [int(i) for i in split.test.index]
        for name, photo in (("test_digitized_clean", 0.0), ("test_digitized_photo", 1.0)):
            run.log(f"drawing the test records as pages ({name}) and reading them back")
            signals[name] = digitized_renders(signals["test"], modality.spec.rate, test_ids, cfg.seed, photo)
            labels[name] = labels["test"]
        if cfg.digitized_renders:
            run.log(f"drawing the {len(split.train)} training records as pages and reading them back")
            read_back = digitized_renders(signals["train"], modality.spec.rate, [int(i) for i in split.train.index],
                                          cfg.seed, RENDER_PHOTO_SHARE)
            signals["train"] = np.concatenate([signals["train"], read_back])
            labels["train"] = np.concatenate([labels["train"], labels["train"]])
        run.write_json("splits.json", {"folds": dict(zip(("train", "validation", "test"), folds)),
                                       "ecg_ids": {n: [int(i) for i in r.index] for n, r in zip(
                                           ("train", "validation", "test"), split)}})

        model = modality.fresh_model(len(CLASSES)).to(device)
        fitted = fit(model, signals["train"], labels["train"], cfg, {}, device, run.dir / "checkpoints" / "finetune_last.pt",
                     run.log, run.progress, "PTB-XL signals", signals["validation"], labels["validation"],
                     modality=modality)
        plot_training_curves(fitted.history, run.dir / "finetune_curves.png", "Signal branch on PTB-XL signals")

        tick = time.perf_counter()
        logits = {name: modality.predict(fitted.model, x, device) for name, x in signals.items()}
        temperature = fit_temperature(logits["validation"], labels["validation"], task="multilabel")
        results = {name: multilabel_metrics(labels[name], sigmoid(logits[name], temperature), CLASSES)
                   for name in logits if name != "train"}
        eval_seconds = time.perf_counter() - tick
        log_results(run.log, temperature, results)

        test = results["test"]
        manifest = hashlib.sha256("\n".join(record_lines(split.train)).encode())
        contract = modality.contract(
            CLASSES, task="multilabel", temperature=temperature, name="signal-resnet1d-ptbxl",
            model_version=f"{edgeecg.__version__}+{run.dir.name}", train_manifest_sha256=manifest.hexdigest(),
            extra={"dataset": "PTB-XL superclasses (recorded signals)",
                   "strat_folds": dict(zip(("train", "validation", "test"), map(list, folds))),
                   "test_records": test["n_samples"], "test_auc_roc_macro": _finite(test["auc_roc_macro"])})
        save_checkpoint(run.dir / FINAL_MODEL, {
            "model_config": modality.model_config(len(CLASSES)).to_dict(),
            "state_dict": {k: v.cpu() for k, v in fitted.model.state_dict().items()},
            "contract": contract.__dict__, "train_config": cfg.__dict__})

        total = time.perf_counter() - started
        timing = {"finetune_seconds": fitted.seconds, "average_epoch_time_seconds": fitted.seconds / max(fitted.epochs_run, 1),
                  "evaluation_time_seconds": eval_seconds, "total_time_seconds": total, "device": str(device),
                  "torch": torch.__version__, "threads": torch.get_num_threads()}
        run.write_json("timing.json", timing)
        run.write_json("metrics.json", {
            "data": {"source": cfg.data, "dataset": "ptbxl", "input": "recorded signals", "classes": CLASSES,
                     "strat_folds": dict(zip(("train", "validation", "test"), folds)), "max_per_class": cfg.max_per_class,
                     "signal": modality.spec.to_dict(), "train_panel_mask": cfg.panel_mask,
                     "train_strip_misread": cfg.strip_misread,
                     "test_panels": "each test record masked once to a 3x4+1 page's panels (strip = II), seeded",
                     "test_digitized": "each test record drawn once as a page of a random style (random_options, "
                                       "seeded per record; clean, then photo-like) and read back by the digitizer",
                     "train_digitized_renders": cfg.digitized_renders,
                     "records": {name: len(x) for name, x in signals.items()}},
            **results,
            "calibration": {"temperature": temperature, "method": "temperature scaling (shared T, sigmoid BCE) "
                            "fitted on the validation fold; test metrics use it"},
            "best_epoch": fitted.best_epoch, "epochs_run": fitted.epochs_run, "history": fitted.history,
            "timing": timing,
        })
        run.log(f"fine-tuning {fitted.seconds:.1f}s (best epoch {fitted.best_epoch}) | total {total:.1f}s")
        run.log(f"wrote {run.dir / 'metrics.json'} and {run.dir / FINAL_MODEL}")
    return run.dir
