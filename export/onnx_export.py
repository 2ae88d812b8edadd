"""PyTorch checkpoint -> a clean FP32 ONNX graph that carries its model contract and matches PyTorch.

The export is only kept if ONNX Runtime reproduces PyTorch on real scans:
max |delta logit| <= 1e-4 and the same top-1 on every scan.

Exporter choice (measured with torch 2.14 on SimCardioNet, see README.md, "Export"):
both the TorchScript exporter (`dynamo=False`) and the torch.export one reach
ORT-vs-PyTorch parity, but the dynamo exporter only emits opset >= 18 (its
down-conversion to 17 fails on ReduceMean) and names nodes `node_Gemm_811`,
while the TorchScript exporter emits opset 17 natively (and 16, with
LayerNorm decomposed, for TensorRT 8.5 on JetPack 5, which cannot parse
LayerNormalization) and names every node after its module path
(`/classifier/classifier.1/Gemm`), which `--int8-exclude` relies on. After
onnxslim both graphs are equally small (166 vs 164 nodes), so we use the
TorchScript exporter.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxslim
import torch

from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError, first_line
from edgeecg.train.checkpoint import load_checkpoint, model_from_checkpoint

from .onnx_io import check_onnx, set_contract
from .options import INPUT_NAME, OUTPUT_NAME
from .verify import BATCH, Agreement, compare_logits, onnx_logits

FP32_TOLERANCE = 1e-4  # max |delta logit| between ONNX Runtime and PyTorch
# Trace with two images so no batch-1 shape is folded into the graph's constants.
TRACE_BATCH = 2


def load_for_export(source: str | Path) -> tuple[torch.nn.Module, ModelContract]:
    """The eval-mode network and its contract from a run folder or a checkpoint file."""
    model, contract = model_from_checkpoint(load_checkpoint(source), source)
    return model, replace(contract, precision="fp32")


def export_onnx(model: torch.nn.Module, contract: ModelContract, opset: int = 17,
                input_shape: tuple[int, ...] | None = None, extra_outputs: tuple[str, ...] = ()) -> onnx.ModelProto:
    """Export, simplify with onnxslim, embed the contract and run the ONNX checker.

    `input_shape` is one input without the batch axis; default an image, 3 x input_size x input_size.
    `extra_outputs` names the outputs a model returns after its logits (each batch-first).
    """
    outputs = [OUTPUT_NAME, *extra_outputs]
    size = contract.input_size
    example = torch.zeros(TRACE_BATCH, *(input_shape or (3, size, size)))
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
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *outputs)},
                do_constant_folding=True,
            )
        except Exception as exc:  # torch raises many types for unsupported ops / opsets
            raise EdgeECGError(f"ONNX export failed at opset {opset}: {first_line(exc)}") from None
        proto = onnx.load(str(path))
    proto = onnxslim.slim(proto)
    set_contract(proto, contract)
    check_onnx(proto)
    return proto


def torch_logits(model: torch.nn.Module, tensors: np.ndarray, batch: int = BATCH) -> np.ndarray:
    with torch.inference_mode():
        outputs = [model(torch.from_numpy(tensors[i : i + batch])).numpy() for i in range(0, len(tensors), batch)]
    return np.concatenate(outputs).astype(np.float32)


def check_fp32_parity(
    model: torch.nn.Module, onnx_path: str | Path, tensors: np.ndarray, tolerance: float = FP32_TOLERANCE
) -> Agreement:
    """ORT FP32 vs PyTorch on real scans; raises EdgeECGError unless both criteria hold."""
    return require_parity(torch_logits(model, tensors), onnx_logits(onnx_path, tensors), tolerance)


def require_parity(reference: np.ndarray, candidate: np.ndarray, tolerance: float = FP32_TOLERANCE) -> Agreement:
    """The agreement of ONNX Runtime's logits with PyTorch's, or EdgeECGError when it misses either criterion."""
    agreement = compare_logits(reference, candidate)
    if agreement.max_abs_delta > tolerance or agreement.top1_agreement < 1.0:
        raise EdgeECGError(
            f"ONNX export does not reproduce PyTorch on {agreement.n_scans} scans: max |delta logit| "
            f"{agreement.max_abs_delta:.2e} (limit {tolerance:.0e}), same top-1 on "
            f"{agreement.top1_agreement:.1%}; nothing was written"
        )
    return agreement
