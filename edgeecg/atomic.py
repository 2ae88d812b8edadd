"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file behind.

A process killed outright (SIGKILL, power loss) cannot remove its temporary
file, so each one carries its writer's pid (`.NAME.PID.XXXX.tmp`) and
`remove_stale_temps` deletes those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of `atomic_path` in `folder` whose writing process no longer runs."""
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if _is_stale_temp(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _is_stale_temp(name: str) -> bool:
    parts = name.split(".")  # "", NAME..., PID, random, "tmp"
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX) and len(parts) >= 5):
        return False
    return not (parts[-3].isdigit() and process_alive(int(parts[-3])))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
