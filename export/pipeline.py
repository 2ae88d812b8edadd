"""The export sequence: FP32 ONNX (parity-gated) -> FP16 -> INT8 -> TensorRT engines -> report.

Every file is written through `atomic_path`, so a failed check or a crash
leaves no half-written or unverified model behind. TensorRT and the GPU are
checked first, before minutes of export work.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


from edgeecg.atomic import atomic_path, write_text
from edgeecg.backends import file_sha256
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.trt_backend import TensorRTBackend, import_tensorrt

from .calibration import load_calibration_set, resolve_calib_dir
from .fp16 import check_fp16, convert_to_fp16
from .int8_eval import MIN_TOP1_AGREEMENT, compare_fp32_int8, eval_files, load_eval_set, print_int8_table, \
    resolve_eval_source
from .onnx_export import export_onnx, load_for_export, save_onnx
from .quantize import build_int8, fidelity, prepare_for_quantization
from .report import Artifact, print_artifacts, write_report
from .scans import PreparedScans, evenly_spaced, image_files, prepare_scans
from .tensorrt_build import build_engine, check_device, engine_source
from .ui import note, step
from .verify import check_fp32_parity, compare_logits, onnx_logits

INT8_FILES = {"cpu": "{name}-int8.onnx", "tensorrt": "{name}-int8-trt.onnx"}


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
    eval_data: Path | None = None
    trt: bool = False
    trt_calibrator: str = "explicit"
    max_batch: int = 8
    workspace_gib: float = 2.0
    timing_cache: Path | None = None
    dla: int | None = None


@dataclass
class ExportResult:
    out_dir: Path
    artifacts: list[Artifact] = field(default_factory=list)
    report: dict = field(default_factory=dict)


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


def run_export(options: ExportOptions) -> ExportResult:
    trt, device = None, None
    if options.trt:  # fail fast: no TensorRT or no GPU means no point exporting first
        trt = import_tensorrt()
        device = check_device(trt)
        for precision in engine_precisions(options):
            engine_source(trt, precision, options.trt_calibrator if precision == "int8" else "explicit")
    if options.trt_calibrator == "legacy" and not (options.trt and options.int8):
        raise EdgeECGError("--trt-calibrator legacy needs --trt --int8")

    model, contract = load_for_export(options.source)
    verify = _verification_scans(options, contract)
    name = options.name or contract.name
    out = options.out or default_out_dir(options.source)
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out)
    sections: dict = {"source": str(options.source), "options": _jsonable(asdict(options)),
                      "contract": json.loads(contract.to_json())}
    sections["verification"] = {"n_scans": len(verify), "skipped": len(verify.skipped),
                                "files": [str(p) for p in verify.paths]}

    step(f"ONNX: exporting {options.source} (opset {options.opset})")
    proto = export_onnx(model, contract, options.opset)
    fp32_path = out / f"{name}.onnx"
    with atomic_path(fp32_path) as tmp:
        save_onnx(proto, tmp)
        parity = check_fp32_parity(model, tmp, verify.tensors)
    step(f"ONNX FP32 matches PyTorch on {parity.n_scans} scans: max |delta logit| {parity.max_abs_delta:.2e}")
    result.artifacts.append(Artifact("ONNX FP32", fp32_path, True,
                                     f"vs PyTorch: top-1 100%, max|dlogit| {parity.max_abs_delta:.0e}",
                                     {"parity_vs_pytorch": parity.to_dict()}))
    fp32_logits = onnx_logits(fp32_path, verify.tensors)

    step("ONNX FP16: converting (float32 input/output kept)")
    fp16_path = out / f"{name}-fp16.onnx"
    with atomic_path(fp16_path) as tmp:
        save_onnx(convert_to_fp16(proto, contract), tmp)
        fp16_check = check_fp16(tmp, verify.tensors, fp32_logits)
    result.artifacts.append(_reduced_precision_artifact("ONNX FP16", fp16_path, fp16_check))

    onnx_paths = {"fp32": fp32_path, "fp16": fp16_path}
    calib_scans = None
    if options.int8:
        calib_scans, int8_paths = _int8(options, contract, name, out, fp32_path, fp32_logits, verify, result, sections)
        onnx_paths.update(int8_paths)

    if trt is not None:
        sections["tensorrt"] = [
            _engine(trt, device, options, contract, name, out, precision, onnx_paths, calib_scans, fp32_logits,
                    verify, result)
            for precision in engine_precisions(options)
        ]

    write_report(out / "export_report.json", result.artifacts, sections)
    print_artifacts(result.artifacts, out)
    return result


def _verification_scans(options: ExportOptions, contract: ModelContract) -> PreparedScans:
    """A few real scans (--verify-data, else the calibration folder) in the runtime's preprocessing."""
    if options.verify_data is not None:
        source = options.verify_data
    else:
        try:
            source = resolve_calib_dir(options.calib)
        except EdgeECGError:
            raise EdgeECGError("no real scans to verify the export on: pass --verify-data DIR (or --calib DIR)") from None
    files = image_files(source)
    scans = prepare_scans(evenly_spaced(files, options.verify_count), contract, "verification scans")
    if not len(scans):
        detail = f" (e.g. {scans.skipped[0][1]})" if scans.skipped else ""
        raise EdgeECGError(f"{source}: no usable scan to verify the export on{detail}")
    return scans


