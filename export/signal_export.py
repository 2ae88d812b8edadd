"""`edgeecg export` for a signal run: an FP32 ONNX model with the signal contract, written only at PyTorch parity.

Parity is checked on real inputs made the runtime's way: scans digitized by
`edgeecg.digitize` (the calibration folder by default, `--verify-data` to
choose), resampled and normalised by `edgeecg.signal_input`, run through
`edgeecg.signal_runtime.SignalModel` (which also reads the contract back and
refuses a mismatch). FP16, INT8 and TensorRT are not built for signal models yet.
"""

from __future__ import annotations

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
from edgeecg.train.checkpoint import contract_from_checkpoint, load_checkpoint
from edgeecg.train.data import load_table
from edgeecg.train.signal_data import load_digitized
from edgeecg.train.signal_model import SignalNetConfig, SignalResNet, build_signal_model

from .calibration import resolve_calib_dir
from .onnx_export import export_onnx, require_parity, torch_logits
from .onnx_io import save_onnx
from .options import ExportOptions, default_out_dir
from .scans import evenly_spaced
from .ui import step

ARCHITECTURE = "signal_resnet1d"
SELECTIVE_TARGET_RISK = 0.05  # the error rate allowed among the answers a model is confident enough to give


def is_signal_run(source: str | Path) -> bool:
    """Whether a run folder / checkpoint holds a signal model (so `edgeecg export` takes this path)."""
    return load_checkpoint(source).get("model_config", {}).get("architecture") == ARCHITECTURE


def load_signal_model(source: str | Path) -> tuple[SignalResNet, ModelContract]:
    state = load_checkpoint(source)
    model = build_signal_model(SignalNetConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), replace(contract_from_checkpoint(state, source), precision="fp32")


def export_signal(options: ExportOptions) -> Path:
    """Write NAME.onnx (FP32) into the output folder and return its path."""
    if options.int8 or options.trt or options.fp16_engine:
        raise EdgeECGError("signal models export to FP32 ONNX only for now (leave out --int8, --trt, --fp16)")
    model, contract = load_signal_model(options.source)
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
    step(f"exporting {options.source} (opset {options.opset}, input N x {spec.channels} x {spec.length})")
    proto = export_onnx(model, contract, options.opset, (spec.channels, spec.length))
    path = (options.out or default_out_dir(options.source)) / f"{options.name or contract.name}.onnx"
    with atomic_path(path) as tmp:
        save_onnx(proto, tmp)
        with torch.inference_mode():
            reference = torch_logits(model, batch_input(signals, spec))
        agreement = require_parity(reference, SignalModel(tmp).logits(signals))
    step(f"ONNX FP32 matches PyTorch on {agreement.n_scans} digitized scans: max |delta logit| "
         f"{agreement.max_abs_delta:.2e}; wrote {path}")
    return path
