"""Numerical comparison of exported models with their reference on real scans (torch-free).

Reduced-precision variants (FP16, INT8, TensorRT engines) are compared with
the FP32 ONNX model, which itself was checked against PyTorch on export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeecg.backends import OnnxRuntimeBackend
from edgeecg.errors import EdgeECGError

BATCH = 8


@dataclass
class Agreement:
    """How closely one model's logits follow a reference's on the same scans."""

    n_scans: int
    max_abs_delta: float
    top1_agreement: float  # fraction of scans with the same arg-max

    def to_dict(self) -> dict:
        return asdict(self)


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    if reference.shape != candidate.shape:
        raise EdgeECGError(f"output shape {candidate.shape} differs from the reference {reference.shape}")
    delta = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    same = reference.argmax(axis=1) == candidate.argmax(axis=1)
    return Agreement(len(reference), float(delta.max(initial=0.0)), float(same.mean()) if len(same) else 1.0)


def onnx_logits(path: str | Path, tensors: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Logits from the runtime's own ONNX Runtime CPU backend (which also reads the model's contract),
    run in batches of `batch` (which exercises the dynamic batch axis)."""
    backend = OnnxRuntimeBackend(path)
    return np.concatenate([backend.run(tensors[i : i + batch]) for i in range(0, len(tensors), batch)])
