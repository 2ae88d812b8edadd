"""How often the quality gate refuses: readable ECGs (should pass) against non-ECG and unreadable images (should not).

Readable: the shared Mendeley scans and LUDB printouts when their folders are
given, plus renders of random styles (clean and photo-like). Unreadable, all
made here from a seed: grids with their traces erased (renders, and shared
scans when given), flat lines, text pages, charts on graph paper, scenes,
noise, and blurred pages. Prints the refusal rate per group and the reasons.

    python benchmarks/gate_refusals.py [--mendeley ../shared/data/mendeley-ecg-images] [--ludb ../shared/data/ludb-printouts]
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edgeecg.gate import assess
from edgeecg.machine import cpu_model
from edgeecg.render import random_options, render_printout
from edgeecg.synthetic import synthetic_ecg

FS = 500.0


def _renders(count: int, photo: bool) -> Iterator[np.ndarray]:
    for seed in range(count):
        yield render_printout(synthetic_ecg(seed, FS), FS, random_options(seed, photo=photo), seed=seed).image


def _erased(image: np.ndarray) -> np.ndarray:
    """The page with every dark (trace or text) pixel painted paper-white, the grid kept."""
    out = image.copy()
    out[cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) < 150] = 255
    return out


def _text_page(rng: np.random.Generator) -> np.ndarray:
    page = np.full((800, 1100, 3), 255, np.uint8)
    for y in range(60, 760, int(rng.integers(28, 48))):
        words = " ".join("".join(chr(c) for c in rng.integers(97, 123, rng.integers(2, 9))) for _ in range(8))
        cv2.putText(page, words, (40, y), cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.6, 1.0), (0, 0, 0), 2)
    return page


def _chart(rng: np.random.Generator) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 8), dpi=100)
    kind = rng.integers(3)
    if kind == 0:
        ax.bar(range(12), rng.uniform(1, 5, 12))
    elif kind == 1:
        ax.plot(np.cumsum(rng.normal(size=400)), color="black")
    else:
        ax.scatter(rng.normal(size=200), rng.normal(size=200), color="black")
    ax.minorticks_on()
    ax.grid(True, which="major", color="#f08080")
    ax.grid(True, which="minor", color="#fbd")
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[:, :, 2::-1].copy()
    plt.close(fig)
    return image


def _scene(rng: np.random.Generator) -> np.ndarray:
    scene = rng.integers(0, 255, 3).astype(np.uint8) * np.ones((700, 1000, 3), np.uint8)
    for _ in range(8):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        centre = tuple(int(c) for c in rng.integers(0, 900, 2))
        cv2.circle(scene, centre, int(rng.integers(30, 200)), colour, -1)
    return cv2.GaussianBlur(scene, (0, 0), 2)


def _groups(args, count: int) -> dict[str, tuple[bool, Iterator[np.ndarray]]]:
    """name -> (should pass?, images)."""
    rng = np.random.default_rng(7)
    groups: dict[str, tuple[bool, Iterator[np.ndarray]]] = {
        "renders, random styles": (True, _renders(count, photo=False)),
        "renders, random styles, photo-like": (True, _renders(count, photo=True)),
    }
    if args.mendeley:
        scans = sorted(args.mendeley.rglob("*.jpg"))
        groups["Mendeley scans"] = (True, (cv2.imread(str(p)) for p in scans))
        groups["Mendeley scans, traces erased"] = (False, (_erased(cv2.imread(str(p))) for p in scans[::max(1, len(scans) // count)]))
    if args.ludb:
        groups["LUDB printouts (ECGMiner)"] = (True, (cv2.imread(str(p)) for p in sorted((args.ludb / "images").glob("*.jpg"))))
    groups.update({
        "renders, traces erased": (False, (_erased(i) for i in _renders(count, photo=False))),
        "flat lines": (False, (render_printout(np.zeros((5000, 12), np.float32), FS, random_options(s), seed=s).image
                               for s in range(count))),
        "text pages": (False, (_text_page(rng) for _ in range(count))),
        "charts on graph paper": (False, (_chart(rng) for _ in range(count))),
        "scenes": (False, (_scene(rng) for _ in range(count))),
        "noise": (False, (rng.integers(0, 256, (700, 1000, 3), dtype=np.uint8) for _ in range(count))),
        "blurred pages (sigma 5-9 px)": (False, (cv2.GaussianBlur(i, (0, 0), 5 + 4 * (k % 5) / 4)
                                                for k, i in enumerate(_renders(count, photo=False)))),
    })
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mendeley", type=Path, help="folder of the shared Mendeley scans")
    parser.add_argument("--ludb", type=Path, help="folder of the LUDB printouts")
    parser.add_argument("--count", type=int, default=30, help="images per made-up group")
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, one process")
    print("| group | should | images | refused | rate | reasons | median ms |")
    print("|---|---|---|---|---|---|---|")
    for name, (readable, images) in _groups(args, args.count).items():
        reasons, ms = collections.Counter(), []
        for image in images:
            start = time.perf_counter()
            reasons[assess(image).reason] += 1
            ms.append((time.perf_counter() - start) * 1e3)
        total = sum(reasons.values())
        refused = total - reasons[None]
        shown = ", ".join(f"{reason}: {n}" for reason, n in reasons.most_common() if reason)
        print(f"| {name} | {'pass' if readable else 'refuse'} | {total} | {refused} | {refused / total:.1%} | "
              f"{shown or '-'} | {np.median(ms):.0f} |", flush=True)


if __name__ == "__main__":
    main()
