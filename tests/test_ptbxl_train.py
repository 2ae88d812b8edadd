"""Dataset III training: fold splits, record caps, cached render crops = runtime crops, a tiny end-to-end run."""

import json

import numpy as np
import pytest
import torch

from edgeecg.errors import EdgeECGError
from edgeecg.preprocess import crop_and_resize
from edgeecg.render import record_seed
from edgeecg.train import ptbxl
from edgeecg.train.checkpoint import load_checkpoint, model_from_checkpoint
from edgeecg.train.cli import config_from_options, dispatch
from edgeecg.train.config import preset_config
from edgeecg.train.ptbxl_split import SPLIT_ENV, STANDARD_SPLIT, SUBSET_SPLIT, cap_records, choose_split, parse_split
from edgeecg.train.ptbxl_train import render_record, render_split


def ptbxl_config(preset, options):
    """`edgeecg train --dataset ptbxl`'s configuration from its raw options."""
    return config_from_options(preset, options, "ptbxl")


def train_ptbxl(preset, options):
    """`edgeecg train --dataset ptbxl`: configuration, then the recipe it names."""
    return dispatch(ptbxl_config(preset, options))


def test_split_from_env_or_from_the_folds_present(monkeypatch, ptbxl_dir):
    table = ptbxl.load_ptbxl(ptbxl_dir)
    monkeypatch.delenv(SPLIT_ENV, raising=False)
    assert choose_split(table) == SUBSET_SPLIT  # the subset has no fold 10
    with_ten = table.assign(strat_fold=table["strat_fold"].replace(9, 10))
    assert choose_split(with_ten) == STANDARD_SPLIT
    monkeypatch.setenv(SPLIT_ENV, "1-3,5/6/7")
    assert choose_split(table) == ((1, 2, 3, 5), (6,), (7,))
    for bad in ("1-8/9", "1-8/x/10", "1-8//10"):
        with pytest.raises(EdgeECGError, match=SPLIT_ENV):
            parse_split(bad)


def test_record_cap_reaches_every_class(ptbxl_dir):
    train = ptbxl.split_records(ptbxl.load_ptbxl(ptbxl_dir)).train
    capped = cap_records(train, per_class=3, seed=0)
    assert set(capped.index) <= set(train.index)
    assert all(capped[c].sum() >= 3 for c in ptbxl.SUPERCLASSES)
    assert len(capped) <= 3 * len(ptbxl.SUPERCLASSES)
    assert capped.index.equals(cap_records(train, per_class=3, seed=0).index)
    assert cap_records(train, per_class=0, seed=0).equals(train)


def test_cached_render_crops_are_the_runtime_crops(tmp_path, monkeypatch, ptbxl_dir):
    monkeypatch.setenv("EDGEECG_CACHE", str(tmp_path / "cache"))
    rows = ptbxl.load_ptbxl(ptbxl_dir).iloc[:2]
    cfg = preset_config("tiny", data=str(ptbxl_dir))
    for photo in ("never", "always"):
        first = render_split(ptbxl_dir, rows, cfg, photo)
        again = render_split(ptbxl_dir, rows, cfg, photo)  # read back from the cache
        for i, (ecg_id, row) in enumerate(first.rows.iterrows()):
            render = render_record(row, ptbxl.read_signal(ptbxl_dir, row), photo == "always",
                                   record_seed(cfg.seed, int(ecg_id)))
            expected, _ = crop_and_resize(render.image, cfg.input_size, cfg.crop, cfg.crop_margin)
            np.testing.assert_array_equal(first.images[i], expected)
        np.testing.assert_array_equal(first.images, again.images)
        assert list(first.rows.index) == list(again.rows.index)
        assert len(first.rows) + len(first.dropped) == len(rows)


def test_bad_options_are_one_line_errors(tmp_path, ptbxl_dir):
    with pytest.raises(EdgeECGError, match="not a PTB-XL folder"):
        train_ptbxl("tiny", {"data": str(tmp_path), "out": str(tmp_path / "run")})
    with pytest.raises(EdgeECGError, match="--data is required"):
        train_ptbxl("tiny", {"out": str(tmp_path / "run")})
    with pytest.raises(EdgeECGError, match="--exclude"):
        train_ptbxl("tiny", {"data": str(ptbxl_dir), "exclude": (str(tmp_path),)})
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "config.json").write_text("{}")
    with pytest.raises(EdgeECGError, match="already holds a run"):
        train_ptbxl("tiny", {"data": str(ptbxl_dir), "out": str(tmp_path / "used")})


