"""`edgeecg explain`: Grad-CAM and occlusion maps, the shortcut stress test and feature plots, on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgeecg import registry
from edgeecg.contract import ModelContract
from edgeecg.imageio import read_image
from edgeecg.preprocess import crop_and_resize
from edgeecg.train.checkpoint import load_checkpoint, save_checkpoint
from edgeecg.train.data import load_table
from edgeecg.train.explain import CAM_LAYERS, grad_cam, load_explain_model, model_view, occlusion_saliency
from edgeecg.train.model import ModelConfig, build_model
from edgeecg.train.stress import delete_pixels, page_views, random_blobs, stratified_sample
from helpers_onnx import CLASSES, run_cli, write_tiny_model
from local_data import local_scans

SIZE = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny SimCardioNet (64 px input) saved as a run would save it.

    A fresh MobileNetV3's BatchNorm statistics (mean 0, var 1) make its eval-mode output vanish
    (identical for every input), so they are first estimated on noise images, as training would.
    """
    torch.manual_seed(0)
    config = ModelConfig(num_classes=4, trunk="mobilenet_v3_small", channels=(32, 16, 16), heads=2, fusion_dim=32)
    network = build_model(config)
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the passes below
    with torch.no_grad():
        network.train()(torch.rand(16, 3, SIZE, SIZE) * 2 - 1)
    network.eval()
    contract = ModelContract(classes=list(CLASSES), input_size=SIZE, name="tiny-explain")
    path = tmp_path_factory.mktemp("run") / "tiny.pt"
    save_checkpoint(path, {"model_config": config.to_dict(), "state_dict": network.state_dict(),
                           "contract": contract.__dict__})
    return path


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def listing(tmp_path_factory) -> Path:
    """A CSV listing of 3 distinct scans per class."""
    return write_listing(tmp_path_factory.mktemp("listing") / "listing.csv", 3)


def write_listing(path: Path, per_class: int) -> Path:
    """A CSV listing of the first `per_class` of the repository's (distinct) scans of each class."""
    rows = ["file,label"] + [f"{f},{label}" for label in CLASSES
                             for f in [p for p, c in local_scans() if c == label][:per_class]]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def scan() -> Path:
    return next(path for path, label in local_scans() if label == "normal")


# --- saliency maps ------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", CAM_LAYERS)
def test_grad_cam_is_a_normalised_map_of_the_input_size_that_depends_on_the_class(checkpoint, scan, layer):
    model = load_explain_model(str(checkpoint), layer=layer)
    rgb, _ = model_view(scan, model.contract)
    maps = model.saliency(np.repeat(rgb[None], 4, axis=0), [0, 1, 2, 3])
    assert maps.shape == (4, SIZE, SIZE)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    for m in maps:  # each map is scaled to its own peak (or is empty when no region supports the class)
        assert m.max() == pytest.approx(1.0, abs=1e-3) or m.max() == 0.0
    assert any(not np.allclose(maps[0], m, atol=1e-3) for m in maps[1:]), "maps must depend on the target class"


def test_grad_cam_leaves_no_hooks_behind(checkpoint, scan):
    model = load_explain_model(str(checkpoint))
    rgb, _ = model_view(scan, model.contract)
    before = model.probabilities(rgb[None])
    blank = np.full_like(rgb, 255)
    assert not np.allclose(model.probabilities(blank[None]), before), "the test model must depend on its input"
    grad_cam(model.network, model.contract, rgb[None], [1], "attention")
    assert not model.network.attention._forward_hooks
    np.testing.assert_allclose(model.probabilities(rgb[None]), before, rtol=1e-5)


def test_occlusion_finds_the_only_region_that_changes_the_answer():
    """Mean-brightness classifier: only covering the dark square can lower P(dark); plain paper scores 0."""
    rgb = np.full((SIZE, SIZE, 3), 255, np.uint8)
    rgb[40:56, 8:24] = 0

    def probs(batch: np.ndarray) -> np.ndarray:
        darkness = 1.0 - batch.mean(axis=(1, 2, 3)) / 255.0
        return np.stack([darkness, 1.0 - darkness], axis=1)

    dark = occlusion_saliency(probs, rgb, target=0)
    assert dark.shape == (SIZE, SIZE) and dark.max() == pytest.approx(1.0)
    assert np.unravel_index(dark.argmax(), dark.shape)[0] in range(40, 56)
    assert np.all(dark[:24] == 0.0), "windows that never touch the square change nothing"
    assert np.all(occlusion_saliency(probs, rgb, target=1) == 0.0), "whitening only raises P(bright)"
    coarse = occlusion_saliency(probs, rgb, target=0, overlap=False)
    assert np.all(coarse[:40] == 0.0) and coarse[40:56, 8:24].min() == pytest.approx(1.0)


