"""`edgeecg export` on a tiny SimCardioNet and a few real scans: parity, contracts, INT8 Q/DQ, calibration data."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError
from edgeecg.export import pipeline
from edgeecg.export.calibration import RECOMMENDED_MIN_IMAGES, ScanCalibrationReader, load_calibration_set
from edgeecg.export.int8_eval import MIN_TOP1_AGREEMENT, compare_fp32_int8, print_int8_table
from edgeecg.export.onnx_export import check_fp32_parity, torch_logits
from edgeecg.export.options import ExportOptions
from edgeecg.export.pipeline import run_export
from edgeecg.export.quantize import nodes_for_parts, pick_method
from edgeecg.export.scans import prepare_scans
from edgeecg.train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edgeecg.train.model import ModelConfig, build_model
from helpers_onnx import run_cli

CLASSES = ["abnormal_heartbeat", "history_of_mi", "myocardial_infarction", "normal"]
SIZE = 64


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder holding a randomly initialised tiny SimCardioNet (64 px) as final_model.pt."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = ModelConfig(num_classes=4, trunk="mobilenet_v3_small", channels=(32, 16, 16), heads=2, fusion_dim=32)
    contract = ModelContract(classes=CLASSES, input_size=SIZE, trunk="mobilenet_v3_small", name="tiny")
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "final_model.pt", {"model_config": config.to_dict(),
                                             "state_dict": build_model(config).state_dict(),
                                             "contract": asdict(contract)})
    return run


def _pick_scans(mendeley_dir: Path, start: int, count: int) -> list[dict]:
    """`count` distinct scans spread over all classes (one per source image), from position `start`."""
    rows, seen = [], set()
    with open(mendeley_dir / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source_sha256"] not in seen:
                seen.add(row["source_sha256"])
                rows.append(row)
    step = len(rows) // count
    return rows[start::step][:count]


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory, mendeley_dir) -> Path:
    """Six real scans in class folders: calibration and verification data."""
    folder = tmp_path_factory.mktemp("scans")
    for row in _pick_scans(mendeley_dir, 0, 6):
        (folder / row["label"]).mkdir(exist_ok=True)
        shutil.copy(mendeley_dir / row["file"], folder / row["label"])
    return folder


@pytest.fixture(scope="module")
def eval_csv(tmp_path_factory, mendeley_dir) -> Path:
    """A labelled CSV of four other scans: the FP32-vs-INT8 evaluation set."""
    path = tmp_path_factory.mktemp("eval") / "heldout_eval.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        for row in _pick_scans(mendeley_dir, 3, 4):
            writer.writerow([mendeley_dir / row["file"], row["label"]])
    return path


@pytest.fixture(scope="module")
def exported(tiny_run, scan_dir, eval_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    options = ExportOptions(source=tiny_run, out=out, verify_data=scan_dir, calib=scan_dir, int8=True,
                            int8_targets=("cpu", "tensorrt"), calib_method="minmax", eval_data=eval_csv,
                            int8_exclude=("classifier",))
    return run_export(options)


def _model(tiny_run):
    model, contract = model_from_checkpoint(load_checkpoint(tiny_run))
    return model, contract


def _ort_logits(path: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": batch})[0]


def test_fp32_onnx_reproduces_pytorch_on_real_scans(exported, tiny_run, scan_dir):
    model, contract = _model(tiny_run)
    scans = prepare_scans(sorted(scan_dir.rglob("*.jpg")), contract, "scans")
    assert len(scans) >= 4
    reference = torch_logits(model, scans.tensors)
    logits = _ort_logits(exported.out_dir / "tiny.onnx", scans.tensors)  # one batch of all: dynamic batch axis
    assert np.abs(logits - reference).max() <= 1e-4
    assert (logits.argmax(1) == reference.argmax(1)).all()
    single = _ort_logits(exported.out_dir / "tiny.onnx", scans.tensors[:1])
    assert np.abs(single - reference[:1]).max() <= 1e-4


def test_graph_has_named_io_and_a_dynamic_batch(exported):
    graph = onnx.load(str(exported.out_dir / "tiny.onnx")).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed batch
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [3, SIZE, SIZE]


@pytest.mark.parametrize("file, precision", [("tiny.onnx", "fp32"), ("tiny-fp16.onnx", "fp16"),
                                             ("tiny-int8.onnx", "int8"), ("tiny-int8-trt.onnx", "int8")])
def test_every_model_carries_its_contract_and_precision(exported, file, precision):
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported.out_dir / file), providers=["CPUExecutionProvider"])
    contract = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map, file)
    assert contract.precision == precision
    assert contract.classes == CLASSES and contract.input_size == SIZE


def test_reports_list_every_artifact_with_its_check(exported):
    report = json.loads((exported.out_dir / "export_report.json").read_text())
    files = {a["file"]: a for a in report["artifacts"]}
    assert set(files) == {"tiny.onnx", "tiny-fp16.onnx", "tiny-int8.onnx", "tiny-int8-trt.onnx"}
    assert files["tiny.onnx"]["check_passed"] is True
    assert files["tiny.onnx"]["parity_vs_pytorch"]["max_abs_delta"] <= 1e-4
    int8 = json.loads((exported.out_dir / "int8_report.json").read_text())
    evaluation = int8["models"]["cpu"]["evaluation"]
    assert evaluation["n_scans"] >= 1 and {"accuracy", "f1_macro"} <= set(evaluation["fp32"])
    assert 0.0 <= evaluation["top1_agreement"] <= 1.0


def _qdq_nodes(proto):
    return [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def _zero_points(proto) -> list[np.ndarray]:
    constants = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    return [constants[n.input[2]] for n in _qdq_nodes(proto) if len(n.input) > 2 and n.input[2] in constants]


def test_int8_models_are_qdq_and_the_tensorrt_flavour_is_symmetric(exported):
    cpu = onnx.load(str(exported.out_dir / "tiny-int8.onnx"))
    trt = onnx.load(str(exported.out_dir / "tiny-int8-trt.onnx"))
    assert len(_qdq_nodes(cpu)) > 0 and len(_qdq_nodes(trt)) > 0
    assert {o.domain for o in trt.opset_import} == {""}  # only standard ONNX ops, which TensorRT parses
    trt_points = [z for z in _zero_points(trt) if z.dtype != np.int32]  # int32: bias, always symmetric
    assert trt_points and all(z.dtype == np.int8 and not z.any() for z in trt_points)
    cpu_activations = [z for z in _zero_points(cpu) if z.dtype == np.uint8]
    assert cpu_activations and any(z.any() for z in cpu_activations)  # asymmetric uint8 activations


def test_int8_exclude_keeps_the_classifier_in_fp32(exported):
    """The fixture exported with --int8-exclude classifier: its Gemm keeps float weights, fusion's is int8."""

    def weight_is_dequantized(path, scope):
        proto = onnx.load(str(path))
        dequantized = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        floats = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
        layers = [n for n in proto.graph.node if n.name.startswith(scope) and n.op_type in ("Gemm", "MatMul")]
        assert layers
        assert all((n.input[1] in dequantized) != (n.input[1] in floats) for n in layers)
        return {n.input[1] in dequantized for n in layers}

    for file in ("tiny-int8.onnx", "tiny-int8-trt.onnx"):
        assert weight_is_dequantized(exported.out_dir / file, "/classifier/") == {False}
        assert weight_is_dequantized(exported.out_dir / file, "/fusion/") == {True}
    models = json.loads((exported.out_dir / "int8_report.json").read_text())["models"]
    assert all("/classifier/" in name for name in models["cpu"]["excluded_nodes"])


