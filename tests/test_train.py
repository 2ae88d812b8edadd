"""Training pipeline on real scans: duplicate groups, leak-free folds, resume, a tiny end-to-end run."""

import json
import shutil

import cv2
import numpy as np
import pytest

from edgeecg.contract import IMAGENET_MEAN, IMAGENET_STD, ModelContract
from edgeecg.datasets import LabelledImage
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
from edgeecg.preprocess import normalize, preprocess
from edgeecg.train import finetune
from edgeecg.train.checkpoint import load_checkpoint, model_from_checkpoint
from edgeecg.train.cli import resume
from edgeecg.train.config import preset_config
from edgeecg.train.data import check_group_split, group_kfold, load_crops, load_table
from edgeecg.train.run import limit_groups, train
from local_data import local_scans


def _write_listing(tmp_path, files):
    rows = ["file,label"] + [f"{f},{f.parent.name}" for f in files]
    path = tmp_path / "listing.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_exact_and_near_duplicates_share_a_group(tmp_path):
    scans = [path for path, label in local_scans() if label == "myocardial_infarction"]
    normal = next(path for path, label in local_scans() if label == "normal")
    (tmp_path / "myocardial_infarction").mkdir()
    copy, reencoded = (tmp_path / "myocardial_infarction" / name for name in ("copy.jpg", "q80.jpg"))
    shutil.copyfile(scans[0], copy)
    cv2.imwrite(str(reencoded), cv2.resize(cv2.imread(str(scans[1])), (1000, 711)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    table = load_table(_write_listing(tmp_path, [scans[0], copy, scans[1], normal, reencoded]))
    g = table.groups
    assert g[0] == g[1], "byte-identical copies must share a group"
    assert g[2] == g[4], "a re-encoded, rescaled copy must share a group"
    assert len({g[0], g[2], g[3]}) == 3, "different recordings must not be grouped"


def test_shared_scans_repeat_as_the_dataset_readme_says(tmp_path, shared_mendeley_dir):
    mi = shared_mendeley_dir / "myocardial_infarction"
    # the dataset README: MI(n) is identical to MI(n+30)
    table = load_table(_write_listing(tmp_path, [mi / "mi_0001.jpg", mi / "mi_0031.jpg", mi / "mi_0002.jpg"]))
    assert table.groups[0] == table.groups[1] != table.groups[2]


def test_group_folds_never_leak_and_leaks_are_refused(mendeley_dir):
    table = limit_groups(load_table(mendeley_dir), per_class=8, seed=0)
    assert table.n_groups < len(table)  # each class holds a scan with two copies (tests/local_data.py)
    for train_idx, val_idx in group_kfold(table, folds=3, seed=1):
        assert not set(table.groups[train_idx]) & set(table.groups[val_idx])
    leaky_val = np.array([0])
    leaky_train = np.array([i for i in range(len(table)) if table.groups[i] == table.groups[0] and i != 0])
    assert len(leaky_train) > 0 or table.groups.tolist().count(table.groups[0]) == 1
    if len(leaky_train):
        with pytest.raises(EdgeECGError, match="span train and validation"):
            check_group_split(table.groups, leaky_train, leaky_val)


def test_training_crops_match_the_runtime_tensor(tmp_path, monkeypatch, mendeley_dir):
    monkeypatch.setenv("EDGEECG_CACHE", str(tmp_path / "cache"))
    path = sorted((mendeley_dir / "normal").glob("*.jpg"))[2]
    table = load_table(_write_listing(tmp_path, [path]))
    contract = ModelContract(classes=["normal"], input_size=96)
    for _ in range(2):  # computed, then read back from the cache
        crops = load_crops(table, contract)
        ours = normalize(crops, IMAGENET_MEAN, IMAGENET_STD)[0]
        runtime, _ = preprocess(read_image(path), contract)
        assert np.abs(ours - runtime[0]).max() < 1e-5


@pytest.fixture(scope="module")
def interrupted_then_resumed_run(tmp_path_factory, mendeley_dir):
    """A tiny run killed right after fold 1's first epoch is saved, then resumed to the end."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = preset_config("tiny", data=str(mendeley_dir), out=str(out), max_per_class=4)
    real_save = finetune.save_checkpoint

    def save_then_crash(path, state):
        real_save(path, state)
        if path.name == "fold1_last.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt

    finetune.save_checkpoint = save_then_crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    finally:
        finetune.save_checkpoint = real_save
    saved = load_checkpoint(out / "checkpoints" / "fold1_last.pt")
    assert saved["epoch"] == 1 and not (out / "metrics.json").exists()
    resume(out)
    return out, saved


def test_resume_continues_from_the_saved_epoch(interrupted_then_resumed_run):
    out, saved = interrupted_then_resumed_run
    log = (out / "train.log").read_text()
    assert "Fold 1: resuming after epoch 1" in log
    fold1 = json.loads((out / "folds" / "fold1.json").read_text())
    assert [h["epoch"] for h in fold1["history"]] == [1, 2]
    assert fold1["history"][0]["train_loss"] == pytest.approx(saved["history"][0]["train_loss"])
    assert log.count("SSL Epoch 1/1") == 1, "finished SSL must not run again"


def test_tiny_run_writes_every_report(interrupted_then_resumed_run):
    out, _ = interrupted_then_resumed_run
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["mean_std"]
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
                "recall_weighted", "f1_weighted", "auc_roc_macro", "auc_roc_weighted", "auprc_macro",
                "auprc_weighted", "ece", "brier"):
        assert set(summary[key]) == {"mean", "std"}, key
    assert set(summary["confusion_matrix_normalized"]) == {"mean", "std"}
    assert 0 <= metrics["ssl_history"][0]["embedding_spread"] < 2  # the collapse diagnostic is recorded
    assert len(metrics["folds"]) == 2 and all("per_class" in f["metrics"] for f in metrics["folds"])
    timing = json.loads((out / "timing.json").read_text())
    for key in ("fold_training_time_seconds", "average_epoch_time_seconds", "total_cv_time_seconds",
                "evaluation_time_seconds", "summary"):
        assert key in timing
    assert {"ssl_time_seconds", "cv_time_seconds", "total_time_seconds",
            "average_time_per_fold_seconds"} <= set(timing["summary"])
    assert timing["device"] == "cpu" and timing["device_name"]  # which processor the seconds were measured on
    assert metrics["calibration"]["temperature"] > 0
    for png in ("confusion_matrix.png", "fold1_curves.png", "ssl_curve.png", "final_curves.png"):
        assert cv2.imread(str(out / png)) is not None, png
    model, contract = model_from_checkpoint(load_checkpoint(out))
    assert contract.classes == metrics["data"]["classes"] and contract.input_size == 64
    assert contract.temperature == pytest.approx(metrics["calibration"]["temperature"])


def test_listing_with_unknown_path_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeECGError, match="do not exist"):
        load_table(_write_listing(tmp_path, [tmp_path / "normal" / "nope.jpg"]))


def test_labelled_image_is_hashable():
    assert len({LabelledImage(path=__import__("pathlib").Path("a"), label="x")}) == 1


def test_init_from_starts_an_image_model_from_another_run_but_its_classifier(tmp_path):
    """`--init-from` for the image branch: a PTB-XL run (5 classes) can start a Mendeley one (4); a network of
    another shape is refused in one line."""
    import torch

    from edgeecg.train.checkpoint import save_checkpoint
    from edgeecg.train.modality import ImageModality, model_config
    from edgeecg.train.model import build_model

    source_cfg = preset_config("tiny", trunk="resnet18")
    source = build_model(model_config(source_cfg, 5))
    save_checkpoint(tmp_path / "ptbxl.pt", {"state_dict": source.state_dict()})
    started = ImageModality(preset_config("tiny", trunk="resnet18", init_from=str(tmp_path / "ptbxl.pt"))).fresh_model(4)
    fresh = build_model(model_config(source_cfg, 4))
    for name, value in started.state_dict().items():
        if name.startswith("classifier."):
            assert value.shape == fresh.state_dict()[name].shape
        else:
            assert torch.equal(value, source.state_dict()[name]), name

    other = preset_config("tiny", trunk="resnet18", channels=(64, 32, 32), init_from=str(tmp_path / "ptbxl.pt"))
    with pytest.raises(EdgeECGError, match="does not fit this model"):
        ImageModality(other).fresh_model(4)
