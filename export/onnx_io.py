"""ONNX model files as edgeecg writes them: the contract in the metadata, the checker passed (torch-free)."""

from __future__ import annotations

from pathlib import Path

import onnx

from edgeecg.contract import CONTRACT_KEY, ModelContract
from edgeecg.errors import EdgeECGError, first_line


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
        raise EdgeECGError(f"exported graph fails the ONNX checker: {first_line(exc)}") from None


def save_onnx(proto: onnx.ModelProto, path: str | Path) -> None:
    """Write a model file (callers wrap this in `atomic_path` so a failed check leaves nothing)."""
    onnx.save_model(proto, str(path))
