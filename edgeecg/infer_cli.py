"""`edgeecg infer` and `edgeecg models`: the torch-free command line of the runtime.

A batch never stops for one file: every per-file failure (unreadable, corrupt,
unsupported, a model error) is reported on its own line (or as {path, error}
in --json mode), a summary ends the batch, and the exit code is 1 if any input
failed; a problem with the model or the options stops everything with one line
and exit 2 (see edgeecg.cli.main). File names are printed with control
characters and undecodable bytes escaped, so a name can never forge a line.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import click
import cv2

from . import registry
from .backends import BACKENDS, Backend
from .signal_runtime import open_model
from .datasets import is_image
from .errors import EdgeECGError, first_line
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
@click.option("--quiet-period", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="--watch: seconds a file's size and time must stay unchanged before it is read")
@click.option("--allow-corrupt", is_flag=True, help="classify images whose decoder reports corrupt data")
@click.option("--force", is_flag=True, help="diagnose pages the quality gate refuses (the result says it was forced)")
@click.option("--allow-partial", is_flag=True, help="diagnose partial captures (fewer than 12 leads readable)")
@click.option("--abstain", is_flag=True,
              help="refuse answers below the model's abstain threshold (chosen on validation folds for 5 % risk) "
                   "and pages unlike its training pages (a signal model's feature distance, --json 'ood')")
def infer(paths, model_name, backend, as_json, save_crop, no_crop, top_k, threads, camera, watch,
          quiet_period, allow_corrupt, force, allow_partial, abstain) -> None:
    """Classify ECG printout images (files or folders), a camera frame or a watched folder."""
    sources = sum([bool(paths), camera is not None, watch is not None])
    if sources != 1:
        raise click.UsageError("give image PATHs, --camera SRC or --watch DIR (exactly one of them)")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # every problem is reported by us, once
    model = open_model(resolve_model(model_name), backend=backend, threads=threads)
    options = dict(crop=False if no_crop else None, save_crop_dir=save_crop, top_k=top_k,
                   allow_corrupt=allow_corrupt, force=force, allow_partial=allow_partial, abstain=abstain)
    if camera is not None:
        failed = _classify_camera(camera, model, options, as_json)
    elif watch is not None:
        failed = _watch(watch, model, options, as_json, quiet_period)
    else:
        failed = _classify_paths(paths, model, options, as_json)
    if failed:
        sys.exit(1)  # not ctx.exit: edgeecg.cli.main runs click with standalone_mode=False, which drops its code


MODELS_TABLE_WIDTH = 132


@click.command()
def models() -> None:
    """List the models shipped with edgeecg."""
    from rich.console import Console
    from rich.table import Table

    shipped = list_models()
    console = Console()
    console = Console(width=max(console.width, MODELS_TABLE_WIDTH))  # a pipe's default 80 columns crush 7 columns
    if not shipped:
        console.print(f"no models shipped in {registry.MODELS_DIR}", markup=False, highlight=False)
        return
    table = Table(title="shipped models")
    for column in ("name", "file", "modality", "classes", "input size", "precision", "task"):
        table.add_column(column, no_wrap=column in ("name", "file"))
    for m in shipped:
        name = f"{m.name} (default)" if m.name == DEFAULT_MODEL else m.name
        table.add_row(name, m.path.name, m.modality, ", ".join(m.classes), str(m.input_size), m.precision, m.task)
    console.print(table)


def _classify_paths(paths: tuple[Path, ...], model: Backend, options: dict, as_json: bool) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    inputs = expand_inputs(paths)
    tally = Tally()
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
            text, is_error = classify_one(path, problem, model, options, as_json, tally)
            emit(text, err=is_error and not as_json)
            if progress:
                progress.advance(task)
    if len(inputs) > 1:
        click.echo(tally.summary(), err=True)
    return tally.failed + tally.refused  # no diagnosis for an input is worth a non-zero exit


class Tally:
    """How a batch or a watch went: classified, refused by the model's checks, failed."""

    def __init__(self) -> None:
        self.processed = self.refused = self.failed = 0

    def summary(self) -> str:
        total = self.processed + self.refused + self.failed
        return f"{total} input(s): {self.processed} classified, {self.refused} refused, {self.failed} failed"


