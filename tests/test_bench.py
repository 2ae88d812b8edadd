"""`edgeecg bench`: report structure, agreement and |delta p|, Pareto front, preprocessing cache, clear errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeecg.backends import probabilities
from edgeecg.bench_data import prepare_labelled_set, spread
from edgeecg.bench_rows import select_rows
from edgeecg.bench_score import pareto_front
from edgeecg.contract import ModelContract
from edgeecg.bench_report import markdown_table
from edgeecg.datasets import LabelledImage
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
from edgeecg.preprocess import preprocess
from helpers_onnx import CLASSES, run_cli, tiny_contract, tiny_logits, write_tiny_model

ROW_KEYS = {
    "backend", "precision", "model", "device", "accuracy", "macro_f1", "agreement", "mean_abs_dprob", "max_abs_dprob",
    "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "e2e_ms_p50", "e2e_ms_p99", "throughput",
    "throughput_img_s", "throughput_batch", "size_mb", "peak_rss_mb", "gpu_mem_mb", "is_reference", "pareto",
}
FAST = ["--runs", "2", "--warmup", "1", "--batch", "1,2", "--no-shipped"]


@pytest.fixture(scope="module")
def two_scans(mendeley_dir: Path, tmp_path_factory) -> Path:
    """A CSV manifest of two real scans of different classes."""
    folder = tmp_path_factory.mktemp("scans")
    files = [(sorted((mendeley_dir / label).glob("*.jpg"))[0], label) for label in ("normal", "myocardial_infarction")]
    manifest = folder / "two.csv"
    manifest.write_text("file,label\n" + "".join(f"{path},{label}\n" for path, label in files))
    return manifest


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench-models")
    tiny = write_tiny_model(folder / "tiny.onnx")
    copy = folder / "tiny_copy.onnx"
    shutil.copy(tiny, copy)
    other = write_tiny_model(folder / "other.onnx", tiny_contract(name="other"), seed=3)
    return {"tiny": tiny, "copy": copy, "other": other}


@pytest.fixture(scope="module")
def bench_outputs(two_scans, tiny_models, tmp_path_factory) -> dict:
    """One bench run (the real command, in a subprocess) of three tiny models on two scans, every output written.

    A `torch` that fails on import is first on the path of the command and of its per-row worker processes:
    the ONNX rows must run without PyTorch, lazy imports included.
    """
    out = tmp_path_factory.mktemp("bench-out")
    no_torch = tmp_path_factory.mktemp("no-torch")
    (no_torch / "torch").mkdir()
    (no_torch / "torch" / "__init__.py").write_text("raise ImportError('edgeecg bench imported torch')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(no_torch), os.environ.get("PYTHONPATH")]))}
    paths = {"json": out / "r.json", "csv": out / "r.csv", "plot": out / "r.png"}
    done = subprocess.run(
        [sys.executable, "-m", "edgeecg.cli", "bench", "--data", str(two_scans), *FAST,
         "--models", f"{tiny_models['tiny']},{tiny_models['copy']}", "--models", str(tiny_models["other"]),
         "--json", str(paths["json"]), "--csv", str(paths["csv"]), "--plot", str(paths["plot"])],
        capture_output=True, text=True, env=env,
    )
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr, **paths}


def _expected_probs(model: Path, manifest: Path) -> tuple[np.ndarray, list[str]]:
    """What the tiny model gives on the manifest's scans, computed without the bench."""
    rows = [line.split(",") for line in manifest.read_text().splitlines()[1:]]
    contract = tiny_contract()
    batch = np.concatenate([preprocess(read_image(path), contract)[0] for path, _ in rows])
    return probabilities(tiny_logits(batch, model), contract), [label for _, label in rows]


