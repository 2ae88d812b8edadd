"""Static INT8 quantization to a Q/DQ ONNX model, in two flavours.

ONNX Runtime's CPU kernels are fastest with asymmetric uint8 activations,
while TensorRT only consumes symmetric int8 Q/DQ (zero point 0), so one
calibration cannot serve both: `target="cpu"` gives QUInt8 activations and
QInt8 weights, `target="tensorrt"` symmetric QInt8 for both. Weights are
quantized per output channel. The calibration method is either fixed or
chosen by measurement: each candidate is calibrated and the one whose INT8
logits best follow FP32 on the calibration scans wins.

Note on "entropy": `quantize_static` builds ONNX Runtime's entropy calibrator
with 128 histogram bins and 128 quantized bins, for which the KL search has a
single candidate, the full range; its ranges therefore equal min-max except
where histograms grew while merging (a few scales). A TensorRT-like 2048-bin
search through `create_calibrator` took tens of minutes even on the tiny test
model on a 2-core machine (tried once by hand during development), so it is not
offered.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

from edgeecg.backends import probabilities
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError

from .calibration import ScanCalibrationReader
from .onnx_io import check_onnx, set_contract
from .options import INPUT_NAME
from .scans import evenly_spaced
from .ui import step, warn
from .verify import onnx_logits

CALIB_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
TARGET_TYPES = {  # target -> (activation type, extra options)
    "cpu": (QuantType.QUInt8, {}),
    "tensorrt": (QuantType.QInt8, {"ActivationSymmetric": True, "WeightSymmetric": True}),
}
CALIB_BATCH = 1
# Calibrators keep every intermediate tensor of the batches they collect before
# reducing them to ranges/histograms; collecting a few batches at a time bounds memory.
MAX_BATCHES_PER_COLLECT = 8
SELECTION_SCANS = 128  # calibration scans used to compare candidate methods


@dataclass
class Int8Model:
    """One quantized model and how it was made."""

    path: Path
    target: str
    calib_method: str
    excluded_nodes: list[str]
    selection: dict  # method -> {"top1_agreement", "mean_abs_delta_prob"} or {"error"}


def prepare_for_quantization(fp32_path: Path, out_path: Path) -> None:
    """ORT's shape inference + graph optimisation (`quant_pre_process`), nodes named, no shared weights."""
    with _quiet_quantizer():
        quant_pre_process(str(fp32_path), str(out_path))
    proto = onnx.load(str(out_path))
    name_unnamed_nodes(proto)
    unshare_initializers(proto)
    onnx.save_model(proto, str(out_path))


def name_unnamed_nodes(proto: onnx.ModelProto) -> None:
    """Give nodes the optimiser inserted unnamed (HardSwish -> HardSigmoid*x) their producer's module scope."""
    scope_of = {}
    for index, node in enumerate(proto.graph.node):
        if not node.name:
            producer = next((scope_of[i] for i in node.input if i in scope_of), "")
            node.name = f"{producer}/{node.op_type}_{index}"
        scope = node.name.rsplit("/", 1)[0]
        scope_of.update({output: scope for output in node.output})


def unshare_initializers(proto: onnx.ModelProto) -> None:
    """Give every consumer of a shared constant its own copy.

    The exporter deduplicates equal constants (e.g. all-zero biases), and ONNX
    Runtime quantizes a shared initializer once for its first consumer, so a
    LayerNorm bias or an `--int8-exclude`d Gemm would otherwise be fed the int32
    bias of some convolution.
    """
    initializers = {init.name: init for init in proto.graph.initializer}
    seen: set[str] = set()
    for node in proto.graph.node:
        for position, name in enumerate(node.input):
            if name not in initializers:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}__{node.name}_{position}"
                proto.graph.initializer.append(copy)
                node.input[position] = copy.name
            seen.add(name)


def drop_unused_domains(proto: onnx.ModelProto) -> None:
    """Forget the operator domains ORT's optimiser declared but no node uses (TensorRT parses only ONNX ops)."""
    used = {node.domain for node in proto.graph.node} | {""}
    kept = [entry for entry in proto.opset_import if entry.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)


def graph_parts(proto: onnx.ModelProto, within: str | None = None) -> list[str]:
    """The model's parts as the exporter scoped its nodes, in order: the top-level ones ("/trunk/...",
    "/classifier/..."), or the blocks one level inside part `within` ("/trunk/trunk.3/...")."""
    depth = 1 if within is None else 2
    scopes = [node.name.split("/") for node in proto.graph.node]
    parts = [s[depth] for s in scopes if len(s) > depth + 1 and (within is None or s[1] == within)]
    return list(dict.fromkeys(parts))


