"""Which pretraining gives the image branch domain weights without ImageNet (issue 18): five routes, 3 seeds.

Routes, each from the same random init per seed:
  random          no pretraining
  ssl_scans       SimCLR (the edge preset's whole-page recipe) on the distinct Mendeley scans, labels unused
  ssl_renders     the same SimCLR on those scans plus photo-like/clean renders of PTB-XL's training folds
  ssl_drawings    SimCLR whose two views are two drawings of one PTB-XL training record (the run's render and
                  two photo-like ones from other seeds: other distortions, grid colour, blur, JPEG), plus the
                  scans' two views of one page (`train.ssl.DrawingPairs`)
  supervised      multi-label training on the PTB-XL training-fold renders (5 superclasses, fold 8 for
                  early stopping): a second route to domain weights
Each route's weights are then scored the same way:
  - Mendeley linear probe: logistic regression on frozen features, the 3 group folds (accuracy);
  - Mendeley fine-tuning: the edge preset's recipe (everything trains, AdamW, class weights) for a fixed
    number of epochs on two group folds, macro-F1 and accuracy on the third (no selection on the test fold);
  - PTB-XL: a linear probe (macro AUC on fold 9 from folds 1-7 features) and fine-tuning on folds 1-7 with
    fold 8 for early stopping, macro AUC on clean fold-9 renders. For `supervised` the pretraining run is
    already that fine-tuning, so its fold-9 figure is the pretrained model's own.
The group folds are fixed (seed 42) for every seed; the seed changes the init, the views and the batches.

    python benchmarks/pretraining_routes.py --ptbxl ../shared/data/ptbxl-subset --seeds 42,1,2

Sized for 2 CPU cores (resnet18 trunk under the edge head, 96 px, one scan per duplicate group, the held-out
calib_data groups left out). Prints the machine, the table, and writes every figure to --out/results.json
(a rerun resumes where it stopped).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssl_diagnose import mendeley_crops  # noqa: E402  (same scans and crops as the SSL diagnosis)

from edgeecg.atomic import write_text  # noqa: E402
from edgeecg.backends import sigmoid  # noqa: E402
from edgeecg.machine import cpu_model  # noqa: E402
from edgeecg.metrics import multilabel_metrics  # noqa: E402
from edgeecg.train import ptbxl  # noqa: E402
from edgeecg.train.config import preset_config  # noqa: E402
from edgeecg.train.data import group_kfold  # noqa: E402
from edgeecg.train.finetune import fit  # noqa: E402
from edgeecg.train.loops import seed_everything  # noqa: E402
from edgeecg.train.modality import ImageModality, load_all_but_classifier, model_config  # noqa: E402
from edgeecg.train.model import build_model  # noqa: E402
from edgeecg.train.ptbxl_train import render_split  # noqa: E402
from edgeecg.train.ssl import pretrain  # noqa: E402
from edgeecg.train.ssl_probe import NoProgress, embed, recalibrate_batchnorm, spread_of, split_probe  # noqa: E402

ROUTES = ("random", "ssl_scans", "ssl_renders", "ssl_drawings", "supervised")
DRAWING_SEEDS = (1, 2)  # render seeds of the extra photo-like drawings (the run's own is FOLD_SEED)
FOLD_SEED = 42


def trunk_weights(model: torch.nn.Module) -> dict:
    """Everything but the classifier: what a pretraining route hands to fine-tuning."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier.")}


def network(cfg, classes: int, weights: dict) -> torch.nn.Module:
    model = build_model(model_config(cfg, classes))
    load_all_but_classifier(model, weights, "the pretrained route")
    return model


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Macro AUC over the superclasses, as every PTB-XL run reports it."""
    return multilabel_metrics(y, probs, ptbxl.SUPERCLASSES)["auc_roc_macro"]


def ptbxl_probe(model, train_x, train_y, test_x, test_y, device) -> float:
    """Fold-9 macro AUC of one-vs-rest logistic regressions on frozen features of folds 1-7."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    recalibrate_batchnorm(model, train_x, device)
    f_train, _ = embed(model, train_x, device)
    f_test, _ = embed(model, test_x, device)
    probe = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.1, max_iter=2000)))
    probe.fit(f_train, train_y)
    return macro_auc(test_y, probe.predict_proba(f_test))


