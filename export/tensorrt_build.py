"""TensorRT engines built on the target device (GTX 1660 desktop, Jetson) from the exported ONNX models.

How precision is expressed depends on the TensorRT major version (see the
TensorRT 10.x -> 11.x migration guide):
- 11.x: networks are always strongly typed and the precision builder flags are
  gone, so the engine is built from the FP16 ONNX (float16 weights, float32 I/O)
  or from the symmetric Q/DQ ONNX (explicit INT8); no precision flags.
- 10.x and 8.x: the FP32 ONNX with BuilderFlag.FP16, or the Q/DQ ONNX with
  BuilderFlag.INT8 (explicit quantization still needs the flag there).
- 8.x/10.x only: `calibrator="legacy"` parses the FP32 ONNX and calibrates
  implicitly with IInt8EntropyCalibrator2 on the same preprocessed scans, keeping
  a calibration cache (deprecated in 10.1, removed in 11).
Engines get one optimisation profile for batch 1..max_batch (optimised for 1,
the clinic's case), a workspace limit, a persistent timing cache and, on a
Jetson with TensorRT 10, optionally a DLA core with GPU fallback.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgeecg.atomic import write_bytes, write_text
from edgeecg.backends import file_sha256
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.trt_backend import cuda_api, sidecar_path

from .options import INPUT_NAME
from .ui import step


def tensorrt_major(trt: Any) -> int:
    return int(trt.__version__.split(".")[0])


def check_device(trt: Any) -> tuple[str, str]:
    """A GPU must be present: print and return its name and compute capability."""
    name, capability = cuda_api().device()
    step(f"TensorRT {trt.__version__} on {name} (compute capability {capability})")
    return name, capability


def engine_source(trt: Any, precision: str, calibrator: str) -> str:
    """Which ONNX file an engine is built from, as an `edgeecg.formats` key: "fp32", "fp16" or "int8-trt"."""
    major = tensorrt_major(trt)
    if calibrator == "legacy":
        if precision != "int8":
            raise EdgeECGError("--trt-calibrator legacy only applies to --int8 engines")
        if major >= 11:
            raise EdgeECGError(
                f"TensorRT {trt.__version__} removed implicit INT8 calibration; drop --trt-calibrator legacy "
                "to build from the Q/DQ model"
            )
        return "fp32"
    if precision == "int8":
        return "int8-trt"
    return "fp16" if major >= 11 else "fp32"


def _network(trt: Any, builder: Any) -> Any:
    major = tensorrt_major(trt)
    if major >= 11:  # always strongly typed; the flag is kept for API compatibility and states the intent
        return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    if major >= 10:  # explicit batch is the only mode
        return builder.create_network(0)
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        hint = ""
        if tuple(int(v) for v in trt.__version__.split(".")[:2]) < (8, 6):
            hint = " (TensorRT < 8.6 cannot parse opset 17's LayerNormalization: export with --opset 16)"
        raise EdgeECGError(f"{onnx_path.name}: TensorRT {trt.__version__} cannot parse it{hint}: {errors}")


def make_entropy_calibrator(trt: Any, cuda: Any, tensors: np.ndarray, cache_path: Path) -> Any:
    """IInt8EntropyCalibrator2 fed one preprocessed scan per batch, with a calibration cache file."""

    class ScanEntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._next = 0
            self._host = np.empty_like(tensors[:1])
            self._device = cuda.alloc(self._host.nbytes)

        def get_batch_size(self) -> int:
            return 1  # the optimisation profile's OPT batch, which calibration runs at

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._next >= len(tensors):
                return None
            self._host[...] = tensors[self._next : self._next + 1]
            self._next += 1
            cuda.to_device(self._device, self._host)
            cuda.synchronize()
            return [self._device]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_bytes(cache_path, bytes(cache))

    return ScanEntropyCalibrator()


def build_engine(
    trt: Any,
    onnx_path: Path,
    engine_path: Path,
    contract: ModelContract,
    precision: str,
    device: tuple[str, str],
    max_batch: int = 8,
    workspace_gib: float = 2.0,
    timing_cache: Path | None = None,
    dla_core: int | None = None,
    legacy_calibration: tuple[np.ndarray, Path] | None = None,
) -> dict:
    """Build, serialize and describe one engine; returns the sidecar written next to it."""
    major = tensorrt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _network(trt, builder)
    _parse(trt, network, logger, onnx_path)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    size = contract.input_size
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (1, 3, size, size), (1, 3, size, size), (max_batch, 3, size, size))
    config.add_optimization_profile(profile)

    if major < 11:  # weakly typed builders need the precision flags (removed in 11)
        config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.INT8)
    if legacy_calibration is not None:
        tensors, cache_path = legacy_calibration
        config.int8_calibrator = make_entropy_calibrator(trt, cuda_api(), tensors, cache_path)
        if major < 10:  # 8.x calibrates at the calibration profile's OPT shape (batch 1); deprecated in 10
            config.set_calibration_profile(profile)
    if dla_core is not None:
        _use_dla(trt, builder, config, dla_core)

    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)

    step(f"TensorRT: building {precision} engine from {onnx_path.name} (batch 1..{max_batch}); this takes minutes")
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        raise EdgeECGError(
            f"TensorRT could not build the {precision} engine from {onnx_path.name} (see its log above; "
            "a larger --workspace may help)"
        )
    write_bytes(engine_path, bytes(serialized))
    if timing_cache is not None:
        write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))

    sidecar = {
        "format": "edgeecg-tensorrt-engine",
        "tensorrt_version": trt.__version__,
        "gpu_name": device[0],
        "compute_capability": device[1],
        "precision": precision,
        "int8_mode": None if precision != "int8" else ("implicit-entropy-calibrator" if legacy_calibration else "explicit-qdq"),
        "source_onnx": onnx_path.name,
        "source_onnx_sha256": file_sha256(onnx_path),
        "build_seconds": round(seconds, 1),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "max_batch": max_batch,
        "workspace_bytes": int(workspace_gib * (1 << 30)),
        "dla_core": dla_core,
        "contract": json.loads(replace(contract, precision=precision).to_json()),
    }
    write_text(sidecar_path(engine_path), json.dumps(sidecar, indent=2))
    return sidecar


def _use_dla(trt: Any, builder: Any, config: Any, core: int) -> None:
    """Run supported layers on a Jetson DLA core, the rest on the GPU (TensorRT 10 only)."""
    if tensorrt_major(trt) != 10:
        raise EdgeECGError(f"--dla is supported with TensorRT 10 only (this is {trt.__version__})")
    if core >= builder.num_DLA_cores:
        raise EdgeECGError(f"--dla {core}: this device has {builder.num_DLA_cores} DLA core(s)")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
