"""The metadata contract every exported model carries.

An ONNX model is only served when its `metadata_props` say how to feed it:
class names, input size, mean/std, crop settings, task, version and the hash of
the training manifest. The runtime reads everything from here and nothing from
guesswork, so a model trained on crops is always served with the same crops.
"""

from __future__ import annotations

import json
import math
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

    def preprocessing_key(self) -> tuple:
        """What decides the tensor an input becomes; contracts with equal keys (whatever their classes or
        weights) share preprocessed tensors and cached crops. A signal model's input is its signal spec."""
        modality = str(self.extra.get("modality", "image"))
        if modality == "signal":
            spec = self.extra.get("signal") or {}
            return (modality, *(str(spec.get(k)) for k in ("rate", "seconds", "norm", "clip", "length")))
        return (
            modality,
            int(self.input_size),
            tuple(float(v) for v in self.mean),
            tuple(float(v) for v in self.std),
            bool(self.crop),
            float(self.crop_margin),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelContract":
        """Parse and validate the contract: a model file is input from anywhere, so every field is checked."""
        if not isinstance(text, str) or len(text) > MAX_CONTRACT_CHARS:
            raise EdgeECGError(f"{source}: edgeecg metadata is not a JSON text of at most {MAX_CONTRACT_CHARS} characters")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EdgeECGError(f"{source}: edgeecg metadata is not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise EdgeECGError(f"{source}: edgeecg metadata is nested too deeply") from None
        if not isinstance(data, dict) or not data.get("classes"):
            raise EdgeECGError(f"{source}: edgeecg metadata has no class names")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            checked = {name: _FIELD_CHECKS[name](value) for name, value in known.items()}
            _check_input_size(checked.get("input_size", 224), checked.get("extra", {}))
        except ValueError as exc:
            raise EdgeECGError(f"{source}: edgeecg metadata field {exc}") from None
        return cls(**checked)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "model") -> "ModelContract":
        """Read the contract from an ONNX model's metadata map; refuse a model without one."""
        if CONTRACT_KEY not in metadata:
            raise EdgeECGError(
                f"{source} carries no edgeecg metadata (class names, input size, normalisation); "
                "export it with `edgeecg export` so the runtime knows how to feed it"
            )
        return cls.from_json(metadata[CONTRACT_KEY], source)


MAX_CONTRACT_CHARS = 1_000_000
MAX_CLASSES = 1000
MAX_TEXT_CHARS = 200
IMAGE_SIZE_RANGE = (32, 2048)  # an image model's square input side, in pixels
SIGNAL_LENGTH_RANGE = (32, 200_000)  # a signal model's input length, in samples
TASKS = ("multiclass", "multilabel")


def _classes(value) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLASSES:
        raise ValueError(f"classes must be a list of 1 to {MAX_CLASSES} names")
    names = [_one_line("classes", name) for name in value]
    if any(not name.strip() for name in names) or len(set(names)) != len(names):
        raise ValueError("classes must be distinct, non-empty names")
    return names


def _one_line(name: str, value) -> str:
    """Text that is printed: one line of printable characters, so a name cannot forge an output line."""
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS or not value.isprintable():
        raise ValueError(f"{name} must be one line of at most {MAX_TEXT_CHARS} printable characters")
    return value


def _number(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    if value < low or value > high or (low_open and value == low):
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low:g}, {high:g}], got {value:g}")
    return float(value)


def _integer(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value


def _triple(name: str, value, positive: bool) -> tuple[float, ...]:
    """Per-channel normalisation: one finite number per colour channel (std > 0)."""
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"{name} must be a list of 3 numbers (one per colour channel)")
    return tuple(_number(name, v, 0.0 if positive else -1e6, 1e6, low_open=positive) for v in value)


def _choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}")
    return value


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _mapping(name: str, value) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


def _check_input_size(size: int, extra: dict) -> None:
    """Images are S x S pixels; a signal model (extra.modality "signal") reads S samples per lead."""
    low, high = SIGNAL_LENGTH_RANGE if extra.get("modality") == "signal" else IMAGE_SIZE_RANGE
    if not low <= size <= high:
        raise ValueError(f"input_size must be from {low} to {high}, got {size}")


_FIELD_CHECKS = {
    "classes": _classes,
    "input_size": lambda v: _integer("input_size", v, *SIGNAL_LENGTH_RANGE),  # per modality: _check_input_size
    "mean": lambda v: _triple("mean", v, positive=False),
    "std": lambda v: _triple("std", v, positive=True),
    "crop": lambda v: _flag("crop", v),
    "crop_margin": lambda v: _number("crop_margin", v, 0.0, 0.5),
    "task": lambda v: _choice("task", v, TASKS),
    "output": lambda v: _choice("output", v, ("logits",)),
    "temperature": lambda v: _number("temperature", v, 0.0, 1e6, low_open=True),
    "name": lambda v: _one_line("name", v),
    "model_version": lambda v: _one_line("model_version", v),
    "trunk": lambda v: _one_line("trunk", v),
    "precision": lambda v: _one_line("precision", v),
    "train_manifest_sha256": lambda v: _one_line("train_manifest_sha256", v),
    "extra": lambda v: _mapping("extra", v),
    "contract_version": lambda v: _integer("contract_version", v, 1, CONTRACT_VERSION),
}
