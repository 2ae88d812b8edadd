"""`edgeecg bench` core: accuracy versus latency of every model/backend on this machine.

Quality is scored on a labelled set that is decoded once and preprocessed once
per distinct preprocessing contract (`edgeecg.preprocess.preprocess`), so each
model gets the same tensors `edgeecg infer` would give it. Speed and memory
are measured for each row in a fresh process (multiprocessing spawn), so the
peak RSS belongs to that row alone and one backend's threads or allocator
never slow down the next. torch is imported only where a PyTorch row runs
(see `edgeecg.train.torch_backend`); this module never imports it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from time import perf_counter
from typing import Callable, Iterable, Sequence

import numpy as np

from .backends import Backend, open_backend, probabilities
from .contract import ModelContract
from .datasets import LabelledImage, class_names, list_labelled_images
from .errors import EdgeECGError, first_line
from .formats import backend_for, device_for, is_engine
from .imageio import read_image
from .preprocess import preprocess
from .machine import cpu_model
from .registry import MODELS_DIR, read_onnx_contract, resolve_model, shipped_model_paths

DEFAULT_BATCHES = (1, 8, 32)
DEFAULT_RUNS = 50
DEFAULT_WARMUP = 5
MIN_TIMED_CALLS = 3  # a throughput from fewer calls is one noisy sample
DEFAULT_DATA = Path("calib_data") / "heldout_eval.csv"  # scans the shipped models never trained on


@dataclass
class BenchSettings:
    """How hard to measure: batch sizes for throughput, timed calls, warm-up calls, CPU threads."""

    batches: tuple[int, ...] = DEFAULT_BATCHES
    runs: int = DEFAULT_RUNS  # timed batch-1 and end-to-end calls; each batch size times about this many images
    warmup: int = DEFAULT_WARMUP
    threads: int | None = None  # ONNX Runtime, PyTorch and OpenCV threads; None: each library's default


@dataclass
class RowSpec:
    """One model on one backend, device and precision: a row of the table."""

    model: str  # shipped name or file stem
    path: Path  # .onnx, .engine/.plan, or a checkpoint (.pt or run folder)
    backend: str  # "onnxruntime", "tensorrt" or "pytorch"
    precision: str
    contract: ModelContract
    device: str = "cpu"

    @property
    def label(self) -> str:
        return f"{self.model} ({self.backend} {self.precision} {self.device})"


@dataclass(frozen=True)
class TensorFile:
    """Preprocessed float32 N x 3 x S x S tensors stored raw on disk and read back in slices.

    The labelled set can be hundreds of MB; a row's process reads it a batch at
    a time (file reads, not a memory map), so its peak RSS stays the model's.
    """

    path: Path
    count: int
    size: int

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.count if stop is None else min(stop, self.count)
        per_image = 3 * self.size * self.size
        data = np.fromfile(self.path, dtype=np.float32, count=(stop - start) * per_image,
                           offset=start * per_image * 4)
        return data.reshape(stop - start, 3, self.size, self.size)


@dataclass
class LabelledSet:
    """Usable images, their labels, and their tensors for each preprocessing contract."""

    paths: list[Path]
    labels: list[str]
    tensors: dict[tuple, TensorFile]  # preprocessing_key -> the images' tensors, in `paths` order
    skipped: list[tuple[Path, str]] = field(default_factory=list)


# --- which rows ------------------------------------------------------------------------------


def select_rows(
    data_labels: Sequence[str],
    models: Sequence[str] = (),
    reference: str | Path | None = None,
    include_shipped: bool = True,
    models_dir: Path | None = None,
) -> tuple[list[RowSpec], list[str]]:
    """(rows, reference row first; notes on what was left out and why).

    Shipped models whose classes do not cover the data's labels are left out;
    a model named on the command line that does not fit is an error.
    """
    rows: list[RowSpec] = []
    notes: list[str] = []
    seen: set[Path] = set()
    wanted = set(data_labels)
    if include_shipped:
        for name, path in shipped_model_paths(models_dir).items():
            row = _onnx_row(name, path)
            if not wanted <= set(row.contract.classes):
                notes.append(f"shipped model {name} left out: its classes ({', '.join(row.contract.classes)}) "
                             "do not cover the data's labels")
                continue
            rows.append(row)
            seen.add(path.resolve())
    for name in models:
        path = resolve_model(name, models_dir)
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        if is_engine(path):
            if util.find_spec("tensorrt") is None:
                notes.append(f"{path.name} left out: TensorRT is not installed here")
                continue
            row = _engine_row(path)
        else:
            row = _onnx_row(path.stem, path)
        _check_covers(row, wanted)
        rows.append(row)

    torch_rows = _torch_rows(reference)
    for row in torch_rows:
        _check_covers(row, wanted)
    rows = torch_rows + rows
    if not rows:
        folder = models_dir or MODELS_DIR
        shipped = "" if not include_shipped else (
            f"none shipped in {folder} covers the data's labels ({', '.join(sorted(wanted))}); "
            if shipped_model_paths(models_dir) else f"no model is shipped in {folder} yet; ")
        left_out = "".join(f"{note}; " for note in notes)
        raise EdgeECGError(f"no models to bench: {left_out}{shipped}pass --models FILE.onnx or --reference RUN_DIR")
    class_sets = {frozenset(r.contract.classes) for r in rows}
    if len(class_sets) > 1:
        listed = "; ".join(f"{r.model}: {', '.join(r.contract.classes)}" for r in rows)
        raise EdgeECGError(f"the models do not share one set of classes, so they cannot be compared ({listed})")
    rows.insert(0, rows.pop(reference_index(rows)))  # the reference leads the table
    return rows, notes


def reference_index(rows: Sequence[RowSpec]) -> int:
    """PyTorch FP32 on CPU if present, else the first FP32 ONNX Runtime row, else the first row."""
    for wanted in (("pytorch", "fp32", "cpu"), ("onnxruntime", "fp32", "cpu")):
        for i, row in enumerate(rows):
            if (row.backend, row.precision, row.device) == wanted:
                return i
    return 0


def _onnx_row(name: str, path: Path) -> RowSpec:
    contract = read_onnx_contract(path)
    return RowSpec(name, path, backend_for(path), contract.precision, contract)


def _engine_row(path: Path) -> RowSpec:
    from .trt_backend import read_sidecar

    sidecar = read_sidecar(path)
    contract = ModelContract.from_json(json.dumps(sidecar["contract"]), str(path))
    precision = sidecar.get("precision", contract.precision)
    return RowSpec(path.stem, path, backend_for(path), precision, contract, device_for(path))


def _torch_rows(reference: str | Path | None) -> list[RowSpec]:
    """PyTorch FP32 on CPU, plus CUDA FP32 and FP16 where a GPU is present (torch imported only here)."""
    if reference is None:
        return []
    try:
        from edgeecg.train.torch_backend import checkpoint_contract, checkpoint_file, cuda_available
    except ImportError as exc:
        raise EdgeECGError(
            f"the PyTorch reference needs a missing package ({exc.name}); install it with: pip install -e '.[train]'"
        ) from None
    contract = checkpoint_contract(reference)
    path = checkpoint_file(reference)
    name = Path(reference).name if Path(reference).is_dir() else path.stem
    rows = [RowSpec(name, path, "pytorch", "fp32", contract, "cpu")]
    if cuda_available():
        rows += [RowSpec(name, path, "pytorch", precision, contract, "cuda") for precision in ("fp32", "fp16")]
    return rows


def _check_covers(row: RowSpec, labels: set[str]) -> None:
    missing = sorted(labels - set(row.contract.classes))
    if missing:
        raise EdgeECGError(
            f"{row.path}: the data's label(s) {', '.join(missing)} are not classes of this model "
            f"({', '.join(row.contract.classes)})"
        )


# --- the labelled set ------------------------------------------------------------------------


def preprocessing_key(contract: ModelContract) -> tuple:
    """Contracts with equal keys get identical tensors, so each image is preprocessed once per key."""
    return (
        int(contract.input_size),
        tuple(float(v) for v in contract.mean),
        tuple(float(v) for v in contract.std),
        bool(contract.crop),
        float(contract.crop_margin),
    )


def spread(items: Sequence[LabelledImage], limit: int | None) -> list[LabelledImage]:
    """At most `limit` items spread over the (class-sorted) list, so every class is represented."""
    if not limit or limit >= len(items):
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


def prepare_labelled_set(
    items: Sequence[LabelledImage], contracts: Iterable[ModelContract], folder: Path, progress: Callable = iter
) -> LabelledSet:
    """Decode each image once and preprocess it once per distinct contract, into tensor files in `folder`.

    An image the runtime refuses (unreadable, no ECG grid found) is skipped and
    listed, for every model alike, so all rows are scored on the same images.
    """
    by_key = {preprocessing_key(c): c for c in contracts}
    files = {key: Path(folder) / f"tensors-{i}.f32" for i, key in enumerate(by_key)}
    used: list[LabelledImage] = []
    skipped: list[tuple[Path, str]] = []
    handles = {key: open(path, "wb") for key, path in files.items()}
    try:
        for item in progress(items):
            try:
                image = read_image(item.path)
                prepared = {key: preprocess(image, contract)[0] for key, contract in by_key.items()}
            except EdgeECGError as exc:
                skipped.append((item.path, str(exc)))
                continue
            for key, tensor in prepared.items():
                handles[key].write(np.ascontiguousarray(tensor, dtype=np.float32).tobytes())
            used.append(item)
    finally:
        for handle in handles.values():
            handle.close()
    tensors = {key: TensorFile(files[key], len(used), by_key[key].input_size) for key in by_key}
    return LabelledSet([i.path for i in used], [i.label for i in used], tensors, skipped)


# --- measuring one row (in its own process) --------------------------------------------------


def open_row_backend(row: RowSpec, threads: int | None) -> Backend:
    if row.backend == "pytorch":
        from edgeecg.train.torch_backend import TorchBackend

        return TorchBackend(row.path, device=row.device, precision=row.precision, threads=threads)
    return open_backend(row.path, backend=row.backend, threads=threads)


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
        "e2e_stages_ms_p50": {
            stage: float(np.median([s[stage] for s in timed_stages]))
            for stage in ("decode", "crop", "preprocess", "model")
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
    used = _nvidia_smi(["--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"])
    for line in used:
        pid, _, memory = line.partition(",")
        if pid.strip() == str(os.getpid()) and memory.strip().isdigit():
            return float(memory)
    own = getattr(backend, "gpu_memory_mb", None)
    return own() if callable(own) else None


def _nvidia_smi(args: list[str]) -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


# --- scoring ---------------------------------------------------------------------------------


def score_row(
    row: RowSpec, logits: np.ndarray, labels: Sequence[str], reference_probs: np.ndarray, reference_classes: list[str]
) -> dict[str, float]:
    """Accuracy and macro-F1 on the labels; top-1 agreement and |delta p| against the reference row."""
    from .metrics import classification_metrics

    classes = list(row.contract.classes)
    if logits.shape != (len(labels), len(classes)):
        expected = (len(labels), len(classes))
        raise EdgeECGError(f"{row.label}: returned logits of shape {logits.shape}, expected {expected}")
    if not np.all(np.isfinite(logits)):
        raise EdgeECGError(f"{row.label}: returned non-finite outputs (NaN/inf)")
    probs = probabilities(logits, row.contract).astype(np.float64)
    metrics = classification_metrics(np.array([classes.index(label) for label in labels]), probs, classes)
    reference = reference_probs[:, [reference_classes.index(c) for c in classes]].astype(np.float64)
    delta = np.abs(probs - reference)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["f1_macro"],
        "agreement": float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1))),
        "mean_abs_dprob": float(delta.mean()),
        "max_abs_dprob": float(delta.max()),
    }


def pareto_front(latency: Sequence[float], accuracy: Sequence[float]) -> list[bool]:
    """True for each point that no other point dominates (as fast or faster AND as accurate or more, better in one).

    Points with a missing (NaN) latency or accuracy are never on the front.
    """
    points = [(float(t), float(a)) for t, a in zip(latency, accuracy, strict=True)]
    valid = [math.isfinite(t) and math.isfinite(a) for t, a in points]
    front = []
    for i, (t, a) in enumerate(points):
        dominated = any(
            valid[j] and t2 <= t and a2 >= a and (t2 < t or a2 > a) for j, (t2, a2) in enumerate(points) if j != i
        )
        front.append(valid[i] and not dominated)
    return front


def model_size_mb(path: Path) -> float:
    """Size on disk, counting an ONNX model's external-data file (MODEL.onnx.data / MODEL.data) if present."""
    extras = [path.with_name(path.name + ".data"), path.with_suffix(".data")]
    return (path.stat().st_size + sum(p.stat().st_size for p in extras if p.is_file())) / 1e6


