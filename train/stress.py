"""Shortcut stress test: does the model read the traces, or the page around them?

The paper's own Grad-CAM found attention on report headers and borders. This
measures it instead of eyeballing it, on a seeded, stratified sample of
distinct images (one per duplicate group):

* accuracy on the whole page, on the whole page with everything outside the
  detected grid box painted white (header, footer, margins gone), and on the
  runtime's trace crop. A model that needs the header loses accuracy when it
  is masked; a trace-reading model does not.
* where the saliency falls on the whole page: its share outside the grid box,
  next to that region's share of the area (equal shares = no preference).
* a deletion curve: accuracy as the most salient pixels of the model's own
  input view are painted white, against the same fractions removed in random
  contiguous blobs. Saliency that explains the model makes accuracy fall
  faster than the random control.

The images may include ones the model was trained on, so compare conditions
with each other, not with cross-validated accuracy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from sklearn.model_selection import train_test_split

from edgeecg.atomic import write_text
from edgeecg.crop import expand_quad
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
from edgeecg.preprocess import crop_and_resize

from .data import ImageTable, one_per_group
from .explain import PAPER_WHITE, ExplainModel

DELETION_FRACTIONS = (0.0, 0.1, 0.2, 0.4, 0.6)
RANDOM_CELLS = 7  # the random control's blobs are about as coarse as a 224 px model's 7 x 7 Grad-CAM cells
CONDITIONS = {
    "full_page": "whole page (no crop)",
    "header_footer_masked": "whole page, outside the grid box painted white",
    "cropped_trace": "runtime trace crop",
}


def stratified_sample(table: ImageTable, limit: int, seed: int) -> ImageTable:
    """At most `limit` distinct images (one per duplicate group), class proportions kept, chosen with `seed`."""
    distinct = one_per_group(table)
    if limit <= 0 or limit >= len(distinct):
        return table.subset(distinct)
    if limit < len(table.classes):
        raise EdgeECGError(f"--limit {limit} is smaller than the number of classes ({len(table.classes)})")
    try:
        chosen, _ = train_test_split(distinct, train_size=limit, stratify=table.labels[distinct], random_state=seed)
    except ValueError as exc:  # a class too small to stratify, or too few images left over
        raise EdgeECGError(f"cannot draw a stratified sample of {limit} images: {exc}") from None
    return table.subset(np.sort(chosen))


@dataclass
class PageViews:
    """The three model inputs of one page and the grid box's mask on the whole-page view."""

    full_page: np.ndarray
    header_footer_masked: np.ndarray
    cropped_trace: np.ndarray
    outside_grid: np.ndarray  # S x S bool, True wholly outside the grid box on `full_page`


