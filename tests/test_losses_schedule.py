"""The paper's losses against hand computations, and the unfreezing schedule's requires_grad."""

import math

import pytest
import torch

from edgeecg.train.config import parse_unfreeze
from edgeecg.train.finetune import apply_unfreeze_schedule
from edgeecg.train.losses import cosine_term, hybrid_loss, info_nce
from edgeecg.train.model import MODEL_PARTS, ModelConfig, build_model
from edgeecg.train.ssl import COLLAPSED_SPREAD, embedding_spread


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def test_hybrid_loss_equals_hand_computation():
    # two positive pairs in 2-D; views in order v = [a0, a1, b0, b1] with pairs (a0, b0), (a1, b1)
    a = [(1.0, 0.0), (0.0, 1.0)]
    b = [(0.8, 0.6), (0.6, 0.8)]
    views = a + b
    tau, lam = 0.1, 0.1
    total = 0.0
    for i in range(4):
        pos = (i + 2) % 4
        denom = sum(math.exp(_cos(views[i], views[k]) / tau) for k in range(4) if k != i)
        total += -math.log(math.exp(_cos(views[i], views[pos]) / tau) / denom)
    nce = total / 4
    cosine = ((1 - _cos(a[0], b[0])) + (1 - _cos(a[1], b[1]))) / 2
    z0, z1 = torch.tensor(a), torch.tensor(b)
    assert info_nce(z0, z1, tau).item() == pytest.approx(nce, rel=1e-5)
    assert hybrid_loss(z0, z1, tau, lam).item() == pytest.approx(nce + lam * cosine, rel=1e-5)


def test_collapsed_embeddings_are_recognised_by_spread_and_loss():
    torch.manual_seed(0)
    spread_out = torch.randn(32, 128)
    collapsed = torch.ones(32, 128) + 1e-3 * torch.randn(32, 128)
    assert embedding_spread(spread_out) == pytest.approx(1.0, abs=0.05)
    assert embedding_spread(collapsed) < COLLAPSED_SPREAD
    # the collapsed point of the hybrid loss: InfoNCE at ln(2N-1), cosine term 0 (what the H200 runs sat at)
    z0, z1 = collapsed[:16], collapsed[16:]
    assert hybrid_loss(z0, z1, 0.1, 0.1) == pytest.approx(math.log(31), abs=1e-3)


def test_cosine_term_over_all_pairs_is_the_literal_reading():
    z0, z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert cosine_term(z0, z1, "positives").item() == pytest.approx(0.0)
    # 12 ordered off-diagonal pairs of 4 views: 2 identical pairs (cos 1) x2 orders, 8 orthogonal (cos 0)
    assert cosine_term(z0, z1, "all").item() == pytest.approx(8 / 12)


def test_triplet_term_adds_when_negatives_are_close():
    z0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    z1 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert hybrid_loss(z0, z1, triplet_margin=0.1).item() > hybrid_loss(z0, z1).item()


@pytest.mark.parametrize("epoch,expected", [
    (1, {"attention", "fusion", "classifier"}),
    (2, {"attention", "fusion", "classifier"}),
    (3, {"attention", "fusion", "classifier", "conv_block3"}),
    (5, {"attention", "fusion", "classifier", "conv_block3"}),
    (6, {"attention", "fusion", "classifier", "conv_block3", "conv_block2"}),
    (9, {"attention", "fusion", "classifier", "conv_block3", "conv_block2"}),
    (10, {"attention", "fusion", "classifier", "conv_block3", "conv_block2", "conv_block1", "trunk"}),
])
def test_unfreezing_schedule_sets_requires_grad(epoch, expected):
    model = build_model(ModelConfig(num_classes=4, trunk="mobilenet_v3_small", channels=(32, 16, 16),
                                    heads=2, fusion_dim=32))
    model.train()
    apply_unfreeze_schedule(model, epoch, parse_unfreeze("conv_block3:3,conv_block2:6,all:10"))
    for part in MODEL_PARTS:
        grads = {p.requires_grad for p in getattr(model, part).parameters()}
        assert grads == {part in expected}, (epoch, part)
        # frozen parts keep BN statistics: they are in eval mode
        assert getattr(model, part).training == (part in expected)


def test_unknown_part_in_schedule_is_refused():
    model = build_model(ModelConfig(num_classes=2, trunk="mobilenet_v3_small", channels=(16, 16, 16),
                                    heads=2, fusion_dim=16))
    with pytest.raises(ValueError, match="unknown part"):
        apply_unfreeze_schedule(model, 1, {"conv_block9": 2})