def test_bench_writes_json_csv_and_plot(bench_outputs, tiny_models, two_scans):
    assert bench_outputs["code"] == 0, bench_outputs["stderr"]
    report = json.loads(bench_outputs["json"].read_text())
    assert {"environment", "rows"} <= set(report)
    assert {"cpu", "cpu_cores_logical", "threads", "gpu", "os", "libraries"} <= set(report["environment"])
    assert {"numpy", "opencv", "onnxruntime"} <= set(report["environment"]["libraries"])
    assert report["data"]["n_images"] == 2
    rows = report["rows"]
    assert [Path(r["path"]) for r in rows] == [tiny_models["tiny"], tiny_models["copy"], tiny_models["other"]]
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert set(row["throughput"]) == {"1", "2"}
        assert row["throughput_img_s"] == row["throughput"]["2"] and row["throughput_batch"] == 2
        assert row["latency_ms_p50"] <= row["latency_ms_p90"] <= row["latency_ms_p99"]
        assert row["e2e_ms_p50"] <= row["e2e_ms_p99"]
        assert row["size_mb"] == pytest.approx(Path(row["path"]).stat().st_size / 1e6)
        assert row["peak_rss_mb"] > 0
    assert [r["is_reference"] for r in rows] == [True, False, False]

    with open(bench_outputs["csv"], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 3
    assert (ROW_KEYS - {"throughput"}) | {"throughput_b1", "throughput_b2"} <= set(table[0])

    image = cv2.imread(str(bench_outputs["plot"]))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert not list(bench_outputs["plot"].parent.glob(".*.tmp"))  # atomic writes leave no temporaries

    markdown = markdown_table(report).splitlines()
    assert len(markdown) == 2 + len(rows) and markdown[2].count("|") == markdown[0].count("|")


def test_a_model_agrees_fully_with_itself_and_others_are_scored_against_the_reference(
    bench_outputs, tiny_models, two_scans
):
    rows = json.loads(bench_outputs["json"].read_text())["rows"]
    for row in rows[:2]:  # the reference and a byte-identical copy of it
        assert row["agreement"] == 1.0
        assert row["mean_abs_dprob"] == 0.0 and row["max_abs_dprob"] == 0.0

    reference, labels = _expected_probs(tiny_models["tiny"], two_scans)
    other, _ = _expected_probs(tiny_models["other"], two_scans)
    truth = np.array([CLASSES.index(label) for label in labels])
    assert rows[0]["accuracy"] == pytest.approx(np.mean(reference.argmax(1) == truth))
    assert rows[2]["accuracy"] == pytest.approx(np.mean(other.argmax(1) == truth))
    assert rows[2]["agreement"] == pytest.approx(np.mean(other.argmax(1) == reference.argmax(1)))
    assert rows[2]["max_abs_dprob"] == pytest.approx(np.abs(other - reference).max(), abs=1e-5)
    assert rows[2]["max_abs_dprob"] > 0


def test_pareto_front_keeps_only_undominated_points():
    latency = [10.0, 5.0, 20.0, 5.0, 1.0, float("nan"), 1.0, 30.0]
    accuracy = [0.90, 0.80, 0.85, 0.70, 0.50, 0.99, 0.50, 0.95]
    # 20 ms/0.85 loses to 10 ms/0.90, 5 ms/0.70 to 5 ms/0.80; equal points both stay; NaN is never on it
    assert pareto_front(latency, accuracy) == [True, True, False, False, True, False, True, True]
    assert pareto_front([], []) == []


def test_preprocessing_key_names_what_changes_the_tensor_and_nothing_else():
    base = ModelContract(classes=["a"], input_size=64)
    same = replace(base, classes=["x", "y"], temperature=2.0, name="other", precision="int8")
    assert same.preprocessing_key() == base.preprocessing_key()
    for change in ({"input_size": 96}, {"crop": False}, {"crop_margin": 0.05}, {"mean": (0.5, 0.5, 0.5)},
                   {"std": (0.5, 0.5, 0.5)}, {"extra": {"modality": "signal"}}):
        assert replace(base, **change).preprocessing_key() != base.preprocessing_key(), change


def test_preprocessing_runs_once_per_contract_and_skips_an_image_for_every_model(mendeley_dir, tmp_path):
    scan = sorted((mendeley_dir / "normal").glob("*.jpg"))[0]
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 400, 3), 255, np.uint8))
    small, same, large = tiny_contract(), tiny_contract(name="same-preprocessing"), tiny_contract(input_size=96)
    items = [LabelledImage(scan, "normal"), LabelledImage(blank, "normal")]
    labelled = prepare_labelled_set(items, [small, same, large], tmp_path)
    assert set(labelled.tensors) == {small.preprocessing_key(), large.preprocessing_key()}
    assert labelled.paths == [scan] and [p for p, _ in labelled.skipped] == [blank]
    for contract in (small, large):
        stored = labelled.tensors[contract.preprocessing_key()]
        assert stored.count == 1
        np.testing.assert_array_equal(stored.read(), preprocess(read_image(scan), contract)[0])


def test_limit_spreads_over_the_classes():
    items = [LabelledImage(Path(f"{label}{i}.jpg"), label) for label in ("a", "b", "c") for i in range(10)]
    picked = spread(items, 3)
    assert [i.label for i in picked] == ["a", "b", "c"]
    assert spread(items, None) == items


