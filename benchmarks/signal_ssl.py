"""Does SimCLR pretraining of the signal branch's 1-D ResNet trunk give better features than random init? (issue 18)

On the PTB-XL subset with the shipped split (`ptbxl_split.choose_split`: train folds 1-7, validation 8,
test 9), this measures:

1. SSL: SimCLR (NT-Xent, `losses.hybrid_loss` with no cosine term) on the training folds' recorded
   signals only, labels unused. Each view is the record panel-masked to a 3x4+1 page (`panel_mask`,
   strip misread like the shipped recipe) with probability --view-mask, otherwise randomly cropped in
   time (a window of --min-crop..1 of the 10 s, NaN outside), then `jitter` (gain, noise, +-0.2 s shift).
   The trunk of the `signal` preset's network (width 64, depth 1, kernel 5) + a 2-layer projection head
   on `features()`, AdamW, cosine learning rate. Per epoch: the loss against ln(2B-1) (what collapsed
   embeddings score) and the embedding spread (`ssl.embedding_spread`: ~1 spread, 0 collapsed).
2. Linear probe: frozen `features()` (BatchNorm statistics re-estimated on the training signals, recorded
   and panel-masked, for both networks) -> one-vs-rest logistic regression per superclass, C picked on
   fold 8, macro AUC-ROC on fold 9. Matched inputs: recorded train -> recorded test, and panel-masked
   train -> panel-masked test (`masked_copy`, fixed seeds). Random-init trunk vs SSL trunk.
3. Fine-tuning (unless --ft-epochs 0): the `signal` preset's supervised recipe (`finetune.fit` through
   `SignalModality`: class-weighted BCE, batch 32, lr 1e-3, half the records panel-masked, best epoch on
   fold 8) for the same epochs from random init and from the SSL trunk; fold-9 macro AUC.

One seed; sized for 2 CPU cores.

    python benchmarks/signal_ssl.py --epochs 30 --ft-epochs 15
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeecg.backends import sigmoid  # noqa: E402
from edgeecg.machine import cpu_model  # noqa: E402
from edgeecg.metrics import multilabel_metrics  # noqa: E402
from edgeecg.signal_input import SignalSpec, batch_input, model_input  # noqa: E402
from edgeecg.train import ptbxl  # noqa: E402
from edgeecg.train.config import preset_config  # noqa: E402
from edgeecg.train.finetune import fit  # noqa: E402
from edgeecg.train.loops import seed_everything  # noqa: E402
from edgeecg.train.losses import hybrid_loss  # noqa: E402
from edgeecg.train.ptbxl_signal import read_split  # noqa: E402
from edgeecg.train.ptbxl_split import choose_split  # noqa: E402
from edgeecg.train.signal_data import jitter, masked_copy, panel_mask, predict_signal_logits  # noqa: E402
from edgeecg.train.signal_modality import SignalModality  # noqa: E402
from edgeecg.train.signal_model import SignalResNet, load_trunk  # noqa: E402
from edgeecg.train.ssl import embedding_spread  # noqa: E402
from edgeecg.train.ssl_probe import NoProgress, probe_batches, reestimate_batchnorm  # noqa: E402

DEVICE = torch.device("cpu")


def crop(signal: np.ndarray, rng: np.random.Generator, min_share: float) -> np.ndarray:
    """A random window of min_share..1 of the record kept in place, NaN (unplotted) outside."""
    length = len(signal)
    keep = int(round(rng.uniform(min_share, 1.0) * length))
    start = int(rng.integers(0, length - keep + 1))
    out = np.full_like(signal, np.nan)
    out[start:start + keep] = signal[start:start + keep]
    return out


class TwoViews(Dataset):
    """Two independently augmented views of each record, as the model reads them; no labels."""

    def __init__(self, signals: np.ndarray, spec: SignalSpec, mask_p: float, misread: float, min_crop: float,
                 seed: int):
        self.signals, self.spec, self.mask_p, self.misread, self.min_crop, self.seed = \
            signals, spec, mask_p, misread, min_crop, seed

    def __len__(self) -> int:
        return len(self.signals)

    def view(self, signal: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        if rng.random() < self.mask_p:
            signal = panel_mask(signal, self.spec.rate, rng, self.misread)
        elif self.min_crop < 1.0:
            signal = crop(signal, rng, self.min_crop)
        return torch.from_numpy(model_input(jitter(signal, self.spec.rate, rng), self.spec))

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i, int(torch.randint(2**31, ()).item())])
        return self.view(self.signals[i], rng), self.view(self.signals[i], rng)


def projection_head(features: int, hidden: int, out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


def pretrain(model: SignalResNet, signals: np.ndarray, spec: SignalSpec, args) -> list[dict]:
    """SimCLR on `signals`; returns per-epoch loss, embedding spread and seconds."""
    head = projection_head(4 * model.config.width, args.proj_hidden, args.proj_dim)
    params = list(model.trunk.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.ssl_lr, weight_decay=args.ssl_wd)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs, eta_min=args.ssl_lr / 100)
    dataset = TwoViews(signals, spec, args.view_mask, args.misread, args.min_crop, args.seed)
    history = []
    for epoch in range(1, args.epochs + 1):
        seed_everything(args.seed * 1000 + epoch)
        loader = DataLoader(dataset, batch_size=args.ssl_batch, shuffle=True, drop_last=True)
        model.train()
        head.train()
        tick, losses, spreads = time.perf_counter(), [], []
        for x0, x1 in loader:
            z = head(model.features(torch.cat([x0, x1])))  # one pass: BatchNorm sees both views
            z0, z1 = z[:len(x0)], z[len(x0):]
            loss = hybrid_loss(z0, z1, args.temperature, cosine_weight=0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            spreads.append(embedding_spread(z0.detach()))
        scheduler.step()
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "spread": float(np.mean(spreads)),
               "seconds": time.perf_counter() - tick}
        history.append(row)
        print(f"SSL epoch {epoch}/{args.epochs}: loss {row['loss']:.4f} (ln(2B-1) = "
              f"{math.log(2 * args.ssl_batch - 1):.4f}), spread {row['spread']:.3f}, {row['seconds']:.1f}s",
              flush=True)
    return history


@torch.no_grad()
def features(model: SignalResNet, inputs: np.ndarray, batch: int = 128) -> np.ndarray:
    model.eval()
    return np.concatenate([model.features(torch.from_numpy(inputs[s:s + batch])).numpy()
                           for s in range(0, len(inputs), batch)])


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro AUC-ROC over the superclasses present (`edgeecg.metrics`, as every run reports it)."""
    return multilabel_metrics(y, probs, ptbxl.SUPERCLASSES)["auc_roc_macro"]


