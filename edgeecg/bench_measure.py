"""Speed and memory of one bench row, measured in a fresh process of its own.

A spawned process per row means its peak RSS is that row's alone and one
backend's threads or allocator never slow down the next. torch is imported
only where a PyTorch row runs (`edgeecg.train.torch_backend`), and nothing
here imports the scoring side (scikit-learn), so a row's memory is its own.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Callable, Sequence

import numpy as np

from .backends import Backend
from .bench_data import TensorFile
from .bench_rows import RowSpec
from .errors import EdgeECGError, first_line
from .machine import nvidia_smi
from .signal_runtime import open_model

DEFAULT_BATCHES = (1, 8, 32)
DEFAULT_RUNS = 50
DEFAULT_WARMUP = 5
MIN_TIMED_CALLS = 3  # a throughput from fewer calls is one noisy sample


@dataclass
class BenchSettings:
    """How hard to measure: batch sizes for throughput, timed calls, warm-up calls, CPU threads."""

    batches: tuple[int, ...] = DEFAULT_BATCHES
    runs: int = DEFAULT_RUNS  # timed batch-1 and end-to-end calls; each batch size times about this many images
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None  # ONNX Runtime, PyTorch and OpenCV threads; None: each library's default


def open_row_backend(row: RowSpec, threads: int | None) -> Backend:
    if row.backend == "pytorch":
        from edgeecg.train.torch_backend import TorchBackend

        return TorchBackend(row.path, device=row.device, precision=row.precision, threads=threads)
    return open_model(row.path, backend=row.backend, threads=threads)


def time_calls(call: Callable[[int], object], warmup: int, runs: int, sync: Callable[[], None]) -> np.ndarray:
    """Milliseconds of each of `runs` calls after `warmup` untimed ones; `sync` waits for the device."""
    for i in range(warmup):
        call(i)
    sync()
    samples = np.empty(runs)
    for i in range(runs):
        start = perf_counter()
        call(i)
        sync()
        samples[i] = (perf_counter() - start) * 1e3
    return samples


def latency_stats(samples_ms: np.ndarray) -> dict[str, float]:
    """p50/p90/p99 and mean of timing samples (ms)."""
    p50, p90, p99 = np.percentile(samples_ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(np.mean(samples_ms))}


def run_batched(backend: Backend, tensors: TensorFile, batch: int) -> np.ndarray:
    """Logits of every tensor in the file, `batch` at a time."""
    return np.concatenate([backend.run(tensors.read(i, i + batch)) for i in range(0, tensors.count, batch)])


def measure_row(row: RowSpec, tensors: TensorFile, files: Sequence[str], settings: BenchSettings) -> dict:
    """Logits on the labelled set, then latency, throughput, end-to-end time and memory of one row.

    Runs in a fresh process; returns plain data (the logits as a numpy array).
    Timing cycles over the first `runs` images (at least one full batch) held
    in memory; the quality pass streams the whole set from the tensor file.
    """
    import cv2

    from .infer import classify_path

    if settings.threads:
        cv2.setNumThreads(settings.threads)  # the end-to-end crop and resize too
    inputs = tensors.read(0, max(settings.runs, *settings.batches))
    rss_before_load = current_rss_mb()
    start = perf_counter()
    backend = open_row_backend(row, settings.threads)
    load_s = perf_counter() - start
    sync = getattr(backend, "synchronize", None) or (lambda: None)

    logits = run_batched(backend, tensors, max(settings.batches))
    n = len(inputs)
    latency = time_calls(lambda i: backend.run(inputs[i % n : i % n + 1]), settings.warmup, settings.runs, sync)
    throughput = {1: 1e3 / float(np.mean(latency))} if 1 in settings.batches else {}
    for size in sorted(b for b in settings.batches if b != 1):
        batch = np.ascontiguousarray(np.take(inputs, np.arange(size) % n, axis=0))
        calls = max(MIN_TIMED_CALLS, math.ceil(settings.runs / size))
        samples = time_calls(lambda i: backend.run(batch), max(1, math.ceil(settings.warmup / size)), calls, sync)
        throughput[size] = size * calls / (float(np.sum(samples)) / 1e3)

    stages: list[dict[str, float]] = []
    e2e = time_calls(
        lambda i: stages.append(classify_path(files[i % len(files)], backend)["ms"]),
        settings.warmup, settings.runs, sync,
    )
    timed_stages = stages[settings.warmup :]
    return {
        "logits": logits,
        "load_s": load_s,
        "latency_ms": latency_stats(latency),
        "throughput": throughput,
        "e2e_ms": latency_stats(e2e),
        "e2e_stages_ms_p50": {  # decode, gate, (crop, preprocess for an image model), model
            stage: float(np.median([s[stage] for s in timed_stages])) for stage in timed_stages[0] if stage != "total"
        },
        "rss_before_load_mb": rss_before_load,
        "peak_rss_mb": peak_rss_mb(),
        "gpu_mem_mb": _gpu_memory_mb(backend) if row.device == "cuda" else None,
        "device_name": getattr(backend, "device_name", None),
    }


def measure_isolated(row: RowSpec, tensors: TensorFile, files: Sequence[Path], settings: BenchSettings) -> dict:
    """`measure_row` in a fresh spawned process, so its memory and threads are its own."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(measure_row, row, tensors, [str(f) for f in files], settings)
        try:
            return future.result()
        except BrokenProcessPool:
            raise EdgeECGError(f"{row.label}: the benchmark process died (out of memory, or a crash in the backend)") \
                from None
        except EdgeECGError:
            raise
        except Exception as exc:  # a backend failing at run time (ORT, TensorRT, torch): say which row and why
            raise EdgeECGError(f"{row.label}: {type(exc).__name__} while benchmarking ({first_line(exc)})") from None


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (Linux VmHWM, which restarts at exec; else getrusage/psutil)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import psutil

    info = psutil.Process().memory_info()
    if hasattr(info, "peak_wset"):  # Windows
        return info.peak_wset / 2**20
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024.0  # bytes on macOS, KiB elsewhere


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _gpu_memory_mb(backend: Backend) -> float | None:
    """GPU memory of this process as nvidia-smi reports it (CUDA context included); else the backend's own figure."""
    used = nvidia_smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    for line in used:
        pid, _, memory = line.partition(",")
        if pid.strip() == str(os.getpid()) and memory.strip().isdigit():
            return float(memory)
    own = getattr(backend, "gpu_memory_mb", None)
    return own() if callable(own) else None
