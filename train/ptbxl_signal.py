"""PTB-XL from the recorded signals: the signal branch trained on true 12-lead recordings (multi-label superclasses).

Same split discipline as the image run (`ptbxl_split`: strat_fold train 1-7 /
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

from pathlib import Path

import numpy as np
import pandas as pd

from edgeecg.signal_input import SignalSpec, resample

from . import ptbxl
from .config import TrainConfig
from .ptbxl_split import (CLASSES, SPLIT_NAMES, evaluate, finish_split, load_split, records_sha256, split_contract,
                          write_splits)
from .recipe import start
from .signal_data import digitized_renders, masked_copy

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
    with start(cfg, "PTB-XL signals") as session:
        run, spec = session.run, session.modality.spec
        folds, split = load_split(session)
        signals = {name: read_split(cfg.data, rows, spec) for name, rows in zip(SPLIT_NAMES, split)}
        labels = {name: ptbxl.multi_hot(rows) for name, rows in zip(SPLIT_NAMES, split)}
        signals["test_panels"] = masked_copy(signals["test"], spec.rate, cfg.seed)
        labels["test_panels"] = labels["test"]
        test_ids = [int(i) for i in split.test.index]
        for name, photo in (("test_digitized_clean", 0.0), ("test_digitized_photo", 1.0)):
            run.log(f"drawing the test records as pages ({name}) and reading them back")
            signals[name] = digitized_renders(signals["test"], spec.rate, test_ids, cfg.seed, photo)
            labels[name] = labels["test"]
        if cfg.digitized_renders:
            run.log(f"drawing the {len(split.train)} training records as pages and reading them back")
            read_back = digitized_renders(signals["train"], spec.rate, [int(i) for i in split.train.index],
                                          cfg.seed, RENDER_PHOTO_SHARE)
            signals["train"] = np.concatenate([signals["train"], read_back])
            labels["train"] = np.concatenate([labels["train"], labels["train"]])
        write_splits(run, folds, dict(zip(SPLIT_NAMES, split)))

        fitted = session.fit(len(CLASSES), None, signals["train"], labels["train"], signals["validation"],
                             labels["validation"], name="finetune", tag="PTB-XL signals",
                             title="Signal branch on PTB-XL signals")
        temperature, results, eval_seconds = evaluate(
            session, fitted.model, {name: (x, labels[name]) for name, x in signals.items() if name != "train"})

        contract = split_contract(session, folds, temperature, results["test"], "signal-resnet1d-ptbxl",
                                  "PTB-XL superclasses (recorded signals)", records_sha256(split.train))
        finish_split(
            session, folds, fitted, contract, eval_seconds,
            data={"input": "recorded signals", "signal": spec.to_dict(), "train_panel_mask": cfg.panel_mask,
                  "train_strip_misread": cfg.strip_misread,
                  "test_panels": "each test record masked once to a 3x4+1 page's panels (strip = II), seeded",
                  "test_digitized": "each test record drawn once as a page of a random style (random_options, "
                                    "seeded per record; clean, then photo-like) and read back by the digitizer",
                  "train_digitized_renders": cfg.digitized_renders,
                  "records": {name: len(x) for name, x in signals.items()}},
            reports=results, timing={})
    return run.dir
