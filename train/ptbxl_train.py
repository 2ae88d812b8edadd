"""Dataset III: SimCardioNet on rendered PTB-XL printouts (multi-label, the 5 diagnostic superclasses).

PTB-XL ships signals, not images, so every record is drawn once as a 12-lead
printout (`edgeecg.render`, seeded per ecg_id) and cropped through the
runtime's own `edgeecg.preprocess.crop_and_resize`: the model is trained on
exactly the crops `edgeecg infer` will make. Then SSL on the training folds
(labels unused), fine-tuning with sigmoid + BCE and early stopping on the
validation fold's macro AUC-ROC, temperature scaling on the validation logits,
and one evaluation on the held-out test fold.

Renders (documented in the run's metrics.json under data.render):
- training records: half of them (chosen by the record's seed) photo-like
  (`RenderOptions.photo()`: rotation, perspective, creases, blur, noise, JPEG,
  lighting, grid colour, pen marks), the rest clean;
- validation and test records: clean, as `edgeecg render` draws them by default.
  The test fold is scored a second time on photo-like renders (`test_photo`).
When the cropper finds no grid in a photo-like training render, the clean
render of that record is used instead (the runtime cannot use a ground-truth
quad, so the model never trains on crops it could not make); a record whose
clean render is not cropped either is left out. Both are counted and logged.

Split, record caps and evaluation: `ptbxl_split` (shared with the signal recipe).

Loss: plain BCE, as in the PTB-XL benchmark, unless `--class-weights` is given.
The presets' class weighting becomes BCE's pos_weight (negatives/positives per
class), which moves every class towards a 50 % prior: rare classes win the
argmax, the 0.5 threshold over-fires and one shared temperature cannot undo it.
Measured on the shared subset with the edge preset: validation single-label
accuracy 0.03 and the temperature fit at its bound of 100 with pos_weight;
0.55 and T = 1.6 without it (README.md, "PTB-XL printouts").

Crops are cached by (ecg_id, render seed, render options and renderer source,
preprocess fingerprint, the contract's preprocessing key), so a second run renders nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from edgeecg.crop import NoGridFound
from edgeecg.errors import EdgeECGError
from edgeecg.preprocess import crop_and_resize
from edgeecg.render import RenderOptions, RenderResult, record_seed, render_printout, renderer_sources

from . import ptbxl
from .config import TrainConfig
from .data import crop_cache
from .modality import image_contract
from .ptbxl_split import (CLASSES, evaluate, finish_split, finite, load_split, records_sha256, split_contract,
                          write_splits)
from .recipe import pretrain_weights, start

TRAIN_PHOTO_FRACTION = 0.5  # share of training records rendered photo-like


# --- rendering and cropping -------------------------------------------------------------------

@dataclass
class RenderedSplit:
    """Cropped renders of one split: `images` N x S x S x 3 uint8, `rows` the records kept (same order)."""

    images: np.ndarray
    rows: pd.DataFrame
    photo: int  # photo-like renders used
    photo_fell_back: int  # photo-like renders the cropper missed (clean render used instead)
    dropped: list[int]  # ecg_ids left out: no grid found even on the clean render

    @property
    def labels(self) -> np.ndarray:
        return ptbxl.multi_hot(self.rows)

    def summary(self) -> dict:
        return {"records": len(self.rows), "photo_renders": self.photo,
                "photo_not_cropped_clean_used": self.photo_fell_back, "not_cropped_left_out": self.dropped,
                "positives": {c: int(self.rows[c].sum()) for c in CLASSES}}


def render_record(row: pd.Series, signal: ptbxl.Signal, photo: bool, seed: int) -> RenderResult:
    """A record's printout: photo-like or clean, with the patient header (no diagnosis on it)."""
    options = RenderOptions.photo() if photo else RenderOptions()
    return render_printout(signal.mv, signal.fs, options, header=ptbxl.printout_header(row, signal.fs), seed=seed)


def _render_key(photo: bool) -> str:
    """Identifies the render options and the renderer's own code, for the crop cache."""
    digest = hashlib.sha256(repr(RenderOptions.photo() if photo else RenderOptions()).encode())
    for source in renderer_sources():
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def is_photo_record(seed: int) -> bool:
    """Whether a training record is rendered photo-like: drawn from its own seed, so stable across runs."""
    return bool(np.random.default_rng([seed, 1]).random() < TRAIN_PHOTO_FRACTION)


