"""Feature analysis: how well the learned features separate the classes (the paper's figures 4-10).

For distinct images (one per duplicate group, so copies do not form fake
clusters) of a dataset, the fused backbone features (`model.features`) and the
SSL projection (`model.project`) are drawn as PCA and t-SNE scatter plots
coloured by class, and as per-class mean and standard-deviation heatmaps.
A silhouette score per feature space puts a number on the separation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

from edgeecg.atomic import write_text
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.preprocess import normalize

from .data import ImageTable, load_crops
from .model import SimCardioNet
from .plots import save_figure

SPACES = {"backbone": "backbone features (model.features)", "projection": "projection head (model.project)"}


@torch.no_grad()
def extract_features(network: SimCardioNet, contract: ModelContract, rgb: np.ndarray,
                     batch: int = 32) -> dict[str, np.ndarray]:
    """{"backbone": N x fusion_dim, "projection": N x projection_dim} for uint8 model inputs."""
    network.eval()
    backbone, projection = [], []
    for start in range(0, len(rgb), batch):
        x = torch.from_numpy(normalize(rgb[start:start + batch], contract.mean, contract.std))
        backbone.append(network.features(x).numpy())
        projection.append(network.project(x).numpy())
    return {"backbone": np.concatenate(backbone), "projection": np.concatenate(projection)}


def embed_2d(features: np.ndarray, seed: int) -> dict[str, tuple[np.ndarray, str]]:
    """{"pca": (N x 2, axis note), "tsne": (N x 2, note)}; t-SNE perplexity shrinks for small sets."""
    pca = PCA(n_components=2, random_state=seed).fit(features)
    explained = pca.explained_variance_ratio_
    perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    return {"pca": (pca.transform(features), f"PC1 {explained[0]:.0%}, PC2 {explained[1]:.0%} of variance"),
            "tsne": (tsne, f"perplexity {perplexity:.1f}")}


def plot_scatter(points: np.ndarray, labels: np.ndarray, classes: list[str], title: str,
                 path: str | Path) -> Path:
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for index, name in enumerate(classes):
        chosen = labels == index
        if chosen.any():
            ax.scatter(points[chosen, 0], points[chosen, 1], s=14, alpha=0.8, label=f"{name} ({chosen.sum()})")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_class_stats(features: np.ndarray, labels: np.ndarray, classes: list[str], title: str,
                     path: str | Path) -> Path:
    """Two heatmaps, classes x feature dimensions: per-class mean (top) and standard deviation (bottom)."""
    present = [i for i in range(len(classes)) if (labels == i).any()]
    means = np.stack([features[labels == i].mean(axis=0) for i in present])
    stds = np.stack([features[labels == i].std(axis=0) for i in present])
    fig = Figure(figsize=(max(8.0, features.shape[1] / 12), 2.2 + 0.9 * len(present)), layout="constrained")
    for row, (values, name, cmap) in enumerate(((means, "mean", "viridis"), (stds, "std", "magma"))):
        ax = fig.add_subplot(2, 1, row + 1)
        image = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
        ax.set_yticks(range(len(present)), labels=[classes[i] for i in present], fontsize=8)
        ax.set_xlabel("feature dimension")
        ax.set_title(f"{name} per class", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def feature_report(network: SimCardioNet, contract: ModelContract, table: ImageTable, out_dir: str | Path,
                   seed: int = 0, workers: int = 2, advance: Callable[[], None] | None = None,
                   trained_projection: bool = True) -> dict:
    """Crop (cached), extract, embed and plot every feature space of `table`; writes features.json too.

    `trained_projection=False` (a run without SSL pretraining never trains the projection
    head) labels the projection plots as coming from an untrained head.
    """
    unknown = sorted(set(table.classes) - set(contract.classes))
    if unknown:
        raise EdgeECGError(f"class(es) {', '.join(unknown)} unknown to the model "
                           f"(it knows {', '.join(contract.classes)})")
    if len(table) < 5:
        raise EdgeECGError(f"feature plots need at least 5 images, got {len(table)}")
    out_dir = Path(out_dir)
    rgb = load_crops(table, contract, workers, advance)
    labels = np.array([contract.classes.index(item.label) for item in table.items])
    features = extract_features(network, contract, rgb)
    report = {"images": len(table), "classes": contract.classes, "seed": seed, "spaces": {}}
    for space, description in SPACES.items():
        values = features[space]
        if space == "projection" and not trained_projection:
            description += " [untrained head: run without SSL]"
        files = [plot_class_stats(values, labels, contract.classes, f"{description}, {len(table)} images",
                                  out_dir / f"{space}_class_stats.png")]
        entry = {"dimensions": int(values.shape[1]), "description": description}
        for method, (points, note) in embed_2d(values, seed).items():
            name = "PCA" if method == "pca" else "t-SNE"
            files.append(plot_scatter(points, labels, contract.classes,
                                      f"{name} of {description}\n{len(table)} images; {note}",
                                      out_dir / f"{space}_{method}.png"))
        if len(np.unique(labels)) > 1:
            entry["silhouette"] = float(silhouette_score(values, labels))
        entry["files"] = [str(f) for f in files]
        report["spaces"][space] = entry
    write_text(out_dir / "features.json", json.dumps(report, indent=2))
    return report