def test_plain_bce_unless_class_weights_are_asked_for(tmp_path, ptbxl_dir):
    base = {"data": str(ptbxl_dir), "out": str(tmp_path / "run")}
    assert not ptbxl_config("edge", base).class_weights  # whatever the preset says
    assert ptbxl_config("edge", {**base, "class_weights": True}).class_weights
    cfg = ptbxl_config("edge", {**base, "channels": (64, 32, 32), "epochs": 3})
    assert cfg.channels == (64, 32, 32) and cfg.epochs == 3 and cfg.dataset == "ptbxl"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, ptbxl_dir):
    """The tiny preset on a handful of records per split, as `edgeecg train --dataset ptbxl` runs it."""
    root = tmp_path_factory.mktemp("ptbxl")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEECG_CACHE", str(root / "cache"))
        mp.delenv(SPLIT_ENV, raising=False)
        try:
            out = train_ptbxl("tiny", {"data": str(ptbxl_dir), "out": str(root / "run"), "max_per_class": 2,
                                       "channels": (16, 16, 16), "exclude": ()})
        finally:
            torch.set_num_threads(threads)
    return out


def test_tiny_run_reports_multilabel_and_single_label_metrics(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["task"] == "multilabel" and test["classes"] == list(ptbxl.SUPERCLASSES)
    assert 0.0 <= test["auc_roc_macro"] <= 1.0
    assert set(test["per_class"]) == set(ptbxl.SUPERCLASSES) and all("f1" in v for v in test["per_class"].values())
    assert {"n_samples", "accuracy", "precision_macro", "recall_macro", "f1_macro"} <= set(test["single_label"])
    assert test["n_samples"] == metrics["data"]["splits"]["test"]["records"]
    assert metrics["test_photo"]["task"] == "multilabel"
    assert metrics["calibration"]["temperature"] > 0
    assert json.loads((tiny_run / "config.json").read_text())["dataset"] == "ptbxl"
    for name in ("train.log", "timing.json", "ssl_curve.png", "finetune_curves.png"):
        assert (tiny_run / name).is_file(), name


def test_tiny_run_splits_follow_strat_fold(tiny_run, ptbxl_dir):
    table = ptbxl.load_ptbxl(ptbxl_dir)
    ids = json.loads((tiny_run / "splits.json").read_text())["ecg_ids"]
    for name, folds in zip(("train", "validation", "test"), SUBSET_SPLIT):
        assert ids[name] and set(table.loc[ids[name], "strat_fold"]) <= set(folds), name


def test_tiny_run_final_model_has_a_multilabel_contract(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    model, contract = model_from_checkpoint(load_checkpoint(tiny_run))
    assert contract.task == "multilabel" and contract.classes == list(ptbxl.SUPERCLASSES)
    assert contract.temperature == pytest.approx(metrics["calibration"]["temperature"])
    assert contract.input_size == 64 and contract.crop
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, len(ptbxl.SUPERCLASSES))


def test_a_finished_run_resumes_without_training_again(tiny_run, tmp_path, monkeypatch):
    """What `edgeecg train --resume` needs: run_ptbxl on a saved config continues from its checkpoints."""
    import shutil

    from edgeecg.train.config import TrainConfig
    from edgeecg.train.ptbxl_train import run_ptbxl

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    monkeypatch.setenv("EDGEECG_CACHE", str(tiny_run.parent / "cache"))
    cfg = TrainConfig.load(copy / "config.json")
    cfg.out = str(copy)
    run_ptbxl(cfg)
    log = (copy / "train.log").read_text()
    assert "resuming SSL after epoch 1" in log and "PTB-XL: resuming after epoch 2" in log
    assert log.count("SSL Epoch 1/1") == 1
    before, after = load_checkpoint(tiny_run)["state_dict"], load_checkpoint(copy)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before), "the resumed run must keep the trained weights"
