"""Datasets for training: duplicate-aware grouping, group k-fold splits, cached crops.

Published ECG image sets repeat the same ECG many times (the Mendeley scans:
928 files, 491 distinct images), so every split here is by duplicate group,
never by file. Groups join files with the same bytes (sha256) or a near-identical
perceptual fingerprint of a small grey thumbnail (`ink_fingerprint`). Images are cropped and resized once
through the runtime's own `edgeecg.preprocess.crop_and_resize` and cached, so
training augments from exactly what inference will see.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from edgeecg.contract import ModelContract
from edgeecg.datasets import LabelledImage, class_names, list_labelled_images
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
from edgeecg.preprocess import crop_and_resize

# Ink-map correlation above which two files are one ECG: re-encoded/rescaled copies of Mendeley
# scans score >= 0.95, the most similar distinct recordings 0.88 (one shared template).
NEAR_DUPLICATE_CORRELATION = 0.93


@dataclass
class ImageTable:
    """A labelled image set with content hashes and duplicate groups."""

    items: list[LabelledImage]
    classes: list[str]
    labels: np.ndarray  # class index per file
    sha256: list[str]
    groups: np.ndarray  # duplicate-group id per file

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_groups(self) -> int:
        return len(set(self.groups.tolist()))

    def subset(self, index: np.ndarray) -> "ImageTable":
        index = np.asarray(index)
        return ImageTable([self.items[i] for i in index], self.classes, self.labels[index],
                          [self.sha256[i] for i in index], self.groups[index])

    def manifest_sha256(self) -> str:
        """Hash of the (content hash, label) list: identifies what a model was trained on."""
        lines = sorted(f"{s},{self.items[i].label}" for i, s in enumerate(self.sha256))
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def ink_fingerprint(data: bytes) -> np.ndarray:
    """Perceptual fingerprint: where the dark ink (traces, text) lies on a 64x48 thumbnail, unit-normalised.

    Plain average/difference hashes fail on ECG printouts: one shared template
    dominates the thumbnail, so re-encoding noise outweighs the traces. The ink
    map ignores the pale grid and survives rescaling and JPEG re-encoding.
    """
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise EdgeECGError("cannot decode image for duplicate detection")
    ink = (cv2.resize(grey, (256, 192), interpolation=cv2.INTER_AREA) < 128).astype(np.float32)
    thumb = cv2.resize(ink, (64, 48), interpolation=cv2.INTER_AREA).ravel()
    thumb -= thumb.mean()
    return thumb / max(float(np.linalg.norm(thumb)), 1e-6)


def duplicate_groups(sha256: list[str], fingerprints: np.ndarray,
                     min_correlation: float = NEAR_DUPLICATE_CORRELATION) -> np.ndarray:
    """Union-find over exact (same sha256) and near (fingerprint correlation >= threshold) duplicates."""
    n = len(sha256)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first_with_sha: dict[str, int] = {}
    for i, s in enumerate(sha256):
        union(i, first_with_sha.setdefault(s, i))
    for start in range(0, n, 1024):  # blocks keep memory flat for large sets
        block = fingerprints[start:start + 1024] @ fingerprints.T
        for i, j in zip(*np.nonzero(block >= min_correlation)):
            union(start + int(i), int(j))
    roots = [find(i) for i in range(n)]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([ids[r] for r in roots])


def _hash_file(path: Path) -> tuple[str, np.ndarray]:
    data = path.read_bytes()
    try:
        return hashlib.sha256(data).hexdigest(), ink_fingerprint(data)
    except EdgeECGError:
        raise EdgeECGError(f"{path}: cannot decode image") from None


def load_table(source: str | Path, exclude: list[str | Path] = (), workers: int = 2) -> ImageTable:
    """List a dataset, hash every file, group duplicates; drop whole groups touching `exclude` listings."""
    items = list_labelled_images(source)
    excluded = [i for src in exclude for i in list_labelled_images(src)]
    everything = items + excluded
    with ThreadPoolExecutor(max(1, workers)) as pool:
        hashed = list(pool.map(_hash_file, [i.path for i in everything]))
    sha = [h[0] for h in hashed]
    groups = duplicate_groups(sha, np.stack([h[1] for h in hashed]))
    banned = set(groups[len(items):].tolist())
    keep = [i for i in range(len(items)) if groups[i] not in banned]
    if not keep:
        raise EdgeECGError(f"{source}: every image is excluded by {', '.join(map(str, exclude))}")
    classes = class_names(items)
    kept = [items[i] for i in keep]
    return ImageTable(kept, classes, np.array([classes.index(i.label) for i in kept]),
                      [sha[i] for i in keep], groups[keep])


def one_per_group(table: ImageTable) -> np.ndarray:
    """Index of the first file of every duplicate group."""
    _, first = np.unique(table.groups, return_index=True)
    return np.sort(first)


def check_group_split(groups: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
    """Refuse a split in which any duplicate group has files on both sides."""
    shared = set(groups[train_idx].tolist()) & set(groups[val_idx].tolist())
    if shared:
        raise EdgeECGError(f"leaky split: {len(shared)} duplicate group(s) span train and validation")


def group_kfold(table: ImageTable, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified group k-fold; every fold is checked for leakage."""
    if folds < 2:
        raise EdgeECGError("--folds must be at least 2")
    per_class = np.bincount(table.labels[one_per_group(table)], minlength=len(table.classes))
    if per_class.min() < folds:
        small = table.classes[int(per_class.argmin())]
        raise EdgeECGError(f"class {small!r} has {per_class.min()} distinct image(s): too few for {folds} folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(table)), table.labels, table.groups))
    for train_idx, val_idx in splits:
        check_group_split(table.groups, train_idx, val_idx)
    return splits


def preprocess_fingerprint() -> str:
    """Changes whenever the runtime's crop/preprocess code changes, invalidating cached crops."""
    import edgeecg.crop
    import edgeecg.preprocess

    digest = hashlib.sha256()
    for module in (edgeecg.crop, edgeecg.preprocess):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEECG_CACHE", Path.home() / ".cache" / "edgeecg")) / "crops"


def crop_cache(contract: ModelContract, kind: str = "") -> Path:
    """The folder of crops made by this crop/preprocess code for this contract's preprocessing."""
    key = hashlib.sha256(repr(contract.preprocessing_key()).encode()).hexdigest()[:12]
    folder = cache_dir() / f"{kind}{preprocess_fingerprint()}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load_crops(table: ImageTable, contract: ModelContract, workers: int = 2, progress=None) -> np.ndarray:
    """N x size x size x 3 uint8 RGB crops, through the runtime path, cached on disk by content hash."""
    folder = crop_cache(contract)
    size = contract.input_size

    def one(i: int) -> np.ndarray:
        cached = folder / f"{table.sha256[i]}.png"
        if cached.is_file():
            image = cv2.imread(str(cached), cv2.IMREAD_COLOR)
            if image is not None and image.shape[:2] == (size, size):
                return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        try:
            rgb, _ = crop_and_resize(read_image(table.items[i].path), size, contract.crop, contract.crop_margin)
        except EdgeECGError as exc:
            raise EdgeECGError(f"{table.items[i].path}: {exc}") from None
        tmp = folder / f".{table.sha256[i]}.{os.getpid()}.png"
        cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        os.replace(tmp, cached)
        return rgb

    out = np.empty((len(table), size, size, 3), np.uint8)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, rgb in enumerate(pool.map(one, range(len(table)))):
            out[i] = rgb
            if progress is not None:
                progress()
    return out
