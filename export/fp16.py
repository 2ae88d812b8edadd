"""FP16 ONNX variant for GPU execution providers (CUDA, TensorRT EP, DirectML).

Weights and internal tensors become float16 while the input and the logits
stay float32 (keep_io_types), so the runtime feeds it exactly like the FP32
model. ONNX Runtime's CPU provider runs many float16 ops; where it cannot,
the graph is still checked and the report says it was not run.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnxconverter_common import float16

from edgeecg.contract import ModelContract
from edgeecg.errors import first_line

from .onnx_io import check_onnx, set_contract
from .ui import note
from .verify import compare_logits, onnx_logits


def convert_to_fp16(fp32: onnx.ModelProto, contract: ModelContract) -> onnx.ModelProto:
    """The FP16 graph with float32 I/O, its contract saying precision "fp16"."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        proto = float16.convert_float_to_float16(fp32, keep_io_types=True)
    clamped = sum("truncated to" in str(w.message) for w in caught)
    if clamped:
        note(f"FP16: {clamped} weight value(s) below float16's range were clamped to +-1e-7")
    set_contract(proto, replace(contract, precision="fp16"))
    check_onnx(proto)
    return proto


def check_fp16(path: str | Path, tensors: np.ndarray, fp32_logits: np.ndarray) -> dict:
    """Run the FP16 model on ONNX Runtime CPU and compare it with FP32; say so if CPU cannot run it."""
    try:
        logits = onnx_logits(path, tensors)
    except Exception as exc:  # the backend's EdgeECGError, or ORT's own Fail/NotImplemented at run time
        message = first_line(exc)
        note(f"FP16 model does not run on ONNX Runtime's CPU provider ({message}); graph checked only")
        return {"ran_on": None, "note": f"graph checked only; CPU provider: {message}"}
    return {"ran_on": "CPUExecutionProvider", **compare_logits(fp32_logits, logits).to_dict()}
