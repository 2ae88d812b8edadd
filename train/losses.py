"""SimCLR losses of the paper: InfoNCE (eq. 3), the hybrid InfoNCE + cosine loss (eq. 4), triplet.

Eq. 4 literally averages (1 - sim) over *all* samples, which would pull negatives
together; the default (`cosine_over="positives"`) averages over the positive
pairs only. `cosine_over="all"` keeps the literal reading for ablations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent over 2N views: each view's positive is its pair, the other 2N-2 views are negatives."""
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    n = z0.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def cosine_term(z0: torch.Tensor, z1: torch.Tensor, over: str = "positives") -> torch.Tensor:
    """Mean (1 - cos) over the positive pairs, or over all distinct pairs of the 2N views (paper's literal eq. 4)."""
    if over == "positives":
        return (1 - F.cosine_similarity(z0, z1, dim=1)).mean()
    if over == "all":
        z = F.normalize(torch.cat([z0, z1]), dim=1)
        sim = z @ z.T
        off_diagonal = ~torch.eye(sim.shape[0], dtype=torch.bool, device=z.device)
        return (1 - sim[off_diagonal]).mean()
    raise ValueError(f"cosine_over must be 'positives' or 'all', not {over!r}")


def hybrid_loss(z0: torch.Tensor, z1: torch.Tensor, temperature: float = 0.1, cosine_weight: float = 0.1,
                cosine_over: str = "positives", triplet_margin: float | None = None) -> torch.Tensor:
    """InfoNCE + cosine_weight * cosine term (+ triplet with the next sample's view as negative)."""
    loss = info_nce(z0, z1, temperature) + cosine_weight * cosine_term(z0, z1, cosine_over)
    if triplet_margin is not None and z0.shape[0] > 1:
        loss = loss + F.triplet_margin_loss(z0, z1, z1.roll(1, dims=0), margin=triplet_margin)
    return loss
