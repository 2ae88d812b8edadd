"""What SimCLR pretraining taught an encoder: embedding spread and linear probes on frozen features.

A probe fits a logistic regression on the frozen `SimCardioNet.features` (the fused backbone
output the classifier sees, before the projection head) of one set of images and scores it on
another; comparing an SSL-pretrained encoder with the same network at its random init says whether
pretraining learned anything a classifier can use. Images are unaugmented (the runtime's
normalisation only), the network in eval mode.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from edgeecg.contract import IMAGENET_MEAN, IMAGENET_STD
from edgeecg.preprocess import normalize

from .loops import autocast
from .model import SimCardioNet
from .ssl import embedding_spread


class NoProgress:
    """A progress display that shows nothing, for `ssl.pretrain` outside a training run."""

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args, **kwargs) -> None:
        pass

    def remove_task(self, *args, **kwargs) -> None:
        pass


@torch.no_grad()
def embed(model: SimCardioNet, images: np.ndarray, device: torch.device,
          batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features, L2-normalised projections) of uint8 crops, in eval mode."""
    model.eval()
    features, projections = [], []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(normalize(images[start:start + batch], IMAGENET_MEAN, IMAGENET_STD)).to(device)
        with autocast(device):
            f = model.features(x)
            z = F.normalize(model.projection_head(f), dim=1)  # `model.project(x)` without running the trunk again
        features.append(f.float().cpu().numpy())
        projections.append(z.float().cpu().numpy())
    return np.concatenate(features), np.concatenate(projections)


@torch.no_grad()
def reestimate_batchnorm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Every BatchNorm's running statistics re-estimated as the average over `batches` (through
    `model.features`), weights unchanged; the model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for x in batches:
        model.features(x)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def probe_batches(count: int, batch: int = 64) -> Iterator[np.ndarray]:
    """Sorted index batches over `count` items in a fixed shuffled order, none of one item (BatchNorm1d breaks)."""
    order = np.random.default_rng(0).permutation(count)
    for start in range(0, count - 1, batch):
        yield np.sort(order[start:start + batch])


def recalibrate_batchnorm(model: SimCardioNet, images: np.ndarray, device: torch.device, batch: int = 64) -> None:
    """Re-estimate every BatchNorm's running statistics on `images` (unaugmented), weights unchanged.

    A random-init network's running statistics are the init's (mean 0, variance 1), which in eval mode
    maps every printout to almost the same point; an SSL run's are averages over augmented views.
    Re-estimating both on the probed images compares the weights, not the statistics.
    """
    reestimate_batchnorm(model, (torch.from_numpy(normalize(images[index], IMAGENET_MEAN, IMAGENET_STD)).to(device)
                                 for index in probe_batches(len(images), batch)))


def spread_of(projections: np.ndarray) -> float:
    """`embedding_spread` of a set of projections (1 when spread over the sphere, 0 when collapsed)."""
    return embedding_spread(torch.from_numpy(np.asarray(projections)))


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   c: float = 1.0) -> float:
    """Accuracy on (test_x, test_y) of a standardised logistic regression fitted on (train_x, train_y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    probe.fit(train_x, train_y)
    return float((probe.predict(test_x) == test_y).mean())


def split_probe(features: np.ndarray, labels: np.ndarray,
                splits: list[tuple[np.ndarray, np.ndarray]], c: float = 1.0) -> list[float]:
    """Probe accuracy of every (train, test) split, e.g. `group_kfold` folds."""
    return [probe_accuracy(features[tr], labels[tr], features[te], labels[te], c) for tr, te in splits]
