"""A trained checkpoint served as an edgeecg Backend: the PyTorch reference row of `edgeecg bench`.

Only the bench uses it, to compare exported models with the network they came
from: FP32 on the CPU, and FP32/FP16 on CUDA when a GPU is present. `run`
takes and returns numpy like every runtime backend, so `classify_path` and the
bench's timing loops drive it unchanged; `synchronize` lets timings wait for
the GPU to finish.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeecg.backends import Backend
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError

from .checkpoint import checkpoint_file, contract_from_checkpoint, load_checkpoint, model_from_checkpoint

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def cuda_available() -> bool:
    return torch.cuda.is_available()


def checkpoint_contract(source: str | Path) -> ModelContract:
    """The model contract stored in a checkpoint (run folder or .pt), without building the network."""
    return contract_from_checkpoint(load_checkpoint(source), source)


class TorchBackend(Backend):
    """A SimCardioNet checkpoint in eval mode: float32 N x 3 x S x S numpy in, N x K float32 logits out."""

    name = "pytorch"

    def __init__(
        self, source: str | Path, device: str = "cpu", precision: str = "fp32", threads: int | None = None
    ) -> None:
        if precision not in DTYPES:
            raise EdgeECGError(f"PyTorch precision {precision!r} is not one of {', '.join(DTYPES)}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EdgeECGError(f"PyTorch on {device}: no CUDA GPU available here")
        if precision == "fp16" and self.device.type != "cuda":
            raise EdgeECGError("PyTorch FP16 runs on CUDA only (CPU half-precision kernels are not representative)")
        if threads:
            torch.set_num_threads(threads)
        self.path = checkpoint_file(source)
        model, self.contract = model_from_checkpoint(load_checkpoint(source), source)
        self.precision = precision
        self._dtype = DTYPES[precision]
        self.model = model.to(device=self.device, dtype=self._dtype)
        self.device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self._dtype)
        return self.model(x).float().cpu().numpy()

    def synchronize(self) -> None:
        """Wait for queued GPU work, so a timing ends when the GPU is done."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def gpu_memory_mb(self) -> float | None:
        """Peak memory PyTorch's allocator reserved on the GPU (without the CUDA context itself)."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_reserved(self.device) / 2**20

