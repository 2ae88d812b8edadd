"""`edgeecg infer` and `edgeecg models`: the torch-free command line of the runtime.

A batch goes on past a bad file (reported on its own line, or as {path, error}
in --json mode) and exits 1 if any input failed; a problem with the model or
the options stops everything with one line and exit 2 (see edgeecg.cli.main).
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import click
import cv2

from . import registry
from .backends import BACKENDS, Backend, open_backend
from .datasets import is_image
from .errors import EdgeECGError
from .registry import DEFAULT_MODEL, list_models, resolve_model


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
              help="shipped model name (see `edgeecg models`) or a .onnx/.engine file")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
              help="auto: TensorRT for .engine/.plan files, ONNX Runtime otherwise")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per input per line on stdout")
@click.option("--save-crop", type=click.Path(file_okay=False, path_type=Path),
              help="write what the model saw (cropped, resized RGB) as DIR/<name>.png")
@click.option("--no-crop", is_flag=True, help="feed the whole image instead of the detected ECG grid")
@click.option("--top-k", type=click.IntRange(min=1), help="show only the K most probable classes")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for ONNX Runtime")
@click.option("--camera", metavar="SRC", help="classify one good frame from a camera index or video file")
@click.option("--watch", type=click.Path(path_type=Path), metavar="DIR",
              help="classify each new image that lands in DIR until Ctrl-C")
def infer(paths, model_name, backend, as_json, save_crop, no_crop, top_k, threads, camera, watch) -> None:
    """Classify ECG printout images (files or folders), a camera frame or a watched folder."""
    sources = sum([bool(paths), camera is not None, watch is not None])
    if sources != 1:
        raise click.UsageError("give image PATHs, --camera SRC or --watch DIR (exactly one of them)")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # every problem is reported by us, once
    model = open_backend(resolve_model(model_name), backend=backend, threads=threads)
    options = dict(crop=False if no_crop else None, save_crop_dir=save_crop, top_k=top_k)
    if camera is not None:
        failed = _classify_camera(camera, model, options, as_json)
    elif watch is not None:
        failed = _watch(watch, model, options, as_json)
    else:
        failed = _classify_paths(paths, model, options, as_json)
    if failed:
        sys.exit(1)  # not ctx.exit: edgeecg.cli.main runs click with standalone_mode=False, which drops its code


@click.command()
def models() -> None:
    """List the models shipped with edgeecg."""
    from rich.console import Console
    from rich.table import Table

    shipped = list_models()
    console = Console()
    if not shipped:
        console.print(f"no models shipped in {registry.MODELS_DIR}", markup=False, highlight=False)
        return
    table = Table(title="shipped models")
    for column in ("name", "file", "classes", "input size", "precision", "task"):
        table.add_column(column)
    for m in shipped:
        table.add_row(m.name, m.path.name, ", ".join(m.classes), str(m.input_size), m.precision, m.task)
    console.print(table)


def _classify_paths(paths: tuple[Path, ...], model: Backend, options: dict, as_json: bool) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .infer import classify_path

    inputs = expand_inputs(paths)
    failed = 0
    progress = None
    if len(inputs) > 1:
        console = Console(stderr=True)
        progress = Progress(
            TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console, transient=True, redirect_stdout=False, redirect_stderr=False,
            disable=not console.is_terminal,  # a log file gets the results, not bar frames
        )
    emit = _emitter(progress)
    with progress or nullcontext():
        task = progress.add_task("classify", total=len(inputs)) if progress else None
        for path, problem in inputs:
            try:
                if problem:
                    raise EdgeECGError(problem)
                emit(_format(classify_path(path, model, **options), as_json))
            except EdgeECGError as exc:
                failed += 1
                emit(_format_error(path, exc, as_json), err=not as_json)
            if progress:
                progress.advance(task)
    if failed and len(inputs) > 1:
        click.echo(f"{failed} of {len(inputs)} input(s) failed", err=True)
    return failed


def _classify_camera(source: str, model: Backend, options: dict, as_json: bool) -> int:
    from .capture import capture_frame
    from .infer import classify_image

    frame = capture_frame(source, require_grid=options["crop"] is not False)
    try:
        result = classify_image(frame, model, **options)
    except EdgeECGError as exc:
        click.echo(_format_error(f"camera:{source}", exc, as_json), err=not as_json)
        return 1
    result["path"] = f"camera:{source}"
    click.echo(_format(result, as_json))
    return 0


def _watch(folder: Path, model: Backend, options: dict, as_json: bool) -> int:
    from .capture import watch_folder
    from .infer import classify_path

    classified = failed = 0

    def handle(path: Path) -> None:
        nonlocal classified, failed
        try:
            result = classify_path(path, model, **options)
        except EdgeECGError as exc:
            failed += 1
            click.echo(_format_error(path, exc, as_json), err=not as_json)
            return
        classified += 1  # counted before printing: Ctrl-C may land right after the line is out
        click.echo(_format(result, as_json))

    def ready() -> None:
        click.echo(f"watching {folder} for new images (Ctrl-C stops)", err=True)

    watch_folder(folder, handle, on_ready=ready)
    click.echo(f"stopped: {classified} image(s) classified, {failed} failed", err=True)
    return failed


def expand_inputs(paths: tuple[Path, ...]) -> list[tuple[Path, str | None]]:
    """Files as given, folders as their images (recursively, sorted); (path, problem) per input."""
    inputs: list[tuple[Path, str | None]] = []
    for path in paths:
        if path.is_dir():
            images = sorted(
                p for p in path.rglob("*")
                if p.is_file() and is_image(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            inputs += [(p, None) for p in images] or [(path, "folder holds no JPEG, PNG, TIFF or BMP images")]
        elif not path.exists():
            inputs.append((path, "no such file"))
        else:
            inputs.append((path, None))
    return inputs


def _emitter(progress) -> Callable[..., None]:
    """Print above the progress bar when both share a terminal, else plainly (pipes stay clean)."""
    if progress is not None and sys.stdout.isatty() and sys.stderr.isatty():
        return lambda text, err=False: progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
    return lambda text, err=False: click.echo(text, err=err)


def _format(result: dict, as_json: bool) -> str:
    if as_json:
        return json.dumps(result)
    probs = " | ".join(f"{name} {p:.3f}" for name, p in result["probs"].items())
    if result["task"] == "multilabel":
        verdict = "labels: " + (", ".join(result["labels"]) or "none above 0.5")
    else:
        verdict = result["label"]
    ms = ", ".join(f"{stage} {v:.1f}" for stage, v in result["ms"].items())
    lines = [f"{result['path']}: {verdict}", f"  {probs}", f"  ms: {ms}"]
    if "saved_crop" in result:
        lines.append(f"  crop saved to {result['saved_crop']}")
    return "\n".join(lines)


def _format_error(path, exc: EdgeECGError, as_json: bool) -> str:
    message = str(exc)
    prefix = f"{path}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    if as_json:
        return json.dumps({"path": str(path), "error": message})
    return f"error: {path}: {message}"
