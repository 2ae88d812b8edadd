"""`edgeecg ablate`: the paper's ablation variants, trained under one group-aware CV, in one table.

Every variant is the chosen preset (plus any option given) with a few
TrainConfig fields changed, trained by `run.train` into OUT/<variant>/ with
the same data, seed and therefore the same duplicate-aware folds (checked from
each run's splits.json). OUT/ablation.md and OUT/ablation.json compare
accuracy, macro-F1, macro AUC-ROC and ECE (mean ± std over folds) and the
training time. Re-running the command reuses finished variants and resumes an
interrupted one. `--seeds 42,1,2` repeats all of it per seed in OUT/seed<k>/
and tabulates the spread over seeds in OUT/ablation.md.

Mapping of the paper's ablations ("Ablation study", Tables 6-13) to fields:

- `full` (Tables 4/7 text, 0.973): SimCLR + conv blocks + attention + progressive
  unfreezing + domain augmentation, i.e. the preset unchanged.
- `cnn_resnet_no_ssl` (Table 6, "CNN + ResNet", 0.94): the custom CNN head
  (conv blocks + attention) on the ResNet trunk, supervised only: ssl=False.
- `simclr_resnet` (Table 7, "SimCLR + ResNet", 0.96): SimCLR pretraining of the
  trunk without the custom head: ssl=True, attention=False, unfreeze=''.
- `resnet_baseline` (Table 8, "ResNet baseline", 0.92): the trunk with a plain
  classifier: ssl=False, attention=False, unfreeze='' (no schedule, all layers
  train from epoch 1).
- `no_attention` (Table 9, 0.92): the full recipe without the attention block:
  attention=False.
- `ssl_linear_probe` (Table 10, 0.86, "only the SSL framework, excluding both the
  attention mechanism and any supervised fine-tuning of the encoder"):
  ssl=True, attention=False, and an unfreeze schedule that names `fusion` (and
  `attention`) at an epoch after the last one, so the whole encoder (trunk,
  conv blocks, fusion) stays frozen and only the classifier trains.
- `reduced_lr` (Table 11, 0.91): backbone lr 3e-4 -> 1e-4 and projection-head lr
  1e-3 -> 3e-4. The paper calls this a fine-tuning change but quotes the SSL
  phase's values (fine-tuning has one lr, 2e-3, and no projection head), so
  the SSL learning rates change: ssl_lr_backbone=1e-4, ssl_lr_head=3e-4.
- `no_domain_aug` (Table 12, 0.94 without vs 0.96 with): the fine-tuning
  augmentation off, domain_aug=False. The paper's augmentations are on 1-D
  signals (time scaling, jitter, baseline drift); ours are their image
  counterparts (rotation, colour jitter, affine, perspective, erasing). The
  SimCLR views stay, as they define the SSL task.
- `with_domain_aug` / `with_ssl`: the other arm of Table 12 and of the SSL
  comparison, for presets that leave a component out (`edge` has no SSL and no
  domain augmentation). On `paper` they equal `full` and are not trained again.

Variants that change nothing the preset trains with (e.g. `no_domain_aug`
on `edge`, which has domain_aug=False already; `reduced_lr` where SSL is off)
are not trained again: their row reuses the run of the first variant with the
same effective settings and says so.

Deviations, stated in the table: the 1x1 conv blocks are part of every
SimCardioNet (ModelConfig has no switch to drop them), so the "ResNet" variants
keep them between trunk and classifier; Table 13 (temporal attention for
1-D signals) has no image counterpart here and is not run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import numpy as np

from edgeecg.atomic import write_text
from edgeecg.errors import EdgeECGError

from .cli import config_from_options, config_options, resume
from .config import PRESETS, TrainConfig
from .run import train


@dataclass(frozen=True)
class Variant:
    name: str
    paper: str  # where the paper reports it
    paper_accuracy: float
    changes: dict  # TrainConfig fields set on top of the preset ("unfreeze" of the probe is computed)


VARIANTS = {v.name: v for v in (
    Variant("full", "Table 4 (SimCardioNet)", 0.9731, {}),
    Variant("cnn_resnet_no_ssl", "Table 6 (CNN + ResNet)", 0.94, {"ssl": False}),
    Variant("simclr_resnet", "Table 7 (SimCLR + ResNet)", 0.96, {"ssl": True, "attention": False, "unfreeze": ""}),
    Variant("resnet_baseline", "Table 8 (ResNet baseline)", 0.92, {"ssl": False, "attention": False, "unfreeze": ""}),
    Variant("no_attention", "Table 9 (no attention)", 0.92, {"attention": False}),
    Variant("ssl_linear_probe", "Table 10 (SSL only)", 0.86, {"ssl": True, "attention": False, "unfreeze": None}),
    Variant("reduced_lr", "Table 11 (reduced lrs)", 0.91, {"ssl_lr_backbone": 1e-4, "ssl_lr_head": 3e-4}),
    Variant("no_domain_aug", "Table 12 (no augmentation)", 0.94, {"domain_aug": False}),
    Variant("with_domain_aug", "Table 12 (with augmentation)", 0.96, {"domain_aug": True}),
    Variant("with_ssl", "Tables 4/6 (with SSL)", 0.9731, {"ssl": True}),
)}
REPORTED = (("accuracy", "Accuracy"), ("f1_macro", "Macro-F1"), ("auc_roc_macro", "Macro AUC"), ("ece", "ECE"))


def linear_probe_schedule(cfg: TrainConfig) -> str:
    """Unfreeze attention and fusion only after the last epoch: the encoder never trains, the classifier does."""
    never = max(cfg.epochs, cfg.final_epochs) + 1
    return f"attention:{never},fusion:{never}"


def variant_config(base: TrainConfig, name: str, out: Path) -> TrainConfig:
    """`base` with the variant's changes, writing to OUT/<name>."""
    if name not in VARIANTS:
        raise EdgeECGError(f"unknown ablation variant {name!r}; choose from {', '.join(VARIANTS)}")
    changes = dict(VARIANTS[name].changes)
    if changes.get("unfreeze", "") is None:
        changes["unfreeze"] = linear_probe_schedule(base)
    return replace(base, out=str(Path(out) / name), **changes)


