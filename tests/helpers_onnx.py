"""Runtime test helpers: tiny edgeecg ONNX models built with onnx.helper (no torch), and the CLI run in-process.

The graph (input "input" N x 3 x S x S -> GlobalAveragePool -> Flatten -> Gemm)
is a real classifier of mean colour: enough to check that the runtime feeds a
model what its contract says and reads its outputs back correctly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeecg.cli import main
from edgeecg.contract import CONTRACT_KEY, ModelContract

CLASSES = ["abnormal_heartbeat", "history_of_mi", "myocardial_infarction", "normal"]


def tiny_contract(**overrides) -> ModelContract:
    fields = dict(classes=list(CLASSES), input_size=64, name="tiny-test", model_version="1", precision="fp32")
    fields.update(overrides)
    return ModelContract(**fields)


def write_tiny_model(
    path: str | Path, contract: ModelContract | None = None, with_metadata: bool = True, seed: int = 0
) -> Path:
    """Save a mean-colour classifier with `contract` (default: tiny_contract()) in its metadata."""
    contract = contract or tiny_contract()
    size, k = contract.input_size, len(contract.classes)
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(0, 2, (k, 3)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, k).astype(np.float32), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime edgeecg supports
    if with_metadata:
        helper.set_model_props(model, {CONTRACT_KEY: contract.to_json()})
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def tiny_logits(batch: np.ndarray, path: str | Path) -> np.ndarray:
    """What the tiny model computes, in numpy: the reference for backend tests."""
    model = onnx.load(str(path))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return batch.mean(axis=(2, 3)) @ weights["weight"].T + weights["bias"]


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `edgeecg ARGS` through the console entry point (as a user would); (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["edgeecg", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