# --- the whole bench -------------------------------------------------------------------------


def resolve_data(data: str | Path | None) -> Path:
    """--data, or the held-out evaluation CSV (./calib_data, else the repository's)."""
    if data is not None:
        return Path(data)
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / DEFAULT_DATA).is_file():
            return base / DEFAULT_DATA
    raise EdgeECGError(f"no labelled data: pass --data DIR_or_CSV (the default {DEFAULT_DATA} is not here)")


def run_bench(
    data: str | Path | None,
    models: Sequence[str] = (),
    reference: str | Path | None = None,
    include_shipped: bool = True,
    settings: BenchSettings | None = None,
    limit: int | None = None,
    models_dir: Path | None = None,
    progress: BenchProgress | None = None,
) -> dict:
    """Measure every row; the report is {"environment", "data", "settings", "reference", "notes", "rows"}."""
    settings = settings or BenchSettings()
    progress = progress or BenchProgress(enabled=False)
    source = resolve_data(data)
    items = spread(list_labelled_images(source), limit)
    rows, notes = select_rows(class_names(items), models, reference, include_shipped, models_dir)
    notes += [busy] if (busy := _busy_note()) else []
    with tempfile.TemporaryDirectory(prefix="edgeecg-bench-") as tmp:
        labelled = prepare_labelled_set(
            items, [r.contract for r in rows], Path(tmp),
            lambda scans: progress.track(scans, "preprocessing scans", len(items)),
        )
        if not labelled.paths:
            raise EdgeECGError(
                f"{source}: none of the {len(items)} images could be used (e.g. {labelled.skipped[0][1]})"
            )
        if labelled.skipped:
            notes.append(f"{len(labelled.skipped)} of {len(items)} image(s) skipped for every model, "
                         f"e.g. {labelled.skipped[0][1]}")
        measured = [
            measure_isolated(row, labelled.tensors[preprocessing_key(row.contract)], labelled.paths, settings)
            for row in progress.track(rows, "measuring", len(rows), labels=[r.label for r in rows])
        ]

    report_rows = _report_rows(rows, measured, labelled.labels, settings)
    return {
        "environment": environment(settings, rows, measured),
        "data": {
            "source": str(source),
            "n_images": len(labelled.paths),
            "n_skipped": len(labelled.skipped),
            "classes": {label: labelled.labels.count(label) for label in sorted(set(labelled.labels))},
        },
        "settings": {"batches": list(settings.batches), "runs": settings.runs, "warmup": settings.warmup,
                     "threads": settings.threads, "limit": limit},
        "reference": rows[0].label,
        "notes": notes,
        "rows": report_rows,
    }


