"""Why SimCLR collapses on the Mendeley scans: small, fast SSL runs, one knob at a time (issue 18).

Each variant pretrains the same random-init network on the same distinct scans (one per duplicate
group, held-out calib_data groups excluded) and reports the last epoch's loss against ln(2N-1) (the
value of collapsed embeddings), the embedding spread of the unaugmented scans, and a linear probe
(logistic regression on frozen features, stratified group 3-fold CV over the four classes) next to
the probe of the same network at its random init.

    python benchmarks/ssl_diagnose.py --variants paper,scale0.5 --epochs 8 --size 128 --n 240

Sized for 2 CPU cores: a small trunk, small inputs, a subset of the scans; one seed. The variants are
named knobs of `TrainConfig` (every one is also an `edgeecg train` flag).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeecg.machine import cpu_model  # noqa: E402
from edgeecg.train.config import WHOLE_PAGE_SSL, TrainConfig, preset_config  # noqa: E402
from edgeecg.train.data import group_kfold, load_crops, load_table, one_per_group  # noqa: E402
from edgeecg.train.loops import seed_everything  # noqa: E402
from edgeecg.train.modality import image_contract, model_config  # noqa: E402
from edgeecg.train.model import build_model  # noqa: E402
from edgeecg.train.ssl import pretrain  # noqa: E402
from edgeecg.train.ssl_probe import NoProgress, embed, recalibrate_batchnorm, spread_of, split_probe  # noqa: E402

# name -> TrainConfig overrides on top of the base: the paper's SSL recipe (TrainConfig defaults) on --trunk
PAPER_SSL_FIELDS = ("ssl_batch", "ssl_lr_backbone", "ssl_wd_backbone", "ssl_lr_head", "ssl_wd_head", "ssl_eta_min",
                    "ssl_temperature", "cosine_weight", "cosine_over", "triplet_margin", "ssl_views", "ssl_min_scale",
                    "ssl_jitter", "ssl_colour", "ssl_blur", "ssl_head_bn")
VARIANTS: dict[str, dict] = {
    "paper": {},
    # (a) views
    "scale0.5": {"ssl_min_scale": 0.5},
    "paired": {"ssl_views": "paired", "ssl_min_scale": 0.5},
    "noblur": {"ssl_blur": 0.0, "ssl_colour": 0.4},
    # (b) learning rate and temperature
    "lr1e-3": {"ssl_lr_backbone": 1e-3, "ssl_lr_head": 3e-3},
    "tau0.5": {"ssl_temperature": 0.5},
    # (c) BatchNorm in the projection head, (d) the cosine term, (e) negatives
    "headbn": {"ssl_head_bn": True},
    "nocos": {"cosine_weight": 0.0},
    "batch32": {"ssl_batch": 32},
    # combinations
    "paired+noblur+tau0.5": {"ssl_views": "paired", "ssl_min_scale": 0.5, "ssl_blur": 0.0, "ssl_colour": 0.4,
                             "ssl_temperature": 0.5},
    # the recipe that learns on rendered pages (tests/test_ssl_learns.py): whole-page views with a small
    # shift, no colour jitter or blur, tau 0.5, lr 1e-3, no lr decay within the run
    "whole-page": WHOLE_PAGE_SSL,
}


def mendeley_crops(data: Path, size: int, n: int, seed: int):
    """Distinct scans (one per duplicate group, calib_data's groups held out), resized crops and labels."""
    table = load_table(data, [REPO / "calib_data" / "manifest.csv"], workers=2)
    table = table.subset(one_per_group(table))
    if n and n < len(table):
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(table.labels == c))[: n // len(table.classes)]
                                       for c in range(len(table.classes))]))
        table = table.subset(keep)
    cfg = preset_config("edge")
    crops = load_crops(table, image_contract(cfg, table.classes), workers=2)
    if size != crops.shape[1]:
        crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])
    return table, crops


def run_variant(name: str, overrides: dict, table, crops: np.ndarray, args, out: Path) -> dict:
    paper_ssl = {f: getattr(TrainConfig(), f) for f in PAPER_SSL_FIELDS}  # the edge preset has its own
    cfg = preset_config("edge", trunk=args.trunk, ssl=True, input_size=crops.shape[1], ssl_epochs=args.epochs,
                        seed=args.seed, pretrained=False, **{**paper_ssl, "ssl_tmax": args.epochs, **overrides})
    seed_everything(cfg.seed)
    model = build_model(model_config(cfg, len(table.classes)))
    device = torch.device("cpu")
    splits = group_kfold(table, 3, cfg.seed)
    recalibrate_batchnorm(model, crops, device)
    f0, z0 = embed(model, crops, device)
    probe0 = split_probe(f0, table.labels, splits)
    checkpoint = out / f"{name}.pt"
    checkpoint.unlink(missing_ok=True)
    tick = time.perf_counter()
    history, _ = pretrain(model, crops, cfg, device, checkpoint, print, NoProgress())  # its collapse warning too
    seconds = time.perf_counter() - tick
    checkpoint.unlink(missing_ok=True)
    recalibrate_batchnorm(model, crops, device)
    f1, z1 = embed(model, crops, device)
    probe1 = split_probe(f1, table.labels, splits)
    bound = math.log(2 * cfg.ssl_batch - 1)
    row = {"variant": name, "overrides": overrides, "epochs": cfg.ssl_epochs, "batch": cfg.ssl_batch,
           "ln(2N-1)": bound, "loss": [round(h["loss"], 3) for h in history],
           "train_spread": [round(h["embedding_spread"], 3) for h in history],
           "spread_init": spread_of(z0), "spread": spread_of(z1),
           "probe_init": float(np.mean(probe0)), "probe": float(np.mean(probe1)), "seconds": seconds}
    print(f"{name:>14} | loss {history[-1]['loss']:.3f} ({history[-1]['loss'] / bound:.2f} of ln(2N-1)) | "
          f"spread {row['spread_init']:.2f} -> {row['spread']:.2f} | probe {row['probe_init']:.3f} -> "
          f"{row['probe']:.3f} | {seconds:.0f}s | losses {row['loss']}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mendeley-ecg-images")
    parser.add_argument("--variants", default="paper")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=240, help="distinct scans used (balanced over classes; 0 = all)")
    parser.add_argument("--trunk", default="mobilenet_v3_large")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/ssl-diagnose"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    table, crops = mendeley_crops(args.data, args.size, args.n, args.seed)
    majority = np.bincount(table.labels).max() / len(table)
    print(f"machine: {cpu_model()}, {args.threads} torch thread(s), {platform.python_version()}, torch "
          f"{torch.__version__} | {len(table)} distinct scans at {args.size} px, trunk {args.trunk}, "
          f"{args.epochs} SSL epochs, seed {args.seed}; majority class {majority:.3f}", flush=True)
    rows = []
    for name in args.variants.split(","):
        rows.append(run_variant(name, VARIANTS[name], table, crops, args, args.out))
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n| variant | overrides | loss (last) | / ln(2N-1) | spread init -> SSL | probe init -> SSL | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['variant']} | {r['overrides'] or 'paper recipe'} | {r['loss'][-1]:.3f} | "
              f"{r['loss'][-1] / r['ln(2N-1)']:.2f} | {r['spread_init']:.2f} -> {r['spread']:.2f} | "
              f"{r['probe_init']:.3f} -> {r['probe']:.3f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
