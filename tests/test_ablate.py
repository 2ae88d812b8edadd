"""Ablation variants: mapping to TrainConfig, a test-sized comparison table on real scans, reuse and refusal."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeecg.cli import cli
from edgeecg.errors import EdgeECGError
from edgeecg.train import ablate
from edgeecg.train.ablate import VARIANTS, effective_settings, run_ablation, run_over_seeds, variant_config
from edgeecg.train.config import parse_unfreeze, preset_config
from edgeecg.train.finetune import trainable_parts
from edgeecg.train.model import MODEL_PARTS


def test_variants_change_only_their_fields(tmp_path):
    base = preset_config("paper", data="d")
    expected = {
        "full": {},
        "cnn_resnet_no_ssl": {"ssl": False},
        "simclr_resnet": {"attention": False, "unfreeze": ""},
        "resnet_baseline": {"ssl": False, "attention": False, "unfreeze": ""},
        "no_attention": {"attention": False},
        "ssl_linear_probe": {"attention": False, "unfreeze": "attention:101,fusion:101"},
        "reduced_lr": {"ssl_lr_backbone": 1e-4, "ssl_lr_head": 3e-4},
        "no_domain_aug": {"domain_aug": False},
        "with_domain_aug": {},  # the paper recipe has them already
        "with_ssl": {},
    }
    assert set(expected) == set(VARIANTS)
    for name, changes in expected.items():
        cfg = variant_config(base, name, tmp_path)
        assert cfg.out == str(tmp_path / name)
        differs = {k: v for k, v in vars(cfg).items() if k != "out" and v != getattr(base, k)}
        assert differs == changes, name


def test_linear_probe_trains_only_the_classifier_every_epoch(tmp_path):
    for base in (preset_config("paper", data="d"), preset_config("tiny", data="d", final_epochs=7)):
        schedule = parse_unfreeze(variant_config(base, "ssl_linear_probe", tmp_path).unfreeze)
        for epoch in range(1, max(base.epochs, base.final_epochs) + 1):
            assert trainable_parts(epoch, schedule) == {"classifier"}, epoch
    # the other variants keep the paper's schedule, or train everything from epoch 1
    assert trainable_parts(1, parse_unfreeze(preset_config("paper").unfreeze)) == {"attention", "fusion", "classifier"}
    assert trainable_parts(1, parse_unfreeze("")) == set(MODEL_PARTS)


def _trained_alike(preset: str, tmp_path) -> list[set[str]]:
    base = preset_config(preset, data="d")
    groups: dict[str, set[str]] = {}
    for name in VARIANTS:
        groups.setdefault(effective_settings(variant_config(base, name, tmp_path)), set()).add(name)
    return sorted(groups.values(), key=sorted)


def test_variants_that_change_nothing_on_the_preset_share_one_run(tmp_path):
    paper = _trained_alike("paper", tmp_path)
    assert {"full", "with_domain_aug", "with_ssl"} in paper and all(len(g) == 1 for g in paper if "full" not in g)
    # edge: no SSL (so SSL learning rates do nothing), no domain augmentation, no unfreeze schedule
    assert _trained_alike("edge", tmp_path) == [
        {"full", "cnn_resnet_no_ssl", "reduced_lr", "no_domain_aug"}, {"no_attention", "resnet_baseline"},
        {"simclr_resnet"}, {"ssl_linear_probe"}, {"with_domain_aug"}, {"with_ssl"}]


def _fake_training(monkeypatch) -> list:
    """Replace training by a recorder that writes what summarize() reads (accuracy = seed / 100)."""
    trained = []

    def fake_train(cfg):
        trained.append(Path(cfg.out).name)
        Path(cfg.out).mkdir(parents=True)
        (Path(cfg.out) / "splits.json").write_text("[]")
        stat = {"mean": cfg.seed / 100, "std": 0.0}
        (Path(cfg.out) / "metrics.json").write_text(json.dumps({
            "mean_std": {k: stat for k in ("accuracy", "f1_macro", "auc_roc_macro", "ece")},
            "timing": {"ssl_time_seconds": 0, "fold_training_time_seconds": [1], "final_model_training_seconds": 1},
            "data": {"images": 9}, "folds": [{}]}))
        return Path(cfg.out)

    monkeypatch.setattr(ablate, "train_variant", fake_train)
    return trained


def test_ablation_trains_each_distinct_variant_once(tmp_path, monkeypatch):
    trained = _fake_training(monkeypatch)
    report = run_ablation(preset_config("edge", data="d"), ["full", "no_domain_aug", "no_attention", "resnet_baseline"],
                          tmp_path, "edge", announce=lambda m: None)
    assert trained == ["full", "no_attention"]
    rows = {r["name"]: r for r in report["variants"]}
    assert rows["no_domain_aug"]["same_run_as"] == "full" and rows["no_domain_aug"]["run"] == str(tmp_path / "full")
    assert rows["resnet_baseline"]["same_run_as"] == "no_attention" and rows["full"]["same_run_as"] is None
    assert "(same run as `full`)" in (tmp_path / "ablation.md").read_text()


def test_seeds_repeat_the_ablation_and_tabulate_the_spread(tmp_path, monkeypatch):
    trained = _fake_training(monkeypatch)
    report = run_over_seeds(preset_config("edge", data="d"), ["full", "no_domain_aug", "simclr_resnet"], tmp_path,
                            [40, 50], "edge", announce=lambda m: None)
    assert trained == ["full", "simclr_resnet"] * 2
    assert (tmp_path / "seed40" / "full" / "metrics.json").is_file()
    assert json.loads((tmp_path / "seed50" / "ablation.json").read_text())["seed"] == 50
    full = report["variants"][0]
    assert full["accuracy"]["per_seed"] == [0.4, 0.5]
    assert full["accuracy"]["mean"] == pytest.approx(0.45) and full["accuracy"]["std"] == pytest.approx(0.05)
    table = (tmp_path / "ablation.md").read_text()
    assert "seeds 40, 50" in table and "| 0.400, 0.500 |" in table
    assert json.loads((tmp_path / "ablation.json").read_text())["seeds"] == [40, 50]


@pytest.mark.parametrize("seeds", ["1,x", "3,3", ","])
def test_bad_seed_lists_are_usage_errors(seeds):
    result = CliRunner().invoke(cli, ["ablate", "--data", "x", "--seeds", seeds])
    assert result.exit_code == 2 and "--seeds" in result.output


def test_unknown_variant_is_refused():
    result = CliRunner().invoke(cli, ["ablate", "--data", "x", "--variants", "full,nope"], standalone_mode=False)
    assert isinstance(result.exception, EdgeECGError) and "nope" in str(result.exception)


def _listing(tmp_path, mendeley_dir, per_class: int):
    rows = ["file,label"]
    for folder in sorted(p for p in mendeley_dir.iterdir() if p.is_dir()):
        rows += [f"{f},{folder.name}" for f in sorted(folder.glob("*.jpg"))[:per_class]]
    path = tmp_path / "listing.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _ablate(tmp_path, mendeley_dir, names, **overrides):
    base = preset_config("tiny", data=str(_listing(tmp_path, mendeley_dir, 3)), max_per_class=2, **overrides)
    return run_ablation(base, names, tmp_path / "ablation", "tiny", announce=lambda m: None)


@pytest.fixture(scope="module")
def two_variant_ablation(tmp_path_factory, mendeley_dir):
    tmp = tmp_path_factory.mktemp("ablate")
    return tmp, _ablate(tmp, mendeley_dir, ["resnet_baseline", "ssl_linear_probe"])


def test_two_variant_table_compares_runs_on_the_same_folds(two_variant_ablation):
    tmp, report = two_variant_ablation
    out = tmp / "ablation"
    assert json.loads((out / "ablation.json").read_text()) == json.loads(json.dumps(report))
    assert [r["name"] for r in report["variants"]] == ["resnet_baseline", "ssl_linear_probe"]
    assert report["same_folds"]
    splits = {(out / name / "splits.json").read_text() for name in ("resnet_baseline", "ssl_linear_probe")}
    assert len(splits) == 1
    for row in report["variants"]:
        metrics = json.loads((out / row["name"] / "metrics.json").read_text())["mean_std"]
        for key in ("accuracy", "f1_macro", "auc_roc_macro", "ece"):
            assert row[key] == metrics[key]
        assert row["training_seconds"] > 0
    table = (out / "ablation.md").read_text()
    assert table.count("\n| `") == 2 and "Table 8 (ResNet baseline)" in table and "Table 10 (SSL only)" in table


def test_variants_train_what_they_claim(two_variant_ablation):
    tmp, _ = two_variant_ablation
    out = tmp / "ablation"
    baseline = json.loads((out / "resnet_baseline" / "folds" / "fold1.json").read_text())
    assert not (out / "resnet_baseline" / "checkpoints" / "ssl_last.pt").exists()
    assert all(set(h["trainable"]) == set(MODEL_PARTS) for h in baseline["history"])
    probe = json.loads((out / "ssl_linear_probe" / "folds" / "fold1.json").read_text())
    assert (out / "ssl_linear_probe" / "checkpoints" / "ssl_last.pt").is_file()
    assert all(h["trainable"] == ["classifier"] for h in probe["history"])


def test_rerun_reuses_finished_variants_and_refuses_other_settings(two_variant_ablation, mendeley_dir):
    tmp, report = two_variant_ablation
    metrics = tmp / "ablation" / "resnet_baseline" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    again = _ablate(tmp, mendeley_dir, ["resnet_baseline"])
    assert metrics.stat().st_mtime_ns == before
    assert again["variants"][0]["accuracy"] == report["variants"][0]["accuracy"]
    _ablate(tmp, mendeley_dir, ["resnet_baseline"], workers=1, device="cpu")  # machinery: reused, not refused
    assert metrics.stat().st_mtime_ns == before
    with pytest.raises(EdgeECGError, match="other settings .*seed"):
        _ablate(tmp, mendeley_dir, ["resnet_baseline"], seed=7)


@pytest.mark.slow
def test_every_variant_runs_on_the_tiny_preset(tmp_path, mendeley_dir):
    report = _ablate(tmp_path, mendeley_dir, list(VARIANTS))
    assert [r["name"] for r in report["variants"]] == list(VARIANTS)
    table = (tmp_path / "ablation" / "ablation.md").read_text()
    assert table.count("\n| `") == len(VARIANTS)
