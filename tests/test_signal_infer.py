"""`edgeecg infer` with the shipped signal model (the default): digitize, classify, abstain."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import onnx
import pytest

from edgeecg.backends import OnnxRuntimeBackend
from edgeecg.errors import EdgeECGError
from edgeecg.infer import classify_path
from edgeecg.registry import DEFAULT_MODEL, resolve_model
from edgeecg.signal_runtime import SignalModel, open_model
from helpers_onnx import run_cli

REPO = Path(__file__).resolve().parents[1]
SCAN = REPO / "examples" / "normal_normal_0120.jpg"


def test_the_default_model_reads_the_leads(monkeypatch, capsys):
    assert DEFAULT_MODEL == "signal"
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--json", SCAN)
    assert code == 0, err
    result = json.loads(out)
    assert result["model"]["file"] == "signal.onnx"
    assert result["label"] in result["probs"] and set(result["branches"]["signal"]) == set(result["probs"])
    assert result["page"]["layout"] == "3x4+1" and len(result["page"]["leads_found"]) == 12
    assert {"top", "min", "target_risk", "confident"} <= set(result["confidence"])
    assert set(result["ms"]) == {"decode", "gate", "model", "total"}
    assert result["ood"]["typical"] and 0 < result["ood"]["distance"] < result["ood"]["threshold"]  # a shipped scan


@pytest.mark.parametrize("model", ["signal", "default"])
def test_a_scan_upside_down_gets_the_upright_scans_answer(monkeypatch, capsys, tmp_path, model):
    """Turned 180 degrees, a scan was read as it lay (leads reversed in time and sign) and diagnosed; the image
    model (`default`) now sees the region the reader turned upright."""
    turned = tmp_path / "upside_down.png"
    cv2.imwrite(str(turned), cv2.rotate(cv2.imread(str(SCAN)), cv2.ROTATE_180))
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", model, "--json", SCAN, turned)
    assert code == 0, err
    upright, upside_down = (json.loads(line) for line in out.splitlines())
    assert upside_down["page"]["turned_deg"] == 180 and upright["page"]["turned_deg"] == 0
    assert upside_down["label"] == upright["label"]
    assert all(abs(upside_down["probs"][c] - p) < 1e-3 for c, p in upright["probs"].items())  # resampled: ~2e-4


def test_the_image_model_sees_a_turned_page_upright_without_an_outline_box(shared_ludb_dir):
    """Without a printed box (an LUDB printout) the image model's crop was sought again on the page as it lay."""
    from edgeecg.infer import classify_image

    page = cv2.imread(str(shared_ludb_dir / "images" / "057.jpg"))
    image_model = open_model(resolve_model("default"))
    upright, upside_down = (classify_image(p, image_model) for p in (page, cv2.rotate(page, cv2.ROTATE_180)))
    assert upside_down["page"]["turned_deg"] == 180
    assert all(abs(upside_down["probs"][c] - p) < 1e-3 for c, p in upright["probs"].items())


def test_models_are_opened_by_what_their_contract_says():
    assert isinstance(open_model(resolve_model("signal")), SignalModel)
    assert isinstance(open_model(resolve_model("default")), OnnxRuntimeBackend)
    with pytest.raises(EdgeECGError, match="ONNX Runtime only"):
        open_model(resolve_model("signal"), backend="tensorrt")


def _with_threshold(tmp_path: Path, threshold: float) -> Path:
    model = onnx.load(str(resolve_model("signal")))
    entry = next(p for p in model.metadata_props if p.key == "edgeecg")
    contract = json.loads(entry.value)
    contract["extra"]["selective"]["min_confidence"] = threshold
    entry.value = json.dumps(contract)
    path = tmp_path / "strict.onnx"
    onnx.save(model, str(path))
    return path


def test_answers_below_the_abstain_threshold_are_marked_and_refused_with_abstain(tmp_path):
    strict = SignalModel(_with_threshold(tmp_path, 0.999999))
    marked = classify_path(SCAN, strict)
    assert marked["confidence"]["confident"] is False and "label" in marked
    refused = classify_path(SCAN, strict, abstain=True)
    assert refused["refused"].startswith("not confident enough") and "label" not in refused
    lenient = SignalModel(_with_threshold(tmp_path, 0.0))
    assert classify_path(SCAN, lenient, abstain=True)["confidence"]["confident"] is True


def test_a_page_unlike_the_training_pages_is_flagged_and_refused_with_abstain(monkeypatch, capsys, tmp_path):
    model = onnx.load(str(resolve_model("signal")))
    entry = next(p for p in model.metadata_props if p.key == "edgeecg")
    contract = json.loads(entry.value)
    contract["extra"]["ood"]["threshold"] = 1e-3  # every real page lies farther than this from the training pages
    entry.value = json.dumps(contract)
    strict = tmp_path / "strict.onnx"
    onnx.save(model, str(strict))
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", strict, SCAN)
    assert code == 0 and "unlike the training pages: distance" in out, err
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", strict, "--abstain", SCAN)
    assert code == 1 and "refused: unlike the pages this model was trained on" in out


@pytest.mark.parametrize("record, message", [
    (5, "finite positive threshold"),
    ({"output": "feature_distance", "threshold": "47"}, "finite positive threshold"),
    ({"output": "feature_distance", "threshold": -1.0}, "finite positive threshold"),
    ({"output": "logits", "threshold": 47.0}, "that the graph lacks"),
])
def test_a_malformed_out_of_distribution_record_is_one_clear_error(tmp_path, record, message):
    model = onnx.load(str(resolve_model("signal")))
    entry = next(p for p in model.metadata_props if p.key == "edgeecg")
    contract = json.loads(entry.value)
    contract["extra"]["ood"] = record
    entry.value = json.dumps(contract)
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(EdgeECGError, match=message):
        SignalModel(path)