def test_classes_that_do_not_match_the_data_are_one_clear_error(monkeypatch, capsys, tmp_path, two_scans):
    model = write_tiny_model(tmp_path / "letters.onnx", tiny_contract(classes=["a", "b", "c", "d"]))
    code, out, err = run_cli(monkeypatch, capsys, "bench", "--data", two_scans, "--models", model, *FAST)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "not classes of this model" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "no/such/folder", "--models", "MODEL"], "no such dataset folder"),
        (["--data", "DATA"], "no models to bench"),
        (["--data", "DATA", "--models", "missing.onnx"], "model file not found"),
        (["--data", "DATA", "--models", "MODEL", "--plot", "out.txt"], "image suffix"),
    ],
)
def test_bad_input_is_one_line(monkeypatch, capsys, tiny_models, two_scans, args, message):
    args = [str(tiny_models["tiny"]) if a == "MODEL" else str(two_scans) if a == "DATA" else a for a in args]
    code, out, err = run_cli(monkeypatch, capsys, "bench", *args, *FAST)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_bench_modules_do_not_import_torch():
    code = ("import sys, edgeecg.bench, edgeecg.bench_cli, edgeecg.bench_report; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the PyTorch reference -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from edgeecg.train.checkpoint import save_checkpoint
    from edgeecg.train.model import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig(num_classes=4, trunk="mobilenet_v3_small", channels=(32, 16, 16), heads=2, fusion_dim=32)
    model = build_model(config)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    contract = tiny_contract(name="tiny-torch", temperature=1.3)
    save_checkpoint(path, {"model_config": config.to_dict(), "state_dict": model.state_dict(),
                           "contract": asdict(contract)})
    return path


def test_torch_backend_runs_the_checkpoint_like_pytorch(tiny_checkpoint):
    import torch

    from edgeecg.backends import Backend
    from edgeecg.train.checkpoint import load_checkpoint, model_from_checkpoint
    from edgeecg.train.torch_backend import TorchBackend, checkpoint_contract

    torch.set_num_threads(1)
    backend = TorchBackend(tiny_checkpoint, threads=1)
    assert isinstance(backend, Backend) and backend.name == "pytorch" and backend.precision == "fp32"
    assert backend.contract == checkpoint_contract(tiny_checkpoint) == tiny_contract(name="tiny-torch", temperature=1.3)
    batch = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    model, _ = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    logits = backend.run(batch)
    assert logits.dtype == np.float32 and logits.shape == (3, 4)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(EdgeECGError, match="FP16 runs on CUDA only"):
        TorchBackend(tiny_checkpoint, precision="fp16")
    with pytest.raises(EdgeECGError, match="not an edgeecg checkpoint"):
        bad = tiny_checkpoint.with_name("bad.pt")
        torch.save({"weights": 1}, bad)
        TorchBackend(bad)


def test_a_pytorch_checkpoint_leads_the_rows_as_the_reference(tiny_checkpoint, tiny_models, tmp_path):
    rows, notes = select_rows(CLASSES[:2], [str(tiny_models["tiny"])], reference=tiny_checkpoint,
                              include_shipped=False, models_dir=tmp_path)
    assert (rows[0].backend, rows[0].precision, rows[0].device, rows[0].path) == ("pytorch", "fp32", "cpu",
                                                                                 tiny_checkpoint)
    assert rows[-1].path == tiny_models["tiny"] and notes == []
    with pytest.raises(EdgeECGError, match="not classes of this model"):
        select_rows(["sinus_rhythm"], reference=tiny_checkpoint, include_shipped=False, models_dir=tmp_path)


@pytest.mark.slow
def test_bench_runs_the_pytorch_reference_row(monkeypatch, capsys, tmp_path, tiny_checkpoint, tiny_models, two_scans):
    report_path = tmp_path / "r.json"
    code, out, err = run_cli(monkeypatch, capsys, "bench", "--data", two_scans, "--reference", tiny_checkpoint,
                             "--models", tiny_models["tiny"], "--threads", "1", "--json", report_path, *FAST)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    torch_rows = [r for r in report["rows"] if r["backend"] == "pytorch"]
    assert torch_rows[0]["is_reference"] and torch_rows[0]["device"] == "cpu"
    assert torch_rows[0]["agreement"] == 1.0 and torch_rows[0]["max_abs_dprob"] == 0.0
    assert sum(r["is_reference"] for r in report["rows"]) == 1
    assert "torch" in report["environment"]["libraries"]
    assert "(pytorch fp32 cpu)" in report["reference"]
