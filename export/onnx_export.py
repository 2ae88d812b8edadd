"""PyTorch checkpoint -> a clean FP32 ONNX graph that carries its model contract.

Exporter choice (measured with torch 2.14 on SimCardioNet, see export/README_TRT.md):
both the TorchScript exporter (`dynamo=False`) and the torch.export one reach
ORT-vs-PyTorch parity, but the dynamo exporter only emits opset >= 18 (its
down-conversion to 17 fails on ReduceMean) and names nodes `node_Gemm_811`,
while the TorchScript exporter emits opset 17 natively, which TensorRT 8.5
(JetPack 5) still parses, and names every node after its module path
(`/classifier/classifier.1/Gemm`), which `--int8-exclude` relies on. After
onnxslim both graphs are equally small (166 vs 164 nodes), so we use the
TorchScript exporter.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import onnx
import onnxslim
import torch

from edgeecg.contract import CONTRACT_KEY, ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.train.checkpoint import load_checkpoint, model_from_checkpoint

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Trace with two images so no batch-1 shape is folded into the graph's constants.
TRACE_BATCH = 2


def load_for_export(source: str | Path) -> tuple[torch.nn.Module, ModelContract]:
    """The eval-mode network and its contract from a run folder or a checkpoint file."""
    model, contract = model_from_checkpoint(load_checkpoint(source))
    return model, replace(contract, precision="fp32")


def export_onnx(model: torch.nn.Module, contract: ModelContract, opset: int = 17) -> onnx.ModelProto:
    """Export, simplify with onnxslim, embed the contract and run the ONNX checker."""
    size = contract.input_size
    example = torch.zeros(TRACE_BATCH, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo; chosen on purpose (module docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        # nn.MultiheadAttention's Python shape checks trip the tracer; real-scan parity checks the graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        path = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        except Exception as exc:  # torch raises many types for unsupported ops / opsets
            raise EdgeECGError(f"ONNX export failed at opset {opset}: {_first_line(exc)}") from None
        proto = onnx.load(str(path))
    proto = onnxslim.slim(proto)
    set_contract(proto, contract)
    check_onnx(proto)
    return proto


def set_contract(proto: onnx.ModelProto, contract: ModelContract) -> None:
    """Store the contract as the single `edgeecg` metadata entry (replacing any earlier one)."""
    kept = [p for p in proto.metadata_props if p.key != CONTRACT_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=CONTRACT_KEY, value=contract.to_json())
    proto.producer_name = "edgeecg"


def check_onnx(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise EdgeECGError(f"exported graph fails the ONNX checker: {_first_line(exc)}") from None


def save_onnx(proto: onnx.ModelProto, path: str | Path) -> None:
    """Write a model file (callers wrap this in `atomic_path` so a failed check leaves nothing)."""
    onnx.save_model(proto, str(path))


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