MACHINERY_FIELDS = ("out", "workers", "device")  # where and how fast a run trains, not what it trains
SSL_ONLY_FIELDS = ("ssl_epochs", "ssl_batch", "ssl_lr_backbone", "ssl_wd_backbone", "ssl_lr_head", "ssl_wd_head",
                   "ssl_tmax", "ssl_eta_min", "ssl_temperature", "cosine_weight", "cosine_over", "triplet_margin",
                   "ssl_views", "ssl_min_scale", "ssl_jitter", "ssl_colour", "ssl_blur", "ssl_head_bn")


def training_settings(cfg: TrainConfig) -> dict:
    """What a run trains with: its config without the machinery fields, and without SSL knobs when SSL is off."""
    ignored = MACHINERY_FIELDS + (() if cfg.ssl else SSL_ONLY_FIELDS)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k not in ignored}


def effective_settings(cfg: TrainConfig) -> str:
    """`training_settings` as one comparable key."""
    return json.dumps(training_settings(cfg), sort_keys=True)


def _different_settings(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    """Fields in which a run folder's saved config trains differently from the one this ablation would train."""
    a, b = training_settings(saved), training_settings(wanted)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def train_variant(cfg: TrainConfig) -> Path:
    """Train a variant, resume it if it was interrupted, or reuse it if it finished with the same settings."""
    run_dir = Path(cfg.out)
    if (run_dir / "config.json").is_file():
        differs = _different_settings(TrainConfig.load(run_dir / "config.json"), cfg)
        if differs:
            raise EdgeECGError(f"{run_dir} holds a run with other settings ({', '.join(differs)}); "
                               "use another --out")
        return run_dir if (run_dir / "metrics.json").is_file() else resume(run_dir)
    return train(cfg)


def summarize(run_dir: Path) -> dict:
    """The comparison numbers of one finished run folder."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timing = metrics["timing"]
    seconds = (timing["ssl_time_seconds"] + sum(timing["fold_training_time_seconds"])
               + timing["final_model_training_seconds"])
    row = {key: metrics["mean_std"][key] for key, _ in REPORTED}
    return {**row, "training_seconds": seconds, "device": timing.get("device", "?"), "images": metrics["data"]["images"],
            "folds": len(metrics["folds"])}


def _pm(stat: dict) -> str:
    return "n/a" if math.isnan(stat["mean"]) else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _changes_text(cfg: TrainConfig, name: str) -> str:
    changes = {k: getattr(cfg, k) for k in VARIANTS[name].changes}
    return ", ".join(f"{k}={v!r}" for k, v in changes.items()) or "preset as is"


def markdown_table(report: dict) -> str:
    """One row per variant; with several seeds, the spread over seeds of each seed's fold mean."""
    seeds = report.get("seeds")
    if seeds:
        title = f"{report['folds']}-fold group CV repeated for seeds {', '.join(map(str, seeds))}"
        spread = ("Mean ± std over seeds of each seed's fold mean (each seed draws other folds and other initial "
                  "weights; OUT/seed<k>/ablation.md holds each seed's own table)")
    else:
        title = f"{report['folds']}-fold group CV, seed {report['seed']}"
        spread = "Every variant used the same folds (identical splits.json). Mean ± std over folds"
    lines = [f"# Ablation: preset `{report['preset']}`, {title}",
             "",
             f"Data: `{report['data']}` ({report['images']} images). {spread}; ECE before temperature scaling; "
             "training time = SSL + fold fine-tuning + final model, in seconds on the device the run trained on"
             + (" (mean over seeds)." if seeds else "."),
             "",
             "| Variant | Paper | Paper acc. | Changes | " + " | ".join(t for _, t in REPORTED)
             + (" | Accuracy per seed" if seeds else "") + " | Training s |",
             "|---|---|---|---|" + "---|" * (len(REPORTED) + bool(seeds)) + "---|"]
    for row in report["variants"]:
        cells = [f"`{row['name']}`", row["paper"], f"{row['paper_accuracy']:.2f}", row["changes"],
                 *(_pm(row[k]) for k, _ in REPORTED)]
        if seeds:
            cells.append(", ".join(f"{v:.3f}" for v in row["accuracy"]["per_seed"]))
        cells.append(f"{row['training_seconds']:.0f} ({row['device']})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The paper's accuracies are its own (ResNet-50, its data split); they are context, not targets. "
              "Conv blocks stay in the 'ResNet' variants (no switch in ModelConfig); Table 13 (temporal attention "
              "on 1-D signals) is not run. Variant mapping: `edgeecg.train.ablate` docstring."]
    return "\n".join(lines) + "\n"


def _write_report(report: dict, out: Path) -> None:
    write_text(out / "ablation.json", json.dumps(report, indent=2))
    write_text(out / "ablation.md", markdown_table(report))


def run_ablation(base: TrainConfig, names: list[str], out: Path, preset: str = "", announce=print) -> dict:
    """Train (or reuse) every named variant under `out`, check they share folds, write the comparison."""
    out = Path(out)
    configs = [variant_config(base, name, out) for name in names]
    rows, splits, first_with = [], {}, {}
    for i, (name, cfg) in enumerate(zip(names, configs), 1):
        same_as = first_with.setdefault(effective_settings(cfg), name)
        if same_as == name:
            announce(f"ablation variant {i}/{len(names)}: {name}: {_changes_text(cfg, name)}")
            run_dir = train_variant(cfg)
        else:
            announce(f"ablation variant {i}/{len(names)}: {name}: trains as {same_as} on this preset; reusing its run")
            run_dir = Path(configs[names.index(same_as)].out)
        splits[name] = (run_dir / "splits.json").read_text()
        variant = VARIANTS[name]
        changes = _changes_text(cfg, name) + ("" if same_as == name else f" (same run as `{same_as}`)")
        rows.append({"name": name, "paper": variant.paper, "paper_accuracy": variant.paper_accuracy,
                     "changes": changes, "run": str(run_dir), "same_run_as": None if same_as == name else same_as,
                     **summarize(run_dir)})
    first = names[0]
    for name in names[1:]:
        if splits[name] != splits[first]:
            raise EdgeECGError(f"variants {first} and {name} were trained on different folds "
                               f"(compare their splits.json); rerun them into a fresh --out")
    report = {"preset": preset, "base_config": asdict(base), "data": base.data,
              "folds": base.folds, "seed": base.seed, "images": rows[0]["images"], "same_folds": True,
              "variants": rows}
    _write_report(report, out)
    return report


def run_over_seeds(base: TrainConfig, names: list[str], out: Path, seeds: list[int], preset: str = "",
                   announce=print) -> dict:
    """The ablation once per seed into OUT/seed<k>/, then one table of the spread over seeds.

    One CV of a small, noisy dataset can rank the variants by chance; repeating it
    with other folds and initialisations shows which differences survive.
    """
    out = Path(out)
    reports = []
    for seed in seeds:
        announce(f"ablation seed {seed}")
        reports.append(run_ablation(replace(base, seed=seed), names, out / f"seed{seed}", preset, announce))
    rows = []
    for i, name in enumerate(names):
        per_seed = [r["variants"][i] for r in reports]
        stats = {}
        for key, _ in REPORTED:
            values = [row[key]["mean"] for row in per_seed]
            stats[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "per_seed": values}
        rows.append({**{k: per_seed[0][k] for k in ("name", "paper", "paper_accuracy", "changes", "same_run_as")},
                     **stats, "runs": [row["run"] for row in per_seed],
                     "training_seconds": float(np.mean([row["training_seconds"] for row in per_seed])),
                     "device": ", ".join(sorted({row["device"] for row in per_seed}))})
    report = {"preset": preset, "base_config": asdict(base), "data": base.data, "folds": base.folds,
              "seeds": list(seeds), "images": reports[0]["images"], "variants": rows}
    _write_report(report, out)
    return report


def _seed_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"expected distinct comma-separated integers, got {text!r}")
    return seeds


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="paper", show_default=True,
              help="recipe every variant starts from: paper (ResNet-50, GPU), edge, tiny (tests)")
