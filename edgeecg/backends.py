"""Inference backends: one small interface over ONNX Runtime and TensorRT.

Every backend knows the model's contract (read from the model file itself, so
it is fed exactly as it was validated) and turns a float32 N x 3 x S x S batch
into N x K logits. ONNX Runtime is the portable default; TensorRT is imported
only when asked for, so a machine without CUDA never needs it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from .contract import ModelContract
from .errors import EdgeECGError, first_line
from .formats import FORMATS, is_engine

FLOAT_OUTPUTS = ("tensor(float)", "tensor(float16)", "tensor(double)")
BACKENDS = ("auto", *dict.fromkeys(f.backend for f in FORMATS.values()))  # auto, onnxruntime, tensorrt


@runtime_checkable
class Backend(Protocol):
    """A loaded model: `run` maps a float32 NxCxHxW batch to NxK logits (TensorRTBackend has the same shape)."""

    name: str  # "onnxruntime" or "tensorrt"
    contract: ModelContract
    path: Path
    precision: str  # "fp32", "fp16", "int8"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 N x C x H x W -> float32 N x K logits."""
        ...


class OnnxRuntimeBackend(Backend):
    """An edgeecg ONNX model served by ONNX Runtime (CPU unless other providers are asked for)."""

    name = "onnxruntime"

    def __init__(
        self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        _require_file(self.path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3  # errors only: ORT's warnings are not the user's problem
        wanted = list(providers) if providers else ["CPUExecutionProvider"]
        missing = [p for p in wanted if p not in ort.get_available_providers()]
        if missing:
            raise EdgeECGError(
                f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(ort.get_available_providers())})"
            )
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=wanted)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... for any unreadable model
            raise EdgeECGError(f"{self.path}: not a valid ONNX model ({first_line(exc)})") from None
        self.contract = ModelContract.from_metadata(
            self.session.get_modelmeta().custom_metadata_map, source=str(self.path)
        )
        self.precision = self.contract.precision
        model_input = _single_float_input(self.session, self.path)
        self.input_name = model_input.name
        self.fixed_batch = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        _check_input_shape(model_input.shape, self.contract, self.path)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.fixed_batch == 1 and len(batch) > 1:  # a static batch-1 graph takes one image at a time
            return np.concatenate([self.run(batch[i : i + 1]) for i in range(len(batch))])
        try:
            outputs = self.session.run(None, {self.input_name: batch})
        except Exception as exc:  # ORT's RuntimeException/Fail for a graph that cannot run this batch
            raise EdgeECGError(f"{self.path}: the model failed to run ({first_line(exc)})") from None
        return np.asarray(outputs[0], dtype=np.float32)


def open_backend(
    model: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> Backend:
    """Load a model file with the named backend; "auto" picks TensorRT for .engine/.plan files."""
    path = Path(model)
    engine = is_engine(path)
    if backend not in BACKENDS:
        raise EdgeECGError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "tensorrt" or (backend == "auto" and engine):
        if not engine:
            raise EdgeECGError(
                f"{path}: the tensorrt backend runs a TensorRT engine (.engine/.plan) built by `edgeecg export`"
            )
        _require_file(path)
        try:
            from .trt_backend import TensorRTBackend

            return TensorRTBackend(path)
        except ImportError as exc:
            raise EdgeECGError(
                f"the tensorrt backend needs a missing package ({exc.name}); install it with: pip install -e '.[trt]'"
            ) from None
    if engine:
        raise EdgeECGError(f"{path}: a TensorRT engine runs only with --backend tensorrt (or auto)")
    return OnnxRuntimeBackend(path, threads=threads, providers=providers)


def probabilities(logits: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Calibrated probabilities: softmax (multiclass) or sigmoid (multilabel) of logits / temperature."""
    if contract.task == "multilabel":
        return sigmoid(logits, contract.temperature).astype(np.float32)
    if contract.task != "multiclass":
        raise EdgeECGError(f"model task {contract.task!r} is neither multiclass nor multilabel")
    return softmax(logits, contract.temperature).astype(np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float64 class probabilities from logits (last axis) / `temperature`; training and metrics use it too."""
    z = _scaled(logits, temperature)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float64 independent per-class probabilities (multi-label heads) from logits / `temperature`."""
    return 0.5 * (1.0 + np.tanh(0.5 * _scaled(logits, temperature)))  # sigmoid without overflow


def _scaled(logits: np.ndarray, temperature: float) -> np.ndarray:
    if not temperature > 0:
        raise EdgeECGError(f"temperature must be > 0, got {temperature}")
    return np.asarray(logits, dtype=np.float64) / float(temperature)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large models do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise EdgeECGError(f"{path}: model file not found")
    if path.stat().st_size == 0:
        raise EdgeECGError(f"{path}: model file is empty")


def _single_float_input(session, path: Path):
    """The runtime feeds one float32 tensor and reads one float output: refuse any other graph up front."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise EdgeECGError(f"{path}: model has {len(inputs)} inputs; the runtime feeds exactly one image tensor")
    if inputs[0].type != "tensor(float)":
        raise EdgeECGError(f"{path}: model input is {inputs[0].type}; the runtime feeds tensor(float) (float32)")
    if not outputs or outputs[0].type not in FLOAT_OUTPUTS:
        found = outputs[0].type if outputs else "nothing"
        raise EdgeECGError(f"{path}: model output is {found}; the runtime reads float logits")
    return inputs[0]


def _check_input_shape(shape: list, contract: ModelContract, path: Path) -> None:
    """The graph's fixed dimensions must agree with what the contract says to feed it."""
    expected = [None, 3, contract.input_size, contract.input_size]
    if len(shape) != 4 or any(isinstance(d, int) and e is not None and d != e for d, e in zip(shape, expected)):
        raise EdgeECGError(
            f"{path}: model input shape {shape} does not match its contract "
            f"(N x 3 x {contract.input_size} x {contract.input_size})"
        )
