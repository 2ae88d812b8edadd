"""`edgeecg train`: every TrainConfig field is a flag; a preset fills in what is not given.

Also the one way from a command's options to a run: `config_from_options` (shared with
`edgeecg ablate`) and `dispatch`/`resume`, which pick the recipe a configuration names.
They live here, above every recipe module, so no recipe imports another.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import click

from edgeecg.errors import EdgeECGError

from . import distributed
from .config import PRESETS, TrainConfig, parse_unfreeze, preset_config
from .ddp import default_process_count, launch, under_torchrun
from .modality import MODALITIES
from .ptbxl_signal import run_ptbxl_signal
from .ptbxl_train import run_ptbxl
from .run import train as train_folds

HELP = {
    "data": "dataset: a folder with one sub-folder per class, or a CSV manifest (file,label)",
    "out": "run folder to create",
    "exclude": "listing (folder or CSV) whose images, and their duplicates, are kept out of training; repeatable",
    "max_per_class": "use at most this many duplicate groups per class (0 = all)",
    "pretrained": "start the trunk from ImageNet weights if they are already on disk",
    "channels": "conv_block1..3 output channels, e.g. 1024,512,512",
    "dropouts": "conv_block1..3 dropout, e.g. 0.05,0.1,0.2",
    "unfreeze": "progressive unfreezing, PART:EPOCH list (trunk, conv_block1..3, attention, fusion, all); '' trains everything from epoch 1",
    "cosine_over": "cosine term of the hybrid loss over 'positives' (default) or 'all' pairs (paper's literal eq. 4)",
    "triplet_margin": "add a triplet loss with this margin (0 = off; the paper uses 0.1)",
    "ssl_views": "SSL views: paper (independent strong/moderate crops) or paired (two views of one shared region)",
    "ssl_min_scale": "SSL: smallest crop as a share of the page's area (paper 0.1; 1 = the whole page)",
    "ssl_jitter": "SSL paired views: shift/rescale of each view within the shared region",
    "ssl_colour": "SSL strong view's colour jitter strength (paper 0.8; 0 = none)",
    "ssl_blur": "SSL strong view's largest Gaussian blur sigma in pixels (paper 2; 0 = none)",
    "ssl_head_bn": "SSL: BatchNorm after the projection head's hidden layer",
    "dedup_train": "train on one file per duplicate group",
    "final_epochs": "epochs for the final model (0 = median of the folds' best epochs)",
    "device": "auto, cpu, cuda or cuda:N",
    "signal_norm": "signal model input normalisation: median (offset removed, mV kept) or zscore",
    "panel_mask": "PTB-XL signals: share of training records masked to the 2.5 s panels of a 3x4+1 page",
    "strip_misread": "of those, share whose 10 s strip (lead II) lands in a random lead's channel, as the digitizer misreads it",
    "digitized_renders": "PTB-XL signals: also train on each record drawn as a page of a random style (half photo-like) "
                         "and read back by the digitizer",
    "init_from": "run (folder or .pt) of the same branch whose weights start this model (image: all but the "
                 "classifier; signal: the trunk), e.g. a PTB-XL run (--dataset ptbxl) before a Mendeley one",
    "signal_aug": "jitter training signals: gain (page and per lead), 0.02 mV noise, shift up to 0.2 s",
}


def _option(field: dataclasses.Field):
    name = field.name.replace("_", "-")
    help_text = HELP.get(field.name, "")
    if field.type in ("bool", bool):
        return click.option(f"--{name}/--no-{name}", field.name, default=None, help=help_text or " ")
    if field.name == "exclude":
        return click.option(f"--{name}", field.name, multiple=True, help=help_text)
    if field.name in ("channels", "dropouts"):
        kind = int if field.name == "channels" else float
        return click.option(f"--{name}", field.name, default=None, help=help_text,
                            callback=lambda ctx, param, text: _triple(text, kind))
    kind = {"int": int, "float": float, "str": str}[str(field.type)]
    return click.option(f"--{name}", field.name, type=kind, default=None, help=help_text or " ")


def _triple(text: str | None, kind) -> tuple | None:
    """'1024,512,512' -> (1024, 512, 512); the CLI's three-values-per-block options."""
    if text is None:
        return None
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three comma-separated numbers, got {text!r}") from None
    if len(values) != 3:
        raise click.BadParameter(f"expected three comma-separated numbers, got {text!r}")
    return values


def config_options(func: Callable) -> Callable:
    """Every TrainConfig field (but dataset and modality, which the commands choose) as an option of `func`."""
    for field in reversed([f for f in dataclasses.fields(TrainConfig) if f.name not in ("dataset", "modality")]):
        func = _option(field)(func)
    return func


