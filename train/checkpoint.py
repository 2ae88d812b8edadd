"""Checkpoints: atomic, self-describing, enough to resume or export.

A checkpoint is a dict with `model_config` (ModelConfig.to_dict()), `state_dict`,
`contract` (ModelContract as a dict: classes, input size, crop settings, ...)
and, for resumable training state, whatever the loop adds (optimizer, epoch, ...).
A run folder's `final_model.pt` is what `edgeecg export RUN_DIR` reads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeecg.atomic import atomic_path
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError

from .model import ModelConfig, SimCardioNet, build_model

FINAL_MODEL = "final_model.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / FINAL_MODEL
    if not path.is_file():
        raise EdgeECGError(f"{path}: no such checkpoint (expected a run folder with {FINAL_MODEL} or a .pt file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise EdgeECGError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


def model_from_checkpoint(state: dict) -> tuple[SimCardioNet, ModelContract]:
    """Rebuild the network (eval mode) and its contract from a checkpoint dict."""
    model = build_model(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["state_dict"])
    model.eval()
    contract = ModelContract(**{**state["contract"], "mean": tuple(state["contract"]["mean"]),
                                "std": tuple(state["contract"]["std"])})
    return model, contract
