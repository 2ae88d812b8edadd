"""What machine this is, in words a benchmark table or timing report can print."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name (x86 /proc/cpuinfo, a Jetson's board name, else what platform knows)."""
    for path, key in (("/proc/cpuinfo", "model name"), ("/proc/device-tree/model", None)):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        if key is None:
            return text.strip("\x00\n ")
        for line in text.splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"
