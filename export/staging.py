"""An export set appears all at once: written into a hidden folder beside the output, then swapped in.

Re-exporting over an earlier export must never leave a mix (a new FP32 model
beside the old FP16 one and the old report) when the run fails or is killed.
Every file of the new set is written into `.OUT.export-PID`; only when all of
them are written and checked does that folder replace OUT, by two renames, so
a reader finds the old set, the new set, or (for the instant between the
renames) none, never a mix. Files in OUT that are not models or reports (the
TensorRT timing cache, a user's notes) are carried into the new set. What a
killed export left behind is cleaned up, or the old set put back, on the next start.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgeecg.atomic import process_alive, remove_stale_temps

MODEL_SET_SUFFIXES = (".onnx", ".engine", ".plan", ".engine.json", ".plan.json", "_report.json")
STAGE, RETIRED = "export", "retired"  # .OUT.export-PID: the new set being written; .OUT.retired-PID: the old one


@contextmanager
def staged_export(out: Path) -> Iterator[Path]:
    """Yield the folder to write the whole set into; it becomes `out` only if the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    recover(out)
    stage = _sibling(out, STAGE, os.getpid())
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        _carry_over(out, stage)
        yield stage
        _swap(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def recover(out: Path) -> None:
    """Undo what a killed export left: its staging folder, its temporary files, and (killed between the two
    renames of the swap) the old set put back where it was."""
    for path in sorted(out.parent.glob(f".{out.name}.*-*")):
        kind, _, pid = path.name[len(out.name) + 2 :].rpartition("-")
        if kind not in (STAGE, RETIRED) or not pid.isdigit() or process_alive(int(pid)):
            continue
        if kind == RETIRED and not out.exists():
            os.rename(path, out)
        else:
            shutil.rmtree(path, ignore_errors=True)
    if out.is_dir():
        remove_stale_temps(out)


def _sibling(out: Path, kind: str, pid: int) -> Path:
    return out.parent / f".{out.name}.{kind}-{pid}"


def _carry_over(out: Path, stage: Path) -> None:
    """Hard-link (else copy) into the new set whatever in `out` is not a model or report of an export."""
    if not out.is_dir():
        return
    for entry in sorted(out.iterdir()):
        if entry.name.endswith(MODEL_SET_SUFFIXES) or entry.name.startswith(".int8-prepared-"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, stage / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, stage / entry.name)


def _link_or_copy(source: os.PathLike, target: os.PathLike) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target, follow_symlinks=False)


def _swap(stage: Path, out: Path) -> None:
    retired = _sibling(out, RETIRED, os.getpid())
    if out.exists():
        os.rename(out, retired)
    os.rename(stage, out)
    shutil.rmtree(retired, ignore_errors=True)
