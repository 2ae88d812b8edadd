"""DDP on 2 CPU gloo processes: gathered SimCLR loss = single-process loss, identical ranks, rank 1 writes nothing.

One spawn of two ranks does all the work (process start-up dominates); the tests check its results.
"""

import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from edgeecg.train import distributed
from edgeecg.train.cli import resume
from edgeecg.train.config import TrainConfig, parse_unfreeze
from edgeecg.train.finetune import fit
from edgeecg.train.losses import hybrid_loss
from edgeecg.train.model import ModelConfig, build_model
from edgeecg.train.run import train
from edgeecg.train.ssl import pretrain

WORLD = 2
TINY = ModelConfig(num_classes=2, trunk="mobilenet_v3_small", channels=(16, 16, 16), heads=2, fusion_dim=16,
                   projection_dim=8)
LOSS_ARGS = dict(temperature=0.1, cosine_weight=0.1, cosine_over="positives", triplet_margin=0.1)


class _Quiet:
    """Stands in for the rich Progress and the run log."""

    def add_task(self, *a, **k):
        return 0

    def advance(self, *a, **k):
        pass

    def remove_task(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        pass


def _global_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g), torch.randn(4, 6, generator=g)


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """Blocky random images: distinct, and with ink for the duplicate finder."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 2, (n, 8, 8, 3), dtype=np.uint8) * 255
    return np.stack([cv2.resize(b, (size, size), interpolation=cv2.INTER_NEAREST) for b in blocks])


def _record_writes_under(folder: str, writes: list) -> None:
    """Audit hook: every open-for-writing, mkdir, rename or delete of a path under `folder`."""
    folder = os.path.realpath(folder)

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            paths = [args[0]] if writing else []
        elif event == "os.mkdir":  # mkdir(exist_ok=True) of a folder that exists creates nothing
            paths = [args[0]] if not os.path.isdir(args[0]) else []
        elif event in ("os.rename", "os.remove", "os.rmdir", "shutil.rmtree"):
            paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        else:
            return
        for path in paths:
            path = os.path.realpath(os.fsdecode(path))
            if path.startswith(folder):
                writes.append((event, path))

    sys.addaudithook(hook)


def _run_config(tmp) -> TrainConfig:
    return TrainConfig(data=str(tmp / "data"), out=str(tmp / "run"), trunk="mobilenet_v3_small", pretrained=False,
                       channels=(16, 16, 16), heads=2, fusion_dim=16, projection_dim=8, input_size=32, crop=False,
                       ssl_epochs=1, ssl_tmax=1, ssl_batch=4, epochs=2, batch=4, patience=5, folds=2,
                       unfreeze="conv_block3:2", device="cpu", seed=3)


def _worker(rank, port, tmp, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD), EDGEECG_CACHE=str(tmp / "cache"))
    torch.set_num_threads(1)
    distributed.init_from_env()
    writes = []
    _record_writes_under(tmp, writes)
    try:
        out = {"rank": rank}
        # (b) gathered hybrid loss and its gradient, from rank-local embeddings
        torch.manual_seed(1)
        encoder = torch.nn.Linear(6, 4)
        net = distributed.wrap(encoder, torch.device("cpu"))
        x0, x1, _ = _global_batch()
        share = slice(rank * 4, rank * 4 + 4)
        z0 = distributed.gather_with_grad(net(x0[share]))
        z1 = distributed.gather_with_grad(net(x1[share]))
        loss = hybrid_loss(z0, z1, **LOSS_ARGS)
        loss.backward()
        out["loss"] = loss.item()
        out["grad"] = encoder.weight.grad.numpy().copy()

        # (a) SSL, then fine-tuning with conv_block3 unfrozen in epoch 2
        cfg = _run_config(tmp)
        torch.manual_seed(rank)  # a different init per rank: DDP must start every rank from rank 0's
        model = build_model(TINY)
        images, labels = _images(8, 32, seed=5), np.array([0, 1] * 4)
        pretrain(model, images, cfg, torch.device("cpu"), tmp / "steps" / "ssl_last.pt", _Quiet(), _Quiet())
        out["after_ssl"] = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        fitted = fit(model, images, labels, cfg, parse_unfreeze(cfg.unfreeze), torch.device("cpu"),
                     tmp / "steps" / "fit_last.pt", _Quiet(), _Quiet(), "Fit")
        out["state"] = {k: v.numpy().copy() for k, v in fitted.model.state_dict().items()}
        out["history"] = fitted.history

        # (c) the whole recipe, then a resume that redoes fold 2's report and the final model
        train(cfg)
        distributed.barrier()
        if rank == 0:
            for name in ("folds/fold2.json", "metrics.json", "final_model.pt", "checkpoints/final_last.pt"):
                (tmp / "run" / name).unlink()
        distributed.barrier()
        resume(tmp / "run")
        out["writes"] = writes
        results.put(out)
    finally:
        distributed.shutdown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    from edgeecg.train.ddp import free_port

    _synthetic_dataset(tmp / "data")
    results = mp.get_context("spawn").SimpleQueue()
    workers = mp.spawn(_worker, args=(free_port(), tmp, results), nprocs=WORLD, join=False)
    outs = []
    while not workers.join(timeout=0.2):  # drain while waiting: a full pipe would block the workers
        while not results.empty():
            outs.append(results.get())
    while not results.empty():
        outs.append(results.get())
    return tmp, sorted(outs, key=lambda o: o["rank"])


def test_gathered_loss_and_gradient_equal_the_single_process_global_batch(two_ranks):
    _, outs = two_ranks
    torch.manual_seed(1)
    encoder = torch.nn.Linear(6, 4)
    x0, x1, _ = _global_batch()
    loss = hybrid_loss(encoder(x0), encoder(x1), **LOSS_ARGS)
    loss.backward()
    for out in outs:
        assert out["loss"] == pytest.approx(loss.item(), abs=1e-5)
        # DDP averages the ranks' gradients: the result is the global-batch gradient on every rank
        np.testing.assert_allclose(out["grad"], encoder.weight.grad.numpy(), atol=1e-5, rtol=1e-4)


def test_ranks_end_with_identical_weights(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["state"].keys() == r1["state"].keys()
    for name, value in r0["state"].items():
        assert np.array_equal(value, r1["state"][name]), name
    assert [h["train_loss"] for h in r0["history"]] == [h["train_loss"] for h in r1["history"]]


def test_frozen_parts_stay_untouched_and_unfrozen_ones_train(two_ranks):
    """Frozen parts get no gradient (not even a zero one that weight decay would act on); unfrozen ones sync."""
    _, (r0, _) = two_ranks
    for name, value in r0["state"].items():
        if name.startswith(("trunk.", "conv_block1.", "conv_block2.")):
            assert np.array_equal(value, r0["after_ssl"][name]), name
    moved = [n for n in r0["state"] if n.startswith("conv_block3.body.0")]
    assert moved and not np.array_equal(r0["state"][moved[0]], r0["after_ssl"][moved[0]])
    assert [h["trainable"] for h in r0["history"]][1] == sorted(["attention", "fusion", "classifier", "conv_block3"])


def test_only_rank_0_writes_files_and_the_run_resumes(two_ranks):
    tmp, (r0, r1) = two_ranks
    assert (tmp / "steps" / "ssl_last.pt").is_file() and (tmp / "steps" / "fit_last.pt").is_file()
    assert r0["writes"], "the audit hook sees rank 0's writes"
    assert r1["writes"] == []
    run = tmp / "run"
    for name in ("config.json", "splits.json", "metrics.json", "timing.json", "final_model.pt", "folds/fold1.json",
                 "folds/fold2.json", "ssl_curve.png", "confusion_matrix.png"):
        assert (run / name).is_file(), name
    log = (run / "train.log").read_text()
    assert log.count("SSL Epoch 1/1") == 1, "one rank logs"
    assert "fold 1: done earlier" in log and "Fold 2: resuming after epoch 2" in log
    metrics = json.loads((run / "metrics.json").read_text())
    assert [f["fold"] for f in metrics["folds"]] == [1, 2] and metrics["data"]["images"] == 8


def _synthetic_dataset(folder):
    for label, seed in (("normal", 10), ("abnormal", 20)):
        (folder / label).mkdir(parents=True)
        for i, image in enumerate(_images(4, 96, seed)):
            cv2.imwrite(str(folder / label / f"{i}.png"), image)


def test_ddp_batch_that_does_not_split_is_refused_before_writing(tmp_path):
    from click.testing import CliRunner

    from edgeecg.cli import cli
    from edgeecg.errors import EdgeECGError

    _synthetic_dataset(tmp_path / "data")
    result = CliRunner().invoke(cli, ["train", "--ddp", "2", "--preset", "tiny", "--data", str(tmp_path / "data"),
                                      "--out", str(tmp_path / "run"), "--batch", "5"], standalone_mode=False)
    assert isinstance(result.exception, EdgeECGError) and "--batch 5" in str(result.exception)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_edgeecg_train_ddp_runs_two_processes_end_to_end(tmp_path):
    import subprocess

    _synthetic_dataset(tmp_path / "data")
    command = [sys.executable, "-m", "edgeecg.cli", "train", "--ddp", "2", "--preset", "tiny", "--no-pretrained",
               "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--no-crop", "--input-size", "32",
               "--batch", "4", "--ssl-batch", "4", "--max-per-class", "0"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "EDGEECG_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "final_model.pt").is_file()
    assert (tmp_path / "run" / "train.log").read_text().count("SSL Epoch 1/1") == 1
