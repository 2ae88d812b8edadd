"""How many printouts per second `edgeecg.render` draws on one core, clean and photo-distorted.

    python benchmarks/render_speed.py [--images 60] [--px-per-mm 3.95 --px-per-mm 6] [--ptbxl DIR]

Uses a real PTB-XL record when --ptbxl is given (needs the `train` extra),
otherwise a synthetic 10 s, 12-lead, 72 bpm signal; the drawing cost hardly
depends on the waveform. Prints the machine it ran on: the numbers are only
comparable on the same machine under the same load.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edgeecg.machine import cpu_model
from edgeecg.render import DEFAULT_PX_PER_MM, LEADS, RenderOptions, page_size, render_printout


def synthetic_ecg(fs: float = 100.0, seconds: float = 10.0) -> np.ndarray:
    """P, QRS and T waves as Gaussian bumps at 72 bpm, scaled differently per lead."""
    t = np.arange(int(fs * seconds)) / fs
    phase = (t % (60 / 72)) / (60 / 72)
    beat = (0.15 * np.exp(-(((phase - 0.15) / 0.03) ** 2)) - 0.1 * np.exp(-(((phase - 0.29) / 0.008) ** 2))
            + 1.0 * np.exp(-(((phase - 0.31) / 0.01) ** 2)) - 0.25 * np.exp(-(((phase - 0.33) / 0.01) ** 2))
            + 0.3 * np.exp(-(((phase - 0.6) / 0.06) ** 2)))
    gains = np.linspace(-0.6, 1.4, len(LEADS))
    return (beat[:, None] * gains[None, :]).astype(np.float32)


def load_record(root: str) -> tuple[np.ndarray, float]:
    from edgeecg.train import ptbxl

    table = ptbxl.load_ptbxl(root)
    signal = ptbxl.read_signal(root, table.iloc[0])
    return signal.mv, signal.fs


def images_per_second(signal: np.ndarray, fs: float, options: RenderOptions, images: int) -> float:
    render_printout(signal, fs, options, header="ID : 00001", seed=0)  # warm the grid cache
    start = time.perf_counter()
    for seed in range(images):
        render_printout(signal, fs, options, header="ID : 00001", seed=seed)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="renders per setting")
    parser.add_argument("--px-per-mm", type=float, action="append", help=f"resolutions (default {DEFAULT_PX_PER_MM})")
    parser.add_argument("--ptbxl", help="PTB-XL folder: time a real record instead of a synthetic one")
    args = parser.parse_args()

    cv2.setNumThreads(1)  # one core, as the target says
    signal, fs = load_record(args.ptbxl) if args.ptbxl else (synthetic_ecg(), 100.0)
    console = Console()
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    console.print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {load}; "
                  f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}; "
                  f"cv2 threads 1; signal: {'PTB-XL' if args.ptbxl else 'synthetic'} {signal.shape} at {fs:g} Hz")
    table = Table(title=f"render_printout speed ({args.images} images per row)")
    for column in ("px/mm", "page (px)", "distortions", "images/s", "ms/image"):
        table.add_column(column, justify="right")
    for ppm in args.px_per_mm or [DEFAULT_PX_PER_MM]:
        width, height = page_size(ppm)
        for name, options in (("none", RenderOptions(px_per_mm=ppm)), ("photo (all)", RenderOptions.photo(ppm))):
            rate = images_per_second(signal, fs, options, args.images)
            table.add_row(f"{ppm:g}", f"{width}x{height}", name, f"{rate:.1f}", f"{1000 / rate:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