def nodes_for_parts(proto: onnx.ModelProto, parts: Sequence[str]) -> list[str]:
    """ONNX node names under each model part (module path segment such as "classifier", "trunk.12")."""
    names = [node.name for node in proto.graph.node]
    selected = []
    for part in parts:
        matches = [name for name in names if name == part or part in name.split("/")]
        if not matches:
            scopes = ", ".join(sorted(graph_parts(proto)))
            raise EdgeECGError(f"--int8-exclude {part!r} matches no node; parts in this graph: {scopes}")
        selected.extend(m for m in matches if m not in selected)
    return selected


def quantize_int8(
    prepared_path: Path,
    out_path: Path,
    calib_tensors: np.ndarray,
    target: str,
    method: str,
    excluded_nodes: Sequence[str] = (),
) -> None:
    """Calibrate on the scans and write the Q/DQ model; a calibrator failure is one clear line."""
    activation_type, options = TARGET_TYPES[target]
    reader = ScanCalibrationReader(calib_tensors, INPUT_NAME, CALIB_BATCH)
    stride = max(d for d in range(1, MAX_BATCHES_PER_COLLECT + 1) if len(reader) % d == 0)
    try:
        with _quiet_quantizer():
            quantize_static(
                str(prepared_path),
                str(out_path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=activation_type,
                weight_type=QuantType.QInt8,
                calibrate_method=CALIB_METHODS[method],
                nodes_to_exclude=list(excluded_nodes),
                extra_options={**options, "CalibStridedMinMax": stride},
            )
    except ValueError as exc:  # e.g. the percentile histogram on a near-constant activation
        raise EdgeECGError(f"{method} calibration failed on this model ({exc}); try another --calib-method") from None


@contextlib.contextmanager
def _quiet_quantizer():
    """ORT's quantizer prints progress to stdout and per-tensor notes to the root logger; keep errors only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def build_int8(
    prepared_path: Path,
    fp32_path: Path,
    out_path: Path,
    contract: ModelContract,
    calib_tensors: np.ndarray,
    target: str,
    method: str = "auto",
    exclude_parts: Sequence[str] = (),
) -> Int8Model:
    """Quantize the prepared model (choosing the calibration method if "auto"), embed the contract, check."""
    excluded = nodes_for_parts(onnx.load(str(prepared_path)), exclude_parts)
    candidates = list(CALIB_METHODS) if method == "auto" else [method]
    selection: dict[str, dict] = {}
    subset = calib_tensors[evenly_spaced(range(len(calib_tensors)), SELECTION_SCANS)]
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".int8-") as tmp:
        if len(candidates) > 1:
            reference = onnx_logits(fp32_path, subset)
        for candidate in candidates:
            step(f"INT8 ({target}): calibrating with {candidate} on {len(calib_tensors)} scans")
            path = Path(tmp) / f"{candidate}.onnx"
            try:
                quantize_int8(prepared_path, path, calib_tensors, target, candidate, excluded)
            except EdgeECGError as exc:
                if len(candidates) == 1:
                    raise
                warn(str(exc))
                selection[candidate] = {"error": str(exc)}
                continue
            if len(candidates) > 1:
                selection[candidate] = fidelity(reference, path, subset, contract)
        chosen = pick_method(selection) if len(candidates) > 1 else method
        proto = onnx.load(str(Path(tmp) / f"{chosen}.onnx"))
    quantization = {"target": target, "calibrate_method": chosen, "calib_images": int(len(calib_tensors)),
                    "excluded_parts": list(exclude_parts)}
    drop_unused_domains(proto)
    set_contract(proto, replace(contract, precision="int8", extra={**contract.extra, "quantization": quantization}))
    check_onnx(proto)
    onnx.save_model(proto, str(out_path))
    return Int8Model(out_path, target, chosen, excluded, selection)


def fidelity(reference_logits: np.ndarray, int8_path: Path, tensors: np.ndarray, contract: ModelContract) -> dict:
    """How closely an INT8 candidate follows FP32: top-1 agreement and mean |delta probability|."""
    logits = onnx_logits(int8_path, tensors)
    p_ref, p_int8 = probabilities(reference_logits, contract), probabilities(logits, contract)
    return {
        "top1_agreement": float((reference_logits.argmax(1) == logits.argmax(1)).mean()),
        "mean_abs_delta_prob": float(np.abs(p_ref - p_int8).mean()),
    }


def pick_method(selection: dict[str, dict]) -> str:
    """Highest top-1 agreement with FP32, then the smallest mean probability shift."""
    scored = {m: s for m, s in selection.items() if "error" not in s}
    if not scored:
        raise EdgeECGError("every INT8 calibration method failed on this model: " + "; ".join(
            s["error"] for s in selection.values()))
    return min(scored, key=lambda m: (-scored[m]["top1_agreement"], scored[m]["mean_abs_delta_prob"]))
