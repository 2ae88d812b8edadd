"""Signal branch: the model's input (NaN -> 0 + mask, per-lead normalisation), shapes, panel masking, tiny runs."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeecg.errors import EdgeECGError
from edgeecg.layouts import LEADS
from edgeecg.signal_input import SignalSpec, model_input, resample
from edgeecg.train.checkpoint import load_checkpoint
from edgeecg.train.cli import train as train_command
from edgeecg.train.signal_data import SignalDataset, panel_mask
from edgeecg.train.signal_eval import evaluate
from edgeecg.train.signal_model import SignalNetConfig, build_signal_model, load_trunk

SPEC = SignalSpec()  # 100 Hz x 10 s


def _page_like(seed: int = 0) -> np.ndarray:
    """A 10 s recording at 100 Hz, each lead offset by its index (mV)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.3, (1000, 12)) + np.arange(12)).astype(np.float32)


def test_input_turns_nan_into_zero_and_a_mask():
    signal = _page_like()
    signal[250:, 0] = np.nan  # lead I plotted for 2.5 s only
    signal[:, 3] = np.nan  # aVR not read at all
    x = model_input(signal, SPEC)
    assert x.shape == (24, 1000) and x.dtype == np.float32 and np.isfinite(x).all()
    assert x[12, :250].all() and not x[12, 250:].any() and not x[15].any() and x[13].all()
    assert not x[0, 250:].any() and not x[3].any()
    assert abs(np.median(x[1])) < 1e-6  # the lead's offset is removed, its mV scale kept
    assert np.allclose(x[1], np.clip(signal[:, 1] - np.median(signal[:, 1]), -10, 10))
    z = model_input(signal, SignalSpec(norm="zscore"))
    assert abs(z[1].std() - 1) < 1e-3


def test_input_pads_truncates_and_refuses_other_lead_counts():
    x = model_input(_page_like()[:600], SPEC)
    assert x.shape == (24, 1000) and not x[12:, 600:].any()
    assert model_input(np.vstack([_page_like(), _page_like()]), SPEC).shape == (24, 1000)
    with pytest.raises(EdgeECGError, match="12"):
        model_input(np.zeros((1000, 8), np.float32), SPEC)
    with pytest.raises(EdgeECGError, match="normalisation"):
        SignalSpec(norm="minmax")


def test_resampling_keeps_where_the_page_plotted():
    signal = np.full((5000, 12), np.nan, np.float32)  # the digitizer's 500 Hz
    signal[1250:2500, 3] = 1.0  # aVR's panel: 2.5-5 s
    out = resample(signal, 500.0, 100.0, 1000)
    plotted = np.nonzero(np.isfinite(out[:, 3]))[0]
    assert abs(plotted[0] - 250) <= 1 and abs(plotted[-1] - 499) <= 1
    assert np.allclose(out[plotted, 3], 1.0) and not np.isfinite(out[:, 0]).any()


def test_panel_mask_reads_a_3x4_plus_1_page():
    signal = _page_like()
    masked = panel_mask(signal, 100.0, np.random.default_rng(0), misread=0.0)
    plotted = np.isfinite(masked).sum(0)
    assert plotted[LEADS.index("II")] == 1000 and sorted(set(plotted.tolist())) == [250, 1000]
    assert np.isfinite(masked[750:, LEADS.index("V4")]).all()  # V4..V6: the last 2.5 s
    misread = panel_mask(signal, 100.0, np.random.default_rng(3), misread=1.0)
    strip = int(np.argmax(np.isfinite(misread).sum(0)))
    assert np.allclose(misread[:, strip], signal[:, LEADS.index("II")])


def test_forward_shapes_and_trunk_transfer():
    model = build_signal_model(SignalNetConfig(num_classes=5, width=8)).eval()
    for length in (1000, 500):
        assert model(torch.zeros(3, 24, length)).shape == (3, 5)
    assert not any(isinstance(m, torch.nn.Conv1d) and m.groups > 1 for m in model.modules())  # no depthwise
    other = build_signal_model(SignalNetConfig(num_classes=4, width=8))
    assert load_trunk(other, model.state_dict()) > 0
    assert torch.equal(other.trunk[0].weight, model.trunk[0].weight)
    dataset = SignalDataset(np.stack([_page_like()] * 2), np.array([0, 1]), SPEC, mask_p=1.0)
    x, y = dataset[0]
    assert x.shape == (24, 1000) and x[12:].sum() == 11 * 250 + 1000
    jittered, _ = SignalDataset(dataset.signals, dataset.targets, SPEC, augment=True)[0]
    assert torch.isfinite(jittered).all() and 1000 - 20 <= jittered[12].sum() <= 1000  # shift <= 0.2 s