def test_onnx_models_get_occlusion_and_refuse_grad_cam(onnx_model, scan):
    model = load_explain_model(str(onnx_model))
    assert model.method == "occlusion" and "occlusion" in model.method_label
    rgb, _ = model_view(scan, model.contract)
    maps = model.saliency(rgb[None], [0])
    assert maps.shape == (1, SIZE, SIZE) and 0.0 <= maps.min() and maps.max() <= 1.0
    with pytest.raises(Exception, match="Grad-CAM needs gradients"):
        load_explain_model(str(onnx_model), method="gradcam")


# --- the explain command ------------------------------------------------------------------------


def test_explain_writes_one_three_panel_png(checkpoint, scan, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cam.png"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "explain", scan, "--model", checkpoint, "--out", out)
    assert code == 0, stderr
    image = cv2.imread(str(out))
    assert image is not None
    height, width = image.shape[:2]
    assert 2.2 < width / height < 3.4, "input | heat map | overlay side by side"
    assert "Grad-CAM at conv_block3" in stdout and "(predicted)" in stdout


def test_without_model_the_shipped_default_is_explained_by_occlusion(onnx_model, scan, tmp_path, monkeypatch,
                                                                      capsys):
    shipped = tmp_path / "models"
    shipped.mkdir()
    (shipped / "default.onnx").write_bytes(onnx_model.read_bytes())
    monkeypatch.setattr(registry, "MODELS_DIR", shipped)
    out = tmp_path / "cam.png"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "explain", scan, "--out", out)
    assert code == 0, stderr
    assert "occlusion" in stdout and str(out) in stdout and cv2.imread(str(out)) is not None


def test_explain_a_chosen_class_with_occlusion_on_an_onnx_model(onnx_model, scan, tmp_path, monkeypatch, capsys):
    out = tmp_path / "occ.png"
    code, stdout, _ = run_cli(monkeypatch, capsys, "explain", scan, "--model", onnx_model, "--class", CLASSES[2],
                              "--out", out)
    assert code == 0
    assert f"{CLASSES[2]} p=" in stdout and "(chosen)" in stdout and "occlusion" in stdout
    assert cv2.imread(str(out)) is not None


