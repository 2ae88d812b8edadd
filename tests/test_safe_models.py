"""Model files are input from anywhere: checkpoints never run code, metadata is checked field by field,
and only graphs the runtime can feed are opened (issue 15, part 2)."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from edgeecg.backends import open_backend
from edgeecg.contract import CONTRACT_KEY, ModelContract
from edgeecg.errors import EdgeECGError
from helpers_onnx import CLASSES, run_cli, tiny_contract, write_tiny_model

REPO = Path(__file__).resolve().parents[1]
SCAN = REPO / "examples" / "normal_normal_0120.jpg"


# --- checkpoints ------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this would create the marker file: the stand-in for an attacker's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "raw pickle"])
def test_malicious_checkpoint_runs_nothing(tmp_path, writer):
    torch = pytest.importorskip("torch")
    from edgeecg.train.checkpoint import load_checkpoint

    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    state = {"model_config": {}, "state_dict": {}, "contract": _Payload(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    with pytest.raises(EdgeECGError, match="could run code") as info:
        load_checkpoint(path)
    assert not marker.exists() and "\n" not in str(info.value)


def test_malicious_checkpoint_is_refused_by_the_commands(tmp_path, monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    marker, run = tmp_path / "pwned", tmp_path / "run"
    run.mkdir()
    torch.save({"contract": _Payload(marker)}, run / "final_model.pt")
    code, out, err = run_cli(monkeypatch, capsys, "export", run, "--out", tmp_path / "export")
    assert code == 2 and "could run code" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "export").exists()


def test_saved_checkpoints_load_without_unpickling_code(tmp_path):
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    from edgeecg.train.checkpoint import load_checkpoint, save_checkpoint

    layer = torch.nn.BatchNorm1d(2)
    state = {"state_dict": layer.state_dict(), "history": [{"loss": np.float64(0.5), "epoch": np.int64(1)}],
             "where": tmp_path, "counts": np.arange(3), "contract": tiny_contract().__dict__}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)  # what load_checkpoint does
    assert loaded["history"] == [{"loss": 0.5, "epoch": 1}] and loaded["where"] == str(tmp_path)
    assert loaded["counts"].tolist() == [0, 1, 2]
    layer.load_state_dict(load_checkpoint(tmp_path / "c.pt")["state_dict"])


def test_no_source_unpickles_python_objects():
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("edgeecg", "train", "export", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "weights_only=False" in line or "pickle.load" in line
    ]
    assert offenders == []


# --- the metadata contract --------------------------------------------------------------------------


def _contract_json(**fields) -> str:
    data = json.loads(tiny_contract().to_json())
    data.update(fields)
    return json.dumps(data)


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"classes": 4}, "classes must be a list"),
        ({"classes": {"a": 1}}, "classes must be a list"),
        ({"classes": ["a", "a"]}, "distinct"),
        ({"classes": ["a", " "]}, "non-empty"),
        ({"classes": ["normal", "error: forged\nline"]}, "one line"),
        ({"classes": [1, 2]}, "one line"),
        ({"mean": 0.5}, "mean must be a list of 3"),
        ({"std": [0.2, 0.2]}, "std must be a list of 3"),
        ({"std": [0.2, 0.0, 0.2]}, "std must be in (0"),
        ({"mean": [0.1, "x", 0.2]}, "mean must be a finite number"),
        ({"input_size": 0}, "input_size must be an integer from 32"),
        ({"input_size": -64}, "input_size must be an integer from 32"),
        ({"input_size": "224"}, "input_size must be an integer"),
        ({"input_size": 10**9}, "input_size must be an integer"),
        ({"input_size": True}, "input_size must be an integer"),
        ({"input_size": 4096}, "input_size must be from 32 to 2048"),
        ({"temperature": 0}, "temperature must be in (0"),
        ({"temperature": -1.5}, "temperature must be in (0"),
        ({"temperature": "2"}, "temperature must be a finite number"),
        ({"task": "regression"}, "task must be one of"),
        ({"crop": "yes"}, "crop must be true or false"),
        ({"crop_margin": 3}, "crop_margin must be in"),
        ({"name": "x\r\ny"}, "name must be one line"),
        ({"extra": [1]}, "extra must be a JSON object"),
        ({"contract_version": 99}, "contract_version must be an integer from 1 to 1"),
    ],
)
def test_bad_metadata_fields_are_refused_in_one_line(fields, words):
    with pytest.raises(EdgeECGError) as info:
        ModelContract.from_json(_contract_json(**fields), "m.onnx")
    message = str(info.value)
    assert message.startswith("m.onnx: ") and words in message and "\n" not in message


def test_nan_infinity_and_deep_nesting_are_refused():
    for text in (_contract_json().replace('"temperature": 1.0', '"temperature": NaN'),
                 _contract_json().replace('"temperature": 1.0', '"temperature": Infinity'),
                 '{"classes": ["a"], "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        with pytest.raises(EdgeECGError):
            ModelContract.from_json(text)


def test_signal_models_may_be_longer_than_images():
    contract = ModelContract.from_json(_contract_json(input_size=5000, extra={"modality": "signal"}))
    assert contract.input_size == 5000


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_fields = st.sampled_from(sorted(ModelContract.__dataclass_fields__) + ["unknown"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.booleans(), changes=st.dictionaries(_fields, _json_values, max_size=4))
def test_metadata_parser_returns_a_valid_contract_or_one_line_error(base, changes):
    data = json.loads(tiny_contract().to_json()) if base else {}
    data.update(changes)
    try:
        contract = ModelContract.from_json(json.dumps(data))
    except EdgeECGError as exc:
        assert "\n" not in str(exc)
        return
    assert all(isinstance(c, str) and c.isprintable() and c.strip() for c in contract.classes)
    assert len(set(contract.classes)) == len(contract.classes)
    assert isinstance(contract.input_size, int) and 32 <= contract.input_size <= 2048
    assert math.isfinite(contract.temperature) and contract.temperature > 0
    assert len(contract.mean) == len(contract.std) == 3 and min(contract.std) > 0
    assert contract.task in ("multiclass", "multilabel")


# --- graphs the runtime can feed --------------------------------------------------------------------


def _odd_model(path: Path, inputs: list, nodes: list) -> Path:
    graph = helper.make_graph(nodes, "odd", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {CONTRACT_KEY: tiny_contract().to_json()})
    onnx.save(model, str(path))
    return path


def _image(name: str, kind: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, kind, ["N", 3, 64, 64])


ODD_MODELS = {
    "fp16 input": ([_image("input", TensorProto.FLOAT16)],
                   [helper.make_node("Cast", ["input"], ["logits"], to=TensorProto.FLOAT)], "tensor(float16)"),
    "uint8 input": ([_image("input", TensorProto.UINT8)],
                    [helper.make_node("Cast", ["input"], ["logits"], to=TensorProto.FLOAT)], "tensor(uint8)"),
    "two inputs": ([_image("a", TensorProto.FLOAT), _image("b", TensorProto.FLOAT)],
                   [helper.make_node("Add", ["a", "b"], ["logits"])], "2 inputs"),
}


@pytest.mark.parametrize("kind", list(ODD_MODELS))
def test_graphs_the_runtime_cannot_feed_are_refused_in_one_line(tmp_path, monkeypatch, capsys, kind):
    inputs, nodes, words = ODD_MODELS[kind]
    path = _odd_model(tmp_path / "odd.onnx", inputs, nodes)
    with pytest.raises(EdgeECGError) as info:
        open_backend(path)
    assert words in str(info.value)
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--model", path, SCAN)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("fields", [{"temperature": 0}, {"classes": ["normal", "x\nerror: forged"]}])
def test_models_with_bad_metadata_never_print_nan_or_forged_lines(tmp_path, monkeypatch, capsys, fields):
    path = write_tiny_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    helper.set_model_props(model, {CONTRACT_KEY: _contract_json(**fields)})
    onnx.save(model, str(path))
    code, out, err = run_cli(monkeypatch, capsys, "infer", "--json", "--no-crop", "--model", path, SCAN)
    assert code == 2 and out == "" and err.count("\n") == 1 and "NaN" not in err


def test_good_contracts_still_round_trip():
    contract = tiny_contract(classes=list(CLASSES), temperature=1.9, crop_margin=0.02, extra={"a": [1, {"b": 2}]})
    assert ModelContract.from_json(contract.to_json()) == contract