def render_split(root: str | Path, rows: pd.DataFrame, cfg: TrainConfig, photo: str, progress=None) -> RenderedSplit:
    """Render (or read from the cache) and crop every record; `photo` is 'never', 'some' or 'always'."""
    folder = crop_cache(image_contract(cfg, CLASSES), "ptbxl-")
    keys = {True: _render_key(True), False: _render_key(False)}

    def crop(ecg_id: int, row: pd.Series, signal_cache: list, seed: int, distorted: bool) -> np.ndarray | None:
        cached = folder / f"{ecg_id:05d}-{seed}-{keys[distorted]}.png"
        missed = cached.with_suffix(".nogrid")
        if missed.is_file():
            return None
        if cached.is_file():
            image = cv2.imread(str(cached), cv2.IMREAD_COLOR)
            if image is not None and image.shape[:2] == (cfg.input_size, cfg.input_size):
                return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if not signal_cache:
            signal_cache.append(ptbxl.read_signal(root, row))
        render = render_record(row, signal_cache[0], distorted, seed)
        try:
            rgb, _ = crop_and_resize(render.image, cfg.input_size, cfg.crop, cfg.crop_margin)
        except NoGridFound:
            missed.touch()
            return None
        tmp = folder / f".{cached.stem}.{os.getpid()}.{threading.get_ident()}.png"
        cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        os.replace(tmp, cached)
        return rgb

    def one(item: tuple[int, pd.Series]) -> tuple[np.ndarray | None, bool, bool]:
        ecg_id, row = int(item[0]), item[1]
        seed = record_seed(cfg.seed, ecg_id)
        distorted = photo == "always" or (photo == "some" and is_photo_record(seed))
        signal_cache: list = []
        rgb = crop(ecg_id, row, signal_cache, seed, distorted)
        fell_back = rgb is None and distorted and photo == "some"
        if fell_back:
            rgb = crop(ecg_id, row, signal_cache, seed, False)
        return rgb, distorted, fell_back

    images, kept, dropped, n_photo, n_fell_back = [], [], [], 0, 0
    with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
        for (ecg_id, _), (rgb, distorted, fell_back) in zip(rows.iterrows(), pool.map(one, rows.iterrows())):
            n_photo += distorted
            n_fell_back += fell_back
            if rgb is None:
                dropped.append(int(ecg_id))
            else:
                images.append(rgb)
                kept.append(ecg_id)
            if progress is not None:
                progress()
    stack = np.stack(images) if images else np.zeros((0, cfg.input_size, cfg.input_size, 3), np.uint8)
    return RenderedSplit(stack, rows.loc[kept], n_photo, n_fell_back, dropped)


def training_manifest_sha256(rows: pd.DataFrame) -> str:
    """Hash of the (ecg_id, superclasses) training list plus the render settings: what the model saw."""
    return records_sha256(rows, f"render:{_render_key(True)},{_render_key(False)},{TRAIN_PHOTO_FRACTION}")


# --- the run ----------------------------------------------------------------------------------

# (set, the split's part it draws, which of its records are rendered photo-like)
RENDERS = (("train", "train", "some"), ("validation", "val", "never"), ("test", "test", "never"),
           ("test_photo", "test", "always"))


def run_ptbxl(cfg: TrainConfig) -> Path:
    """Render -> SSL on the training folds -> fine-tune (validation fold) -> evaluate on the test fold."""
    with start(cfg, "PTB-XL images") as session:
        run = session.run
        folds, split = load_split(session)
        tick = time.perf_counter()
        rendered = {}
        for name, part, photo in RENDERS:
            rows = getattr(split, part)
            task = run.progress.add_task(f"rendering {name}", total=len(rows))
            done = rendered[name] = render_split(cfg.data, rows, cfg, photo, lambda: run.progress.advance(task))
            run.progress.remove_task(task)
            run.log(f"{name}: {len(done.rows)} renders cropped ({done.photo} photo-like, "
                    f"{done.photo_fell_back} of them not cropped so clean used, {len(done.dropped)} left out: "
                    f"no grid found)")
        render_seconds = time.perf_counter() - tick
        run.log(f"rendering and cropping: {render_seconds:.1f}s")
        train_set, val_set = rendered["train"], rendered["validation"]
        if not all(len(rendered[name].rows) for name in ("train", "validation", "test")):
            raise EdgeECGError("the cropper found no grid on every render of a split; nothing to train or test on")
        write_splits(run, folds, {name: part.rows for name, part in rendered.items()})

        ssl = pretrain_weights(session, train_set.images, len(CLASSES), "SSL pretraining loss (PTB-XL renders)")
        fitted = session.fit(len(CLASSES), ssl.weights, train_set.images, train_set.labels, val_set.images,
                             val_set.labels, name="finetune", tag="PTB-XL", title="Fine-tuning on PTB-XL renders")
        temperature, results, eval_seconds = evaluate(session, fitted.model, {
            name: (part.images, part.labels) for name, part in rendered.items() if name != "train" and len(part.rows)})

        test = results["test"]
        contract = split_contract(
            session, folds, temperature, test, f"simcardionet-ptbxl-{cfg.trunk}",
            "PTB-XL superclasses (rendered printouts)", training_manifest_sha256(train_set.rows),
            test_single_label_accuracy=finite(test["single_label"]["accuracy"]))
        finish_split(
            session, folds, fitted, contract, eval_seconds,
            data={"render": {"train": f"{TRAIN_PHOTO_FRACTION:.0%} photo-like (RenderOptions.photo), rest clean",
                             "validation": "clean", "test": "clean", "test_photo": "photo-like (RenderOptions.photo)",
                             "seed": "edgeecg.render.record_seed(seed, ecg_id)"},
                  "splits": {name: part.summary() for name, part in rendered.items()},
                  "train_manifest_sha256": contract.train_manifest_sha256},
            reports={"test": test, "test_photo": results.get("test_photo"), "validation": results["validation"],
                     "ssl_history": ssl.history},
            timing={"render_and_crop_seconds": render_seconds, **ssl.timing()},
            summary=f"render {render_seconds:.1f}s | SSL {ssl.seconds:.1f}s | ")
    return run.dir
