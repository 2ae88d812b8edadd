"""`edgeecg bench` with signal models: inputs read from the page, each model against its own FP32 reference."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from edgeecg.backends import probabilities
from edgeecg.bench import run_bench
from edgeecg.bench_measure import BenchSettings
from edgeecg.gate import assess
from edgeecg.imageio import read_image
from edgeecg.registry import resolve_model
from edgeecg.signal_runtime import SignalModel, page_input

REPO = Path(__file__).resolve().parents[1]
SCANS = sorted((REPO / "examples").glob("*.jpg"))
CLASSES = ("abnormal_heartbeat", "history_of_mi", "myocardial_infarction", "normal")


def _label(scan: Path) -> str:
    return next(c for c in CLASSES if scan.name.startswith(c))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """The shipped image model and the shipped signal model with its INT8 sibling, on the four example scans."""
    manifest = tmp_path_factory.mktemp("scans") / "examples.csv"
    manifest.write_text("file,label\n" + "".join(f"{scan},{_label(scan)}\n" for scan in SCANS))
    models = [str(resolve_model(name)) for name in ("default", "signal", "signal-int8")]
    return run_bench(manifest, models, include_shipped=False, settings=BenchSettings(batches=(1, 2), runs=2, warmup=1))


def test_each_row_is_compared_with_the_fp32_model_of_its_own_training_run(report):
    rows = {r["model"]: r for r in report["rows"]}
    assert [r["model"] for r in report["rows"]] == ["default", "signal", "signal-int8"]
    assert rows["default"]["is_reference"] and rows["signal"]["is_reference"] and not rows["signal-int8"]["is_reference"]
    assert rows["signal-int8"]["reference"] == "signal (onnxruntime fp32 cpu)"
    assert report["reference"] == "default (onnxruntime fp32 cpu); signal (onnxruntime fp32 cpu)"
    for name in ("default", "signal"):
        assert rows[name]["agreement"] == 1.0 and rows[name]["speedup_vs_ort_fp32"] == 1.0
    int8 = rows["signal-int8"]
    assert int8["speedup_vs_ort_fp32"] == pytest.approx(rows["signal"]["latency_ms_p50"] / int8["latency_ms_p50"])


def test_signal_rows_are_scored_on_the_leads_the_runtime_reads(report):
    """Accuracy and agreement recomputed here, page by page, through the runtime's own reader and model."""
    fp32, int8 = SignalModel(resolve_model("signal")), SignalModel(resolve_model("signal-int8"))
    inputs = np.stack([page_input(assess(read_image(scan)).reading, fp32.spec) for scan in SCANS])
    truth = [fp32.contract.classes.index(_label(scan)) for scan in SCANS]
    reference = probabilities(fp32.run(inputs), fp32.contract).argmax(1)
    quantized = probabilities(int8.run(inputs), int8.contract).argmax(1)
    rows = {r["model"]: r for r in report["rows"]}
    assert report["data"]["n_images"] == len(SCANS)
    assert rows["signal"]["accuracy"] == pytest.approx(np.mean(reference == truth))
    assert rows["signal-int8"]["accuracy"] == pytest.approx(np.mean(quantized == truth))
    assert rows["signal-int8"]["agreement"] == pytest.approx(np.mean(quantized == reference))


def test_end_to_end_stages_follow_the_model_kind(report):
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows["signal"]["e2e_stages_ms_p50"]) == {"decode", "gate", "model"}
    assert set(rows["default"]["e2e_stages_ms_p50"]) == {"decode", "gate", "crop", "preprocess", "model"}


def test_a_signal_checkpoint_runs_as_the_pytorch_reference(tmp_path):
    """The bench's PyTorch row rebuilds the 1-D network from a signal run's checkpoint and matches its ONNX export."""
    torch = pytest.importorskip("torch")
    from edgeecg.export.onnx_export import export_onnx
    from edgeecg.export.onnx_io import save_onnx
    from edgeecg.train.checkpoint import save_checkpoint
    from edgeecg.train.signal_model import SignalNetConfig, build_signal_model
    from edgeecg.train.torch_backend import TorchBackend

    shipped = SignalModel(resolve_model("signal"))
    contract = replace(shipped.contract, extra={k: v for k, v in shipped.contract.extra.items() if k != "ood"})
    torch.manual_seed(0)
    config = SignalNetConfig(num_classes=len(shipped.contract.classes), width=8)
    model = build_signal_model(config).eval()
    checkpoint = tmp_path / "signal.pt"
    save_checkpoint(checkpoint, {"model_config": config.to_dict(), "state_dict": model.state_dict(),
                                 "contract": asdict(contract)})
    exported = tmp_path / "signal.onnx"
    save_onnx(export_onnx(model, contract, 17, (shipped.spec.channels, shipped.spec.length)), exported)
    batch = np.random.default_rng(0).normal(size=(2, shipped.spec.channels, shipped.spec.length)).astype(np.float32)
    np.testing.assert_allclose(TorchBackend(checkpoint).run(batch), SignalModel(exported).run(batch),
                               rtol=1e-4, atol=1e-4)
