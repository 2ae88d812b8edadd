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

Split: PTB-XL's `strat_fold` (patient-disjoint). Data with fold 10 (the full
release) uses the standard train 1-8 / validation 9 / test 10; data without it
(the shared subset, folds 1-9) uses 1-7 / 8 / 9. Set EDGEECG_PTBXL_SPLIT to
override, e.g. `EDGEECG_PTBXL_SPLIT=1-8/9/10` (train/validation/test; commas or
ranges in each part). `--max-per-class N` keeps, in each split, records until
every superclass has N positives (or all there are); 0 keeps everything.
`--folds`, `--dedup-train` and `--final-epochs` do not apply: the validation
fold picks the best epoch, and that model is the final one.

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
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

import edgeecg
from edgeecg.backends import sigmoid
from edgeecg.contract import IMAGENET_MEAN, IMAGENET_STD
from edgeecg.crop import NoGridFound
from edgeecg.errors import EdgeECGError
from edgeecg.metrics import fit_temperature, multilabel_metrics
from edgeecg.preprocess import crop_and_resize
from edgeecg.render import RenderOptions, RenderResult, record_seed, render_printout, renderer_sources

from . import ptbxl
from .checkpoint import FINAL_MODEL, save_checkpoint
from .config import TrainConfig, parse_unfreeze, preset_config
from .data import crop_cache
from .finetune import fit
from .loops import pick_device, predict_logits, seed_everything
from .modality import image_contract, model_config
from .model import build_model
from .plots import plot_training_curves
from .run_folder import Run
from .ssl import pretrain

SPLIT_ENV = "EDGEECG_PTBXL_SPLIT"
STANDARD_SPLIT = ((1, 2, 3, 4, 5, 6, 7, 8), (9,), (10,))  # the PTB-XL paper's recommended split
SUBSET_SPLIT = (ptbxl.DEFAULT_TRAIN_FOLDS, ptbxl.DEFAULT_VAL_FOLDS, ptbxl.DEFAULT_TEST_FOLDS)
TRAIN_PHOTO_FRACTION = 0.5  # share of training records rendered photo-like
CLASSES = list(ptbxl.SUPERCLASSES)


# --- split and record selection ---------------------------------------------------------------

