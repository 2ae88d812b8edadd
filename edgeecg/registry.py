"""Models shipped inside the package (edgeecg/models/*.onnx), found by name.

Which models exist is read from the folder, and what each one is from its own
contract, so dropping a new exported model into edgeecg/models/ is all it
takes to ship it: `edgeecg infer --model NAME` and `edgeecg models` see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .contract import ModelContract
from .errors import EdgeECGError, first_line
from .formats import MODEL_SUFFIXES, ONNX_SUFFIX

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "signal"  # the signal branch (digitized leads): what `infer` and `serve` run unless told
DEFAULT_IMAGE_MODEL = "default"  # the SimCardioNet image model: what `explain` shows saliency for


@dataclass(frozen=True)
class ShippedModel:
    name: str
    path: Path
    classes: list[str]
    input_size: int
    precision: str
    task: str
    modality: str  # "image" (a page thumbnail) or "signal" (the digitized leads)


def shipped_model_paths(models_dir: Path | None = None) -> dict[str, Path]:
    """name (file stem) -> path of every ONNX model in the models folder."""
    models_dir = models_dir or MODELS_DIR
    if not models_dir.is_dir():
        return {}
    return {p.stem: p for p in sorted(models_dir.glob(f"*{ONNX_SUFFIX}")) if p.is_file()}


def list_models(models_dir: Path | None = None) -> list[ShippedModel]:
    """Every shipped model, described by the contract stored in it."""
    return [_describe(name, path) for name, path in shipped_model_paths(models_dir).items()]


def resolve_model(name_or_path: str | Path, models_dir: Path | None = None) -> Path:
    """A shipped model's name ("default", "default-int8", ...) or a model file -> its path."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    shipped = shipped_model_paths(models_dir)
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    if candidate.suffix.lower() in MODEL_SUFFIXES or len(candidate.parts) > 1:
        raise EdgeECGError(f"{candidate}: model file not found")
    available = ", ".join(shipped) if shipped else "none shipped yet"
    raise EdgeECGError(
        f"unknown model {str(name_or_path)!r} (shipped models: {available}; or pass a .onnx/.engine file)"
    )


def read_onnx_contract(path: Path) -> ModelContract:
    """The contract in an ONNX model's metadata, read without optimising the graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only the metadata is needed
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's own Fail/InvalidProtobuf for an unreadable file
        raise EdgeECGError(f"{path}: not a valid ONNX model ({first_line(exc)})") from None
    return ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))


def _describe(name: str, path: Path) -> ShippedModel:
    contract = read_onnx_contract(path)
    modality = (contract.extra or {}).get("modality", "image")
    return ShippedModel(name, path, list(contract.classes), contract.input_size, contract.precision, contract.task,
                        modality)
