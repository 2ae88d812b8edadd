"""`edgeecg export` for a signal run: an FP32 ONNX model with the signal contract, written only at PyTorch parity.

Parity is checked on real inputs made the runtime's way: scans digitized by
`edgeecg.digitize` (the calibration folder by default, `--verify-data` to
choose), resampled and normalised by `edgeecg.signal_input`, run through
`edgeecg.signal_runtime.SignalModel` (which also reads the contract back and
refuses a mismatch). `--int8` adds a CPU INT8 model (static Q/DQ, calibrated on digitized
calibration scans, checked on the evaluation set); FP16 and TensorRT are not built for signal models yet.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edgeecg.atomic import atomic_path
from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.selective import selective_record
from edgeecg.signal_input import batch_input
from edgeecg.signal_runtime import SignalModel, signal_spec
from edgeecg.train.checkpoint import is_signal_config, load_checkpoint, model_from_checkpoint
from edgeecg.train.config import TrainConfig
from edgeecg.train.data import load_table
from edgeecg.train.run import final_training_table
from edgeecg.train.signal_data import load_digitized

import onnx

from .calibration import resolve_calib_dir
from .int8_eval import EVAL_CSV_NAME, require_int8_targets, targets_missed
from .onnx_io import check_onnx, set_contract
from .quantize import CALIB_METHODS, drop_unused_domains, prepare_for_quantization, quantize_int8
from .onnx_export import export_onnx, require_parity, torch_logits
from .onnx_io import save_onnx
from .ood import DISTANCE_OUTPUT, distance_only_nodes, fit_distance
from .options import OUTPUT_NAME, ExportOptions, default_out_dir
from .scans import evenly_spaced
from .ui import step, warn

SELECTIVE_TARGET_RISK = 0.05  # the error rate allowed among the answers a model is confident enough to give


def is_signal_run(source: str | Path) -> bool:
    """Whether a run folder / checkpoint holds a signal model (so `edgeecg export` takes this path)."""
    return is_signal_config(load_checkpoint(source).get("model_config"))


def export_signal(options: ExportOptions) -> Path:
    """Write NAME.onnx (FP32) into the output folder and return its path."""
    if options.int8_exclude or options.int8_sweep:
        raise EdgeECGError("--int8-exclude and --int8-sweep apply to image models; a signal model's INT8 keeps only "
                           "its out-of-distribution score in FP32 (try another --calib-method instead)")
    if options.trt or options.fp16_engine or "tensorrt" in options.int8_targets:
        raise EdgeECGError("signal models export to ONNX FP32 and CPU INT8 only: the network takes under 1 ms on a "
                           "CPU beside ~100 ms of page reading, so a GPU engine gains nothing (leave out --trt, "
                           "--fp16, --int8-target tensorrt)")
    state = load_checkpoint(options.source)
    model, contract = model_from_checkpoint(state, options.source)
    contract = replace(contract, precision="fp32")
    spec = signal_spec(contract, str(options.source))
    run = Path(options.source)
    if contract.task == "multiclass" and run.is_dir() and any((run / "folds").glob("fold*.json")):
        selective = selective_record(run, SELECTIVE_TARGET_RISK)
        contract = replace(contract, extra={**contract.extra, "selective": selective})
        step(f"abstain threshold for {SELECTIVE_TARGET_RISK:.0%} risk, chosen on {selective['validation_files']} "
             f"out-of-fold validation files: top probability >= {selective['min_confidence']:.3f} "
             f"(coverage {selective['validation_coverage']:.1%})")
    source = options.verify_data or resolve_calib_dir(options.calib)
    table = load_table(source)
    picked = np.array(evenly_spaced(range(len(table)), options.verify_count))
    step(f"digitizing {len(picked)} scans of {source} for the parity check")
    signals, _ = load_digitized(table.subset(picked), spec)
    graph, contract = _with_ood_score(model, contract, spec, state.get("train_config") or {})
    step(f"exporting {options.source} (opset {options.opset}, input N x {spec.channels} x {spec.length})")
    extra_outputs = (DISTANCE_OUTPUT,) if graph is not model else ()
    proto = export_onnx(graph, contract, options.opset, (spec.channels, spec.length), extra_outputs)
    path = (options.out or default_out_dir(options.source)) / f"{options.name or contract.name}.onnx"
    inputs = batch_input(signals, spec)
    with atomic_path(path) as tmp:
        save_onnx(proto, tmp)
        exported = SignalModel(tmp)
        agreement = require_parity(torch_logits(model, inputs), exported.logits(signals))
        if extra_outputs:
            _require_distance_parity(graph, exported, inputs)
    step(f"ONNX FP32 matches PyTorch on {agreement.n_scans} digitized scans: max |delta logit| "
         f"{agreement.max_abs_delta:.2e}; wrote {path}")
    if options.int8:
        export_signal_int8(path, contract, spec, options)
    return path


def _with_ood_score(model: torch.nn.Module, contract: ModelContract, spec, train_config: dict
                    ) -> tuple[torch.nn.Module, ModelContract]:
    """The model with its out-of-distribution output (`export/ood.py`), fitted on the run's own training pages,
    and the contract recording it; the bare model, with a warning, when those pages are not here to fit on."""
    cfg = TrainConfig.from_dict(train_config)
    if cfg.dataset != "images":
        warn(f"the out-of-distribution score is fitted on a labelled folder's pages; this is a {cfg.dataset} run: "
             "exported without one")
        return model, contract
    if not cfg.data or not Path(cfg.data).exists():
        warn(f"the run's training data ({cfg.data or 'not recorded'}) is not here: exported without an "
             "out-of-distribution score")
        return model, contract
    table = final_training_table(cfg)
    step(f"out-of-distribution score: digitizing the {len(table)} training scans of {cfg.data}")
    signals, _ = load_digitized(table, spec)
    graph, record = fit_distance(model, batch_input(signals, spec))
    step(f"out-of-distribution score: training distances median {record['train_median']:.1f}, max "
         f"{record['train_max']:.1f}; pages beyond {record['threshold']:.1f} are flagged")
    return graph, replace(contract, extra={**contract.extra, "ood": record})


def _require_distance_parity(graph: torch.nn.Module, exported: SignalModel, inputs: np.ndarray) -> None:
    with torch.inference_mode():
        reference = graph(torch.from_numpy(inputs))[1].numpy()
    _, distance = exported.run_with_distance(inputs)
    if not np.allclose(distance, reference, rtol=1e-3, atol=1e-3):
        raise EdgeECGError(f"ONNX export's feature distance differs from PyTorch's (max |delta| "
                           f"{np.abs(distance - reference).max():.2e}); nothing was written")


def export_signal_int8(fp32_path: Path, contract: ModelContract, spec, options: ExportOptions) -> Path:
    """NAME-int8.onnx: static Q/DQ (per-channel s8 weights, u8 activations, ONNX Runtime on CPUs), calibrated
    on the digitized calibration scans with the method that best follows FP32 there, then compared with FP32 on
    the separate labelled evaluation set, loudly when it misses the targets."""
    calib_source = resolve_calib_dir(options.calib)
    calibration, _ = load_digitized(load_table(calib_source), spec)
    eval_source = options.eval_data or Path(calib_source) / EVAL_CSV_NAME
    evaluation = load_table(eval_source) if Path(eval_source).exists() else None
    step(f"INT8: calibrating on {len(calibration)} digitized scans of {calib_source}")
    reference = SignalModel(fp32_path)
    target = fp32_path.with_name(f"{fp32_path.stem}-int8.onnx")
    methods = list(CALIB_METHODS) if options.calib_method == "auto" else [options.calib_method]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        prepare_for_quantization(fp32_path, prepared)
        agreement = {}
        for method in methods:
            candidate = Path(tmp) / f"{method}.onnx"
            quantize_int8(prepared, candidate, batch_input(calibration, spec), "cpu", method,
                          distance_only_nodes(onnx.load(str(prepared)), OUTPUT_NAME))
            _embed(candidate, contract, method, len(calibration))
            agreement[method] = _agreement(reference, SignalModel(candidate), calibration)
        chosen = max(agreement, key=agreement.get)
        with atomic_path(target) as out:
            shutil.copyfile(Path(tmp) / f"{chosen}.onnx", out)
    step(f"INT8 ({chosen}, top-1 agreement with FP32 on the calibration scans {agreement[chosen]:.1%}): wrote {target}")
    if evaluation is not None:
        missed = _report_fidelity(reference, SignalModel(target), evaluation, spec, eval_source)
        require_int8_targets({"cpu": missed}, options.accept_int8_miss)
    return target


def _embed(path: Path, contract: ModelContract, method: str, scans: int) -> None:
    proto = onnx.load(str(path))
    drop_unused_domains(proto)
    quantization = {"target": "cpu", "calibrate_method": method, "calib_images": scans}
    set_contract(proto, replace(contract, precision="int8", extra={**contract.extra, "quantization": quantization}))
    check_onnx(proto)
    onnx.save_model(proto, str(path))


def _agreement(reference: SignalModel, candidate: SignalModel, signals: np.ndarray) -> float:
    return float((reference.logits(signals).argmax(1) == candidate.logits(signals).argmax(1)).mean())


def _report_fidelity(fp32: SignalModel, int8: SignalModel, table, spec, source) -> list[str]:
    """FP32 against INT8 on a labelled set neither training nor calibration saw; the targets missed."""
    signals, _ = load_digitized(table, spec)
    p32, p8 = fp32.probabilities(signals), int8.probabilities(signals)
    classes = list(fp32.contract.classes)
    labels = np.array([classes.index(name) for name in (table.classes[i] for i in table.labels)])
    agreement = float((p32.argmax(1) == p8.argmax(1)).mean())
    acc32, acc8 = float((p32.argmax(1) == labels).mean()), float((p8.argmax(1) == labels).mean())
    line = (f"INT8 vs FP32 on {len(labels)} files of {source}: top-1 agreement {agreement:.1%}, accuracy "
            f"{acc32:.1%} -> {acc8:.1%} ({(acc8 - acc32) * 100:+.1f} pp)")
    missed = targets_missed({"accuracy_drop_pp": (acc32 - acc8) * 100, "top1_agreement": agreement})
    if missed:
        warn(f"{line}: misses the targets")
    else:
        step(line)
    return missed