def classify_one(
    path: Path, problem: str | None, model: Backend, options: dict, as_json: bool, tally: Tally,
    data: bytes | None = None,
) -> tuple[str, bool]:
    """Classify one input into (output text, is it an error line); no failure of one file escapes."""
    from .infer import classify_path

    try:
        if problem:
            raise EdgeECGError(problem)
        result = classify_path(path, model, data=data, **options)
    except Exception as exc:  # noqa: BLE001  one bad file must never stop a batch or a watch
        tally.failed += 1  # counted before printing: Ctrl-C may land right after the line is out
        return format_error(path, failure_message(exc), as_json), True
    if result.get("refused"):
        tally.refused += 1
    else:
        tally.processed += 1
    return _format(result, as_json), False


def failure_message(exc: Exception) -> str:
    """One line for any per-file failure: ours as written, the system's and libraries' quoted."""
    if isinstance(exc, EdgeECGError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read ({exc.strerror or first_line(exc)})"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding or classifying this image"
    if isinstance(exc, cv2.error):
        return f"image processing failed ({getattr(exc, 'err', None) or first_line(exc)})"
    return f"internal error ({type(exc).__name__}: {first_line(exc)})"


def _classify_camera(source: str, model: Backend, options: dict, as_json: bool) -> int:
    from .capture import capture_frame
    from .infer import classify_image

    frame = capture_frame(source, require_grid=options["crop"] is not False)
    frame_options = {k: v for k, v in options.items() if k != "allow_corrupt"}  # a frame is decoded already
    try:
        result = classify_image(frame, model, **frame_options)
    except EdgeECGError as exc:
        click.echo(format_error(f"camera:{source}", str(exc), as_json), err=not as_json)
        return 1
    result["path"] = f"camera:{source}"
    click.echo(_format(result, as_json))
    return 1 if result.get("refused") else 0


def _watch(folder: Path, model: Backend, options: dict, as_json: bool, quiet_s: float) -> int:
    from .capture import watch_folder

    tally = Tally()

    def handle(path: Path, data: bytes) -> None:
        text, is_error = classify_one(path, None, model, options, as_json, tally, data=data)
        click.echo(text, err=is_error and not as_json)  # one write per result: a reader never sees half a line

    def failed(path: Path, message: str) -> None:
        tally.failed += 1
        click.echo(format_error(path, message, as_json), err=not as_json)

    def ready() -> None:
        click.echo(f"watching {display(folder)} for new images (Ctrl-C stops)", err=True)

    watch_folder(folder, handle, settle_s=quiet_s, on_ready=ready, on_error=failed)
    click.echo(f"stopped: {tally.summary()}", err=True)
    return tally.failed


# image formats edgeecg cannot read: reported in a folder, not silently passed over
UNSUPPORTED_IMAGE_SUFFIXES = {".gif", ".webp", ".heic", ".heif", ".avif", ".jp2", ".jxl", ".svg", ".ico", ".psd",
                              ".pdf", ".dng", ".cr2", ".nef", ".arw"}
NO_IMAGES = "folder holds no JPEG, PNG, TIFF or BMP images"


def expand_inputs(paths: tuple[Path, ...]) -> list[tuple[Path, str | None]]:
    """Files as given, folders as their images (recursively, sorted, hidden names left out); (path, problem)
    per input. Unsupported image formats, unreadable entries and symbolic-link loops are inputs with a problem."""
    inputs: list[tuple[Path, str | None]] = []
    for path in paths:
        info, problem = _stat(path)
        if info is not None and stat.S_ISDIR(info.st_mode):
            found = _folder_inputs(path, set())
            inputs += found or [(path, NO_IMAGES)]
        else:
            inputs.append((path, problem))
    return inputs


def _folder_inputs(folder: Path, visited: set[tuple[int, int]]) -> list[tuple[Path, str | None]]:
    info, problem = _stat(folder)
    if info is None:
        return [(folder, problem)]
    if (info.st_dev, info.st_ino) in visited:
        return [(folder, "symbolic link loop (this folder is already being listed)")]
    try:
        with os.scandir(folder) as listing:
            names = sorted(entry.name for entry in listing if not entry.name.startswith("."))
    except OSError as exc:
        return [(folder, f"cannot list folder ({exc.strerror or first_line(exc)})")]
    inputs: list[tuple[Path, str | None]] = []
    for name in names:
        inputs += _entry_inputs(folder / name, visited | {(info.st_dev, info.st_ino)})
    return inputs


def _entry_inputs(path: Path, visited: set[tuple[int, int]]) -> list[tuple[Path, str | None]]:
    info, problem = _stat(path)
    suffix = path.suffix.lower()
    if info is None:
        return [(path, problem)]  # a broken link, a loop or no permission: say so, whatever its name
    if stat.S_ISDIR(info.st_mode):
        named_like_image = [(path, "a folder named like an image")] if is_image(path) else []
        return named_like_image + _folder_inputs(path, visited)
    if suffix in UNSUPPORTED_IMAGE_SUFFIXES:
        return [(path, f"unsupported format ({suffix}; edgeecg reads JPEG, PNG, TIFF and BMP)")]
    if not is_image(path):
        return []
    return [(path, None if stat.S_ISREG(info.st_mode) else "not a regular file")]


def _stat(path: Path) -> tuple[os.stat_result | None, str | None]:
    """os.stat without raising: (result, None) or (None, why it cannot be read) for a missing, looping or
    unreadable path (ENAMETOOLONG and ELOOP included, which Path.exists() raises)."""
    try:
        return os.stat(path), None
    except FileNotFoundError:
        return None, "broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "symbolic link loop"
        return None, f"cannot read ({exc.strerror or first_line(exc)})"


def _emitter(progress) -> Callable[..., None]:
    """Print above the progress bar when both share a terminal, else plainly (pipes stay clean)."""
    if progress is not None and sys.stdout.isatty() and sys.stderr.isatty():
        return lambda text, err=False: progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
    return lambda text, err=False: click.echo(text, err=err)


def _format(result: dict, as_json: bool) -> str:
    if as_json:
        return json.dumps(result)
    if result.get("refused"):
        return f"{display(result['path'])}: refused: {display(result['refused'])}"
    probs = " | ".join(f"{display(name)} {p:.3f}" for name, p in result["probs"].items())
    if result["task"] == "multilabel":
        verdict = "labels: " + (", ".join(map(display, result["labels"])) or "none above 0.5")
    else:
        verdict = display(result["label"])
    ms = ", ".join(f"{stage} {v:.1f}" for stage, v in result["ms"].items())
    confidence = result.get("confidence")
    if confidence and not confidence["confident"]:
        verdict += f" (low confidence: {confidence['top']:.2f} < {confidence['min']:.2f})"
    ood = result.get("ood")
    if ood and not ood["typical"]:
        verdict += f" (unlike the training pages: distance {ood['distance']:.1f} > {ood['threshold']:.1f})"
    lines = [f"{display(result['path'])}: {verdict}", f"  {probs}", f"  ms: {ms}"]
    if result.get("forced"):
        lines.insert(2, f"  forced past the quality gate, which refused it: {display(result['forced'])}")
    if "page" in result:
        page = result["page"]
        lines.insert(2, f"  page: {page['layout']} ({page['columns']} columns), {len(page['leads_found'])} leads, "
                        f"{page['scale']['px_per_mm'][0]:.2f} px/mm, {page['scale']['mm_per_mv']:g} mm/mV")
    if "saved_crop" in result:
        lines.append(f"  crop saved to {display(result['saved_crop'])}")
    return "\n".join(lines)


def format_error(path, message: str, as_json: bool) -> str:
    prefix = f"{path}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    if as_json:
        return json.dumps({"path": str(path), "error": message})
    return f"error: {display(path)}: {display(message)}"


def display(text) -> str:
    """Text as one printable line: control characters escaped, and a file name's undecodable bytes
    (surrogateescape) as \\xNN, so any name prints on any console and never starts a new line."""
    return "".join(c if c.isprintable() else _escape(c) for c in str(text))


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else repr(char)[1:-1]