def _reduced_precision_artifact(label: str, path: Path, check: dict) -> Artifact:
    if check.get("ran_on") is None:
        return Artifact(label, path, None, check["note"], {"check": check})
    passed = check["top1_agreement"] >= MIN_TOP1_AGREEMENT
    return Artifact(label, path, passed,
                    f"vs FP32: top-1 {check['top1_agreement']:.0%}, max|dlogit| {check['max_abs_delta']:.0e}",
                    {"check": check})


def _int8(options, contract, name, out, fp32_path, fp32_logits, verify, result, sections):
    """Calibrate, write each INT8 flavour, compare it with FP32 on the labelled set; returns the scans used."""
    calib_dir = resolve_calib_dir(options.calib)
    eval_source = resolve_eval_source(options.eval_data, calib_dir)
    calib = load_calibration_set(calib_dir, contract, options.calib_max,
                                 exclude=eval_files(eval_source) if eval_source else ())
    evaluation = None
    if eval_source is not None:
        eval_scans, labels = load_eval_set(eval_source, contract)
        evaluation = (eval_scans, labels, onnx_logits(fp32_path, eval_scans.tensors))
    else:
        note("no labelled evaluation set (--eval-data, or calib_data/heldout_eval.csv); "
             "FP32-vs-INT8 accuracy is not measured")

    paths, evaluations, models = {}, {}, {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".int8-prepared-") as work:
        prepared = Path(work) / "prepared.onnx"
        step("INT8: shape inference and graph optimisation for quantization")
        prepare_for_quantization(fp32_path, prepared)
        for target in int8_targets(options):
            path = out / INT8_FILES[target].format(name=name)
            with atomic_path(path) as tmp:
                made = build_int8(prepared, fp32_path, tmp, contract, calib.tensors, target, options.calib_method,
                                  options.int8_exclude)
                check = {"ran_on": "CPUExecutionProvider", "n_scans": len(verify),
                         **fidelity(fp32_logits, tmp, verify.tensors, contract)}
                if evaluation is not None:
                    eval_scans, labels, eval_fp32 = evaluation
                    evaluations[target] = compare_fp32_int8(
                        eval_fp32, onnx_logits(tmp, eval_scans.tensors), labels, contract)
            paths[f"int8-{'trt' if target == 'tensorrt' else 'cpu'}"] = path
            models[target] = {"file": path.name, "calibrate_method": made.calib_method,
                              "method_selection": made.selection, "excluded_nodes": made.excluded_nodes,
                              "verification": check, "evaluation": evaluations.get(target)}
            result.artifacts.append(_int8_artifact(target, path, made.calib_method, check, evaluations.get(target)))

    int8_report = {
        "calibration": {"folder": str(calib_dir), "n_scans": len(calib), "skipped": len(calib.skipped),
                        "method": options.calib_method, "excluded_parts": list(options.int8_exclude)},
        "evaluation_set": str(eval_source) if eval_source else None,
        "models": models,
    }
    write_text(out / "int8_report.json", json.dumps(int8_report, indent=2))
    sections["int8"] = int8_report
    if evaluations:
        print_int8_table(evaluations, eval_source)
    return calib, paths


def _int8_artifact(target: str, path: Path, method: str, check: dict, evaluation: dict | None) -> Artifact:
    """Passed: the evaluation targets when there is a labelled set, else top-1 agreement on the verify scans."""
    summary = f"{method}; vs FP32: top-1 {check['top1_agreement']:.0%}"
    if evaluation is None:
        passed = check["top1_agreement"] >= MIN_TOP1_AGREEMENT
    else:
        passed = evaluation["meets_targets"]
        summary += f"; eval: agree {evaluation['top1_agreement']:.0%}"
        if "accuracy_drop_pp" in evaluation:
            summary += f", acc -{evaluation['accuracy_drop_pp']:.1f} pp"
    return Artifact(f"ONNX INT8 ({target})", path, passed, summary)


def _engine(trt, device, options, contract, name, out, precision, onnx_paths, calib, fp32_logits, verify, result):
    """Build one engine, then run it through the runtime backend against FP32 on the verify scans."""
    calibrator = options.trt_calibrator if precision == "int8" else "explicit"
    onnx_path = onnx_paths[engine_source(trt, precision, calibrator)]
    engine_path = out / f"{name}-{precision}.engine"
    legacy = None
    if calibrator == "legacy":
        cache = out / f"{name}-int8-{file_sha256(onnx_path)[:12]}.calib.cache"  # tied to this exact model
        legacy = (calib.tensors, cache)
    sidecar = build_engine(trt, onnx_path, engine_path, contract, precision, device, options.max_batch,
                           options.workspace_gib, options.timing_cache or out / "trt-timing.cache", options.dla,
                           legacy)
    backend = TensorRTBackend(engine_path)
    try:
        check = compare_logits(fp32_logits, backend.run(verify.tensors)).to_dict()
    finally:
        backend.close()
    check["ran_on"] = f"TensorRT {trt.__version__}"
    artifact = _reduced_precision_artifact(f"TensorRT {precision.upper()}", engine_path, check)
    artifact.details["sidecar"] = engine_path.name + ".json"
    result.artifacts.append(artifact)
    return {"engine": engine_path.name, **{k: v for k, v in sidecar.items() if k != "contract"}, "check": check}


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