class Context:
    """The data and settings every route is scored on."""

    def __init__(self, args):
        self.args = args
        self.device = torch.device("cpu")
        self.table, self.scans = mendeley_crops(args.data, args.size, 0, FOLD_SEED)
        self.folds = group_kfold(self.table, 3, FOLD_SEED)
        cfg = self.config(FOLD_SEED)
        df = ptbxl.load_ptbxl(args.ptbxl)
        split = ptbxl.split_records(df)
        tick = time.perf_counter()
        self.ptb = {name: render_split(args.ptbxl, rows, cfg, photo)
                    for name, rows, photo in (("train", split.train, "some"), ("val", split.val, "never"),
                                              ("test", split.test, "never"))}
        self.render_seconds = time.perf_counter() - tick
        self._drawings: np.ndarray | None = None

    def drawings(self) -> np.ndarray:
        """N x D x S x S x 3: each training record's drawings (renders kept by every seed), then each scan D times."""
        if self._drawings is None:
            rows = self.ptb["train"].rows
            extra = [render_split(self.args.ptbxl, rows, self.config(seed), "always") for seed in DRAWING_SEEDS]
            kept = [i for i, ecg_id in enumerate(rows.index) if all(ecg_id in split.rows.index for split in extra)]
            stacks = [self.ptb["train"].images[kept]]
            for split in extra:
                where = {ecg_id: i for i, ecg_id in enumerate(split.rows.index)}
                stacks.append(split.images[[where[ecg_id] for ecg_id in rows.index[kept]]])
            renders = np.stack(stacks, axis=1)
            scans = np.repeat(self.scans[:, None], renders.shape[1], axis=1)
            self._drawings = np.concatenate([scans, renders])
        return self._drawings

    def config(self, seed: int, **overrides):
        a = self.args
        return preset_config("edge", trunk=a.trunk, input_size=a.size, seed=seed, pretrained=False, workers=0,
                             ssl=True, ssl_epochs=a.ssl_epochs, epochs=a.ft_epochs, lr=a.ft_lr, **overrides)

    def log(self, text: str) -> None:
        if self.args.verbose:
            print("   ", text, flush=True)


def pretrained(route: str, seed: int, ctx: Context, out: Path) -> tuple[dict, dict]:
    """(trunk weights, pretraining record) of one route."""
    cfg = ctx.config(seed)
    seed_everything(seed)
    model = build_model(model_config(cfg, len(ptbxl.SUPERCLASSES) if route == "supervised" else 4))
    record: dict = {}
    tick = time.perf_counter()
    if route.startswith("ssl_"):
        images = {"ssl_scans": lambda: ctx.scans, "ssl_drawings": ctx.drawings,
                  "ssl_renders": lambda: np.concatenate([ctx.scans, ctx.ptb["train"].images])}[route]()
        history, _ = pretrain(model, images, cfg, ctx.device, out / f"{route}-{seed}-ssl.pt", ctx.log, NoProgress())
        bound = math.log(2 * cfg.ssl_batch - 1)
        record = {"pages": len(images), "loss_over_chance": [round(h["loss"] / bound, 3) for h in history],
                  "train_spread": [round(h["embedding_spread"], 3) for h in history]}
    elif route == "supervised":
        train, val, test = ctx.ptb["train"], ctx.ptb["val"], ctx.ptb["test"]
        fitted = fit(model, train.images, train.labels, cfg, {}, ctx.device, out / f"{route}-{seed}-sup.pt", ctx.log,
                     NoProgress(), "PTB-XL supervised", val.images, val.labels, epochs=ctx.args.sup_epochs)
        logits = ImageModality(cfg).predict(fitted.model, test.images, ctx.device)
        record = {"pages": len(train.images), "best_epoch": fitted.best_epoch,
                  "ptbxl_fold9_auc": macro_auc(test.labels, sigmoid(logits))}
    record["seconds"] = time.perf_counter() - tick
    return trunk_weights(model), record


def score(route: str, seed: int, weights: dict, record: dict, ctx: Context, out: Path) -> dict:
    cfg = ctx.config(seed)
    table, scans, device = ctx.table, ctx.scans, ctx.device
    probe_net = network(cfg, 4, weights)
    recalibrate_batchnorm(probe_net, scans, device)
    features, projections = embed(probe_net, scans, device)
    row = {"route": route, "seed": seed, "pretraining": record, "spread": spread_of(projections),
           "mendeley_probe_accuracy": float(np.mean(split_probe(features, table.labels, ctx.folds)))}
    f1s, accs = [], []
    for k, (train, test) in enumerate(ctx.folds):
        seed_everything(seed)
        model = network(cfg, 4, weights)
        fitted = fit(model, scans[train], table.labels[train], cfg, {}, device, out / f"{route}-{seed}-ft{k}.pt",
                     ctx.log, NoProgress(), f"Mendeley fold {k}")
        predicted = ImageModality(cfg).predict(fitted.model, scans[test], device).argmax(1)
        f1s.append(float(f1_score(table.labels[test], predicted, average="macro")))
        accs.append(float((predicted == table.labels[test]).mean()))
    row.update(mendeley_f1=float(np.mean(f1s)), mendeley_f1_folds=f1s, mendeley_accuracy=float(np.mean(accs)))
    train, val, test = ctx.ptb["train"], ctx.ptb["val"], ctx.ptb["test"]
    classes = len(ptbxl.SUPERCLASSES)
    row["ptbxl_probe_auc"] = ptbxl_probe(network(cfg, classes, weights), train.images, train.labels, test.images,
                                         test.labels, device)
    if route == "supervised":
        row["ptbxl_auc"] = record["ptbxl_fold9_auc"]
    else:
        seed_everything(seed)
        fitted = fit(network(cfg, classes, weights), train.images, train.labels, cfg, {}, device,
                     out / f"{route}-{seed}-ptb.pt", ctx.log, NoProgress(), "PTB-XL", val.images, val.labels,
                     epochs=ctx.args.sup_epochs)
        row["ptbxl_auc"] = macro_auc(test.labels, sigmoid(ImageModality(cfg).predict(fitted.model, test.images,
                                                                                   device)))
        row["ptbxl_finetune"] = {"best_epoch": fitted.best_epoch, "train_loss": [h["train_loss"] for h in fitted.history],
                                 "val_auc": [h["val_score"] for h in fitted.history]}
    for stale in out.glob(f"{route}-{seed}-*.pt"):
        stale.unlink()
    return row


