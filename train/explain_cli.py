"""`edgeecg explain`: a saliency map for one image, a shortcut stress test, or feature plots."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from edgeecg.errors import EdgeECGError

from .explain import CAM_LAYERS, METHODS

DEFAULT_STRESS_LIMIT = 40


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--model", "model_spec", default=None,
              help="run folder or .pt checkpoint (Grad-CAM), .onnx file or shipped model name (occlusion); "
                   "default: the shipped default model")
@click.option("--layer", type=click.Choice(CAM_LAYERS), default=None,
              help="Grad-CAM layer (checkpoints only)  [default: conv_block3]")
@click.option("--class", "class_name", default=None, help="explain this class instead of the predicted one")
@click.option("--method", type=click.Choice(METHODS), default="auto", show_default=True,
              help="auto: Grad-CAM for checkpoints, occlusion for ONNX models")
@click.option("--no-crop", is_flag=True,
              help="feed the whole image instead of the detected trace region (default: as the model's contract says)")
@click.option("--stress", "stress_data", type=click.Path(path_type=Path), default=None,
              help="run the shortcut stress test on this dataset (class folders or CSV manifest)")
@click.option("--features", "features_data", type=click.Path(path_type=Path), default=None,
              help="write PCA / t-SNE / per-class feature plots for this dataset (checkpoints only)")
@click.option("--limit", type=int, default=None,
              help=f"distinct images sampled, stratified by class [default: {DEFAULT_STRESS_LIMIT} for --stress, "
                   "all for --features]")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the sample and of t-SNE")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="IMAGE: the PNG to write [IMAGE_explain.png]; --stress/--features: the output folder "
                   "[explain_stress / explain_features]")
def explain(image: Path | None, model_spec: str | None, layer: str | None, class_name: str | None, method: str,
            no_crop: bool, stress_data: Path | None, features_data: Path | None, limit: int | None, seed: int,
            out: Path | None) -> None:
    """Where the model looks: IMAGE -> one PNG (model input | saliency | overlay);
    --stress DATA -> accuracy with and without the page around the traces, and a deletion curve;
    --features DATA -> PCA / t-SNE scatter plots and per-class feature heatmaps."""
    modes = [m for m, given in (("IMAGE", image), ("--stress", stress_data), ("--features", features_data)) if given]
    if len(modes) != 1:
        raise EdgeECGError("give exactly one of IMAGE, --stress DATA or --features DATA"
                           + (f" (got {', '.join(modes)})" if modes else ""))
    if class_name is not None and image is None:
        raise EdgeECGError("--class applies to a single IMAGE")
    if no_crop and image is None:
        raise EdgeECGError("--no-crop applies to a single IMAGE (the stress test runs with and without the crop)")
    if limit is not None and image is not None:
        raise EdgeECGError("--limit applies to --stress and --features")
    if limit is not None and limit < 0:
        raise EdgeECGError("--limit must be 0 (all) or more")
    console = Console(stderr=True)
    if image is not None:
        _explain_one(image, model_spec, layer, class_name, method, no_crop, out)
    elif stress_data is not None:
        _stress(stress_data, model_spec, layer, method, DEFAULT_STRESS_LIMIT if limit is None else limit, seed,
                out or Path("explain_stress"), console)
    else:
        _features(features_data, model_spec, limit or 0, seed, out or Path("explain_features"), console)


def _explain_one(image: Path, model_spec: str | None, layer: str | None, class_name: str | None, method: str,
                 no_crop: bool, out: Path | None) -> None:
    from .explain import explain_image, load_explain_model, model_view, plot_explanation

    if not image.is_file():
        raise EdgeECGError(f"{image}: no such file")
    out = out or Path(f"{image.stem}_explain.png")
    if out.suffix.lower() != ".png":
        raise EdgeECGError(f"--out {out}: explain writes a .png file")
    model = load_explain_model(model_spec, method, layer)
    rgb, view = model_view(image, model.contract, crop=False if no_crop else None)
    explanation = explain_image(model, rgb, class_name)
    plot_explanation(explanation, model, view, str(image), out)
    index = explanation.class_index
    kind = "chosen" if explanation.chosen else "predicted"
    click.echo(f"{image}: {model.contract.classes[index]} p={explanation.probs[index]:.3f} ({kind}); "
               f"saliency: {model.method_label}; wrote {out}")


def _stress(data: Path, model_spec: str | None, layer: str | None, method: str, limit: int, seed: int, out: Path,
            console: Console) -> None:
    from .data import load_table
    from .explain import load_explain_model
    from .stress import CONDITIONS, stress_test, write_stress_report

    model = load_explain_model(model_spec, method, layer)
    with console.status(f"listing {data} and grouping duplicates"):
        table = load_table(data)
    with _progress(console) as progress:
        tasks: dict[str, int] = {}

        def advance(stage: str, total: int, steps: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.advance(tasks[stage], steps)

        report = stress_test(model, table, limit, seed, advance=advance)
    report["data"] = str(data)
    json_path, png_path = write_stress_report(report, out)

    table = Table(title=f"Shortcut stress test: {report['images']} images, model {report['model']}")
    for column in ("condition", "accuracy", "mean P(true class)"):
        table.add_column(column, justify="left" if column == "condition" else "right")
    for name, description in CONDITIONS.items():
        row = report["conditions"][name]
        table.add_row(description, f"{row['accuracy']:.3f}", f"{row['true_class_probability']:.3f}")
    console.print(table)
    placement = report["saliency_placement_full_page"]
    if placement["saliency_share_outside_grid"] is not None:
        console.print(f"whole page: {placement['saliency_share_outside_grid']:.1%} of the saliency lies outside "
                      f"the grid box, which is {placement['area_share_outside_grid']:.1%} of the area")
    deletion = report["deletion"]
    curve = Table(title=f"Deletion curve ({deletion['view'].replace('_', ' ')} view; {report['method']})")
    for column in ("pixels painted white", "accuracy, salient first", "accuracy, random blobs"):
        curve.add_column(column, justify="right")
    for i, fraction in enumerate(deletion["fractions"]):
        curve.add_row(f"{fraction:.0%}", f"{deletion['salient']['accuracy'][i]:.3f}",
                      f"{deletion['random']['accuracy'][i]:.3f}")
    console.print(curve)
    if report["skipped"]:
        console.print(f"skipped {len(report['skipped'])} image(s) without a detectable grid (listed in the JSON)")
    click.echo(f"wrote {json_path} and {png_path}")


def _features(data: Path, model_spec: str | None, limit: int, seed: int, out: Path, console: Console) -> None:
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .data import load_table
    from .features import feature_report
    from .stress import stratified_sample

    if model_spec is None or not (Path(model_spec).is_dir() or Path(model_spec).suffix == ".pt"):
        raise EdgeECGError("--features needs the model's PyTorch checkpoint (--model RUN_DIR or a .pt file): "
                           "an exported model does not expose its internal features")
    state = load_checkpoint(model_spec)
    network, contract = model_from_checkpoint(state, model_spec)
    train_config = state.get("train_config", {})
    trained_projection = train_config.get("ssl", True) and train_config.get("ssl_epochs", 1) > 0
    with console.status(f"listing {data} and grouping duplicates"):
        table = stratified_sample(load_table(data), limit, seed)
    with _progress(console) as progress:
        task = progress.add_task("cropping", total=len(table))
        report = feature_report(network, contract, table, out, seed, advance=lambda: progress.advance(task),
                                trained_projection=trained_projection)
    for space, entry in report["spaces"].items():
        silhouette = f", silhouette {entry['silhouette']:.3f}" if "silhouette" in entry else ""
        click.echo(f"{entry['description']}: {entry['dimensions']} dimensions{silhouette}")
    click.echo(f"wrote {report['images']} images' feature plots and features.json to {out}")
