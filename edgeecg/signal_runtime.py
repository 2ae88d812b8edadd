"""Serve an exported signal model: page -> digitizer -> 12 leads -> ONNX Runtime (torch-free).

The model's contract (ONNX metadata, written by `edgeecg export` from the
training run) names its input: leads and their order, rate, length,
normalisation, and the digitizer settings its Mendeley inputs were read with.
This module refuses a model whose contract this runtime cannot honour, and a
graph whose input shape disagrees with its own contract, before running it;
`edgeecg.infer` feeds it the page the quality gate has already read.
The digitizer's source key is provenance, not a setting: a model trained on
signals from an older digitizer still runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .backends import Backend, probabilities
from .contract import ModelContract
from .digitize import DEFAULT_RATE, Digitized
from .errors import EdgeECGError, first_line
from .layouts import LEADS, SPEED_MM_PER_S
from .signal_input import NORMALISATIONS, SignalSpec, batch_input, model_input, resample

# What this runtime's digitizer does; a model trained on other settings is refused.
DIGITIZER_SETTINGS = {"rate": DEFAULT_RATE, "layout": "auto", "mm_per_s": SPEED_MM_PER_S,
                      "mm_per_mv": "calibration pulse, else 10"}


def digitizer_key() -> str:
    """Hash of the sources digitized signals depend on: cached signals and model provenance use it."""
    from . import crop, digitize as digitize_module, layouts, page, straighten, trace

    digest = hashlib.sha256()
    for module in (crop, page, straighten, trace, digitize_module, layouts):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def digitizer_settings() -> dict:
    """This runtime's digitizer settings and source key, as a signal model's contract records them."""
    return {**DIGITIZER_SETTINGS, "source_key": digitizer_key()}


def signal_spec(contract: ModelContract, source: str = "model") -> SignalSpec:
    """The input a signal model's contract asks for, or EdgeECGError when this runtime cannot make it."""
    extra = contract.extra or {}
    if extra.get("modality") != "signal" or "signal" not in extra:
        raise EdgeECGError(f"{source}: not a signal model (its contract names no signal input)")
    wanted = extra["signal"]
    if tuple(wanted.get("leads", ())) != LEADS:
        raise EdgeECGError(f"{source}: expects leads {wanted.get('leads')}; this runtime gives {list(LEADS)}")
    if NORMALISATIONS.get(wanted.get("norm")) != wanted.get("normalisation"):
        raise EdgeECGError(f"{source}: normalisation {wanted.get('normalisation')!r} is not one this runtime makes")
    spec = SignalSpec(float(wanted["rate"]), float(wanted["seconds"]), wanted["norm"], float(wanted["clip"]))
    if spec.length != wanted.get("length"):
        raise EdgeECGError(f"{source}: length {wanted.get('length')} does not match {wanted['rate']} Hz x {wanted['seconds']} s")
    digitizer = {k: v for k, v in extra.get("digitizer", {}).items() if k != "source_key"}
    changed = {k: (v, DIGITIZER_SETTINGS.get(k)) for k, v in digitizer.items() if DIGITIZER_SETTINGS.get(k) != v}
    if changed:
        raise EdgeECGError(f"{source}: trained on signals read with other digitizer settings "
                           f"({', '.join(f'{k}: model {a!r}, here {b!r}' for k, (a, b) in changed.items())})")
    return spec


class SignalModel(Backend):
    """An exported signal model in ONNX Runtime, checked against its contract when opened.

    A `Backend` whose batch is the (N, 24, length) signal input rather than an image."""

    name = "onnxruntime"  # the backend, as `edgeecg infer --json` reports it

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types for an unreadable model
            raise EdgeECGError(f"{self.path}: not a valid ONNX model ({first_line(exc)})") from None
        self.contract = ModelContract.from_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.spec = signal_spec(self.contract, str(self.path))
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        if list(graph_input.shape[1:]) != [self.spec.channels, self.spec.length]:
            raise EdgeECGError(f"{self.path}: graph input {graph_input.shape} does not match its contract "
                               f"(N x {self.spec.channels} x {self.spec.length})")
        self.precision = self.contract.precision
        self._logits_output = [self.session.get_outputs()[0].name]  # `run` asks for the logits only
        self.ood = _ood_record(self.contract.extra.get("ood"), [o.name for o in self.session.get_outputs()],
                               str(self.path))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 24, length) model input (`page_input`) -> (N, classes) logits: the backend call the bench times."""
        return self.session.run(self._logits_output, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def run_with_distance(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, each input's feature distance from the training pages), in one call; the distance is None
        for a model exported without an out-of-distribution score."""
        names = self._logits_output + ([self.ood["output"]] if self.ood else [])
        outputs = self.session.run(names, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return outputs[0], (outputs[1] if self.ood else None)

    def logits(self, signals: np.ndarray) -> np.ndarray:
        """(N, length, 12) mV at the contract's rate, NaN where not plotted -> (N, classes) logits."""
        return self.run(batch_input(np.asarray(signals, np.float32), self.spec))

    def probabilities(self, signals: np.ndarray) -> np.ndarray:
        """(N, length, 12) mV -> calibrated class probabilities, as the contract's task and temperature say."""
        return probabilities(self.logits(signals), self.contract)


def _ood_record(record, outputs: list[str], source: str) -> dict | None:
    """The contract's out-of-distribution record, checked (model metadata is input from anywhere): a graph
    output beside the logits and a finite positive threshold; None when the model has no such score."""
    if record is None:
        return None
    threshold = record.get("threshold") if isinstance(record, dict) else None
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not np.isfinite(threshold) \
            or threshold <= 0:
        raise EdgeECGError(f"{source}: its out-of-distribution record needs a finite positive threshold")
    if record.get("output") not in outputs[1:]:
        raise EdgeECGError(f"{source}: its contract names an out-of-distribution output {record.get('output')!r} "
                           f"that the graph lacks (outputs: {', '.join(outputs)})")
    return record


def page_input(page: Digitized, spec: SignalSpec) -> np.ndarray:
    """One digitized page (any rate: it is resampled to the contract's) as the (24, length) input a model reads."""
    return model_input(resample(page.signal, page.rate, spec.rate, spec.length), spec)


def open_model(model: str | Path, backend: str = "auto", threads: int | None = None):
    """A model file opened for the runtime: a `SignalModel` when its contract says so, else an image backend."""
    from .backends import open_backend
    from .formats import ONNX_SUFFIX

    path = Path(model)
    if path.suffix.lower() == ONNX_SUFFIX and _holds_signal_contract(path):
        if backend not in ("auto", "onnxruntime"):
            raise EdgeECGError(f"{path}: a signal model runs with ONNX Runtime only (not --backend {backend})")
        return SignalModel(path, threads=threads)
    return open_backend(path, backend=backend, threads=threads)


def is_signal_contract(contract: ModelContract) -> bool:
    return (contract.extra or {}).get("modality") == "signal"


def _holds_signal_contract(path: Path) -> bool:
    """Whether a model file's contract names a signal model; any file it cannot read is left to the image
    backend, whose checks explain what is wrong with it."""
    from .registry import read_onnx_contract

    try:
        return path.is_file() and path.stat().st_size > 0 and is_signal_contract(read_onnx_contract(path))
    except EdgeECGError:
        return False
