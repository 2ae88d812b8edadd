"""Which trunks pay in INT8 on this CPU: every image trunk (SimCardioNet around it) and the signal branch's 1-D
ResNet at several widths, each exported to ONNX and quantized the way `edgeecg export --int8` does (static
Q/DQ, per-channel s8 weights, u8 activations), timed at batch 1 in FP32 and INT8 side by side in one run.

Image trunks carry the `edge` preset's head (conv blocks 256/128/128, 4 attention heads). The networks have random weights: speed does not depend on them, accuracy does, so accuracy comes from the
README's trained runs, not from here. Calibration inputs are real: the `calib_data/` scans through the
runtime's own preprocessing (image) or its digitizer (signal). FP32 and INT8 are timed in alternating
blocks, so a load change on a shared machine hits both alike.

    python benchmarks/int8_trunks.py [--runs 100] [--threads 2] [--only resnet18,signal-64]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
import time
from pathlib import Path

import numpy as np
import torch

from edgeecg.contract import ModelContract
from edgeecg.datasets import list_labelled_images
from edgeecg.export.onnx_export import export_onnx
from edgeecg.export.onnx_io import save_onnx
from edgeecg.export.quantize import prepare_for_quantization, quantize_int8
from edgeecg.imageio import read_image
from edgeecg.machine import cpu_model
from edgeecg.preprocess import preprocess
from edgeecg.signal_input import SignalSpec, batch_input
from edgeecg.train.data import load_table
from edgeecg.train.config import preset_config
from edgeecg.train.modality import model_config
from edgeecg.train.model import TRUNKS, build_model
from edgeecg.train.signal_data import load_digitized
from edgeecg.train.signal_model import SignalNetConfig, build_signal_model

REPO = Path(__file__).resolve().parents[1]
CALIB = REPO / "calib_data"
SIGNAL_WIDTHS = (32, 64, 128)
CALIB_INPUTS = 16
ROUNDS = 4  # alternating FP32/INT8 blocks, so a load change on a shared machine hits both alike


def candidates() -> dict[str, tuple[torch.nn.Module, tuple[int, ...]]]:
    """name -> (network in eval mode, one input's shape)."""
    edge = preset_config("edge")  # every trunk under the edge preset's head, so the trunk is what differs
    nets = {name: (build_model(replace(model_config(edge, 4), trunk=name), pretrained=False), (3, 224, 224))
            for name in TRUNKS}
    spec = SignalSpec()
    nets.update({f"signal-{w}": (build_signal_model(SignalNetConfig(num_classes=4, width=w)), (spec.channels, spec.length))
                 for w in SIGNAL_WIDTHS})
    return {name: (net.eval(), shape) for name, (net, shape) in nets.items()}


def calibration_inputs() -> dict[int, np.ndarray]:
    """Real model inputs from calib_data/, keyed by their channel count (3: image crops, 24: digitized leads)."""
    contract = ModelContract(classes=["a"], input_size=224)
    items = list_labelled_images(CALIB)[:CALIB_INPUTS]
    images = np.concatenate([preprocess(read_image(i.path), contract)[0] for i in items])
    spec = SignalSpec()
    signals, _ = load_digitized(load_table(CALIB).subset(np.arange(CALIB_INPUTS)), spec)
    return {3: images.astype(np.float32), spec.channels: batch_input(signals, spec)}


def timed_pair(fp32, int8, x: np.ndarray, runs: int, rounds: int = ROUNDS) -> tuple[float, float]:
    """p50 ms of each session at batch 1, timed in alternating blocks (call by call, one session's spinning
    worker threads would slow the other's)."""
    feed = {fp32.get_inputs()[0].name: x}
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(rounds):
        for k, session in enumerate((fp32, int8)):
            session.run(None, feed)  # warm-up after the switch
            for _ in range(runs // rounds):
                start = time.perf_counter()
                session.run(None, feed)
                times[k].append((time.perf_counter() - start) * 1e3)
    return float(np.median(times[0])), float(np.median(times[1]))


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per precision")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--only", help="comma-separated candidate names")
    args = parser.parse_args()
    torch.manual_seed(0)
    nets = candidates()
    if args.only:
        nets = {name: nets[name] for name in args.only.split(",")}
    calib = calibration_inputs()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.log_severity_level = 3
    print(f"machine: {cpu_model()}; ONNX Runtime {ort.__version__}, {args.threads} thread(s); batch 1, p50 of "
          f"{args.runs} calls in {ROUNDS} alternating blocks; random weights, calibrated on {CALIB_INPUTS} calib_data inputs")
    print("| candidate | parameters (M) | FP32 ms | INT8 ms | INT8 speed-up | FP32 MB | INT8 MB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (net, shape) in nets.items():
            contract = ModelContract(classes=["a", "b", "c", "d"], input_size=shape[-1], crop=shape[0] == 3)
            fp32_path, prepared, int8_path = (Path(tmp) / f"{name}{s}.onnx" for s in ("", "-prep", "-int8"))
            save_onnx(export_onnx(net, contract, 17, shape), fp32_path)
            prepare_for_quantization(fp32_path, prepared)
            quantize_int8(prepared, int8_path, calib[shape[0]], "cpu", "minmax")
            sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                        for p in (fp32_path, int8_path)]
            fp32_ms, int8_ms = timed_pair(*sessions, calib[shape[0]][:1], args.runs)
            params = sum(p.numel() for p in net.parameters()) / 1e6
            print(f"| {name} | {params:.1f} | {fp32_ms:.2f} | {int8_ms:.2f} | {fp32_ms / int8_ms:.2f}× | "
                  f"{fp32_path.stat().st_size / 1e6:.1f} | {int8_path.stat().st_size / 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
