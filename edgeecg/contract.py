"""The metadata contract every exported model carries.

An ONNX model is only served when its `metadata_props` say how to feed it:
class names, input size, mean/std, crop settings, task, version and the hash of
the training manifest. The runtime reads everything from here and nothing from
guesswork, so a model trained on crops is always served with the same crops.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .errors import EdgeECGError

CONTRACT_KEY = "edgeecg"  # one JSON blob under this metadata key
CONTRACT_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelContract:
    """What a model needs from the runtime and what its outputs mean."""

    classes: list[str]
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop: bool = True  # run the trace cropper before resizing
    crop_margin: float = 0.0  # fraction of the grid box kept around it
    task: str = "multiclass"  # "multiclass" (softmax) or "multilabel" (sigmoid)
    output: str = "logits"  # what the graph's output holds
    temperature: float = 1.0  # divides logits before softmax/sigmoid (calibration)
    name: str = "simcardionet"
    model_version: str = "0"
    trunk: str = ""
    precision: str = "fp32"
    train_manifest_sha256: str = ""
    extra: dict = field(default_factory=dict)
    contract_version: int = CONTRACT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelContract":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EdgeECGError(f"{source}: edgeecg metadata is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or not data.get("classes"):
            raise EdgeECGError(f"{source}: edgeecg metadata has no class names")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["mean"] = tuple(known.get("mean", IMAGENET_MEAN))
        known["std"] = tuple(known.get("std", IMAGENET_STD))
        return cls(**known)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> "ModelContract":
        """Read the contract from an ONNX model's metadata map; refuse a model without one."""
        if CONTRACT_KEY not in metadata:
            raise EdgeECGError(
                f"{source} carries no edgeecg metadata (class names, input size, normalisation); "
                "export it with `edgeecg export` so the runtime knows how to feed it"
            )
        return cls.from_json(metadata[CONTRACT_KEY], source)