def test_int8_exclude_refuses_a_part_that_is_not_in_the_graph(exported):
    proto = onnx.load(str(exported.out_dir / "tiny.onnx"))
    with pytest.raises(EdgeECGError, match="matches no node.*classifier"):
        nodes_for_parts(proto, ["projection_head"])


def test_failed_parity_writes_nothing(tiny_run, scan_dir, tmp_path, monkeypatch):
    strict = lambda model, path, tensors: check_fp32_parity(model, path, tensors, tolerance=-1.0)  # noqa: E731
    monkeypatch.setattr(pipeline, "check_fp32_parity", strict)
    out = tmp_path / "out"
    with pytest.raises(EdgeECGError, match="does not reproduce PyTorch"):
        run_export(ExportOptions(source=tiny_run, out=out, verify_data=scan_dir))
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_refuses_to_run_without_usable_scans_to_verify_on(tiny_run, tmp_path):
    empty = tmp_path / "calib"
    empty.mkdir()
    with pytest.raises(EdgeECGError, match="no usable scan to verify"):
        run_export(ExportOptions(source=tiny_run, out=tmp_path / "out", calib=empty))
    assert not (tmp_path / "out").exists()


def test_calibration_refuses_an_empty_folder(tmp_path):
    with pytest.raises(EdgeECGError, match="no calibration images"):
        load_calibration_set(tmp_path, ModelContract(classes=CLASSES, input_size=SIZE))