def _report_rows(rows: list[RowSpec], measured: list[dict], labels: list[str], settings: BenchSettings) -> list[dict]:
    """Score every row against the labels and the reference (rows[0]); mark the Pareto front."""
    reference_probs = probabilities(measured[0]["logits"], rows[0].contract)
    reference_classes = list(rows[0].contract.classes)
    report_rows = [
        _row_report(row, result, score_row(row, result["logits"], labels, reference_probs, reference_classes),
                    settings, is_reference=i == 0)
        for i, (row, result) in enumerate(zip(rows, measured))
    ]
    front = pareto_front([r["latency_ms_p50"] for r in report_rows], [r["accuracy"] for r in report_rows])
    for row_report, on_front in zip(report_rows, front):
        row_report["pareto"] = on_front
    return report_rows


def _row_report(row: RowSpec, result: dict, scores: dict, settings: BenchSettings, is_reference: bool) -> dict:
    throughput = {str(size): float(value) for size, value in sorted(result["throughput"].items())}
    largest = max(settings.batches)
    return {
        "model": row.model,
        "backend": row.backend,
        "precision": row.precision,
        "device": row.device,
        "path": str(row.path),
        "is_reference": is_reference,
        **scores,
        "latency_ms_p50": result["latency_ms"]["p50"],
        "latency_ms_p90": result["latency_ms"]["p90"],
        "latency_ms_p99": result["latency_ms"]["p99"],
        "latency_ms_mean": result["latency_ms"]["mean"],
        "e2e_ms_p50": result["e2e_ms"]["p50"],
        "e2e_ms_p99": result["e2e_ms"]["p99"],
        "e2e_stages_ms_p50": result["e2e_stages_ms_p50"],
        "throughput": throughput,
        "throughput_batch": largest,
        "throughput_img_s": throughput[str(largest)],
        "size_mb": model_size_mb(row.path),
        "load_s": result["load_s"],
        "rss_before_load_mb": result["rss_before_load_mb"],
        "peak_rss_mb": result["peak_rss_mb"],
        "gpu_mem_mb": result["gpu_mem_mb"],
    }


