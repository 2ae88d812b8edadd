"""An out-of-distribution score for a signal model: how far a page's features lie from its training pages.

The score is the Mahalanobis distance of the model's pooled trunk features
(`SignalResNet.features`) from their mean over the run's own training pages,
under a Ledoit-Wolf shrunk covariance (256 features from a few hundred pages
need the shrinkage). It is computed inside the exported graph, as a second
output beside the logits, so the runtime needs nothing but ONNX Runtime and the
contract only carries the threshold. The threshold is fitted on training data
only: `OOD_MARGIN` times the largest training distance. A quantile of the
training distances would not do: in-sample distances are optimistic (half the
held-out Mendeley files lie beyond the training 99th percentile). What the
margin flags, measured with `benchmarks/ood_distance.py`, is in the README.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

DISTANCE_OUTPUT = "feature_distance"
OOD_MARGIN = 2.0  # the threshold, in units of the largest distance among the training pages
BATCH = 64


class WithFeatureDistance(nn.Module):
    """A signal model that also returns each input's Mahalanobis distance from its training features."""

    def __init__(self, model: nn.Module, mean: np.ndarray, precision: np.ndarray):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("precision", torch.as_tensor(precision, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.model.features(x)
        centred = pooled - self.mean
        distance = torch.sqrt(torch.clamp(((centred @ self.precision) * centred).sum(1), min=0.0))
        return self.model.classifier.head(pooled), distance


def training_features(model: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """Pooled features of (N, 24, length) model inputs, in eval mode."""
    with torch.inference_mode():
        return np.concatenate([model.features(torch.from_numpy(inputs[i:i + BATCH])).numpy()
                               for i in range(0, len(inputs), BATCH)])


def fit_distance(model: nn.Module, inputs: np.ndarray) -> tuple[WithFeatureDistance, dict]:
    """The model with its distance output, and the contract's record of how the threshold was set."""
    features = training_features(model, inputs)
    if len(features) < 2:
        raise ValueError("the out-of-distribution score needs at least two training pages")
    covariance = LedoitWolf().fit(features)
    wrapped = WithFeatureDistance(model, covariance.location_, covariance.precision_).eval()
    distances = covariance.mahalanobis(features) ** 0.5  # sklearn returns squared distances
    record = {
        "method": "Mahalanobis distance of the pooled trunk features (Ledoit-Wolf covariance of the training pages)",
        "output": DISTANCE_OUTPUT,
        "training_pages": len(features),
        "train_median": float(np.median(distances)),
        "train_max": float(distances.max()),
        "margin": OOD_MARGIN,
        "threshold": float(OOD_MARGIN * distances.max()),
    }
    return wrapped, record


def distance_only_nodes(proto: onnx.ModelProto, logits_output: str) -> Sequence[str]:
    """Nodes that only the distance output depends on: INT8 leaves them in FP32, as the distance is a sum of
    squares of small differences that 8-bit steps would swamp."""
    producers = {out: node for node in proto.graph.node for out in node.output}

    def ancestors(name: str) -> set[str]:
        seen: set[str] = set()
        stack = [name]
        while stack:
            node = producers.get(stack.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                stack.extend(node.input)
        return seen

    return sorted(ancestors(DISTANCE_OUTPUT) - ancestors(logits_output))