def page_views(image_bgr: np.ndarray, size: int, margin: float) -> PageViews:
    """Whole page, masked page and trace crop, all through `crop_and_resize` (raises NoGridFound)."""
    crop, quad = crop_and_resize(image_bgr, size, True, margin)
    region = np.rint(expand_quad(quad, margin)).astype(np.int32)
    inside = np.zeros(image_bgr.shape[:2], np.uint8)
    cv2.fillConvexPoly(inside, region, 1)
    masked = image_bgr.copy()
    masked[inside == 0] = PAPER_WHITE
    full, _ = crop_and_resize(image_bgr, size, False)
    masked_view, _ = crop_and_resize(masked, size, False)
    # a model-input pixel counts as outside only when every page pixel it averages is outside
    outside = cv2.resize((1 - inside).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 1 - 1e-6
    return PageViews(full, masked_view, crop, outside)


def delete_pixels(rgb: np.ndarray, order: np.ndarray, fraction: float) -> np.ndarray:
    """Copy of `rgb` with the first `fraction` of pixels in `order` (flat indices) painted white."""
    out = rgb.copy()
    count = int(round(fraction * order.size))
    out.reshape(-1, 3)[order[:count]] = PAPER_WHITE
    return out


def _scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    return {"accuracy": float(np.mean(probs.argmax(1) == labels)),
            "true_class_probability": float(np.mean(probs[np.arange(len(labels)), labels]))}


def stress_test(model: ExplainModel, table: ImageTable, limit: int = 40, seed: int = 0,
                fractions: tuple[float, ...] = DELETION_FRACTIONS,
                advance: Callable[[str, int, int], None] | None = None) -> dict:
    """Run every check on a sample of `table` (see `load_table`); returns the JSON-ready report.

    `advance(stage, total, steps)` reports progress per stage, for progress bars.
    """
    contract = model.contract
    unknown = sorted(set(table.classes) - set(contract.classes))
    if unknown:
        raise EdgeECGError(f"class(es) {', '.join(unknown)} unknown to the model "
                           f"(it knows {', '.join(contract.classes)})")
    sample = stratified_sample(table, limit, seed)
    views, labels, files, skipped = [], [], [], []
    for item in sample.items:
        try:
            views.append(page_views(read_image(item.path), contract.input_size, contract.crop_margin))
        except EdgeECGError as exc:  # no grid, or an unreadable file: every condition uses the same images
            skipped.append({"file": str(item.path), "reason": str(exc)})
        else:
            labels.append(contract.classes.index(item.label))
            files.append(str(item.path))
        if advance:
            advance("reading pages", len(sample), 1)
    if not views:
        raise EdgeECGError("no sampled image has a detectable ECG grid")
    labels = np.array(labels)
    conditions = {}
    for name, description in CONDITIONS.items():
        batch = np.stack([getattr(v, name) for v in views])
        conditions[name] = {"description": description, **_scores(model.probabilities(batch), labels)}

    full = np.stack([v.full_page for v in views])
    full_saliency = _saliency(model, full, advance, "saliency, whole page")
    outside = np.stack([v.outside_grid for v in views])
    totals = full_saliency.sum(axis=(1, 2))
    share = np.where(totals > 0, (full_saliency * outside).sum(axis=(1, 2)) / np.maximum(totals, 1e-12), np.nan)
    placement = {"saliency_share_outside_grid": float(np.nanmean(share)) if np.isfinite(share).any() else None,
                 "area_share_outside_grid": float(outside.mean()),
                 "images_with_flat_saliency": int(np.sum(totals <= 0))}

    view = "cropped_trace" if contract.crop else "full_page"
    inputs = np.stack([getattr(v, view) for v in views])
    saliency = _saliency(model, inputs, advance, "saliency, model view")
    rng = np.random.default_rng(seed)
    salient_order = [_most_salient_first(s, rng) for s in saliency]
    random_order = [_most_salient_first(random_blobs(s.shape[0], rng), rng) for s in saliency]
    deletion = {"fractions": list(fractions), "view": view, "fill": "white (paper)",
                "random_control": f"smooth random map ({RANDOM_CELLS} x {RANDOM_CELLS} noise, upsampled)"}
    for name, orders in (("salient", salient_order), ("random", random_order)):
        rows = [_scores(model.probabilities(np.stack([delete_pixels(x, o, f) for x, o in zip(inputs, orders)])),
                        labels) for f in fractions]
        deletion[name] = {key: [r[key] for r in rows] for key in rows[0]}
    method = model.method_label + ("; windows side by side, not overlapping" if model.method == "occlusion" else "")
    return {
        "model": model.source, "method": method, "seed": seed,
        "images": len(views), "classes": contract.classes, "chance_accuracy": 1.0 / len(contract.classes),
        "model_crop": contract.crop, "skipped": skipped, "files": files,
        "note": "images may include training images: compare conditions, not absolute accuracy",
        "conditions": conditions, "saliency_placement_full_page": placement, "deletion": deletion,
    }


def random_blobs(size: int, rng: np.random.Generator, cells: int = RANDOM_CELLS) -> np.ndarray:
    """A smooth random S x S map (noise on a coarse grid, upsampled).

    The deletion control: it removes contiguous patches like a saliency map
    does, so both curves compare where pixels are removed, not how scattered
    they are (scattered white dots cut every thin trace and hurt more).
    """
    return cv2.resize(rng.random((cells, cells)), (size, size), interpolation=cv2.INTER_LINEAR)


def _most_salient_first(saliency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices by decreasing saliency; random keys break ties (flat regions) without positional bias."""
    return np.lexsort((rng.random(saliency.size), -saliency.ravel()))


def _saliency(model: ExplainModel, rgb: np.ndarray, advance, stage: str) -> np.ndarray:
    """Saliency of each image's predicted class: Grad-CAM in batches, occlusion one image at a time."""
    targets = model.probabilities(rgb).argmax(1)
    batch = 16 if model.method == "gradcam" else 1
    out = []
    for start in range(0, len(rgb), batch):
        out.append(model.saliency(rgb[start:start + batch], targets[start:start + batch], coarse=True))
        if advance:
            advance(stage, len(rgb), len(out[-1]))
    return np.concatenate(out)


def write_stress_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """stress.json and deletion_curve.png in `out_dir`."""
    from matplotlib.figure import Figure

    from .plots import save_figure

    out_dir = Path(out_dir)
    json_path = out_dir / "stress.json"
    write_text(json_path, json.dumps(report, indent=2))
    deletion = report["deletion"]
    percent = [100 * f for f in deletion["fractions"]]
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(percent, deletion["salient"]["accuracy"], marker="o", label="most salient pixels first")
    ax.plot(percent, deletion["random"]["accuracy"], marker="s", linestyle="--", label="random blobs (control)")
    ax.axhline(report["chance_accuracy"], color="grey", linewidth=1, linestyle=":", label="chance")
    ax.set_xlabel(f"pixels painted white (%), {deletion['view'].replace('_', ' ')} view")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"Deletion curve, {report['images']} images\n{report['method']}", fontsize=9)
    png_path = save_figure(fig, out_dir / "deletion_curve.png")
    return json_path, png_path
