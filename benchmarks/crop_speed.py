"""How long `edgeecg.crop` takes per shared scan on one core: find the grid box, and find + warp it.

    python benchmarks/crop_speed.py [--images 100] [--repeats 3] [--data DIR]

DIR defaults to shared/data/mendeley-ecg-images beside the repository (or under
$EDGEECG_SHARED). Images are decoded before timing; every call runs with
cv2.setNumThreads(1). Reports wall time and the calling thread's CPU time (the
latter is what a call costs when other processes share the cores). Prints the
machine it ran on: the numbers are only comparable on the same machine under
the same load.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from edgeecg.machine import cpu_model
from edgeecg.crop import find_trace_quad, warp_quad
from edgeecg.datasets import list_labelled_images
from edgeecg.errors import EdgeECGError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("EDGEECG_SHARED", REPO.parent / "shared")) / "data" / "mendeley-ecg-images"


def load_scans(folder: Path, count: int) -> list[np.ndarray]:
    """`count` scans spread evenly over the listing (all classes), decoded."""
    items = list_labelled_images(folder)
    picks = np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int)
    images = [cv2.imread(str(items[i].path), cv2.IMREAD_COLOR) for i in picks]
    if any(image is None for image in images):
        raise EdgeECGError(f"{folder}: some scans could not be decoded")
    return images


def time_ms(images: list[np.ndarray], step, repeats: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    """(wall, CPU) ms of each `step(image)` call, every image `repeats` times.

    CPU time is this thread's (OpenCV runs on it alone with one thread); it
    stays honest when other processes share the cores and stretch wall time.
    """
    step(images[0])  # warm-up: first-call allocations
    wall, cpu = [], []
    for _ in track(range(repeats), description=label, transient=True):
        for image in images:
            start, start_cpu = time.perf_counter(), time.thread_time()
            step(image)
            cpu.append((time.thread_time() - start_cpu) * 1000)
            wall.append((time.perf_counter() - start) * 1000)
    return np.array(wall), np.array(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="scans to time (spread over all classes)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the scans")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="scan folder (class folders or manifest.csv)")
    args = parser.parse_args()

    cv2.setNumThreads(1)  # one core, as the target says
    console = Console()
    try:
        scans = load_scans(args.data, args.images)
    except EdgeECGError as exc:
        console.print(f"error: {exc}")
        raise SystemExit(2) from None
    grays = [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in scans]
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    h, w = scans[0].shape[:2]
    console.print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {load} (1/5/15 min); "
                  f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}; "
                  f"cv2 threads 1; {len(scans)} scans of {w}x{h} from {args.data}, {args.repeats} passes")
    steps = {
        "find_trace_quad (colour scan)": (scans, find_trace_quad),
        "find_trace_quad (grayscale scan)": (grays, find_trace_quad),
        "find_trace_quad + warp_quad": (scans, lambda image: warp_quad(image, find_trace_quad(image))),
    }
    table = Table(title="crop speed per image, 1 thread")
    for column in ("step", "calls", "mean ms", "p50 ms", "p95 ms", "max ms", "CPU mean ms", "CPU p95 ms"):
        table.add_column(column, justify="right" if column != "step" else "left")
    for name, (images, step) in steps.items():
        ms, cpu = time_ms(images, step, args.repeats, name)
        table.add_row(name, str(len(ms)), f"{ms.mean():.2f}", f"{np.percentile(ms, 50):.2f}",
                      f"{np.percentile(ms, 95):.2f}", f"{ms.max():.2f}", f"{cpu.mean():.2f}",
                      f"{np.percentile(cpu, 95):.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
