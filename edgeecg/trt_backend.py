"""TensorRT engine backend for the runtime (no torch; tensorrt + pycuda or cuda-python, imported lazily).

A TensorRT engine only runs on the GPU model and TensorRT version it was built
with. `edgeecg export --trt` writes a sidecar `X.engine.json` next to every
engine (TensorRT version, GPU name, compute capability, precision, and the
model contract the runtime needs for classes and preprocessing). The backend
reads the sidecar and refuses a foreign engine *before* handing its bytes to
TensorRT, with a message that says how to get a matching one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .backends import Backend
from .contract import ModelContract
from .errors import EdgeECGError

REBUILD_HINT = "rebuild with edgeecg export --trt on this device"
SIDECAR_SUFFIX = ".json"


def sidecar_path(engine_path: str | Path) -> Path:
    """`model-fp16.engine` -> `model-fp16.engine.json`."""
    return Path(str(engine_path) + SIDECAR_SUFFIX)


def read_sidecar(engine_path: str | Path) -> dict:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EdgeECGError(
            f"{engine_path}: no sidecar {path.name} (it records the device, TensorRT version and classes); {REBUILD_HINT}"
        )
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeECGError(f"{path}: unreadable engine sidecar ({exc}); {REBUILD_HINT}") from None
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("contract"), dict):
        raise EdgeECGError(f"{path}: engine sidecar has no model contract; {REBUILD_HINT}")
    return sidecar


def check_engine_compatible(
    sidecar: dict, trt_version: str, gpu_name: str, compute_capability: str, source: str = "engine"
) -> None:
    """Refuse an engine built for another GPU (name or compute capability) or TensorRT version."""
    built = (sidecar.get("gpu_name"), str(sidecar.get("compute_capability")), sidecar.get("tensorrt_version"))
    here = (gpu_name, str(compute_capability), trt_version)
    if built != here:
        raise EdgeECGError(
            f"{source}: built for {built[0]} (compute capability {built[1]}) with TensorRT {built[2]}, "
            f"but this device is {here[0]} (compute capability {here[1]}) with TensorRT {here[2]}; {REBUILD_HINT}"
        )


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise EdgeECGError(
            "TensorRT's Python package is not installed (on a Jetson it comes with JetPack; "
            "on an x86 desktop with CUDA: pip install tensorrt)"
        ) from None
    return tensorrt


class _PyCuda:
    """Device memory and a stream through pycuda (context on GPU 0 via pycuda.autoinit)."""

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  creates and activates a context on GPU 0
        import pycuda.driver as cuda

        self._cuda = cuda
        self._stream = cuda.Stream()
        self._allocations: dict[int, Any] = {}

    def device(self) -> tuple[str, str]:
        dev = self._cuda.Context.get_device()
        return dev.name(), "{}.{}".format(*dev.compute_capability())

    def alloc(self, nbytes: int) -> int:
        memory = self._cuda.mem_alloc(max(nbytes, 1))
        self._allocations[int(memory)] = memory
        return int(memory)

    def free(self, pointer: int) -> None:
        self._allocations.pop(pointer).free()

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(pointer, host, self._stream)

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        self._cuda.memcpy_dtoh_async(host, pointer, self._stream)

    def stream_handle(self) -> int:
        return self._stream.handle

    def synchronize(self) -> None:
        self._stream.synchronize()


def _cuda_runtime() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart as runtime  # older cuda-python (e.g. 11.x on JetPack 5)
    return runtime


def _check(result: tuple) -> Any:
    """cuda-python returns (error, *values); raise on an error, return the value(s)."""
    error, *values = result
    if int(error) != 0:
        raise EdgeECGError(f"CUDA error {getattr(error, 'name', error)}")
    return values[0] if len(values) == 1 else values


class _CudaPython:
    """The same operations through cuda-python's runtime API (primary context of GPU 0)."""

    def __init__(self) -> None:
        self._rt = _cuda_runtime()
        self._stream = _check(self._rt.cudaStreamCreate())

    def device(self) -> tuple[str, str]:
        props = _check(self._rt.cudaGetDeviceProperties(0))
        return props.name.split(b"\0", 1)[0].decode(), f"{props.major}.{props.minor}"

    def alloc(self, nbytes: int) -> int:
        return int(_check(self._rt.cudaMalloc(max(nbytes, 1))))

    def free(self, pointer: int) -> None:
        _check(self._rt.cudaFree(pointer))

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self._rt.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, kind, self._stream))

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self._rt.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self._stream))

    def stream_handle(self) -> int:
        return int(self._stream)

    def synchronize(self) -> None:
        _check(self._rt.cudaStreamSynchronize(self._stream))


