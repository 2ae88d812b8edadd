"""The run folder every training recipe writes: config, log, JSON reports, checkpoints.

Its own module, below `recipe`, so every recipe and the reports that read a
run folder (`signal_eval`) share it without importing a recipe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgeecg.atomic import write_text

from . import distributed
from .config import TrainConfig


class Run:
    """One run folder and its log; under DDP only rank 0 (`main`) prints or writes."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.dir = Path(cfg.out)
        self.main = distributed.is_main()
        if self.main:
            (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.dir / "folds").mkdir(exist_ok=True)
        self.console = Console(stderr=True, quiet=not self.main)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=self.console, transient=True)

    def log(self, message: str) -> None:
        if not self.main:
            return
        self.progress.console.print(message, highlight=False, soft_wrap=True)
        with open(self.dir / "train.log", "a") as fh:
            fh.write(message + "\n")

    def write_json(self, name: str, data: dict) -> None:
        if self.main:
            write_text(self.dir / name, json.dumps(data, indent=2, default=jsonable))


def jsonable(value: Any) -> Any:
    """json.dumps' `default`: numpy scalars and arrays, which metrics and fold results hold, as plain values."""
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