def parse_split(text: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
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


def choose_split(df: pd.DataFrame) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
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


def record_lines(rows: pd.DataFrame) -> list[str]:
    """The sorted (ecg_id, superclasses) list that identifies a training set."""
    return sorted(f"ptbxl:{int(i)},{'|'.join(r['superclasses'])}" for i, r in rows.iterrows())


def training_manifest_sha256(rows: pd.DataFrame) -> str:
    """Hash of the (ecg_id, superclasses) training list plus the render settings: what the model saw."""
    lines = record_lines(rows)
    lines.append(f"render:{_render_key(True)},{_render_key(False)},{TRAIN_PHOTO_FRACTION}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --- the run ----------------------------------------------------------------------------------

def ptbxl_config(preset: str, options: dict) -> TrainConfig:
    """TrainConfig from the CLI's raw options (as for image folders), for `--dataset ptbxl`."""
    options = dict(options)
    if not options.get("data"):
        raise EdgeECGError("--data is required (the PTB-XL folder holding ptbxl_database.csv)")
    if options.pop("exclude", None):
        raise EdgeECGError("--exclude applies to image folders; PTB-XL splits by strat_fold")
    if options.get("class_weights") is None:
        options["class_weights"] = False  # plain BCE unless asked for (module docstring)
    out = Path(options.get("out") or f"runs/ptbxl-{preset}")
    if (out / "config.json").exists():
        raise EdgeECGError(f"{out} already holds a run; choose another --out")
    options.update(out=str(out), dataset="ptbxl")
    try:
        return preset_config(preset, **options)
    except (TypeError, ValueError) as exc:
        raise EdgeECGError(str(exc)) from None


def train_ptbxl(preset: str, options: dict) -> Path:
    """`edgeecg train --dataset ptbxl`: build the configuration, run (renders or signals), return the run folder."""
    from .run import dispatch

    return dispatch(ptbxl_config(preset, options))


def _finite(value: float) -> float | None:
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


def log_results(log, temperature: float, results: dict[str, dict]) -> None:
    """The temperature and every evaluated split's metrics, into the run log."""
    log(f"temperature scaling on validation logits (sigmoid, shared T): T = {temperature:.3f}")
    for name, metrics in results.items():
        for line in _metrics_lines(name, metrics):
            log(line)


def run_ptbxl(cfg: TrainConfig) -> Path:
    """Render -> SSL on the training folds -> fine-tune (validation fold) -> evaluate on the test fold."""
    run = Run(cfg)
    cfg.save(run.dir / "config.json")
    started = time.perf_counter()
    device = pick_device(cfg.device)
    torch.set_float32_matmul_precision("high")
    seed_everything(cfg.seed)
    with run.progress:
        run.log(f"edgeecg {edgeecg.__version__} | device {device} | run folder {run.dir} | PTB-XL images")
        table = ptbxl.load_ptbxl(cfg.data)
        train_folds, val_folds, test_folds = choose_split(table)
        split = ptbxl.split_records(table, train_folds, val_folds, test_folds)
        capped = ptbxl.Split(*(cap_records(part, cfg.max_per_class, cfg.seed) for part in split))
        if cfg.max_per_class:
            run.log(f"--max-per-class {cfg.max_per_class}: records kept until each superclass has that many "
                    f"positives per split")
        for name, part in zip(("training", "validation", "test"), capped):
            if part.empty:
                raise EdgeECGError(f"the {name} split holds no records with a diagnostic superclass")
        run.log(f"strat_fold split: train {list(train_folds)} ({len(capped.train)} records), validation "
                f"{list(val_folds)} ({len(capped.val)}), test {list(test_folds)} ({len(capped.test)})")

        tick = time.perf_counter()
        rendered = {}
        for name, rows, photo in (("train", capped.train, "some"), ("validation", capped.val, "never"),
                                  ("test", capped.test, "never"), ("test_photo", capped.test, "always")):
            task = run.progress.add_task(f"rendering {name}", total=len(rows))
            rendered[name] = render_split(cfg.data, rows, cfg, photo, lambda: run.progress.advance(task))
            run.progress.remove_task(task)
            done = rendered[name]
            run.log(f"{name}: {len(done.rows)} renders cropped ({done.photo} photo-like, "
                    f"{done.photo_fell_back} of them not cropped so clean used, {len(done.dropped)} left out: "
                    f"no grid found)")
        render_seconds = time.perf_counter() - tick
        run.log(f"rendering and cropping: {render_seconds:.1f}s")
        train_set, val_set, test_set = rendered["train"], rendered["validation"], rendered["test"]
        if not len(train_set.rows) or not len(val_set.rows) or not len(test_set.rows):
            raise EdgeECGError("the cropper found no grid on every render of a split; nothing to train or test on")
        ecg_ids = {name: [int(i) for i in part.rows.index] for name, part in rendered.items()}
        run.write_json("splits.json", {"folds": {"train": train_folds, "validation": val_folds, "test": test_folds},
                                       "ecg_ids": ecg_ids})

        mcfg = model_config(cfg, len(CLASSES))
        ssl_weights, ssl_seconds, ssl_history = None, 0.0, []
        if cfg.ssl:
            model = build_model(mcfg, pretrained=cfg.pretrained).to(device)
            ssl_history, ssl_seconds = pretrain(model, train_set.images, cfg, device,
                                                run.dir / "checkpoints" / "ssl_last.pt", run.log, run.progress)
            ssl_weights = {k: v.cpu() for k, v in model.state_dict().items()}
            if ssl_history:
                plot_training_curves(ssl_history, run.dir / "ssl_curve.png", "SSL pretraining loss (PTB-XL renders)")
        model = build_model(mcfg, pretrained=cfg.pretrained and ssl_weights is None)
        if ssl_weights is not None:
            model.load_state_dict(ssl_weights)
        fitted = fit(model.to(device), train_set.images, train_set.labels, cfg, parse_unfreeze(cfg.unfreeze), device,
                     run.dir / "checkpoints" / "finetune_last.pt", run.log, run.progress, "PTB-XL",
                     val_set.images, val_set.labels)
        plot_training_curves(fitted.history, run.dir / "finetune_curves.png", "Fine-tuning on PTB-XL renders")

        val_logits = predict_logits(fitted.model, val_set.images, IMAGENET_MEAN, IMAGENET_STD, device)
        temperature = fit_temperature(val_logits, val_set.labels, task="multilabel")
        tick = time.perf_counter()
        results = {}
        for name in ("validation", "test", "test_photo"):
            part = rendered[name]
            logits = val_logits if name == "validation" else predict_logits(
                fitted.model, part.images, IMAGENET_MEAN, IMAGENET_STD, device)
            if len(part.rows):
                results[name] = multilabel_metrics(part.labels, sigmoid(logits, temperature), CLASSES)
        eval_seconds = time.perf_counter() - tick
        log_results(run.log, temperature, results)

        test = results["test"]
        contract = image_contract(
            cfg, CLASSES, task="multilabel", temperature=temperature, name=f"simcardionet-ptbxl-{cfg.trunk}",
            model_version=f"{edgeecg.__version__}+{run.dir.name}",
            train_manifest_sha256=training_manifest_sha256(train_set.rows),
            extra={"dataset": "PTB-XL superclasses (rendered printouts)",
                   "strat_folds": {"train": list(train_folds), "validation": list(val_folds), "test": list(test_folds)},
                   "test_records": test["n_samples"], "test_auc_roc_macro": _finite(test["auc_roc_macro"]),
                   "test_single_label_accuracy": _finite(test["single_label"]["accuracy"])},
        )
        save_checkpoint(run.dir / FINAL_MODEL, {
            "model_config": mcfg.to_dict(), "state_dict": {k: v.cpu() for k, v in fitted.model.state_dict().items()},
            "contract": contract.__dict__, "train_config": cfg.__dict__})

        total = time.perf_counter() - started
        timing = {"render_and_crop_seconds": render_seconds, "ssl_time_seconds": ssl_seconds,
                  "ssl_average_epoch_time_seconds": ssl_seconds / max(len(ssl_history), 1),
                  "finetune_seconds": fitted.seconds, "average_epoch_time_seconds": fitted.seconds / max(fitted.epochs_run, 1),
                  "evaluation_time_seconds": eval_seconds, "total_time_seconds": total,
                  "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
        run.write_json("timing.json", timing)
        run.write_json("metrics.json", {
            "data": {"source": cfg.data, "dataset": "ptbxl", "classes": CLASSES,
                     "strat_folds": {"train": train_folds, "validation": val_folds, "test": test_folds},
                     "max_per_class": cfg.max_per_class,
                     "render": {"train": f"{TRAIN_PHOTO_FRACTION:.0%} photo-like (RenderOptions.photo), rest clean",
                                "validation": "clean", "test": "clean", "test_photo": "photo-like (RenderOptions.photo)",
                                "seed": "edgeecg.render.record_seed(seed, ecg_id)"},
                     "splits": {name: part.summary() for name, part in rendered.items()},
                     "train_manifest_sha256": contract.train_manifest_sha256},
            "test": test, "test_photo": results.get("test_photo"), "validation": results["validation"],
            "calibration": {"temperature": temperature, "method": "temperature scaling (shared T, sigmoid BCE) "
                            "fitted on the validation fold; test metrics use it"},
            "best_epoch": fitted.best_epoch, "epochs_run": fitted.epochs_run, "history": fitted.history,
            "ssl_history": ssl_history, "timing": timing,
        })
        run.log(f"render {render_seconds:.1f}s | SSL {ssl_seconds:.1f}s | fine-tuning {fitted.seconds:.1f}s "
                f"(best epoch {fitted.best_epoch}) | total {total:.1f}s")
        run.log(f"wrote {run.dir / 'metrics.json'} and {run.dir / FINAL_MODEL}")
    return run.dir
