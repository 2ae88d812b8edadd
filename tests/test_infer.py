"""The torch-free runtime: backends, the model registry, classify_* and `edgeecg infer` / `edgeecg models`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from edgeecg import registry
from edgeecg.backends import Backend, OnnxRuntimeBackend, file_sha256, open_backend, probabilities
from edgeecg.contract import CONTRACT_KEY, ModelContract
from edgeecg.crop import NoGridFound
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
from edgeecg.infer import classify_image, classify_path
from edgeecg.preprocess import crop_and_resize, preprocess
from helpers_onnx import CLASSES, run_cli, tiny_contract, tiny_logits, write_tiny_model

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {"path", "task", "label", "probs", "ms", "crop", "model"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "tiny": write_tiny_model(folder / "tiny.onnx"),
        "multilabel": write_tiny_model(folder / "multi.onnx", tiny_contract(task="multilabel", name="tiny-multi")),
        "bare": write_tiny_model(folder / "bare.onnx", with_metadata=False),
    }


@pytest.fixture(scope="module")
def scans(mendeley_dir: Path) -> list[Path]:
    return [next(iter(sorted((mendeley_dir / label).glob("*.jpg")))) for label in ("normal", "myocardial_infarction")]


class Recording(Backend):
    """Wraps a backend and keeps the last batch it was fed."""

    def __init__(self, inner: Backend) -> None:
        self.inner, self.name, self.contract = inner, inner.name, inner.contract
        self.path, self.precision = inner.path, inner.precision
        self.batch: np.ndarray | None = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.batch = batch.copy()
        return self.inner.run(batch)


# --- backends ---------------------------------------------------------------------------------


def test_contract_round_trips_through_onnx_metadata(tmp_path):
    contract = tiny_contract(crop_margin=0.02, temperature=1.7, trunk="resnet18", extra={"fold": 3})
    path = write_tiny_model(tmp_path / "m.onnx", contract)
    assert OnnxRuntimeBackend(path).contract == contract
    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert ModelContract.from_json(stored[CONTRACT_KEY]) == contract


def test_backend_computes_what_the_graph_says(models):
    backend = open_backend(models["tiny"])
    assert backend.name == "onnxruntime" and backend.precision == "fp32"
    batch = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(backend.run(batch), tiny_logits(batch, models["tiny"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d, m: d / "absent.onnx", "model file not found"),
        (lambda d, m: _write(d / "empty.onnx", b""), "model file is empty"),
        (lambda d, m: _write(d / "corrupt.onnx", m["tiny"].read_bytes()[:200]), "not a valid ONNX model"),
        (lambda d, m: _write(d / "text.onnx", b"hello\n" * 50), "not a valid ONNX model"),
        (lambda d, m: m["bare"], "carries no edgeecg metadata"),
    ],
    ids=["missing", "empty", "truncated", "text", "no-metadata"],
)
def test_unusable_models_are_refused_in_one_line(tmp_path, models, monkeypatch, capsys, scans, make, words):
    path = make(tmp_path, models)
    with pytest.raises(EdgeECGError, match=words):
        open_backend(path)
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", path, scans[0])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and words in err and err.strip().count("\n") == 0
    assert "Traceback" not in err


def test_engine_files_go_to_tensorrt_and_onnx_files_do_not(tmp_path, models):
    with pytest.raises(EdgeECGError, match="TensorRT engine"):
        open_backend(models["tiny"], backend="tensorrt")
    engine = _write(tmp_path / "model.engine", b"not an engine")
    with pytest.raises(EdgeECGError, match="--backend tensorrt"):
        open_backend(engine, backend="onnxruntime")
    with pytest.raises(EdgeECGError, match="model file not found"):
        open_backend(tmp_path / "absent.plan")


def test_softmax_and_sigmoid_with_temperature():
    logits = np.array([[2.0, 0.0, -1.0, 0.5]], np.float32)
    p = probabilities(logits, tiny_contract())
    assert p.shape == (1, 4) and np.isclose(p.sum(), 1.0) and p.argmax() == 0
    cooled = probabilities(logits, tiny_contract(temperature=4.0))
    assert np.isclose(cooled.sum(), 1.0) and cooled.max() < p.max()  # calibration flattens, keeps the order
    assert (np.argsort(cooled) == np.argsort(p)).all()
    sig = probabilities(logits, tiny_contract(task="multilabel"))
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-logits)), rtol=1e-6)
    assert np.isfinite(probabilities(np.array([[1e4, -1e4, 0, 0]]), tiny_contract(task="multilabel"))).all()


# --- registry ---------------------------------------------------------------------------------


def test_registry_lists_and_resolves_shipped_models(tmp_path, models):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    write_tiny_model(shipped / "default.onnx")
    write_tiny_model(shipped / "ptbxl.onnx", tiny_contract(task="multilabel", classes=["NORM", "MI", "STTC"]))
    listed = {m.name: m for m in registry.list_models(shipped)}
    assert set(listed) == {"default", "ptbxl"}
    assert listed["ptbxl"].classes == ["NORM", "MI", "STTC"] and listed["ptbxl"].task == "multilabel"
    assert listed["default"].input_size == 64 and listed["default"].precision == "fp32"
    assert registry.resolve_model("default", shipped) == shipped / "default.onnx"
    assert registry.resolve_model(models["tiny"], shipped) == models["tiny"]
    with pytest.raises(EdgeECGError, match=r"unknown model 'nope' \(shipped models: default, ptbxl"):
        registry.resolve_model("nope", shipped)
    with pytest.raises(EdgeECGError, match="model file not found"):
        registry.resolve_model(tmp_path / "gone.onnx", shipped)


def test_models_command_prints_a_table(tmp_path, monkeypatch, capsys):
    write_tiny_model(tmp_path / "default.onnx")
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "models")
    assert code == 0
    assert "default.onnx" in out and "multiclass" in out and "normal" in out
    empty = tmp_path / "none"
    empty.mkdir()
    monkeypatch.setattr(registry, "MODELS_DIR", empty)
    code, out, _ = run_cli(monkeypatch, capsys, "models")
    assert code == 0 and "no models shipped" in out


# --- classify ---------------------------------------------------------------------------------


def test_classify_path_on_a_real_scan(models, scans):
    backend = open_backend(models["tiny"])
    result = classify_path(scans[0], backend)
    assert REQUIRED_KEYS <= set(result) and result["task"] == "multiclass" and "labels" not in result
    assert list(result["probs"]) == sorted(CLASSES, key=lambda c: -result["probs"][c])
    assert result["label"] == next(iter(result["probs"]))
    assert np.isclose(sum(result["probs"].values()), 1.0, atol=1e-4)
    assert set(result["ms"]) == {"decode", "gate", "crop", "preprocess", "model", "total"}
    assert result["ms"]["total"] >= result["ms"]["crop"] + result["ms"]["model"]
    height, width = read_image(scans[0]).shape[:2]
    quad = np.array(result["crop"])
    assert quad.shape == (4, 2)
    assert (quad >= -1).all() and (quad[:, 0] <= width).all() and (quad[:, 1] <= height).all()
    assert quad[0].sum() == quad.sum(axis=1).min()  # starts at the top-left corner
    assert result["model"]["sha256"] == file_sha256(models["tiny"])
    assert result["model"]["file"] == "tiny.onnx" and result["model"]["name"] == "tiny-test"


def test_crop_corners_of_a_reduced_photo_are_in_the_files_pixels(models, scans, tmp_path):
    """A large JPEG is decoded reduced; the reported region is still where it lies in the file."""
    backend = open_backend(models["tiny"])
    scan = read_image(scans[0])
    big = cv2.resize(scan, None, fx=7, fy=7, interpolation=cv2.INTER_CUBIC)  # 42 MP
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert read_image(tmp_path / "big.jpg").shape[1] < big.shape[1]  # it is decoded reduced
    reduced, full = classify_path(tmp_path / "big.jpg", backend), classify_path(scans[0], backend)
    np.testing.assert_allclose(np.array(reduced["crop"]), 7 * np.array(full["crop"]), atol=7 * 3)


@pytest.mark.parametrize("crop", [True, False])
def test_runtime_feeds_the_model_exactly_what_preprocess_gives(models, scans, crop):
    backend = Recording(open_backend(models["tiny"]))
    image = read_image(scans[1])
    result = classify_image(image, backend, crop=crop)
    expected, quad = preprocess(image, backend.contract, crop=crop)
    np.testing.assert_array_equal(backend.batch, expected)
    np.testing.assert_allclose(result["crop"], quad, atol=0.05)


def test_top_k_limits_the_reported_classes(models, scans):
    result = classify_path(scans[0], open_backend(models["tiny"]), top_k=2)
    assert len(result["probs"]) == 2 and result["label"] == next(iter(result["probs"]))


def test_multilabel_model_reports_every_class_above_half(models, scans):
    result = classify_path(scans[0], open_backend(models["multilabel"]))
    assert result["task"] == "multilabel"
    assert set(result["probs"]) == set(CLASSES)
    assert result["labels"] == [c for c, p in result["probs"].items() if p > 0.5]
    logits = tiny_logits(preprocess(read_image(scans[0]), tiny_contract())[0], models["multilabel"])[0]
    expected = dict(zip(CLASSES, 1 / (1 + np.exp(-logits))))
    for name, p in result["probs"].items():
        assert p == pytest.approx(expected[name], abs=1e-5)


def test_saved_crop_is_what_the_model_saw(tmp_path, models, scans):
    result = classify_path(scans[0], open_backend(models["tiny"]), save_crop_dir=tmp_path / "crops")
    saved = Path(result["saved_crop"])
    assert saved.parent == tmp_path / "crops" and saved.name.startswith(f"{scans[0].stem}-")
    rgb, _ = crop_and_resize(read_image(scans[0]), 64, crop=True)
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(saved)), cv2.COLOR_BGR2RGB), rgb)
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary file left behind


def test_image_without_a_grid_is_refused_unless_forced(models, text_page):
    backend = open_backend(models["tiny"])
    refused = classify_path(text_page, backend)
    assert refused["refused"] == "no ECG grid found" and refused["gate"] == {"grid": False}
    assert "label" not in refused and "probs" not in refused
    with pytest.raises(NoGridFound, match="no ECG grid found"):  # forced: the cropper itself still needs a grid
        classify_path(text_page, backend, force=True)
    forced = classify_path(text_page, backend, crop=False, force=True)
    assert forced["forced"] == "no ECG grid found" and forced["label"] in CLASSES
    assert forced["crop"] == [[0, 0], [799, 0], [799, 599], [0, 599]]


# --- the command line ---------------------------------------------------------------------------


def test_json_lines_parse_with_the_required_keys(models, scans, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", models["tiny"], "--json", *scans)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in lines] == [str(s) for s in scans]
    for result in lines:
        assert REQUIRED_KEYS <= set(result)
        assert set(result["model"]) >= {"name", "file", "sha256", "precision"}


def test_batch_goes_on_past_bad_inputs_and_exits_1(tmp_path, models, scans, text_page, monkeypatch, capsys):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a_scan.jpg").write_bytes(scans[0].read_bytes())
    (folder / "b_broken.jpg").write_bytes(scans[0].read_bytes()[:5000])
    (folder / "c_page.png").write_bytes(text_page.read_bytes())
    (folder / "notes.txt").write_text("not an image, not listed")
    sub = folder / "sub"
    sub.mkdir()
    (sub / "d_scan.jpg").write_bytes(scans[1].read_bytes())
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", models["tiny"], "--json", folder,
                             tmp_path / "absent.jpg")
    assert code == 1
    results = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert list(results) == ["a_scan.jpg", "b_broken.jpg", "c_page.png", "d_scan.jpg", "absent.jpg"]
    assert "label" in results["a_scan.jpg"] and "label" in results["d_scan.jpg"]
    assert results["b_broken.jpg"]["error"] == "truncated JPEG (no end-of-image marker)"
    assert results["c_page.png"]["refused"] == "no ECG grid found" and "label" not in results["c_page.png"]
    assert results["absent.jpg"]["error"] == "no such file"
    assert "5 input(s): 2 classified, 1 refused, 2 failed" in err and "Traceback" not in err


def test_human_output_and_no_crop(models, text_page, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", models["tiny"], "--no-crop", "--top-k", "2",
                             "--save-crop", tmp_path / "seen", "--force", text_page)
    assert code == 0 and err == ""
    first, probs, forced, ms, saved = out.splitlines()
    assert forced.strip() == "forced past the quality gate, which refused it: no ECG grid found"
    assert first.startswith(f"{text_page}: ") and first.split(": ")[1] in CLASSES
    assert probs.count("|") == 1  # two classes shown
    assert ms.strip().startswith("ms: decode") and "total" in ms
    [crop] = (tmp_path / "seen").glob("page-*.png")
    assert str(crop) in saved


def test_infer_needs_exactly_one_source(models, scans, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "infer", "--model", models["tiny"])
    assert code == 2 and "exactly one" in err
    code, _, err = run_cli(monkeypatch, capsys, "infer", "--model", models["tiny"], "--camera", "0", scans[0])
    assert code == 2 and "exactly one" in err


def test_unknown_model_name_lists_the_shipped_ones(tmp_path, scans, monkeypatch, capsys):
    write_tiny_model(tmp_path / f"{registry.DEFAULT_MODEL}.onnx")
    monkeypatch.setattr(registry, "MODELS_DIR", tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", "no-such-model", scans[0])
    assert code == 2 and "unknown model 'no-such-model'" in err and registry.DEFAULT_MODEL in err
    code, out, _ = run_cli(monkeypatch, capsys, "infer", "--json", scans[0])  # --model defaults to DEFAULT_MODEL
    assert code == 0 and json.loads(out)["model"]["file"] == f"{registry.DEFAULT_MODEL}.onnx"


def test_runtime_never_imports_torch_or_onnx(models, scans):
    code = (
        "import sys\n"
        "from edgeecg.cli import main\n"
        f"sys.argv = ['edgeecg', 'infer', '--json', '--model', {str(models['tiny'])!r}, {str(scans[0])!r}]\n"
        "main()\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'onnx') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] in CLASSES


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
