"""What machine this is, in words a benchmark table or timing report can print.

Numbers quoted without the machine they came from mean little, so every
timing report (`edgeecg bench`, the benchmarks/ scripts, training logs) asks
here: CPU, cores, GPU, load, OS and library versions.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name (x86 /proc/cpuinfo, a Jetson's board name, else what platform knows)."""
    for path, key in (("/proc/cpuinfo", "model name"), ("/proc/device-tree/model", None)):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        if key is None:
            return text.strip("\x00\n ")
        for line in text.splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def environment(threads: int | None, with_torch: bool = False, gpu_fallback: str | None = None) -> dict:
    """What the numbers were measured on: CPU, cores, threads, GPU, OS and library versions.

    `threads` is the --threads a run was given (None: each library's default);
    `gpu_fallback` names the GPU when nvidia-smi cannot (e.g. a backend's own
    device name on a Jetson).
    """
    import cv2
    import numpy as np
    import onnxruntime
    import psutil

    physical = psutil.cpu_count(logical=False)
    libraries = {"numpy": np.__version__, "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__}
    for name, needed in (("torch", with_torch), ("tensorrt", True)):
        version = _installed_version(name) if needed else None
        if version:
            libraries[name] = version
    gpu_names = nvidia_smi(["--query-gpu=name", "--format=csv,noheader"])
    return {
        "cpu": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "threads": threads or physical,
        "threads_source": "--threads" if threads else
        f"each library's default: ONNX Runtime one per physical core, OpenCV {cv2.getNumThreads()}",
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "gpu": gpu_names[0] if gpu_names else gpu_fallback,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libraries,
    }


def busy_note() -> str | None:
    """A warning when other work already fills the CPUs: timings then measure the contention too."""
    if not hasattr(os, "getloadavg"):
        return None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load < cores:
        return None
    return (f"the machine was busy before timing (load average {load:.1f} on {cores} logical CPUs): latencies are "
            "inflated and noisy, multi-threaded rows most; rerun on an idle machine, or compare rows with --threads 1")


def nvidia_smi(args: list[str]) -> list[str]:
    """nvidia-smi's non-blank output lines for `args`; none where it is missing, fails or hangs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
