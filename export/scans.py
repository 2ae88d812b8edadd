"""Real scans -> model input tensors, through exactly the runtime's path.

Verification, INT8 calibration and the FP32-vs-INT8 evaluation all feed the
models what `edgeecg infer` would: `read_image` -> `preprocess(contract)`.
A file the runtime would refuse (unreadable, no ECG grid found) is skipped
and reported, never silently replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

from edgeecg.contract import ModelContract
from edgeecg.datasets import is_image, list_labelled_images
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
from edgeecg.preprocess import preprocess

from .ui import track

T = TypeVar("T")


@dataclass
class PreparedScans:
    """Preprocessed tensors of the files that made it, and why the others did not."""

    tensors: np.ndarray  # N x 3 x S x S float32
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def image_files(source: Path) -> list[Path]:
    """The scans a CSV manifest lists, or every image under a folder (recursively, sorted)."""
    if source.is_file() and source.suffix.lower() == ".csv":
        return [item.path for item in list_labelled_images(source)]
    if not source.is_dir():
        raise EdgeECGError(f"{source}: not a folder of scans or a CSV manifest")
    return sorted(p for p in source.rglob("*") if p.is_file() and is_image(p) and not p.name.startswith("."))


def prepare_scans(paths: Sequence[Path], contract: ModelContract, description: str) -> PreparedScans:
    """Read and preprocess every file; unusable ones are listed in `skipped` with the reason."""
    tensors, used, skipped = [], [], []
    for path in track(paths, description, total=len(paths)):
        try:
            tensor, _ = preprocess(read_image(path), contract)
        except EdgeECGError as exc:
            skipped.append((Path(path), str(exc)))
            continue
        tensors.append(tensor)
        used.append(Path(path))
    size = contract.input_size
    stacked = np.concatenate(tensors) if tensors else np.zeros((0, 3, size, size), np.float32)
    return PreparedScans(stacked.astype(np.float32, copy=False), used, skipped)


def evenly_spaced(items: Sequence[T], count: int) -> list[T]:
    """`count` items spread over the whole (sorted) list, so every class folder is represented."""
    if count <= 0 or count >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]
