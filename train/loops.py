"""Shared training machinery: device choice, seeding, mixed-precision steps, resuming, tensors from cached
crops, prediction."""

from __future__ import annotations

import random
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from edgeecg.machine import cpu_model
from edgeecg.preprocess import normalize

from . import distributed
from .checkpoint import load_checkpoint


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_name(device: torch.device) -> str:
    """The GPU's model name, or the CPU's, for timing reports."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def autocast(device: torch.device):
    """Mixed precision on CUDA (the paper's GTX 1660 setting); plain FP32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()


class MixedPrecisionStep:
    """One optimiser step on a loss, scaled under CUDA mixed precision (the scaler passes through on the CPU)."""

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device):
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")

    def __call__(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def saved_state(checkpoint: Path) -> dict | None:
    """A training loop's last checkpoint (read by rank 0 and shared with the others), or None on a fresh start."""
    return distributed.from_main(lambda: load_checkpoint(checkpoint) if checkpoint.is_file() else None)


class CropDataset(Dataset):
    """Cached uint8 RGB crops (N x S x S x 3) -> augmented float tensors (via PIL); targets as given."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, transform, views: int = 1):
        self.images, self.targets, self.transform, self.views = images, targets, transform, views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = Image.fromarray(self.images[i])
        if self.views == 1:
            return self.transform(image), self.targets[i]
        return tuple(t(image) for t in self.transform), self.targets[i]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, mean, std, device: torch.device,
                   batch: int = 32) -> np.ndarray:
    """Logits for uint8 crops, normalised by the runtime's own `normalize` (no augmentation)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(normalize(images[start:start + batch], mean, std)).to(device)
        with autocast(device):
            out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)
