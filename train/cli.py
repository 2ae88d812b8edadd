"""`edgeecg train`: every TrainConfig field is a flag; a preset fills in what is not given."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edgeecg.errors import EdgeECGError

from .config import PRESETS, TrainConfig, preset_config
from .modality import MODALITIES

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
    "dedup_train": "train on one file per duplicate group",
    "final_epochs": "epochs for the final model (0 = median of the folds' best epochs)",
    "device": "auto, cpu, cuda or cuda:N",
    "signal_norm": "signal model input normalisation: median (offset removed, mV kept) or zscore",
    "panel_mask": "PTB-XL signals: share of training records masked to the 2.5 s panels of a 3x4+1 page",
    "strip_misread": "of those, share whose 10 s strip (lead II) lands in a random lead's channel, as the digitizer misreads it",
    "digitized_renders": "PTB-XL signals: also train on each record drawn as a page of a random style (half photo-like) "
                         "and read back by the digitizer",
    "init_from": "signal run (folder or .pt) whose trunk starts this model, e.g. a PTB-XL signal run",
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


def _with_config_options(func):
    for field in reversed([f for f in dataclasses.fields(TrainConfig) if f.name not in ("dataset", "modality")]):
        func = _option(field)(func)
    return func


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
@_with_config_options
def train(preset: str, dataset: str, modality: str | None, resume_dir: Path | None, ddp: int | None,
          **options) -> None:
    """SimCLR pretraining + fine-tuning with progressive unfreezing, under stratified group k-fold CV."""
    from .run import resume, train as run_training

    def execute(fn, arg):
        if ddp is None:
            return fn(arg)
        from .ddp import default_process_count, launch, under_torchrun

        if under_torchrun():
            raise EdgeECGError("leave out --ddp under torchrun: torchrun already started the processes")

        return launch(fn, arg, ddp or default_process_count(options.get("device") or "auto"))

    if ddp is not None and (dataset == "ptbxl" or modality == "signal"):
        raise EdgeECGError("--ddp trains the image branch on --dataset images only")
    options["modality"] = modality
    if (modality or PRESETS[preset].get("modality")) == "signal":
        for name, image_only in (("ssl", False), ("unfreeze", "")):  # a preset's image settings do not apply
            options[name] = image_only if options[name] is None else options[name]
    if resume_dir is not None:
        run_dir = execute(resume, resume_dir)
    else:
        if dataset == "ptbxl":
            from .ptbxl_train import train_ptbxl

            run_dir = train_ptbxl(preset, options)
            click.echo(f"run folder: {run_dir}")
            return
        if not options.get("data"):
            raise EdgeECGError("--data is required (a folder with one sub-folder per class, or a CSV manifest)")
        options["exclude"] = list(options["exclude"]) or None
        out = Path(options["out"] or f"runs/{preset}")
        if (out / "config.json").exists():
            raise EdgeECGError(f"{out} already holds a run; use --resume {out} or another --out")
        options["out"] = str(out)
        try:
            cfg = preset_config(preset, **options)
        except ValueError as exc:
            raise EdgeECGError(str(exc)) from None
        run_dir = execute(run_training, cfg)
    click.echo(f"run folder: {run_dir}")
