"""TensorRT engines from exported ONNX models, each checked through the runtime backend (torch-free).

An engine has to be built on the device that runs it. The desktop builds its
own during a full export; a Jetson only needs the ONNX files copied over:
`edgeecg export model.onnx --trt` builds from `model.onnx` and its siblings
(`model-fp16.onnx`, `model-int8-trt.onnx`) without PyTorch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgeecg.backends import OnnxRuntimeBackend, file_sha256
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.formats import ENGINE_FORMATS, FORMATS
from edgeecg.trt_backend import TensorRTBackend, import_tensorrt, sidecar_path

from .calibration import load_calibration_set, resolve_calib_dir
from .int8_eval import MIN_TOP1_AGREEMENT
from .options import ExportOptions, ExportResult, engine_precisions, jsonable
from .report import Artifact, print_artifacts, write_report
from .scans import PreparedScans, evenly_spaced, image_files, prepare_scans
from .tensorrt_build import build_engine, check_device, engine_source
from .ui import step
from .verify import compare_logits, onnx_logits

ONNX_SOURCES = ("fp32", "fp16", "int8-trt")  # the formats an engine can be built from (see engine_source)


def prepare_tensorrt(options: ExportOptions) -> tuple[Any, tuple[str, str]]:
    """TensorRT importable, a GPU present, every requested engine buildable here: checked before any work."""
    trt = import_tensorrt()
    device = check_device(trt)
    for precision in engine_precisions(options):
        engine_source(trt, precision, calibrator_for(options, precision))
    return trt, device


def calibrator_for(options: ExportOptions, precision: str) -> str:
    return options.trt_calibrator if precision == "int8" else "explicit"


def verification_scans(options: ExportOptions, contract: ModelContract) -> PreparedScans:
    """A few real scans (--verify-data, else the calibration folder) in the runtime's preprocessing."""
    if options.verify_data is not None:
        source = options.verify_data
    else:
        try:
            source = resolve_calib_dir(options.calib)
        except EdgeECGError:
            raise EdgeECGError("no real scans to verify the export on: pass --verify-data DIR (or --calib DIR)") from None
    scans = prepare_scans(evenly_spaced(image_files(source), options.verify_count), contract, "verification scans")
    if not len(scans):
        detail = f" (e.g. {scans.skipped[0][1]})" if scans.skipped else ""
        raise EdgeECGError(f"{source}: no usable scan to verify the export on{detail}")
    return scans


def reduced_precision_artifact(label: str, path: Path, check: dict) -> Artifact:
    """Passed when the model's top-1 agrees with FP32 on at least 98 % of the verify scans."""
    if check.get("ran_on") is None:
        return Artifact(label, path, None, check["note"], {"check": check})
    passed = check["top1_agreement"] >= MIN_TOP1_AGREEMENT
    return Artifact(label, path, passed,
                    f"vs FP32: top-1 {check['top1_agreement']:.0%}, max|dlogit| {check['max_abs_delta']:.0e}",
                    {"check": check})


def build_checked_engine(
    trt: Any,
    device: tuple[str, str],
    options: ExportOptions,
    contract: ModelContract,
    name: str,
    out: Path,
    precision: str,
    onnx_paths: dict[str, Path],
    fp32_logits: np.ndarray,
    verify: PreparedScans,
    calib_tensors: np.ndarray | None,
) -> tuple[Artifact, dict]:
    """Build one engine, then run it through TensorRTBackend against FP32 on the verify scans."""
    calibrator = calibrator_for(options, precision)
    onnx_path = onnx_paths[engine_source(trt, precision, calibrator)]
    engine_format = ENGINE_FORMATS[precision]
    engine_path = engine_format.path(out, name)
    legacy = None
    if calibrator == "legacy":  # the cache is tied to this exact model by its hash
        legacy = (calib_tensors, out / f"{name}-int8-{file_sha256(onnx_path)[:12]}.calib.cache")
    sidecar = build_engine(trt, onnx_path, engine_path, contract, precision, device, options.max_batch,
                           options.workspace_gib, options.timing_cache or out / "trt-timing.cache", options.dla,
                           legacy)
    backend = TensorRTBackend(engine_path)
    try:
        check = compare_logits(fp32_logits, backend.run(verify.tensors)).to_dict()
    finally:
        backend.close()
    check["ran_on"] = f"TensorRT {trt.__version__}"
    artifact = reduced_precision_artifact(engine_format.label, engine_path, check)
    artifact.details["sidecar"] = sidecar_path(engine_path).name
    summary = {"engine": engine_path.name, **{k: v for k, v in sidecar.items() if k != "contract"}, "check": check}
    return artifact, summary


def run_engines_from_onnx(options: ExportOptions) -> ExportResult:
    """SOURCE is an FP32 model written by `edgeecg export`: build engines from it and its siblings."""
    fp32_path = options.source
    if not options.trt:
        raise EdgeECGError(f"{fp32_path}: an .onnx SOURCE only builds TensorRT engines; add --trt "
                           "(INT8/FP16 ONNX models are made from the training run)")
    if options.int8_exclude:
        raise EdgeECGError("--int8-exclude applies when quantizing a training run; an .onnx SOURCE is already made")
    trt, device = prepare_tensorrt(options)
    contract = OnnxRuntimeBackend(fp32_path).contract
    if contract.precision != "fp32":
        raise EdgeECGError(f"{fp32_path} is the {contract.precision} model; give the FP32 one (<name>.onnx)")
    stem = fp32_path.stem
    onnx_paths = {key: FORMATS[key].path(fp32_path.parent, stem) for key in ONNX_SOURCES}
    for precision in engine_precisions(options):
        key = engine_source(trt, precision, calibrator_for(options, precision))
        needed = onnx_paths[key]
        if not needed.is_file():
            raise EdgeECGError(f"the {precision} engine is built from {needed.name}, which is not beside "
                               f"{fp32_path.name}; make it with {FORMATS[key].made_by} and copy it here")
    verify = verification_scans(options, contract)
    calib = None
    if options.int8 and options.trt_calibrator == "legacy":
        calib = load_calibration_set(resolve_calib_dir(options.calib), contract, options.calib_max).tensors
    out = options.out or fp32_path.parent
    out.mkdir(parents=True, exist_ok=True)
    fp32_logits = onnx_logits(fp32_path, verify.tensors)
    result = ExportResult(out)
    engines = []
    for precision in engine_precisions(options):
        artifact, summary = build_checked_engine(trt, device, options, contract, options.name or stem, out, precision,
                                                 onnx_paths, fp32_logits, verify, calib)
        result.artifacts.append(artifact)
        engines.append(summary)
    step(f"TensorRT engines built from {fp32_path.name}")
    write_report(out / "trt_report.json", result.artifacts,
                 {"source": str(fp32_path), "options": jsonable(asdict(options)),
                  "contract": json.loads(contract.to_json()), "tensorrt": engines}, {"tensorrt": trt.__version__})
    print_artifacts(result.artifacts, out)
    return result
