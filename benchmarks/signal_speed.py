"""Speed of the shipped signal models: the network alone (FP32 vs INT8, batch 1) and a page end to end.

End to end is `edgeecg infer`'s own path from file bytes: decode, the quality gate (which digitizes the
page) and the model. Prints medians and p95 over repeated runs, the machine and the threads.

    python benchmarks/signal_speed.py [--runs 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgeecg.infer import classify_path
from edgeecg.machine import cpu_model
from edgeecg.registry import resolve_model
from edgeecg.signal_runtime import SignalModel
from edgeecg.synthetic import synthetic_ecg

SCAN = Path(__file__).resolve().parents[1] / "examples" / "normal_normal_0120.jpg"


def _times(run, count: int) -> np.ndarray:
    run()  # warm-up
    out = []
    for _ in range(count):
        start = time.perf_counter()
        run()
        out.append((time.perf_counter() - start) * 1e3)
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {cpu_model()}; ONNX Runtime threads {args.threads}")
    signal = synthetic_ecg(0, 100.0)[None]
    print("| model | precision | network p50 ms | p95 ms | page end to end p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for name in ("signal", "signal-int8"):
        model = SignalModel(resolve_model(name), threads=args.threads)
        network = _times(lambda: model.logits(signal), args.runs)
        page = _times(lambda: classify_path(SCAN, model), max(10, args.runs // 10))
        print(f"| {name} | {model.precision} | {np.median(network):.2f} | {np.percentile(network, 95):.2f} | "
              f"{np.median(page):.0f} | {np.percentile(page, 95):.0f} |")


if __name__ == "__main__":
    main()
