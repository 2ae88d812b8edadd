"""Every kind of model file `edgeecg export` writes, in one table (torch-free).

Export names its outputs from this table and the runtime (backends, registry,
bench) recognises model files from it, so a new kind of artifact is one row
here rather than a file name spelled again in five modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIXES = (".engine", ".plan")  # TensorRT serialised engines; export writes .engine
MODEL_SUFFIXES = (ONNX_SUFFIX, *ENGINE_SUFFIXES)


@dataclass(frozen=True)
class ArtifactFormat:
    """One kind of model file: how it is named, what runs it, and how to make it."""

    key: str  # "fp32", "int8-trt", ... (TensorRT's engine_source names the ONNX it builds from by key)
    label: str  # how export's report and table name it
    pattern: str  # file name, formatted with the model's name
    backend: str  # the runtime backend that runs it: "onnxruntime" or "tensorrt"
    precision: str  # "fp32", "fp16" or "int8"
    needs_gpu: bool  # a TensorRT engine runs only on the GPU it was built on
    made_by: str  # the command that writes it, for messages that ask for a missing file

    def path(self, folder: Path, name: str) -> Path:
        return Path(folder) / self.pattern.format(name=name)


FORMATS: dict[str, ArtifactFormat] = {
    f.key: f
    for f in (
        ArtifactFormat("fp32", "ONNX FP32", "{name}.onnx", "onnxruntime", "fp32", False, "edgeecg export RUN"),
        ArtifactFormat("fp16", "ONNX FP16", "{name}-fp16.onnx", "onnxruntime", "fp16", False,
                       "edgeecg export RUN (it writes the FP16 model)"),
        ArtifactFormat("int8-cpu", "ONNX INT8 (cpu)", "{name}-int8.onnx", "onnxruntime", "int8", False,
                       "edgeecg export RUN --int8"),
        ArtifactFormat("int8-trt", "ONNX INT8 (tensorrt)", "{name}-int8-trt.onnx", "onnxruntime", "int8", False,
                       "edgeecg export RUN --int8 --int8-target tensorrt"),
        ArtifactFormat("trt-fp16", "TensorRT FP16", "{name}-fp16.engine", "tensorrt", "fp16", True,
                       "edgeecg export MODEL.onnx --trt --fp16"),
        ArtifactFormat("trt-int8", "TensorRT INT8", "{name}-int8.engine", "tensorrt", "int8", True,
                       "edgeecg export MODEL.onnx --trt --int8"),
    )
}
INT8_TARGET_FORMATS = {"cpu": FORMATS["int8-cpu"], "tensorrt": FORMATS["int8-trt"]}  # --int8-target -> format
ENGINE_FORMATS = {f.precision: f for f in FORMATS.values() if f.backend == "tensorrt"}  # engine precision -> format


def is_engine(path: str | Path) -> bool:
    """A TensorRT engine (by suffix), which only the tensorrt backend can run."""
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


def backend_for(path: str | Path) -> str:
    """The backend that runs a model file: TensorRT for engines, ONNX Runtime otherwise."""
    return "tensorrt" if is_engine(path) else "onnxruntime"


def device_for(path: str | Path) -> str:
    """"cuda" for a file whose kind needs the GPU (a TensorRT engine), else "cpu" (ONNX Runtime's CPU provider)."""
    gpu_backends = {f.backend for f in FORMATS.values() if f.needs_gpu}
    return "cuda" if backend_for(path) in gpu_backends else "cpu"
