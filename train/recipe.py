"""The steps every training recipe shares, whatever its dataset and branch.

`edgeecg train` has one recipe and two ways of splitting the data: group k-fold
CV on a labelled folder (`run.train`) and PTB-XL's fixed strat_fold split
(`ptbxl_split`, used by `ptbxl_train` for rendered printouts and `ptbxl_signal`
for recorded signals). Each of them is the same skeleton around its own data
and evaluation, so a run folder looks and resumes the same whichever made it:

    with start(cfg, title) as session:          # run folder + config.json, device, seed, header line
        ssl = pretrain_weights(session, ...)     # SimCLR when cfg.ssl, else nothing
        fitted = session.fit(...)                # fresh model (SSL weights or the modality's start)
        save_final(session, fitted.model, contract)
        finish(session, timing, metrics, summary)  # timing.json, metrics.json, closing log lines
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

import edgeecg
from edgeecg.contract import ModelContract

from . import distributed
from .checkpoint import FINAL_MODEL, save_checkpoint
from .config import TrainConfig, parse_unfreeze
from .finetune import FitResult, fit
from .loops import pick_device, seed_everything
from .modality import ImageModality, modality_for
from .plots import plot_training_curves
from .run_folder import Run
from .signal_modality import SignalModality
from .ssl import pretrain


@dataclass
class Session:
    """One run in progress: its folder and log, device, modality and unfreezing schedule, and when it started."""

    cfg: TrainConfig
    run: Run
    device: torch.device
    modality: ImageModality | SignalModality
    schedule: dict[str, int]
    started: float

    @property
    def model_version(self) -> str:
        """The contract's model_version: the package version and the run folder, so a file names its run."""
        return f"{edgeecg.__version__}+{self.run.dir.name}"

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fit(self, n_classes: int, weights: dict | None, x: np.ndarray, y: np.ndarray, val_x: np.ndarray | None = None,
            val_y: np.ndarray | None = None, *, name: str, tag: str, title: str,
            epochs: int | None = None) -> FitResult:
        """Fine-tune a fresh model (from SSL `weights` if any) on x, y; `tag` heads its log lines.

        Resumable from checkpoints/<name>_last.pt; its curves (`title`) go to <name>_curves.png, so
        every recipe names its files the same way (fold1_*, final_*, finetune_*).
        """
        model = self.modality.fresh_model(n_classes, weights).to(self.device)
        fitted = fit(model, x, y, self.cfg, self.schedule, self.device,
                     self.run.dir / "checkpoints" / f"{name}_last.pt", self.run.log, self.run.progress, tag,
                     val_x, val_y, epochs=epochs, modality=self.modality)
        if self.run.main:
            plot_training_curves(fitted.history, self.run.dir / f"{name}_curves.png", title)
        return fitted


@contextmanager
def start(cfg: TrainConfig, title: str) -> Iterator[Session]:
    """Open a run: folder and config.json first (so `--resume` finds it), then device, seed and header line.

    The unfreezing schedule is parsed here, so a bad `--unfreeze` fails before any training.
    """
    run = Run(cfg)
    if run.main:
        cfg.save(run.dir / "config.json")
    started = time.perf_counter()
    device = distributed.rank_device(pick_device(cfg.device))
    torch.set_float32_matmul_precision("high")
    seed_everything(cfg.seed)
    session = Session(cfg, run, device, modality_for(cfg), parse_unfreeze(cfg.unfreeze), started)
    with run.progress:
        run.log(f"edgeecg {edgeecg.__version__} | device {device} | run folder {run.dir} | {title}")
        yield session


@dataclass
class Pretrained:
    """SSL's outcome: the weights fine-tuning starts from (None: SSL off), its seconds and loss history."""

    weights: dict | None = None
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)

    def timing(self) -> dict:
        return {"ssl_time_seconds": self.seconds,
                "ssl_average_epoch_time_seconds": self.seconds / max(len(self.history), 1)}


def pretrain_weights(session: Session, inputs: np.ndarray, n_classes: int, title: str) -> Pretrained:
    """SimCLR on the training inputs (labels unused) when cfg.ssl; every fine-tuned model starts from its weights."""
    if not session.cfg.ssl:
        return Pretrained()
    model = session.modality.fresh_model(n_classes).to(session.device)
    run = session.run
    history, seconds = pretrain(model, inputs, session.cfg, session.device, run.dir / "checkpoints" / "ssl_last.pt",
                                run.log, run.progress)
    if history and run.main:
        plot_training_curves(history, run.dir / "ssl_curve.png", title)
    return Pretrained({k: v.cpu() for k, v in model.state_dict().items()}, seconds, history)


def save_final(session: Session, model: torch.nn.Module, contract: ModelContract) -> None:
    """final_model.pt: what `edgeecg export` reads (network config, weights, contract, the run's config)."""
    save_checkpoint(session.run.dir / FINAL_MODEL, {
        "model_config": model.config.to_dict(), "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "contract": contract.__dict__, "train_config": session.cfg.__dict__})


def timing_record(device: torch.device) -> dict:
    """What a run's seconds were measured on: the device, torch version and CPU threads."""
    return {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}


def finish(session: Session, timing: dict, metrics: dict, summary: str) -> None:
    """timing.json, metrics.json (with the timing in it) and the run's closing log lines."""
    run = session.run
    run.write_json("timing.json", timing)
    run.write_json("metrics.json", {**metrics, "timing": timing})
    run.log(summary)
    run.log(f"wrote {run.dir / 'metrics.json'} and {run.dir / FINAL_MODEL}")
