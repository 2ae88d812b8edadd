"""What one `edgeecg export` run is asked to do, and what follows from it (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeecg.errors import EdgeECGError

from .report import Artifact

# the exported graph's tensor names (the runtime reads whatever the graph says; TensorRT profiles need them)
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class ExportOptions:
    source: Path
    out: Path | None = None
    name: str | None = None
    opset: int = 17
    verify_data: Path | None = None
    verify_count: int = 8
    fp16_engine: bool = False
    int8: bool = False
    int8_targets: tuple[str, ...] = ()
    calib: Path | None = None
    calib_max: int = 500
    calib_method: str = "auto"
    int8_exclude: tuple[str, ...] = ()
    int8_sweep: bool = False
    eval_data: Path | None = None
    accept_int8_miss: bool = False
    trt: bool = False
    trt_calibrator: str = "explicit"
    max_batch: int = 8
    workspace_gib: float = 2.0
    timing_cache: Path | None = None
    dla: int | None = None

    def __post_init__(self) -> None:
        if self.trt_calibrator == "legacy" and not (self.trt and self.int8):
            raise EdgeECGError("--trt-calibrator legacy needs --trt --int8")
        if (self.int8_exclude or self.int8_sweep) and not self.int8:
            raise EdgeECGError("--int8-exclude and --int8-sweep shape the INT8 model: add --int8")


@dataclass
class ExportResult:
    out_dir: Path
    artifacts: list[Artifact] = field(default_factory=list)


def default_out_dir(source: Path) -> Path:
    return (source if source.is_dir() else source.parent) / "export"


def engine_precisions(options: ExportOptions) -> list[str]:
    """--trt builds the precisions asked for; FP16 when neither --fp16 nor --int8 is given."""
    precisions = (["fp16"] if options.fp16_engine or not options.int8 else []) + (["int8"] if options.int8 else [])
    return precisions if options.trt else []


def int8_targets(options: ExportOptions) -> list[str]:
    """INT8 flavours to write: as asked (default cpu); --trt's explicit-Q/DQ engine needs the symmetric one."""
    if not options.int8:
        return []
    targets = list(options.int8_targets) or (["cpu"] if not options.trt else [])
    if options.trt and options.trt_calibrator == "explicit" and "tensorrt" not in targets:
        targets.append("tensorrt")
    return targets


def jsonable(value):
    """Options as JSON: paths become strings, tuples lists."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
