"""The full export from a training run: FP32 ONNX (parity-gated) -> FP16 -> INT8 -> TensorRT -> report.

The whole set is written into a staging folder that replaces the output
folder only once every file is written and checked (`staging.staged_export`),
so a failed check or a crash leaves the earlier set as it was, never a mix.
TensorRT, the GPU and all input data are checked first, before minutes of
export work.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from edgeecg.atomic import atomic_path, write_text
from edgeecg.contract import ModelContract
from edgeecg.formats import FORMATS, INT8_TARGET_FORMATS, ArtifactFormat

from .calibration import load_calibration_set, resolve_calib_dir
from .engines import build_checked_engine, prepare_tensorrt, reduced_precision_artifact, verification_scans
from .fp16 import check_fp16, convert_to_fp16
from .int8_eval import MIN_TOP1_AGREEMENT, compare_fp32_int8, eval_files, load_eval_set, print_int8_table, \
    require_int8_targets, resolve_eval_source
from .onnx_export import check_fp32_parity, export_onnx, load_for_export
from .onnx_io import save_onnx
from .options import ExportOptions, ExportResult, default_out_dir, engine_precisions, int8_targets, jsonable
from .quantize import build_int8, fidelity, nodes_for_parts, prepare_for_quantization
from .report import Artifact, print_artifacts, write_report
from .scans import PreparedScans
from .sensitivity import AUTO, sensitivity
from .staging import staged_export
from .ui import note, step
from .verify import onnx_logits


def run_export(options: ExportOptions) -> ExportResult:
    """Check TensorRT/GPU and every input first, then write and verify each artifact in turn."""
    trt, device = prepare_tensorrt(options) if options.trt else (None, None)
    model, contract = load_for_export(options.source)
    verify = verification_scans(options, contract)
    int8_data = _int8_inputs(options, contract) if options.int8 else None
    return _Export(options, model, contract, verify, int8_data, trt, device).run()


@dataclass
class _Int8Inputs:
    calib_dir: Path
    calib: PreparedScans
    eval_source: Path | None
    eval_scans: PreparedScans | None
    labels: np.ndarray | None


def _int8_inputs(options: ExportOptions, contract: ModelContract) -> _Int8Inputs:
    """Calibration scans (minus any evaluation scans) and the labelled evaluation set, if there is one."""
    calib_dir = resolve_calib_dir(options.calib)
    eval_source = resolve_eval_source(options.eval_data, calib_dir)
    calib = load_calibration_set(calib_dir, contract, options.calib_max,
                                 exclude=eval_files(eval_source) if eval_source else ())
    if eval_source is None:
        note("no labelled evaluation set (--eval-data, or calib_data/heldout_eval.csv); "
             "FP32-vs-INT8 accuracy is not measured")
        return _Int8Inputs(calib_dir, calib, None, None, None)
    eval_scans, labels = load_eval_set(eval_source, contract)
    return _Int8Inputs(calib_dir, calib, eval_source, eval_scans, labels)


class _Export:
    """One export run: writes the artifacts into the output folder and collects their checks."""

    def __init__(self, options, model, contract, verify, int8_data, trt, device):
        self.options, self.model, self.contract, self.verify = options, model, contract, verify
        self.int8_data, self.trt, self.device = int8_data, trt, device
        self.name = options.name or contract.name
        self.final_out = options.out or default_out_dir(options.source)
        self.result = ExportResult(self.final_out)
        self.sections: dict = {
            "source": str(options.source), "options": jsonable(asdict(options)),
            "contract": json.loads(contract.to_json()),
            "verification": {"n_scans": len(verify), "skipped": len(verify.skipped),
                             "files": [str(p) for p in verify.paths]},
        }
        self.onnx_paths: dict[str, Path] = {}
        self.int8_missed: dict[str, list[str]] = {}  # INT8 flavour -> the targets it misses against FP32

    def run(self) -> ExportResult:
        step(f"ONNX: exporting {self.options.source} (opset {self.options.opset})")
        proto = export_onnx(self.model, self.contract, self.options.opset)
        if self.options.int8:
            nodes_for_parts(proto, [p for p in self.options.int8_exclude if p != AUTO])  # refuse unknown parts early
        with staged_export(self.final_out) as self.out:
            self._write_set(proto)
        for artifact in self.result.artifacts:
            artifact.path = self.final_out / artifact.path.relative_to(self.out)
        print_artifacts(self.result.artifacts, self.final_out)
        require_int8_targets(self.int8_missed, self.options.accept_int8_miss)
        return self.result

    def _write_set(self, proto) -> None:
        self._fp32(proto)
        self._fp16(proto)
        if self.int8_data is not None:
            self._int8()
        if self.trt is not None:
            self.sections["tensorrt"] = [self._engine(p) for p in engine_precisions(self.options)]
        versions = {"torch": torch.__version__, **({"tensorrt": self.trt.__version__} if self.trt else {})}
        write_report(self.out / "export_report.json", self.result.artifacts, self.sections, versions)

    def _fp32(self, proto) -> None:
        fp32 = FORMATS["fp32"]
        path = fp32.path(self.out, self.name)
        with atomic_path(path) as tmp:
            save_onnx(proto, tmp)
            parity = check_fp32_parity(self.model, tmp, self.verify.tensors)
        step(f"ONNX FP32 matches PyTorch on {parity.n_scans} scans: max |delta logit| {parity.max_abs_delta:.2e}")
        self.result.artifacts.append(Artifact(fp32.label, path, True,
                                              f"vs PyTorch: top-1 100%, max|dlogit| {parity.max_abs_delta:.0e}",
                                              {"parity_vs_pytorch": parity.to_dict()}))
        self.onnx_paths[fp32.key] = path
        self.fp32_logits = onnx_logits(path, self.verify.tensors)

    def _fp16(self, proto) -> None:
        step("ONNX FP16: converting (float32 input/output kept)")
        fp16 = FORMATS["fp16"]
        path = fp16.path(self.out, self.name)
        with atomic_path(path) as tmp:
            save_onnx(convert_to_fp16(proto, self.contract), tmp)
            check = check_fp16(tmp, self.verify.tensors, self.fp32_logits)
        self.result.artifacts.append(reduced_precision_artifact(fp16.label, path, check))
        self.onnx_paths[fp16.key] = path

    def _int8(self) -> None:
        """Write each INT8 flavour, check it against FP32 on the verify scans and the labelled set."""
        data, fp32_path = self.int8_data, self.onnx_paths["fp32"]
        eval_fp32 = onnx_logits(fp32_path, data.eval_scans.tensors) if data.eval_scans is not None else None
        evaluations, models = {}, {}
        with tempfile.TemporaryDirectory(dir=self.out, prefix=".int8-prepared-") as work:
            prepared = Path(work) / "prepared.onnx"
            step("INT8: shape inference and graph optimisation for quantization")
            prepare_for_quantization(fp32_path, prepared)
            for target in int8_targets(self.options):
                int8 = INT8_TARGET_FORMATS[target]
                path = int8.path(self.out, self.name)
                swept, exclude, method = self._sensitivity(prepared, target)
                with atomic_path(path) as tmp:
                    made = build_int8(prepared, fp32_path, tmp, self.contract, data.calib.tensors, target, method,
                                      exclude)
                    check = {"ran_on": "CPUExecutionProvider", "n_scans": len(self.verify),
                             **fidelity(self.fp32_logits, tmp, self.verify.tensors, self.contract)}
                    if eval_fp32 is not None:
                        evaluations[target] = compare_fp32_int8(
                            eval_fp32, onnx_logits(tmp, data.eval_scans.tensors), data.labels, self.contract)
                self.onnx_paths[int8.key] = path
                self.int8_missed[target] = _missed(check, evaluations.get(target))
                models[target] = {"file": path.name, "calibrate_method": made.calib_method,
                                  "method_selection": made.selection, "excluded_parts": exclude,
                                  "sensitivity": swept, "excluded_nodes": made.excluded_nodes,
                                  "verification": check, "evaluation": evaluations.get(target)}
                self.result.artifacts.append(
                    _int8_artifact(int8, path, made.calib_method, check, evaluations.get(target)))
        report = {
            "calibration": {"folder": str(data.calib_dir), "n_scans": len(data.calib),
                            "skipped": len(data.calib.skipped), "method": self.options.calib_method,
                            "excluded_parts": list(self.options.int8_exclude)},
            "evaluation_set": str(data.eval_source) if data.eval_source else None,
            "models": models,
        }
        write_text(self.out / "int8_report.json", json.dumps(report, indent=2))
        self.sections["int8"] = report
        if evaluations:
            print_int8_table(evaluations, data.eval_source)

    def _sensitivity(self, prepared: Path, target: str) -> tuple[list[dict] | None, list[str], str]:
        """(the sweep's rows or None, the parts kept in FP32, the calibration method of the final model): the sweep
        runs when asked or for --int8-exclude auto, against FP32 on the labelled evaluation scans (else the verify
        scans), with one calibration method (minmax for auto); parts it chose are quantized with that method."""
        exclude, method = list(self.options.int8_exclude), self.options.calib_method
        if not (self.options.int8_sweep or AUTO in exclude):
            return None, exclude, method
        data = self.int8_data
        check = data.eval_scans.tensors if data.eval_scans is not None else self.verify.tensors
        swept_with = "minmax" if method == "auto" else method
        rows, kept = sensitivity(prepared, self.onnx_paths["fp32"], data.calib.tensors, check, self.contract,
                                 target, swept_with, exclude)
        return rows, kept, swept_with if AUTO in exclude else method

    def _engine(self, precision: str) -> dict:
        calib = self.int8_data.calib.tensors if self.int8_data is not None else None
        artifact, summary = build_checked_engine(self.trt, self.device, self.options, self.contract, self.name,
                                                 self.out, precision, self.onnx_paths, self.fp32_logits,
                                                 self.verify, calib)
        self.result.artifacts.append(artifact)
        return summary


def _missed(check: dict, evaluation: dict | None) -> list[str]:
    """The targets an INT8 model misses: on the labelled set when there is one, else agreement on the verify scans."""
    if evaluation is not None:
        return evaluation["missed"]
    agreement = check["top1_agreement"]
    return [] if agreement >= MIN_TOP1_AGREEMENT else [
        f"top-1 agreement {agreement:.1%} on the verify scans (needs {MIN_TOP1_AGREEMENT:.0%})"]


def _int8_artifact(fmt: ArtifactFormat, path: Path, method: str, check: dict, evaluation: dict | None) -> Artifact:
    """Passed: the evaluation targets when there is a labelled set, else top-1 agreement on the verify scans."""
    summary = f"{method}; vs FP32: top-1 {check['top1_agreement']:.0%}"
    passed = not _missed(check, evaluation)
    if evaluation is not None:
        summary += f"; eval: agree {evaluation['top1_agreement']:.0%}"
        if "accuracy_drop_pp" in evaluation:
            summary += f", accuracy {-evaluation['accuracy_drop_pp']:+.1f} pp"
    return Artifact(fmt.label, path, passed, summary)
