"""What an export produced: the final table and export_report.json."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import onnx
import onnxruntime
from rich.table import Table

from edgeecg import __version__
from edgeecg.atomic import write_text

from .ui import tables


@dataclass
class Artifact:
    """One written model file and the result of its check (None: could not be run here)."""

    format: str
    path: Path
    check_passed: bool | None
    summary: str
    details: dict = field(default_factory=dict)

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6

    def to_dict(self) -> dict:
        return {"format": self.format, "file": self.path.name, "size_mb": round(self.size_mb, 3),
                "check_passed": self.check_passed, "summary": self.summary, **self.details}


def print_artifacts(artifacts: list[Artifact], out_dir: Path) -> None:
    table = Table(title=f"edgeecg export -> {out_dir}")
    for column in ("Format", "File", "MB", "Check", "Result"):
        table.add_column(column, justify="right" if column == "MB" else "left")
    marks = {True: "[green]passed[/]", False: "[bold red]FAILED[/]", None: "[yellow]not run[/]"}
    for a in artifacts:
        table.add_row(a.format, a.path.name, f"{a.size_mb:.2f}", marks[a.check_passed], a.summary)
    tables.print(table)


def write_report(path: Path, artifacts: list[Artifact], sections: dict, versions: dict[str, str]) -> None:
    """The run's report: library versions, inputs, and every artifact with its check."""
    report = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgeecg_version": __version__,
        "versions": {"python": platform.python_version(), "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, **versions},
        **sections,
        "artifacts": [a.to_dict() for a in artifacts],
    }
    write_text(path, json.dumps(report, indent=2))