def cuda_api() -> _PyCuda | _CudaPython:
    """pycuda if installed, else cuda-python; one clear error when neither works (no driver, no GPU)."""
    try:
        import pycuda.driver  # noqa: F401

        factory = _PyCuda
    except ImportError:
        try:
            _cuda_runtime()
        except ImportError:
            raise EdgeECGError("TensorRT needs pycuda or cuda-python for GPU memory: pip install cuda-python") from None
        factory = _CudaPython
    try:
        return factory()
    except Exception as exc:  # pycuda raises its own error types when there is no driver or GPU
        raise EdgeECGError(f"no usable CUDA GPU ({exc})") from None


def cuda_device() -> tuple[str, str]:
    """(name, "major.minor" compute capability) of GPU 0, or EdgeECGError if there is none."""
    return cuda_api().device()


class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine: float32 N x 3 x S x S in, logits N x K out."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path):
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise EdgeECGError(f"{self.path}: no such TensorRT engine")
        sidecar = read_sidecar(self.path)
        self.contract = ModelContract.from_json(json.dumps(sidecar["contract"]), str(sidecar_path(self.path)))
        self.precision = sidecar.get("precision", self.contract.precision)
        self.max_batch = int(sidecar.get("max_batch", 1))
        trt = import_tensorrt()
        self._cuda = cuda_api()
        gpu_name, capability = self._cuda.device()
        check_engine_compatible(sidecar, trt.__version__, gpu_name, capability, str(self.path))

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if sidecar.get("dla_core") is not None:
            runtime.DLA_core = int(sidecar["dla_core"])
        self._engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EdgeECGError(f"{self.path}: TensorRT could not deserialize this engine; {REBUILD_HINT}")
        self._context = self._engine.create_execution_context()
        # TensorRT >= 8.5 has named I/O tensors + execute_async_v3; older 8.x only bindings + v2
        self._named = hasattr(self._context, "execute_async_v3")
        self._input, self._output = self._io(trt)
        size, classes = self.contract.input_size, len(self.contract.classes)
        self._in_dtype, self._out_dtype = self._input[2], self._output[2]
        self._d_in = self._cuda.alloc(self.max_batch * 3 * size * size * self._in_dtype.itemsize)
        self._d_out = self._cuda.alloc(self.max_batch * classes * self._out_dtype.itemsize)

    def _io(self, trt: Any) -> tuple[tuple, tuple]:
        """(name or binding index, is_input, numpy dtype) of the single input and output."""
        engine = self._engine
        if self._named:
            tensors = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            io = [(n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, np.dtype(trt.nptype(engine.get_tensor_dtype(n))))
                  for n in tensors]
        else:
            io = [(i, engine.binding_is_input(i), np.dtype(trt.nptype(engine.get_binding_dtype(i))))
                  for i in range(engine.num_bindings)]
        inputs, outputs = [t for t in io if t[1]], [t for t in io if not t[1]]
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgeECGError(f"{self.path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        return inputs[0], outputs[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        size = self.contract.input_size
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise EdgeECGError(f"{self.path.name} expects N x 3 x {size} x {size} input, got {batch.shape}")
        chunks = [self._run_chunk(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        return np.concatenate(chunks).astype(np.float32)

    def _run_chunk(self, batch: np.ndarray) -> np.ndarray:
        host_in = np.ascontiguousarray(batch, dtype=self._in_dtype)
        context, (in_key, _, _), (out_key, _, _) = self._context, self._input, self._output
        if self._named:
            context.set_input_shape(in_key, host_in.shape)
            host_out = np.empty(tuple(context.get_tensor_shape(out_key)), dtype=self._out_dtype)
            context.set_tensor_address(in_key, self._d_in)
            context.set_tensor_address(out_key, self._d_out)
        else:
            context.set_binding_shape(in_key, host_in.shape)
            host_out = np.empty(tuple(context.get_binding_shape(out_key)), dtype=self._out_dtype)
        self._cuda.to_device(self._d_in, host_in)
        if self._named:
            ok = context.execute_async_v3(self._cuda.stream_handle())
        else:
            bindings = [0] * self._engine.num_bindings
            bindings[in_key], bindings[out_key] = self._d_in, self._d_out
            ok = context.execute_async_v2(bindings, self._cuda.stream_handle())
        if not ok:
            raise EdgeECGError(f"{self.path.name}: TensorRT inference failed (see the TensorRT log above)")
        self._cuda.to_host(host_out, self._d_out)
        self._cuda.synchronize()
        return host_out

    def close(self) -> None:
        """Free the device buffers (the engine and context go with the object)."""
        for pointer in (self._d_in, self._d_out):
            self._cuda.free(pointer)
        self._d_in = self._d_out = 0
