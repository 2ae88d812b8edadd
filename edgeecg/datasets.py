"""Labelled image listings: a folder with one sub-folder per class, or a CSV manifest.

Torch-free, so training, export's INT8 evaluation and bench all read datasets
the same way. A CSV manifest has at least the columns `file` (relative to the
CSV's folder, or absolute) and `label`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgeECGError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_labelled_images(source: str | Path) -> list[LabelledImage]:
    """List (path, label) pairs from a class-folder tree, a folder holding manifest.csv, or a CSV file."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _from_manifest(source)
    if not source.is_dir():
        raise EdgeECGError(f"{source}: no such dataset folder or CSV manifest")
    class_dirs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = [LabelledImage(f, d.name) for d in class_dirs for f in sorted(d.iterdir()) if is_image(f)]
    if not items and (source / "manifest.csv").is_file():
        return _from_manifest(source / "manifest.csv")
    if not items:
        raise EdgeECGError(f"{source}: no images found (expected one sub-folder of images per class, or a CSV manifest)")
    return items


def _from_manifest(csv_path: Path) -> list[LabelledImage]:
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"file", "label"} <= set(reader.fieldnames):
            raise EdgeECGError(f"{csv_path}: a manifest needs the columns 'file' and 'label'")
        rows = list(reader)
    if not rows:
        raise EdgeECGError(f"{csv_path}: the manifest lists no images")
    items = []
    for row in rows:
        path = Path(row["file"])
        items.append(LabelledImage(path if path.is_absolute() else csv_path.parent / path, row["label"]))
    missing = [str(i.path) for i in items if not i.path.is_file()]
    if missing:
        raise EdgeECGError(f"{csv_path}: {len(missing)} listed file(s) do not exist, e.g. {missing[0]}")
    return items


def class_names(items: list[LabelledImage]) -> list[str]:
    """Sorted class names, so class indices are stable across runs and machines."""
    return sorted({i.label for i in items})
