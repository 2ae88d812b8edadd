"""The signal branch as a training modality: digitized pages (Mendeley) or raw recordings (PTB-XL) -> 1-D ResNet.

`--init-from RUN` starts the trunk from another signal run (PTB-XL pretraining);
the classifier is always new, since the classes differ.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.signal_input import SignalSpec
from edgeecg.signal_runtime import digitizer_settings

from .checkpoint import load_checkpoint
from .config import TrainConfig
from .data import ImageTable
from .signal_data import SignalDataset, load_digitized, predict_signal_logits
from .signal_model import SIGNAL_PARTS, SignalNetConfig, build_signal_model, load_trunk


def check_signal_config(cfg: TrainConfig) -> None:
    """Refuse image-only settings that would silently do nothing."""
    if cfg.ssl:
        raise EdgeECGError("--ssl is for the image branch; use --no-ssl with --modality signal")
    if cfg.unfreeze:
        raise EdgeECGError("--unfreeze is for the image branch; use --unfreeze '' with --modality signal")


class SignalModality:
    """12 leads at `spec.rate` for `spec.seconds`, NaN -> 0 plus masks (edgeecg.signal_input)."""

    name = "signal"
    loading = "digitizing"
    parts = SIGNAL_PARTS

    def __init__(self, cfg: TrainConfig):
        check_signal_config(cfg)
        self.cfg = cfg
        self.spec = SignalSpec(cfg.signal_rate, cfg.signal_seconds, cfg.signal_norm)
        self.init_state = load_checkpoint(cfg.init_from)["state_dict"] if cfg.init_from else None

    def inputs(self, table: ImageTable, advance, log) -> np.ndarray:
        signals, summaries = load_digitized(table, self.spec, max(1, self.cfg.workers), advance)
        failed = sum("error" in s for s in summaries)
        layouts = Counter(s.get("layout", "unread") for s in summaries)
        partial = sum(bool(s.get("partial")) for s in summaries)
        log(f"digitized {len(summaries)} pages: layouts {dict(layouts)}, {partial} partial, "
            f"{failed} unreadable (all-masked input)")
        return signals

    def model_config(self, n_classes: int) -> SignalNetConfig:
        cfg = self.cfg
        return SignalNetConfig(num_classes=n_classes, in_channels=self.spec.channels, width=cfg.signal_width,
                               depth=cfg.signal_depth, kernel=cfg.signal_kernel, dropout=cfg.signal_dropout)

    def fresh_model(self, n_classes: int, weights: dict | None = None) -> torch.nn.Module:
        """A new network; its trunk from `--init-from` when given."""
        model = build_signal_model(self.model_config(n_classes))
        if self.init_state is not None:
            try:
                load_trunk(model, self.init_state)
            except RuntimeError as exc:
                raise EdgeECGError(f"--init-from {self.cfg.init_from}: its trunk does not fit this model "
                                   f"(--signal-width/--signal-depth/--signal-kernel must match): {exc}") from None
        return model

    def train_dataset(self, x: np.ndarray, y: np.ndarray) -> Dataset:
        mask_p = self.cfg.panel_mask if self.cfg.dataset == "ptbxl" else 0.0  # digitized pages are masked already
        return SignalDataset(x, y, self.spec, mask_p, self.cfg.strip_misread, self.cfg.signal_aug, self.cfg.seed)

    def predict(self, model: torch.nn.Module, x: np.ndarray, device: torch.device) -> np.ndarray:
        return predict_signal_logits(model, x, self.spec, device)

    def contract(self, classes: list[str], **fields) -> ModelContract:
        extra = {"modality": "signal", "signal": self.spec.to_dict(), "init_from": self.cfg.init_from,
                 **fields.pop("extra", {})}
        if self.cfg.dataset != "ptbxl":
            extra["digitizer"] = digitizer_settings()
        return ModelContract(classes=classes, input_size=self.spec.length, crop=False, trunk="resnet1d",
                             extra=extra, **{"name": "signal-resnet1d", **fields})