@pytest.mark.parametrize("args, words", [
    (["missing.jpg"], "no such file"),
    (["{scan}", "--class", "no_such_class"], "unknown class"),
    (["{scan}", "--model", "{onnx}", "--layer", "attention"], "Grad-CAM needs gradients"),
    (["--features", "{scan}", "--model", "{onnx}"], "needs the model's PyTorch checkpoint"),
    (["{scan}", "--stress", "{scan}"], "exactly one of"),
    (["{scan}", "--out", "cam.jpg"], "writes a .png"),
])
def test_bad_requests_fail_in_one_line(checkpoint, onnx_model, scan, tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    filled = [a.format(scan=scan, onnx=onnx_model) for a in args]
    if "--model" not in filled:
        filled += ["--model", str(checkpoint)]
    code, _, stderr = run_cli(monkeypatch, capsys, "explain", *filled)
    assert code == 2
    assert stderr.strip().startswith("error:") and words in stderr and len(stderr.strip().splitlines()) == 1


def test_non_ecg_image_is_refused_in_one_line_by_the_console_script(checkpoint, text_page, tmp_path):
    out = tmp_path / "page.png"
    refused = subprocess.run([sys.executable, "-c", "from edgeecg.cli import main; main()", "explain",
                              str(text_page), "--model", str(checkpoint), "--out", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "no ECG grid found" in refused.stderr and "--no-crop" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_no_crop_explains_the_whole_image(checkpoint, text_page, tmp_path, monkeypatch, capsys):
    out = tmp_path / "page.png"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "explain", text_page, "--model", checkpoint, "--no-crop",
                                   "--out", out)
    assert code == 0, stderr
    assert cv2.imread(str(out)) is not None


# --- stress test ------------------------------------------------------------------------------------


def test_page_views_mask_only_what_lies_outside_the_grid(scan):
    views = page_views(read_image(scan), SIZE, 0.0)
    outside = views.outside_grid
    assert 0 < outside.mean() < 0.6, "a printout has a header/footer around the grid box"
    assert np.all(views.header_footer_masked[outside] == 255)
    assert not np.all(views.full_page[outside] == 255), "the unmasked header carries ink"
    expected, _ = crop_and_resize(read_image(scan), SIZE, True, 0.0)
    np.testing.assert_array_equal(views.cropped_trace, expected)


def test_deletion_paints_the_requested_share_white():
    rgb = np.zeros((10, 10, 3), np.uint8)
    order = np.random.default_rng(0).permutation(100)
    out = delete_pixels(rgb, order, 0.2)
    assert np.sum(np.all(out == 255, axis=2)) == 20
    assert np.all(out.reshape(-1, 3)[order[:20]] == 255) and rgb.max() == 0


def test_random_control_removes_contiguous_blobs():
    """The control deletes patches like a saliency map does, not scattered dots."""
    order = np.lexsort((np.zeros(SIZE * SIZE), -random_blobs(SIZE, np.random.default_rng(0)).ravel()))
    mask = np.zeros(SIZE * SIZE, np.uint8)
    mask[order[: SIZE * SIZE // 5]] = 1
    count, _ = cv2.connectedComponents(mask.reshape(SIZE, SIZE))
    assert count - 1 <= 6, "a fifth of the pixels should fall in a few blobs"


def test_stratified_sample_is_seeded_distinct_and_balanced(tmp_path):
    table = load_table(write_listing(tmp_path / "listing.csv", 3))
    first, again = stratified_sample(table, 8, seed=3), stratified_sample(table, 8, seed=3)
    assert [i.path for i in first.items] == [i.path for i in again.items]
    assert len(first) == 8 and len(set(first.groups.tolist())) == 8
    assert sorted(np.bincount(first.labels, minlength=4).tolist()) == [2, 2, 2, 2]


@pytest.mark.parametrize("kind, method", [("checkpoint", "Grad-CAM"), ("onnx", "occlusion")])
def test_stress_test_reports_three_conditions_and_a_deletion_curve(checkpoint, onnx_model, listing, tmp_path,
                                                                    monkeypatch, capsys, kind, method):
    out = tmp_path / "stress"
    model = checkpoint if kind == "checkpoint" else onnx_model
    code, stdout, stderr = run_cli(monkeypatch, capsys, "explain", "--stress", listing, "--model", model,
                                   "--limit", "8", "--out", out)
    assert code == 0, stderr
    report = json.loads((out / "stress.json").read_text())
    assert report["method"].startswith(method)
    assert set(report["conditions"]) == {"full_page", "header_footer_masked", "cropped_trace"}
    for row in report["conditions"].values():
        assert 0.0 <= row["accuracy"] <= 1.0
    assert report["images"] + len(report["skipped"]) == 8
    fractions = report["deletion"]["fractions"]
    assert fractions[0] == 0.0 and all(a < b for a, b in zip(fractions, fractions[1:]))
    for curve in ("salient", "random"):
        assert len(report["deletion"][curve]["accuracy"]) == len(fractions)
        # nothing deleted yet: the same images, so the same accuracy as the model's own view
        assert report["deletion"][curve]["accuracy"][0] == report["conditions"]["cropped_trace"]["accuracy"]
    assert 0.0 <= report["saliency_placement_full_page"]["area_share_outside_grid"] <= 1.0
    assert cv2.imread(str(out / "deletion_curve.png")) is not None
    assert "Deletion curve" in stderr or "Deletion curve" in stdout


# --- feature analysis -----------------------------------------------------------------------------


def test_features_writes_pca_tsne_and_class_statistics(checkpoint, listing, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEECG_CACHE", str(tmp_path / "cache"))
    state = load_checkpoint(checkpoint)
    no_ssl = tmp_path / "no_ssl.pt"
    save_checkpoint(no_ssl, {**state, "train_config": {"ssl": False}})
    out = tmp_path / "features"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "explain", "--features", listing, "--model", no_ssl,
                                   "--out", out)
    assert code == 0, stderr
    report = json.loads((out / "features.json").read_text())
    assert report["images"] == 12
    assert "untrained" in report["spaces"]["projection"]["description"] and "untrained" in stdout
    assert "untrained" not in report["spaces"]["backbone"]["description"]
    assert report["spaces"]["backbone"]["dimensions"] == 32 and report["spaces"]["projection"]["dimensions"] == 128
    for space in ("backbone", "projection"):
        assert -1.0 <= report["spaces"][space]["silhouette"] <= 1.0
        for kind in ("pca", "tsne", "class_stats"):
            assert cv2.imread(str(out / f"{space}_{kind}.png")) is not None
