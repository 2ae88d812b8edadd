"""Figures for run reports: confusion matrices and training curves.

Torch-free. Figures are built with `matplotlib.figure.Figure` on an explicit
Agg canvas instead of pyplot: no GUI backend is ever selected, nothing is left
in pyplot's global figure registry (the leak its docs warn about for servers
and long loops), and the caller's own pyplot state is untouched. A figure is
rendered in memory, then written atomically (`edgeecg.atomic`): an interrupted
save never leaves a broken image, and temporary files of killed writers are
removed before the next figure is written beside them.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from edgeecg.atomic import remove_stale_temps, write_bytes
from edgeecg.errors import EdgeECGError

_LOSS_KEYS = (("train_loss", "train"), ("val_loss", "validation"), ("loss", "loss"))
_ACC_KEYS = (("train_acc", "train"), ("val_acc", "validation"))


def plot_confusion(
    mean_cm: Sequence[Sequence[float]],
    std_cm: Sequence[Sequence[float]] | None,
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str,
) -> Path:
    """Row-normalised confusion matrix with cells "0.93 ± 0.02" (or "0.93" without std).

    NaN cells (a class absent from y_true in every fold) read "n/a".
    Returns the written path; the format follows its suffix (png, pdf, svg).
    """
    mean = np.asarray(mean_cm, dtype=np.float64)
    k = len(classes)
    if mean.shape != (k, k) or (std_cm is not None and np.shape(std_cm) != (k, k)):
        raise EdgeECGError(f"confusion matrix must be {k} x {k} for {k} classes, got {mean.shape}")
    std = None if std_cm is None else np.asarray(std_cm, dtype=np.float64)

    size = 1.6 + 1.3 * k
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(mean), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for row in range(k):
        for col in range(k):
            value = mean[row, col]
            if math.isnan(value):
                text = "n/a"
            elif std is None or math.isnan(std[row, col]):
                text = f"{value:.2f}"
            else:
                text = f"{value:.2f} ± {std[row, col]:.2f}"
            ax.text(col, row, text, ha="center", va="center", fontsize=9,
                    color="white" if value > 0.5 else "black")
    ax.set_xticks(range(k), labels=list(classes), rotation=30, ha="right")
    ax.set_yticks(range(k), labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str) -> Path:
    """Loss panel (train/val, or SSL `loss`) and, when logged, an accuracy panel.

    Entries need `epoch`; every other key is optional per entry, so validation
    logged every few epochs plots at the epochs where it exists.
    """
    if not history:
        raise EdgeECGError("no training history to plot")
    panels = [(name, _series(history, keys)) for name, keys in (("loss", _LOSS_KEYS), ("accuracy", _ACC_KEYS))]
    panels = [(name, series) for name, series in panels if series]
    if not panels:
        raise EdgeECGError("training history has no loss or accuracy values to plot")

    fig = Figure(figsize=(5.5 * len(panels), 4), layout="constrained")
    for index, (name, series) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), index)
        for label, (epochs, values) in series.items():
            ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def _series(history: Sequence[Mapping[str, Any]], keys: Sequence[tuple[str, str]]) -> dict[str, tuple[list, list]]:
    """{legend label: (epochs, values)} for each key that appears in the history."""
    series = {}
    for key, label in keys:
        points = [(entry["epoch"], entry[key]) for entry in history if entry.get(key) is not None]
        if points:
            epochs, values = zip(*points)
            series[label] = (list(epochs), list(values))
    return series


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    target = Path(path)
    file_format = target.suffix.lstrip(".").lower() or "png"
    canvas = FigureCanvasAgg(fig)
    if file_format not in canvas.get_supported_filetypes():
        raise EdgeECGError(f"cannot write a figure as {target.name}: use .png, .pdf or .svg")
    image = io.BytesIO()
    fig.savefig(image, format=file_format, dpi=150)  # slow: done before any file exists
    fig.clear()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent)
    write_bytes(target, image.getvalue())
    return target