def probe(train: tuple, val: tuple, test: tuple, grid: list[float]) -> tuple[float, float, float]:
    """One-vs-rest standardised logistic regression; C by fold-8 macro AUC. Returns (C, val AUC, test AUC)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in grid:
        model = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=c, max_iter=3000)))
        model.fit(*train)
        score = macro_auc(val[1], model.predict_proba(val[0]))
        if best is None or score > best[1]:
            best = (c, score, model)
    c, val_auc, model = best
    return c, val_auc, macro_auc(test[1], model.predict_proba(test[0]))


def probe_network(model: SignalResNet, inputs: dict, labels: dict, grid: list[float]) -> dict:
    """Probe results for the recorded and the panel-masked inputs (BN re-estimated on both training sets)."""
    train = np.concatenate([inputs["train"], inputs["train_panels"]])
    reestimate_batchnorm(model, (torch.from_numpy(train[index]) for index in probe_batches(len(train))))
    feats = {name: features(model, x) for name, x in inputs.items()}
    out = {}
    for kind, suffix in (("recorded", ""), ("panels", "_panels")):
        parts = [(feats[p + suffix], labels[p]) for p in ("train", "validation", "test")]
        out[kind] = probe(*parts, grid)
    out["feature_spread"] = embedding_spread(torch.from_numpy(feats["test"]))
    return out


def finetune(init: SignalResNet | None, signals: dict, labels: dict, args) -> tuple[float, float, int, float]:
    """The `signal` preset's supervised recipe from `init`'s trunk (or random); fold-9 (recorded, panels) AUC."""
    cfg = preset_config("signal", data=args.data, epochs=args.ft_epochs, workers=0, seed=args.seed)
    modality = SignalModality(cfg)
    seed_everything(args.seed)
    model = modality.fresh_model(len(ptbxl.SUPERCLASSES))
    if init is not None:
        load_trunk(model, init.state_dict())
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        fitted = fit(model, signals["train"], labels["train"], cfg, {}, DEVICE, Path(folder) / "ft.pt",
                     lambda line: print(line, flush=True), NoProgress(), "init=ssl" if init else "init=random",
                     signals["validation"], labels["validation"], modality=modality)
    seconds = time.perf_counter() - tick
    aucs = [macro_auc(labels["test"], sigmoid(predict_signal_logits(fitted.model, signals[name], modality.spec,
                                                                    DEVICE))) for name in ("test", "test_panels")]
    return aucs[0], aucs[1], fitted.best_epoch, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/ptbxl-subset"))
    parser.add_argument("--epochs", type=int, default=30, help="SSL epochs")
    parser.add_argument("--ssl-batch", type=int, default=64)
    parser.add_argument("--ssl-lr", type=float, default=1e-3)
    parser.add_argument("--ssl-wd", type=float, default=1e-4)
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--proj-hidden", type=int, default=256)
    parser.add_argument("--proj-dim", type=int, default=128)
    parser.add_argument("--view-mask", type=float, default=0.5, help="share of views panel-masked")
    parser.add_argument("--misread", type=float, default=0.5, help="panel_mask: strip lands in a random lead")
    parser.add_argument("--min-crop", type=float, default=0.5, help="shortest time crop, share of 10 s")
    parser.add_argument("--ft-epochs", type=int, default=15, help="fine-tuning epochs per init (0: skip)")
    parser.add_argument("--probe-c", default="0.003,0.01,0.03,0.1,0.3,1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    grid = [float(c) for c in args.probe_c.split(",")]

    spec = SignalSpec()
    table = ptbxl.load_ptbxl(args.data)
    folds = choose_split(table)
    split = ptbxl.split_records(table, *folds)
    names = ("train", "validation", "test")
    signals = {name: read_split(args.data, rows, spec) for name, rows in zip(names, split)}
    labels = {name: ptbxl.multi_hot(rows) for name, rows in zip(names, split)}
    for i, name in enumerate(names):  # test_panels as ptbxl_signal builds it (seed 0)
        signals[f"{name}_panels"] = masked_copy(signals[name], spec.rate, args.seed + (i + 1) % 3)
    inputs = {name: batch_input(x, spec) for name, x in signals.items()}
    print(f"split {folds}: " + ", ".join(f"{n} {len(split[i])}" for i, n in enumerate(names)), flush=True)

    config = SignalModality(preset_config("signal", data=args.data, workers=0)).model_config(len(ptbxl.SUPERCLASSES))
    seed_everything(args.seed)
    random_net = SignalResNet(config)
    ssl_net = SignalResNet(config)
    ssl_net.load_state_dict(random_net.state_dict())  # same init: SSL is the only difference

    probe_random = probe_network(random_net, inputs, labels, grid)
    tick = time.perf_counter()
    history = pretrain(ssl_net, signals["train"], spec, args)
    ssl_seconds = time.perf_counter() - tick
    probe_ssl = probe_network(ssl_net, inputs, labels, grid)

    fine = {}
    if args.ft_epochs > 0:
        fine["random"] = finetune(None, signals, labels, args)
        fine["ssl"] = finetune(ssl_net, signals, labels, args)

    n = len(signals["train"])
    chance = math.log(2 * args.ssl_batch - 1)
    print(f"\n## Signal-branch SimCLR on PTB-XL ({cpu_model()}, {args.threads} thread(s), seed {args.seed})\n")
    print(f"Network: SignalNetConfig width {config.width}, depth {config.depth}, kernel {config.kernel}; "
          f"SSL on {n} training-fold records (labels unused), batch {args.ssl_batch}, tau {args.temperature}, "
          f"{args.epochs} epochs, {ssl_seconds:.0f} s. Probe/test: fold 9 ({len(signals['test'])} records), "
          f"C picked on fold 8 ({len(signals['validation'])}).\n")
    print(f"SSL loss per epoch (ln(2B-1) = {chance:.3f} for collapsed embeddings; spread 1 = spread, 0 = collapsed)\n")
    print("| epoch | loss | loss / ln(2B-1) | spread |")
    print("|---:|---:|---:|---:|")
    shown = sorted({1, 2, 3, 5} | set(range(10, args.epochs + 1, 5)) | {args.epochs})
    for row in history:
        if row["epoch"] in shown:
            print(f"| {row['epoch']} | {row['loss']:.3f} | {row['loss'] / chance:.2f} | {row['spread']:.3f} |")
    print("\nLinear probe (frozen features, one-vs-rest logistic regression), fold-9 macro AUC-ROC\n")
    print("| trunk | recorded: test AUC (val AUC, C) | panel-masked: test AUC (val AUC, C) | feature spread (test) |")
    print("|---|---:|---:|---:|")
    for name, result in (("random init", probe_random), ("SSL", probe_ssl)):
        cells = [f"{r[2]:.3f} ({r[1]:.3f}, {r[0]:g})" for r in (result["recorded"], result["panels"])]
        print(f"| {name} | {cells[0]} | {cells[1]} | {result['feature_spread']:.3f} |")
    if fine:
        print(f"\nFine-tuning (`signal` preset recipe, {args.ft_epochs} epochs max, best epoch on fold 8), "
              "fold-9 macro AUC-ROC\n")
        print("| init | recorded | panel-masked | best epoch | seconds |")
        print("|---|---:|---:|---:|---:|")
        for name, (rec, pan, best, secs) in fine.items():
            print(f"| {name} | {rec:.3f} | {pan:.3f} | {best} | {secs:.0f} |")
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
