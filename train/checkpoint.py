"""Checkpoints: atomic, self-describing, enough to resume or export.

A checkpoint is a dict with `model_config` (ModelConfig.to_dict()), `state_dict`,
`contract` (ModelContract as a dict: classes, input size, crop settings, ...)
and, for resumable training state, whatever the loop adds (optimizer, epoch, ...).
A run folder's `final_model.pt` is what `edgeecg export RUN_DIR` reads.

Checkpoints hold only tensors and plain Python values, so they load with
`torch.load(weights_only=True)`: a checkpoint from anywhere cannot run code.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeecg.atomic import atomic_path
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError

from .model import ModelConfig, build_model
from .signal_model import ARCHITECTURE, SignalNetConfig, build_signal_model

FINAL_MODEL = "final_model.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` as tensors and plain values only, so `load_checkpoint` can read it without unpickling code."""
    with atomic_path(path) as tmp:
        torch.save(plain(state), tmp)


def plain(value: Any) -> Any:
    """Tensors, containers and JSON-like scalars as they are; numpy values and paths as their plain equivalents."""
    if isinstance(value, OrderedDict):  # a module's state_dict: tensors, and the _metadata torch loads back
        return value
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def checkpoint_file(source: str | Path) -> Path:
    """A run folder means its final_model.pt; a file is itself."""
    source = Path(source)
    return source / FINAL_MODEL if source.is_dir() else source


def load_checkpoint(path: str | Path) -> dict:
    path = checkpoint_file(path)
    if not path.is_file():
        raise EdgeECGError(f"{path}: no such checkpoint (expected a run folder with {FINAL_MODEL} or a .pt file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a Python object: never run what a file asks for
        raise EdgeECGError(
            f"{path}: checkpoint holds Python objects beyond tensors and plain values; refused, as loading "
            "it could run code (re-save it with edgeecg.train.checkpoint.save_checkpoint from a trusted source)"
        ) from None
    except Exception as exc:  # torch raises many types for a corrupt file
        raise EdgeECGError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


def is_signal_config(model_config: Any) -> bool:
    """Whether a checkpoint's model_config describes the signal branch's network."""
    return isinstance(model_config, dict) and model_config.get("architecture") == ARCHITECTURE


def contract_from_checkpoint(state: dict, source: str | Path = "checkpoint") -> ModelContract:
    """The model contract a checkpoint carries, without building the network."""
    if not isinstance(state, dict) or not {"model_config", "state_dict", "contract"} <= set(state):
        raise EdgeECGError(f"{source}: not an edgeecg checkpoint (needs model_config, state_dict and contract)")
    return ModelContract.from_json(json.dumps(state["contract"]), str(source))


def model_from_checkpoint(state: dict, source: str | Path = "checkpoint") -> tuple[torch.nn.Module, ModelContract]:
    """Rebuild the network (eval mode: SimCardioNet, or the signal branch's 1-D ResNet) and its contract from a
    checkpoint dict; a foreign one is one clear error."""
    contract = contract_from_checkpoint(state, source)
    try:
        config = state["model_config"]
        if is_signal_config(config):
            model = build_signal_model(SignalNetConfig.from_dict(config))
        else:
            model = build_model(ModelConfig.from_dict(config))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:  # config fields or weights that do not fit
        raise EdgeECGError(f"{source}: checkpoint does not rebuild the model ({type(exc).__name__}: {exc})") from None
    model.eval()
    return model, contract
