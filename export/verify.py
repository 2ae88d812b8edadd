"""Numerical checks of exported models against their reference on real scans.

An FP32 export must reproduce PyTorch (max |delta logit| <= 1e-4 and the same
top-1 on every scan) or it is not written. Reduced-precision variants are
compared with the FP32 ONNX model and their agreement is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgeecg.backends import OnnxRuntimeBackend
from edgeecg.errors import EdgeECGError

FP32_TOLERANCE = 1e-4
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


def torch_logits(model: torch.nn.Module, tensors: np.ndarray, batch: int = BATCH) -> np.ndarray:
    with torch.inference_mode():
        outputs = [model(torch.from_numpy(tensors[i : i + batch])).numpy() for i in range(0, len(tensors), batch)]
    return np.concatenate(outputs).astype(np.float32)


def check_fp32_parity(
    model: torch.nn.Module, onnx_path: str | Path, tensors: np.ndarray, tolerance: float = FP32_TOLERANCE
) -> Agreement:
    """ORT FP32 vs PyTorch on real scans; raises EdgeECGError unless both criteria hold."""
    agreement = compare_logits(torch_logits(model, tensors), onnx_logits(onnx_path, tensors))
    if agreement.max_abs_delta > tolerance or agreement.top1_agreement < 1.0:
        raise EdgeECGError(
            f"ONNX export does not reproduce PyTorch on {agreement.n_scans} scans: max |delta logit| "
            f"{agreement.max_abs_delta:.2e} (limit {tolerance:.0e}), same top-1 on "
            f"{agreement.top1_agreement:.1%}; nothing was written"
        )
    return agreement