def summary_table(rows: list[dict]) -> str:
    keys = (("mendeley_probe_accuracy", "Mendeley probe acc."), ("mendeley_f1", "Mendeley fine-tuned macro-F1"),
            ("mendeley_accuracy", "Mendeley fine-tuned acc."), ("ptbxl_probe_auc", "PTB-XL probe AUC"),
            ("ptbxl_auc", "PTB-XL fine-tuned AUC"), ("spread", "spread"))
    lines = ["| route | seeds | " + " | ".join(title for _, title in keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for route in ROUTES:
        mine = [r for r in rows if r["route"] == route]
        if mine:
            cells = [f"{np.mean([r[k] for r in mine]):.3f} ± {np.std([r[k] for r in mine]):.3f}" for k, _ in keys]
            seeds = ", ".join(str(r["seed"]) for r in mine)
            lines.append(f"| {route} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mendeley-ecg-images")
    parser.add_argument("--ptbxl", type=Path, default=REPO.parent / "shared" / "data" / "ptbxl-subset")
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--trunk", default="resnet18")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--ssl-epochs", type=int, default=12)
    parser.add_argument("--sup-epochs", type=int, default=12, help="most epochs on PTB-XL (fold 8 stops early)")
    parser.add_argument("--ft-epochs", type=int, default=12, help="fixed fine-tuning epochs on Mendeley")
    parser.add_argument("--ft-lr", type=float, default=1e-3,
                        help="AdamW lr of every supervised stage (the edge preset's 1e-3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="print every epoch")
    parser.add_argument("--out", type=Path, default=Path("runs/pretraining-routes"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    routes = args.routes.split(",")
    unknown = set(routes) - set(ROUTES)
    if unknown:
        parser.error(f"unknown route(s) {sorted(unknown)}; choose from {', '.join(ROUTES)}")
    results = args.out / "results.json"
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("routes", "seeds", "threads", "verbose", "out")}
    saved = json.loads(results.read_text()) if results.exists() else {"settings": settings, "rows": []}
    if saved["settings"] != settings:
        sys.exit(f"error: {results} holds rows made with other settings ({saved['settings']}); use another --out")
    rows = saved["rows"]
    done = {(r["route"], r["seed"]) for r in rows}
    ctx = Context(args)
    print(f"machine: {cpu_model()}, {args.threads} torch thread(s), Python {platform.python_version()}, torch "
          f"{torch.__version__} | trunk {args.trunk} at {args.size} px | Mendeley {len(ctx.table)} distinct scans "
          f"(majority {np.bincount(ctx.table.labels).max() / len(ctx.table):.3f}) | PTB-XL renders "
          f"{', '.join(f'{k} {len(v.rows)}' for k, v in ctx.ptb.items())} ({ctx.render_seconds:.0f} s) | SSL "
          f"{args.ssl_epochs}, PTB-XL <= {args.sup_epochs}, Mendeley {args.ft_epochs} epochs", flush=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for route in routes:
            if (route, seed) in done:
                continue
            tick = time.perf_counter()
            weights, record = pretrained(route, seed, ctx, args.out)
            row = score(route, seed, weights, record, ctx, args.out)
            row["seconds"] = time.perf_counter() - tick
            rows.append(row)
            write_text(results, json.dumps({"settings": settings, "rows": rows}, indent=1))
            print(f"{route:>12} seed {seed:>2} | probe {row['mendeley_probe_accuracy']:.3f} | F1 "
                  f"{row['mendeley_f1']:.3f} acc {row['mendeley_accuracy']:.3f} | PTB-XL probe "
                  f"{row['ptbxl_probe_auc']:.3f} fine-tuned {row['ptbxl_auc']:.3f} | spread {row['spread']:.2f} | "
                  f"{row['seconds']:.0f} s | {record}", flush=True)
    print()
    print(summary_table(rows))


if __name__ == "__main__":
    main()