# --- the machine -----------------------------------------------------------------------------


def environment(settings: BenchSettings, rows: Sequence[RowSpec], measured: Sequence[dict]) -> dict:
    """What the numbers were measured on: CPU, cores, threads, GPU, OS and library versions."""
    import cv2
    import onnxruntime
    import psutil

    physical = psutil.cpu_count(logical=False)
    libraries = {"numpy": np.__version__, "opencv": cv2.__version__, "onnxruntime": onnxruntime.__version__}
    for name, needed in (("torch", any(r.backend == "pytorch" for r in rows)), ("tensorrt", True)):
        version = _installed_version(name) if needed else None
        if version:
            libraries[name] = version
    gpu_names = _nvidia_smi(["--query-gpu=name", "--format=csv,noheader"])
    gpu = gpu_names[0] if gpu_names else next((m["device_name"] for m in measured if m.get("device_name")), None)
    return {
        "cpu": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "threads": settings.threads or physical,
        "threads_source": "--threads" if settings.threads else
        f"each library's default: ONNX Runtime one per physical core, OpenCV {cv2.getNumThreads()}",
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": libraries,
    }


def _busy_note() -> str | None:
    """A warning when other work already fills the CPUs: timings then measure the contention too."""
    if not hasattr(os, "getloadavg"):
        return None
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load < cores:
        return None
    return (f"the machine was busy before timing (load average {load:.1f} on {cores} logical CPUs): latencies are "
            "inflated and noisy, multi-threaded rows most; rerun on an idle machine, or compare rows with --threads 1")


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# --- progress --------------------------------------------------------------------------------


class BenchProgress:
    """rich progress bars on stderr while scans are preprocessed and rows measured (off when not a terminal)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def track(self, items: Sequence, description: str, total: int, labels: Sequence[str] | None = None):
        if not self.enabled:
            yield from items
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task(description, total=total)
            for i, item in enumerate(items):
                if labels is not None:
                    bar.update(task, description=f"{description} {labels[i]}")
                yield item
                bar.advance(task)
