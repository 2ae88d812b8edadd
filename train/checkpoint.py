"""Checkpoints: atomic, self-describing, enough to resume or export.

A checkpoint is a dict with `model_config` (ModelConfig.to_dict()), `state_dict`,
`contract` (ModelContract as a dict: classes, input size, crop settings, ...)
and, for resumable training state, whatever the loop adds (optimizer, epoch, ...).
A run folder's `final_model.pt` is what `edgeecg export RUN_DIR` reads.
"""

from __future__ import annotations

import json
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


def checkpoint_file(source: str | Path) -> Path:
    """A run folder means its final_model.pt; a file is itself."""
    source = Path(source)
    return source / FINAL_MODEL if source.is_dir() else source


def load_checkpoint(path: str | Path) -> dict:
    path = checkpoint_file(path)
    if not path.is_file():
        raise EdgeECGError(f"{path}: no such checkpoint (expected a run folder with {FINAL_MODEL} or a .pt file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise EdgeECGError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


def contract_from_checkpoint(state: dict, source: str | Path = "checkpoint") -> ModelContract:
    """The model contract a checkpoint carries, without building the network."""
    if not isinstance(state, dict) or not {"model_config", "state_dict", "contract"} <= set(state):
        raise EdgeECGError(f"{source}: not an edgeecg checkpoint (needs model_config, state_dict and contract)")
    return ModelContract.from_json(json.dumps(state["contract"]), str(source))


def model_from_checkpoint(state: dict, source: str | Path = "checkpoint") -> tuple[SimCardioNet, ModelContract]:
    """Rebuild the network (eval mode) and its contract from a checkpoint dict; a foreign one is one clear error."""
    contract = contract_from_checkpoint(state, source)
    try:
        model = build_model(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:  # config fields or weights that do not fit
        raise EdgeECGError(f"{source}: checkpoint does not rebuild the model ({type(exc).__name__}: {exc})") from None
    model.eval()
    return model, contract