def _train(args):
    result = CliRunner().invoke(train_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def ptbxl_signal_run(tmp_path_factory, ptbxl_dir):
    out = tmp_path_factory.mktemp("signal") / "ptbxl"
    _train(["--dataset", "ptbxl", "--modality", "signal", "--preset", "tiny", "--data", str(ptbxl_dir),
            "--max-per-class", "4", "--out", str(out)])
    return out


def test_tiny_ptbxl_signal_run(ptbxl_signal_run):
    metrics = json.loads((ptbxl_signal_run / "metrics.json").read_text())
    assert {"validation", "test", "test_panels"} <= set(metrics)
    assert metrics["data"]["strat_folds"]["test"] == [9]
    contract = load_checkpoint(ptbxl_signal_run)["contract"]
    assert contract["task"] == "multilabel" and contract["extra"]["signal"]["length"] == 1000
    assert contract["extra"]["signal"]["leads"] == list(LEADS)


def test_tiny_mendeley_signal_run_from_ptbxl_trunk(tmp_path, mendeley_dir, ptbxl_signal_run):
    out = tmp_path / "mendeley"
    _train(["--modality", "signal", "--preset", "tiny", "--data", str(mendeley_dir), "--max-per-class", "2",
            "--init-from", str(ptbxl_signal_run), "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert "accuracy" in metrics["mean_std"] and "accuracy" in metrics["mean_std_distinct_images"]
    assert "temperature" in metrics["calibration"]
    state = load_checkpoint(out)
    assert state["contract"]["extra"]["init_from"] == str(ptbxl_signal_run)
    assert state["contract"]["extra"]["digitizer"]["source_key"]
    assert state["model_config"]["num_classes"] == 4
    files = [sorted((mendeley_dir / c).glob("*"))[0] for c in state["contract"]["classes"]]
    listing = tmp_path / "heldout.csv"
    listing.write_text("file,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files))
    scored = evaluate(out, listing)
    assert scored["files"] == 4 and 0.0 <= scored["per_file"]["accuracy"] <= 1.0
    from edgeecg.export.cli import export

    exported = CliRunner().invoke(export, [str(out), "--verify-data", str(listing), "--out", str(tmp_path / "x"),
                                           "--int8", "--eval-data", str(listing)])
    assert exported.exit_code == 0, exported.output
    assert "matches PyTorch on 4 digitized scans" in exported.output and (tmp_path / "x" / "signal-resnet1d.onnx").is_file()
    assert "INT8 vs FP32 on 4 files" in exported.output
    from edgeecg.signal_runtime import SignalModel

    int8 = SignalModel(tmp_path / "x" / "signal-resnet1d-int8.onnx")
    assert int8.contract.precision == "int8" and int8.contract.extra["quantization"]["target"] == "cpu"
    selective = int8.contract.extra["selective"]  # chosen on the run's out-of-fold validation files
    assert 0.0 <= selective["min_confidence"] <= 1.0 and selective["target_risk"] == 0.05
    for model in (SignalModel(tmp_path / "x" / "signal-resnet1d.onnx"), int8):  # fitted on the run's training pages
        ood = model.contract.extra["ood"]
        assert ood["training_pages"] == 8 and ood["threshold"] == pytest.approx(ood["margin"] * ood["train_max"])
    from edgeecg.imageio import read_image
    from edgeecg.infer import classify_image

    fp32 = SignalModel(tmp_path / "x" / "signal-resnet1d.onnx")
    answered = classify_image(read_image(files[0]), fp32)
    assert answered["ood"]["typical"] is (answered["ood"]["distance"] <= answered["ood"]["threshold"])
    strict = _with_ood_threshold(tmp_path / "x" / "signal-resnet1d.onnx", tmp_path / "strict.onnx", 1e-6)
    refused = classify_image(read_image(files[0]), SignalModel(strict), abstain=True)
    assert refused["refused"].startswith("unlike the pages this model was trained on") and "label" not in refused
    assert classify_image(read_image(files[0]), SignalModel(strict))["ood"]["typical"] is False



def test_image_only_settings_are_refused_for_signals(tmp_path, mendeley_dir):
    result = CliRunner().invoke(train_command, ["--modality", "signal", "--preset", "tiny", "--ssl", "--data",
                                                str(mendeley_dir), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--ssl is for the image branch" in str(result.exception or result.output)


def _export(tmp_path, name, **signal_changes):
    """A tiny signal model exported to ONNX with its contract, `signal_changes` applied to the contract only."""
    from edgeecg.contract import ModelContract
    from edgeecg.export.onnx_export import export_onnx
    from edgeecg.export.onnx_io import save_onnx
    from edgeecg.signal_runtime import digitizer_settings

    torch.manual_seed(0)
    model = build_signal_model(SignalNetConfig(num_classes=4, width=8)).eval()
    signal = {**SPEC.to_dict(), **signal_changes.pop("signal", {})}
    extra = {"modality": "signal", "signal": signal, "digitizer": {**digitizer_settings(), **signal_changes}}
    contract = ModelContract(classes=["a", "b", "c", "d"], input_size=SPEC.length, crop=False, extra=extra)
    path = tmp_path / f"{name}.onnx"
    save_onnx(export_onnx(model, contract, 17, (SPEC.channels, SPEC.length)), path)
    return model, path


def test_exported_model_matches_torch_and_reads_a_page(tmp_path):
    from edgeecg.imageio import read_image
    from edgeecg.signal_input import batch_input
    from edgeecg.signal_runtime import SignalModel

    model, path = _export(tmp_path, "ok")
    runtime = SignalModel(path)
    signals = np.stack([_page_like(0), _page_like(1)])
    signals[0, 250:, :6] = np.nan
    with torch.no_grad():
        reference = model(torch.from_numpy(batch_input(signals, SPEC))).numpy()
    assert np.abs(runtime.logits(signals) - reference).max() < 1e-4
    from edgeecg.infer import classify_image

    result = classify_image(read_image("examples/normal_normal_0120.jpg"), runtime)  # the runtime's own page path
    assert abs(sum(result["probs"].values()) - 1) < 1e-5 and result["page"]["layout"] == "3x4+1"


@pytest.mark.parametrize("changes, message", [
    ({"signal": {"leads": list(reversed(LEADS))}}, "leads"),
    ({"signal": {"normalisation": "per lead: min-max"}}, "normalisation"),
    ({"signal": {"seconds": 5.0}}, "length"),
    ({"signal": {"rate": 50.0, "length": 500}}, "graph input"),
    ({"rate": 250.0}, "digitizer settings"),
])
def test_runtime_refuses_a_contract_it_cannot_honour(tmp_path, changes, message):
    from edgeecg.signal_runtime import SignalModel

    _, path = _export(tmp_path, "bad", **changes)
    with pytest.raises(EdgeECGError, match=message):
        SignalModel(path)


def _with_ood_threshold(source, target, threshold: float):
    """A copy of an exported model whose contract sets another out-of-distribution threshold."""
    import onnx

    model = onnx.load(str(source))
    entry = next(p for p in model.metadata_props if p.key == "edgeecg")
    contract = json.loads(entry.value)
    contract["extra"]["ood"]["threshold"] = threshold
    entry.value = json.dumps(contract)
    onnx.save(model, str(target))
    return target


def test_the_feature_distance_is_the_mahalanobis_distance_of_the_pooled_features():
    from sklearn.covariance import LedoitWolf

    from edgeecg.export.ood import fit_distance, training_features

    torch.manual_seed(0)
    model = build_signal_model(SignalNetConfig(num_classes=4, width=8)).eval()
    inputs = np.stack([model_input(_page_like(seed), SPEC) for seed in range(40)])
    wrapped, record = fit_distance(model, inputs)
    features = training_features(model, inputs)
    expected = np.sqrt(LedoitWolf().fit(features).mahalanobis(features))
    with torch.no_grad():
        logits, distance = wrapped(torch.from_numpy(inputs))
        np.testing.assert_allclose(logits.numpy(), model(torch.from_numpy(inputs)).numpy(), atol=1e-5)
    np.testing.assert_allclose(distance.numpy(), expected, rtol=1e-3)
    assert record["train_max"] == pytest.approx(expected.max(), rel=1e-4) and record["threshold"] > record["train_max"]
    far = inputs.copy()
    far[:, :12] *= 50  # the same pages at fifty times the amplitude lie far from all of them
    with torch.no_grad():
        assert (wrapped(torch.from_numpy(far))[1].numpy() > record["threshold"]).all()