DATA_HELP = {"images": "a folder with one sub-folder per class, or a CSV manifest",
             "ptbxl": "the PTB-XL folder holding ptbxl_database.csv"}


def config_from_options(preset: str, options: dict, dataset: str = "images", new_run: bool = True) -> TrainConfig:
    """A command's TrainConfig: the preset, then every option given (None = not given); bad input is one line.

    With `new_run`, --out (default runs/PRESET, runs/ptbxl-PRESET for PTB-XL) must not hold a run yet,
    so a repeated command cannot write over one; `edgeecg ablate` passes False, its --out being the
    folder of its variant runs. PTB-XL splits by strat_fold (no --exclude) and trains with plain BCE
    unless --class-weights is given (the `ptbxl_train` docstring says why).
    """
    options = dict(options)
    if not options.get("data"):
        raise EdgeECGError(f"--data is required ({DATA_HELP[dataset]})")
    exclude = list(options.pop("exclude", None) or ())
    if dataset == "ptbxl":
        if exclude:
            raise EdgeECGError("--exclude applies to image folders; PTB-XL splits by strat_fold")
        if options.get("class_weights") is None:
            options["class_weights"] = False
    options.update(dataset=dataset, exclude=exclude or None)
    if new_run:
        out = Path(options.get("out") or f"runs/{'ptbxl-' if dataset == 'ptbxl' else ''}{preset}")
        if (out / "config.json").exists():
            raise EdgeECGError(f"{out} already holds a run; use --resume {out} or another --out")
        options["out"] = str(out)
    try:
        cfg = preset_config(preset, **options)
        parse_unfreeze(cfg.unfreeze)  # a bad --unfreeze is refused before a run folder exists
    except (TypeError, ValueError) as exc:
        raise EdgeECGError(str(exc)) from None
    return cfg


def dispatch(cfg: TrainConfig) -> Path:
    """The recipe `cfg` names: a labelled folder (image or signal branch), PTB-XL renders or PTB-XL signals."""
    if cfg.dataset == "ptbxl":
        return run_ptbxl_signal(cfg) if cfg.modality == "signal" else run_ptbxl(cfg)
    return train_folds(cfg)


def resume(run_dir: Path) -> Path:
    """Continue an interrupted run with the configuration it was started with."""
    config = Path(run_dir) / "config.json"
    cfg = distributed.from_main(lambda: TrainConfig.load(config) if config.is_file() else None)
    if cfg is None:
        raise EdgeECGError(f"{run_dir}: not a run folder (no config.json)")
    cfg.out = str(run_dir)
    return dispatch(cfg)


@click.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="paper", show_default=True,
              help="paper (ResNet-50, GPU), edge (mobile trunk, 2 CPU cores < 1 h), tiny (tests)")
@click.option("--dataset", type=click.Choice(["images", "ptbxl"]), default="images", show_default=True)
@click.option("--modality", type=click.Choice(MODALITIES), default=None,
              help="image: SimCardioNet on the page crop (default); signal: 1-D ResNet on the digitized leads")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="continue an interrupted run folder with its saved configuration")
@click.option("--ddp", type=int, is_flag=False, flag_value=0, default=None, metavar="[N]",
              help="DistributedDataParallel over N processes on this machine (default: one per GPU, 2 on CPU); "
                   "for several machines see torchrun -m edgeecg.train.ddp")
@config_options
def train(preset: str, dataset: str, modality: str | None, resume_dir: Path | None, ddp: int | None,
          **options) -> None:
    """SimCLR pretraining + fine-tuning with progressive unfreezing, under stratified group k-fold CV."""
    if ddp is not None and (dataset == "ptbxl" or modality == "signal"):
        raise EdgeECGError("--ddp trains the image branch on --dataset images only")
    if ddp is not None and under_torchrun():
        raise EdgeECGError("leave out --ddp under torchrun: torchrun already started the processes")
    options["modality"] = modality
    if (modality or PRESETS[preset].get("modality")) == "signal":
        for name, image_only in (("ssl", False), ("unfreeze", "")):  # a preset's image settings do not apply
            options[name] = image_only if options[name] is None else options[name]
    if resume_dir is not None:
        entry, arg = resume, resume_dir
    else:
        entry, arg = dispatch, config_from_options(preset, options, dataset)
    if ddp is None:
        run_dir = entry(arg)
    else:
        run_dir = launch(entry, arg, ddp or default_process_count(options.get("device") or "auto"))
    click.echo(f"run folder: {run_dir}")
