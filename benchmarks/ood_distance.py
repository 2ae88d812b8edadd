"""How often a shipped signal model's out-of-distribution score flags pages: its training template held out,
printouts of another renderer, PTB-XL records drawn in other styles, and signals no ECG page holds.

Each page goes through the runtime exactly as `edgeecg infer` takes it (decode, quality gate and its
digitizer, the model's input); pages the gate refuses never reach the model and are counted apart.
The threshold is the one in the model's contract, fitted on its training pages only (`export/ood.py`).

    python benchmarks/ood_distance.py --mendeley-heldout calib_data/heldout_eval.csv \\
        --ludb ../shared/data/ludb-printouts --ptbxl ../shared/data/ptbxl-subset [--model signal] [--limit 60]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgeecg.datasets import list_labelled_images
from edgeecg.gate import assess
from edgeecg.imageio import read_image
from edgeecg.machine import cpu_model
from edgeecg.registry import resolve_model
from edgeecg.render import random_options, render_printout
from edgeecg.signal_input import model_input
from edgeecg.signal_runtime import SignalModel, page_input


def page_distances(model: SignalModel, images) -> tuple[list[float], int]:
    """Feature distances of the pages the gate reads, and how many it refused."""
    distances, refused = [], 0
    for image in images:
        verdict = assess(image)
        if not verdict.readable:
            refused += 1
            continue
        distances.append(float(model.run_with_distance(page_input(verdict.reading, model.spec)[None])[1][0]))
    return distances, refused


def ptbxl_pages(root: str, limit: int, photo: bool):
    from edgeecg.train.ptbxl import load_ptbxl, read_signal

    table = load_ptbxl(root)
    for k, (_, row) in enumerate(table[table.strat_fold == 9].iloc[:limit].iterrows()):
        record = read_signal(root, row)
        yield render_printout(np.nan_to_num(record.mv), record.fs, random_options(k, photo=photo), seed=k).image


def junk_inputs(model: SignalModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Signals no printed ECG holds, already as model inputs: what a misread page could hand the model."""
    t = np.arange(model.spec.length) / model.spec.rate
    lead = np.ones(12, np.float32)
    kinds = {
        "sine waves 0.3-8 Hz": [np.sin(2 * np.pi * f * t)[:, None] * a * lead for f, a in
                                zip(rng.uniform(0.3, 8, 20), rng.uniform(0.2, 3, 20))],
        "square waves": [np.sign(np.sin(2 * np.pi * f * t))[:, None] * a * lead for f, a in
                         zip(rng.uniform(0.5, 3, 20), rng.uniform(0.2, 2, 20))],
        "white noise": [rng.normal(0, s, (len(t), 12)) for s in rng.uniform(0.05, 1, 20)],
        "flat lines": [np.zeros((len(t), 12)) + rng.normal(0, 0.005, (len(t), 12)) for _ in range(20)],
    }
    return {name: np.stack([model_input(s.astype(np.float32), model.spec) for s in signals])
            for name, signals in kinds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="signal", help="shipped signal model name or .onnx file")
    parser.add_argument("--mendeley-heldout", type=Path, help="labelled CSV/folder of the template's held-out scans")
    parser.add_argument("--ludb", type=Path, help="LUDB printouts folder (images/)")
    parser.add_argument("--ptbxl", help="PTB-XL folder: fold-9 records drawn in random styles, clean and photo-like")
    parser.add_argument("--limit", type=int, default=60, help="pages per set")
    args = parser.parse_args()
    model = SignalModel(resolve_model(args.model))
    if model.ood is None:
        raise SystemExit(f"error: {model.path} was exported without an out-of-distribution score")
    threshold = model.ood["threshold"]
    print(f"machine: {cpu_model()}; model {model.path.name}: threshold {threshold:.1f} "
          f"({model.ood['margin']:g} x the largest of {model.ood['training_pages']} training distances, "
          f"median {model.ood['train_median']:.1f})")
    sets: dict[str, tuple[list[float], int]] = {}
    started = time.perf_counter()
    if args.mendeley_heldout:
        items = list_labelled_images(args.mendeley_heldout)[: args.limit]
        sets["Mendeley held-out scans"] = page_distances(model, (read_image(i.path) for i in items))
    if args.ludb:
        files = sorted((args.ludb / "images").glob("*"))[: args.limit]
        sets["LUDB printouts (another renderer)"] = page_distances(model, (read_image(f) for f in files))
    if args.ptbxl:
        for photo in (False, True):
            name = f"PTB-XL fold 9, random styles, {'photo-like' if photo else 'clean'}"
            sets[name] = page_distances(model, ptbxl_pages(args.ptbxl, args.limit, photo))
    for name, inputs in junk_inputs(model, np.random.default_rng(0)).items():
        sets[name] = (model.run_with_distance(inputs)[1].tolist(), 0)
    print(f"{'set':42s} {'read':>5s} {'refused by gate':>16s} {'median dist':>12s} {'flagged':>8s}")
    for name, (distances, refused) in sets.items():
        flagged = np.mean(np.array(distances) > threshold) if distances else float("nan")
        median = np.median(distances) if distances else float("nan")
        print(f"{name:42s} {len(distances):5d} {refused:16d} {median:12.1f} {flagged:8.1%}")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
