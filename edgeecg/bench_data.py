"""The labelled scans `edgeecg bench` scores on, preprocessed once per contract into tensor files.

Decoding, the quality gate's reading of the page and cropping dominate; doing
them once per image and each model input once per distinct preprocessing
contract (not once per row) keeps a bench of many models quick, and the tensor
files let each row's process read the set without holding it in memory. An
image model's input is its crop; a signal model's is the digitized leads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .contract import ModelContract
from .datasets import LabelledImage
from .errors import EdgeECGError
from .imageio import read_image
from .digitize import Digitized
from .gate import assess
from .preprocess import preprocess
from .signal_runtime import is_signal_contract, page_input, signal_spec

DEFAULT_DATA = Path("calib_data") / "heldout_eval.csv"  # scans the shipped models never trained on


@dataclass(frozen=True)
class TensorFile:
    """Preprocessed float32 model inputs (N x `shape`) stored raw on disk and read back in slices.

    The labelled set can be hundreds of MB; a row's process reads it a batch at
    a time (file reads, not a memory map), so its peak RSS stays the model's.
    """

    path: Path
    count: int
    shape: tuple[int, ...]  # one input: 3 x S x S for an image model, 24 x length for a signal model

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.count if stop is None else min(stop, self.count)
        per_item = int(np.prod(self.shape))
        data = np.fromfile(self.path, dtype=np.float32, count=(stop - start) * per_item,
                           offset=start * per_item * 4)
        return data.reshape(stop - start, *self.shape)


@dataclass
class LabelledSet:
    """Usable images, their labels, and their tensors for each preprocessing contract."""

    paths: list[Path]
    labels: list[str]
    tensors: dict[tuple, TensorFile]  # ModelContract.preprocessing_key() -> the images' tensors, in `paths` order
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def resolve_data(data: str | Path | None) -> Path:
    """--data, or the held-out evaluation CSV (./calib_data, else the repository's)."""
    if data is not None:
        return Path(data)
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / DEFAULT_DATA).is_file():
            return base / DEFAULT_DATA
    raise EdgeECGError(f"no labelled data: pass --data DIR_or_CSV (the default {DEFAULT_DATA} is not here)")


def spread(items: Sequence[LabelledImage], limit: int | None) -> list[LabelledImage]:
    """At most `limit` items spread over the (class-sorted) list, so every class is represented."""
    if not limit or limit >= len(items):
        return list(items)
    picks = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in picks]


def prepare_labelled_set(
    items: Sequence[LabelledImage], contracts: Iterable[ModelContract], folder: Path, progress: Callable = iter
) -> LabelledSet:
    """Decode each image once and preprocess it once per distinct contract, into tensor files in `folder`.

    An image `edgeecg infer` refuses (unreadable, or a page the quality gate cannot
    read) is skipped and listed, for every model alike, so all rows are scored on
    the same images and only on pages the runtime would answer for.
    """
    by_key = {c.preprocessing_key(): c for c in contracts}
    files = {key: Path(folder) / f"tensors-{i}.f32" for i, key in enumerate(by_key)}
    shapes: dict[tuple, tuple[int, ...]] = {}
    used: list[LabelledImage] = []
    skipped: list[tuple[Path, str]] = []
    handles = {key: open(path, "wb") for key, path in files.items()}
    try:
        for item in progress(items):
            try:
                image = read_image(item.path)
                page = _readable_page(image)
                prepared = {key: _model_input(image, page, contract) for key, contract in by_key.items()}
            except EdgeECGError as exc:
                skipped.append((item.path, str(exc)))
                continue
            for key, tensor in prepared.items():
                shapes[key] = tensor.shape
                handles[key].write(np.ascontiguousarray(tensor, dtype=np.float32).tobytes())
            used.append(item)
    finally:
        for handle in handles.values():
            handle.close()
    tensors = {key: TensorFile(files[key], len(used), shapes.get(key, _empty_shape(by_key[key])))
               for key in by_key}
    return LabelledSet([i.path for i in used], [i.label for i in used], tensors, skipped)


def _readable_page(image: np.ndarray) -> Digitized:
    """The page as the quality gate reads it, or EdgeECGError with the gate's reason (as `edgeecg infer` refuses)."""
    verdict = assess(image)
    if not verdict.readable or verdict.reading is None:
        raise EdgeECGError(f"refused by the quality gate: {verdict.reason}")
    return verdict.reading


def _model_input(image: np.ndarray, page: Digitized, contract: ModelContract) -> np.ndarray:
    """One model input, exactly as `edgeecg infer` makes it for this contract."""
    if is_signal_contract(contract):
        return page_input(page, signal_spec(contract))
    return preprocess(image, contract)[0][0]


def _empty_shape(contract: ModelContract) -> tuple[int, ...]:
    if is_signal_contract(contract):
        spec = signal_spec(contract)
        return (spec.channels, spec.length)
    return (3, contract.input_size, contract.input_size)