@click.option("--variants", default=",".join(VARIANTS), show_default=True,
              help="comma-separated variants to train, from: " + ", ".join(VARIANTS))
@click.option("--seeds", default=None, metavar="S1,S2,...",
              callback=lambda ctx, param, text: _seed_list(text),
              help="repeat the ablation for these seeds (OUT/seed<k>/) and tabulate the spread over seeds")
@config_options
def ablate(preset: str, variants: str, seeds: list[int] | None, **options) -> None:
    """Train the paper's ablation variants under one group-aware CV and write OUT/ablation.md + .json.

    --out is the ablation folder (runs land in OUT/<variant>/); any other training
    option changes the preset for every variant, before each variant's own changes.
    """
    names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if not names or unknown:
        raise EdgeECGError(f"unknown ablation variant(s) {', '.join(unknown) or '(none given)'}; "
                           f"choose from {', '.join(VARIANTS)}")
    out = Path(options.pop("out") or f"runs/ablation-{preset}")
    base = config_from_options(preset, options, new_run=False)
    names, announce = list(dict.fromkeys(names)), (lambda m: click.echo(m, err=True))
    if seeds:
        report = run_over_seeds(base, names, out, seeds, preset, announce)
    else:
        report = run_ablation(base, names, out, preset, announce)
    click.echo(markdown_table(report), nl=False)
    click.echo(f"wrote {out / 'ablation.md'} and {out / 'ablation.json'}")
