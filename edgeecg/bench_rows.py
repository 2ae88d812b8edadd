"""Which rows `edgeecg bench` measures: shipped models, named files, and the optional PyTorch reference.

A row is one model on one backend, device and precision. All rows must share
the data's classes, so each is checked here before minutes of timing start.
Rows exported from one training run (one contract version and input kind: an
image model and its INT8, or a signal model and its INT8) form a family, and
each row is compared with its family's reference, so an INT8 row's agreement
says what quantization changed, not how two different models differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import util
from pathlib import Path
from typing import Sequence

from .contract import ModelContract
from .errors import EdgeECGError
from .formats import backend_for, device_for, is_engine
from .registry import MODELS_DIR, read_onnx_contract, resolve_model, shipped_model_paths


@dataclass
class RowSpec:
    """One model on one backend, device and precision: a row of the table."""

    model: str  # shipped name or file stem
    path: Path  # .onnx, .engine/.plan, or a checkpoint (.pt or run folder)
    backend: str  # "onnxruntime", "tensorrt" or "pytorch"
    precision: str
    contract: ModelContract
    device: str = "cpu"

    @property
    def label(self) -> str:
        return f"{self.model} ({self.backend} {self.precision} {self.device})"

    @property
    def family(self) -> tuple[str, str]:
        """(training run, input kind): the rows one reference is compared with."""
        return self.contract.model_version or self.model, str(self.contract.extra.get("modality", "image"))


def select_rows(
    data_labels: Sequence[str],
    models: Sequence[str] = (),
    reference: str | Path | None = None,
    include_shipped: bool = True,
    models_dir: Path | None = None,
) -> tuple[list[RowSpec], list[str]]:
    """(rows, grouped by family with each family's reference first; notes on what was left out and why).

    Shipped models whose classes do not cover the data's labels are left out;
    a model named on the command line that does not fit is an error.
    """
    rows: list[RowSpec] = []
    notes: list[str] = []
    seen: set[Path] = set()
    wanted = set(data_labels)
    if include_shipped:
        for name, path in shipped_model_paths(models_dir).items():
            row = _onnx_row(name, path)
            if not wanted <= set(row.contract.classes):
                notes.append(f"shipped model {name} left out: its classes ({', '.join(row.contract.classes)}) "
                             "do not cover the data's labels")
                continue
            rows.append(row)
            seen.add(path.resolve())
    for name in models:
        path = resolve_model(name, models_dir)
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        if is_engine(path):
            if util.find_spec("tensorrt") is None:
                notes.append(f"{path.name} left out: TensorRT is not installed here")
                continue
            row = _engine_row(path)
        else:
            row = _onnx_row(path.stem, path)
        _check_covers(row, wanted)
        rows.append(row)

    torch_rows = _torch_rows(reference)
    for row in torch_rows:
        _check_covers(row, wanted)
    rows = torch_rows + rows
    if not rows:
        folder = models_dir or MODELS_DIR
        shipped = "" if not include_shipped else (
            f"none shipped in {folder} covers the data's labels ({', '.join(sorted(wanted))}); "
            if shipped_model_paths(models_dir) else f"no model is shipped in {folder} yet; ")
        left_out = "".join(f"{note}; " for note in notes)
        raise EdgeECGError(f"no models to bench: {left_out}{shipped}pass --models FILE.onnx or --reference RUN_DIR")
    class_sets = {frozenset(r.contract.classes) for r in rows}
    if len(class_sets) > 1:
        listed = "; ".join(f"{r.model}: {', '.join(r.contract.classes)}" for r in rows)
        raise EdgeECGError(f"the models do not share one set of classes, so they cannot be compared ({listed})")
    return by_family(rows), notes


def by_family(rows: Sequence[RowSpec]) -> list[RowSpec]:
    """Rows grouped by family (in order of first appearance), each family's reference leading it."""
    ordered: list[RowSpec] = []
    for family in dict.fromkeys(r.family for r in rows):
        members = [r for r in rows if r.family == family]
        members.insert(0, members.pop(reference_index(members)))
        ordered += members
    return ordered


def reference_index(rows: Sequence[RowSpec]) -> int:
    """PyTorch FP32 on CPU if present, else the first FP32 ONNX Runtime row, else the first row."""
    for wanted in (("pytorch", "fp32", "cpu"), ("onnxruntime", "fp32", "cpu")):
        for i, row in enumerate(rows):
            if (row.backend, row.precision, row.device) == wanted:
                return i
    return 0


def _onnx_row(name: str, path: Path) -> RowSpec:
    contract = read_onnx_contract(path)
    return RowSpec(name, path, backend_for(path), contract.precision, contract)


def _engine_row(path: Path) -> RowSpec:
    from .trt_backend import read_sidecar

    sidecar = read_sidecar(path)
    contract = ModelContract.from_json(json.dumps(sidecar["contract"]), str(path))
    precision = sidecar.get("precision", contract.precision)
    return RowSpec(path.stem, path, backend_for(path), precision, contract, device_for(path))


def _torch_rows(reference: str | Path | None) -> list[RowSpec]:
    """PyTorch FP32 on CPU, plus CUDA FP32 and FP16 where a GPU is present (torch imported only here)."""
    if reference is None:
        return []
    try:
        from edgeecg.train.torch_backend import checkpoint_contract, checkpoint_file, cuda_available
    except ImportError as exc:
        raise EdgeECGError(
            f"the PyTorch reference needs a missing package ({exc.name}); install it with: pip install -e '.[train]'"
        ) from None
    contract = checkpoint_contract(reference)
    path = checkpoint_file(reference)
    name = Path(reference).name if Path(reference).is_dir() else path.stem
    rows = [RowSpec(name, path, "pytorch", "fp32", contract, "cpu")]
    if cuda_available():
        rows += [RowSpec(name, path, "pytorch", precision, contract, "cuda") for precision in ("fp32", "fp16")]
    return rows


def _check_covers(row: RowSpec, labels: set[str]) -> None:
    missing = sorted(labels - set(row.contract.classes))
    if missing:
        raise EdgeECGError(
            f"{row.path}: the data's label(s) {', '.join(missing)} are not classes of this model "
            f"({', '.join(row.contract.classes)})"
        )