def test_calibration_refuses_a_folder_of_unreadable_images(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(EdgeECGError, match="none of the 2 calibration images could be used"):
        load_calibration_set(tmp_path, ModelContract(classes=CLASSES, input_size=SIZE))


def test_calibration_warns_under_32_images_and_skips_bad_files(scan_dir, tmp_path, capsys):
    folder = tmp_path / "calib"
    shutil.copytree(scan_dir, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 cut short")
    scans = load_calibration_set(folder, ModelContract(classes=CLASSES, input_size=SIZE))
    err = capsys.readouterr().err
    assert len(scans) == 6 < RECOMMENDED_MIN_IMAGES
    assert f"at least {RECOMMENDED_MIN_IMAGES}" in err and "skipped" in err
    assert scans.tensors.shape == (6, 3, SIZE, SIZE) and scans.tensors.dtype == np.float32


def test_calibration_leaves_out_the_evaluation_images(scan_dir):
    files = sorted(scan_dir.rglob("*.jpg"))
    scans = load_calibration_set(scan_dir, ModelContract(classes=CLASSES, input_size=SIZE), exclude=files[:2])
    assert len(scans) == len(files) - 2 and not set(files[:2]) & set(scans.paths)


def test_calibration_reader_yields_every_scan_once_per_range():
    tensors = np.arange(5 * 3 * 2 * 2, dtype=np.float32).reshape(5, 3, 2, 2)
    reader = ScanCalibrationReader(tensors, "input", batch_size=2)
    assert len(reader) == 3
    batches = [b["input"] for b in iter(reader.get_next, None)]
    assert np.array_equal(np.concatenate(batches), tensors)
    reader.set_range(1, 2)
    assert [b["input"].shape[0] for b in iter(reader.get_next, None)] == [2]
    reader.rewind()
    assert sum(b["input"].shape[0] for b in iter(reader.get_next, None)) == 5


def test_auto_calibration_keeps_the_method_closest_to_fp32():
    selection = {"minmax": {"top1_agreement": 0.97, "mean_abs_delta_prob": 0.01},
                 "entropy": {"top1_agreement": 1.0, "mean_abs_delta_prob": 0.03},
                 "percentile": {"top1_agreement": 1.0, "mean_abs_delta_prob": 0.02}}
    assert pick_method(selection) == "percentile"
    assert pick_method({**selection, "percentile": {"error": "too many bins"}}) == "entropy"
    with pytest.raises(EdgeECGError, match="every INT8 calibration method failed"):
        pick_method({"minmax": {"error": "a"}, "entropy": {"error": "b"}})


def test_int8_evaluation_flags_missed_targets_loudly(capsys):
    contract = ModelContract(classes=CLASSES, input_size=SIZE)
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 4
    fp32 = np.eye(4)[labels] * 4.0 + rng.normal(0, 0.1, (100, 4))  # always right
    int8 = fp32.copy()
    int8[:5] = np.roll(int8[:5], 1, axis=1)  # five scans change class
    result = compare_fp32_int8(fp32, int8, labels, contract)
    assert result["top1_agreement"] == pytest.approx(0.95) and 0.95 < MIN_TOP1_AGREEMENT
    assert result["accuracy_drop_pp"] == pytest.approx(5.0)
    assert not result["meets_targets"] and len(result["missed"]) == 2
    print_int8_table({"cpu": result}, Path("heldout_eval.csv"))
    assert "--int8-exclude" in capsys.readouterr().err
    assert compare_fp32_int8(fp32, fp32, labels, contract)["meets_targets"]


def test_int8_sweep_scores_every_part_kept_in_fp32(tiny_run, scan_dir, eval_csv, tmp_path, capsys):
    options = ExportOptions(source=tiny_run, out=tmp_path / "swept", verify_data=scan_dir, calib=scan_dir,
                            int8=True, calib_method="minmax", eval_data=eval_csv, int8_sweep=True)
    run_export(options)
    model = json.loads((tmp_path / "swept" / "int8_report.json").read_text())["models"]["cpu"]
    rows = model["sensitivity"]
    top = [r["fp32_part"] for r in rows if not r["inside"]]
    assert top == ["(none)", "trunk", "conv_block1", "conv_block2", "conv_block3", "attention", "fusion",
                   "classifier"]
    best = max(rows[1:len(top)], key=lambda r: r["top1_agreement"])
    opened = [r for r in rows if r["inside"]]
    if best["top1_agreement"] > rows[0]["top1_agreement"]:  # the most helpful part is opened up block by block
        assert opened and {r["inside"] for r in opened} == {best["fp32_part"]}
    else:
        assert not opened
    assert all(0.0 <= r["top1_agreement"] <= 1.0 and r["mean_abs_delta_prob"] >= 0.0 for r in rows)
    assert model["excluded_parts"] == []  # a sweep alone keeps nothing in FP32
    assert "sensitivity: one part kept in FP32" in capsys.readouterr().out  # the table, beside the others


def test_auto_keeps_the_most_helpful_parts_in_fp32_until_the_target(monkeypatch):
    from edgeecg.export.sensitivity import Sweep

    gains = {"attention": 0.05, "classifier": 0.03, "fusion": 0.01, "trunk": -0.02}
    sweep = Sweep.__new__(Sweep)
    monkeypatch.setattr(sweep, "score", lambda parts: {"top1_agreement": 0.90 + sum(gains[p] for p in parts)},
                        raising=False)
    rows = [{"fp32_part": "(none)", "inside": None, "top1_agreement": 0.90}] + [
        {"fp32_part": part, "inside": None, "top1_agreement": 0.90 + gain} for part, gain in gains.items()]
    assert sweep.choose(rows, []) == ["attention", "classifier"]  # 0.98 reached; fusion and trunk not needed
    assert sweep.choose([{**rows[0], "top1_agreement": 0.99}, *rows[1:]], []) == []
    # an opened-up part: its blocks are the candidates, not the whole part
    gains.update({"attention.0": 0.06, "attention.1": 0.03})
    blocks = [{"fp32_part": b, "inside": "attention", "top1_agreement": 0.90 + gains[b]}
              for b in ("attention.0", "attention.1")]
    assert sweep.choose([*rows, *blocks], []) == ["attention.0", "classifier"]


def test_an_int8_model_missing_its_targets_fails_the_export_once_the_set_is_written(
        tiny_run, scan_dir, eval_csv, tmp_path, monkeypatch, capsys):
    """Written and reported as FAILED, then a non-zero exit and one line (a deployment script must notice);
    --accept-int8-miss exits 0 with the same files."""
    real = pipeline.compare_fp32_int8

    def degraded(*args, **kwargs):
        result = real(*args, **kwargs)
        return {**result, "missed": ["top-1 agreement 50.0% (needs 98%)"], "meets_targets": False}

    monkeypatch.setattr(pipeline, "compare_fp32_int8", degraded)
    common = ("export", tiny_run, "--verify-data", scan_dir, "--calib", scan_dir, "--eval-data", eval_csv,
              "--int8", "--calib-method", "minmax")
    code, _, err = run_cli(monkeypatch, capsys, *common, "--out", tmp_path / "strict")
    assert code == 2 and "INT8 misses its targets (cpu: top-1 agreement 50.0%" in err
    assert err.rstrip().splitlines()[-1].startswith("error: ")
    report = json.loads((tmp_path / "strict" / "export_report.json").read_text())
    checks = {a["file"]: a["check_passed"] for a in report["artifacts"]}
    assert checks == {"tiny.onnx": True, "tiny-fp16.onnx": checks["tiny-fp16.onnx"], "tiny-int8.onnx": False}
    code, _, err = run_cli(monkeypatch, capsys, *common, "--out", tmp_path / "accepted", "--accept-int8-miss")
    assert code == 0 and (tmp_path / "accepted" / "tiny-int8.onnx").is_file()


def test_trt_without_tensorrt_fails_with_one_line(tiny_run, monkeypatch, capsys):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; this test covers machines without it")
    code, out, err = run_cli(monkeypatch, capsys, "export", tiny_run, "--trt")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "tensorrt" in err.lower()


def test_an_exported_onnx_source_only_builds_engines(exported, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "export", exported.out_dir / "tiny.onnx")
    assert code == 2 and "only builds TensorRT engines; add --trt" in err
    code, _, err = run_cli(monkeypatch, capsys, "export", exported.out_dir / "tiny.onnx", "--trt", "--int8",
                           "--int8-exclude", "classifier")
    assert code == 2 and "--int8-exclude applies when quantizing" in err


def test_legacy_calibrator_needs_trt_and_int8(tiny_run, monkeypatch, capsys):
    for extra in ((), ("--int8",), ("--trt",)):
        code, _, err = run_cli(monkeypatch, capsys, "export", tiny_run, "--trt-calibrator", "legacy", *extra)
        assert code == 2 and err.strip() == "error: --trt-calibrator legacy needs --trt --int8", extra


def test_int8_shaping_options_need_int8(tiny_run, monkeypatch, capsys):
    for extra in (("--int8-sweep",), ("--int8-exclude", "auto"), ("--int8-exclude", "classifier")):
        code, _, err = run_cli(monkeypatch, capsys, "export", tiny_run, *extra)
        assert code == 2 and err.strip() == "error: --int8-exclude and --int8-sweep shape the INT8 model: add --int8"


def test_a_foreign_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    code, _, err = run_cli(monkeypatch, capsys, "export", tmp_path / "other.pt")
    assert code == 2 and err.count("\n") == 1 and "not an edgeecg checkpoint" in err, err


# --- atomic export sets (issue 15, part 5) ---------------------------------------------------------------------


def test_a_failed_re_export_leaves_the_earlier_set_whole(tiny_run, scan_dir, tmp_path, monkeypatch):
    out = tmp_path / "export"
    options = ExportOptions(source=tiny_run, out=out, verify_data=scan_dir)
    run_export(options)
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def killed(self, proto):  # dies after the new FP32 model is written, before FP16 and the report
        raise KeyboardInterrupt

    monkeypatch.setattr("edgeecg.export.pipeline._Export._fp16", killed)
    with pytest.raises(KeyboardInterrupt):
        run_export(options)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging folder left
    monkeypatch.undo()
    (out / "tiny.onnx").unlink()
    run_export(options)  # a complete re-export replaces the set and keeps what is not a model
    assert (out / "tiny.onnx").is_file() and (out / "notes.txt").read_text() == "mine"


def test_what_a_killed_export_left_is_cleaned_up_or_put_back(tmp_path):
    from edgeecg.export.staging import recover

    dead = 2**22 + 12345  # above pid_max on Linux: no such process
    out = tmp_path / "export"
    (tmp_path / f".export.export-{dead}").mkdir()  # a set half written
    retired = tmp_path / f".export.retired-{dead}"  # killed between the two renames of the swap
    retired.mkdir()
    (retired / "tiny.onnx").write_bytes(b"old set")
    recover(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
    assert (out / "tiny.onnx").read_bytes() == b"old set"
    (out / f".tiny.onnx.{dead}.abc123.tmp").write_bytes(b"")  # atomic_path's file of a killed writer
    (out / f".live.onnx.{os.getpid()}.abc123.tmp").write_bytes(b"")  # a running writer's: kept
    recover(out)
    assert sorted(p.name for p in out.iterdir()) == [f".live.onnx.{os.getpid()}.abc123.tmp", "tiny.onnx"]
