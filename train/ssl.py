"""SimCLR pretraining: two augmentation pipelines, hybrid loss, AdamW with split lrs, cosine annealing.

Every knob is a TrainConfig field (and an `edgeecg train` flag). The TrainConfig defaults (the `paper`
preset) are the paper's: independent strong/moderate views (`--ssl-views paper --ssl-min-scale 0.1
--ssl-colour 0.8 --ssl-blur 2`), tau 0.1, lrs 3e-4/1e-3 with cosine annealing over 50 epochs. From
random init on near-identical printouts that recipe collapses (issue 18, benchmarks/ssl_diagnose.py);
the `edge` preset's SSL values (whole-page paired views, no colour jitter or blur, tau 0.5, flat lr
1e-3) learn there, given a few hundred steps (the loss leaves chance after ~100-200 steps).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from edgeecg.contract import IMAGENET_MEAN, IMAGENET_STD

from . import distributed
from .augment import ssl_views
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .loops import CropDataset, MixedPrecisionStep, autocast, saved_state, seed_everything
from .losses import hybrid_loss
from .model import SimCardioNet


class TwoViewProjection(nn.Module):
    """Both views' embeddings in one forward call: DDP hooks into forward(), once per step.

    `head_bn`: a BatchNorm1d after the projection head's hidden layer (SimCLR's own head has one),
    held here so the model's state dict (and fine-tuning's loading of it) stays the same.
    """

    def __init__(self, model: SimCardioNet, head_bn: bool = False):
        super().__init__()
        self.model = model
        self.head_bn = nn.BatchNorm1d(model.projection_head[0].out_features) if head_bn else None

    def project(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_bn is None:
            return self.model.project(x)
        first, relu, last = self.model.projection_head
        return nn.functional.normalize(last(relu(self.head_bn(first(self.model.features(x))))), dim=1)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.project(x0), self.project(x1)


def ssl_optimizer(model: SimCardioNet, cfg: TrainConfig, extra_head: nn.Module | None = None) -> torch.optim.AdamW:
    """Backbone (everything but the heads) and projection head (+ `extra_head`) get their own lr and weight decay."""
    head = list(model.projection_head.parameters()) + (list(extra_head.parameters()) if extra_head else [])
    head_ids = {id(p) for p in head} | {id(p) for p in model.classifier.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return torch.optim.AdamW([
        {"params": backbone, "lr": cfg.ssl_lr_backbone, "weight_decay": cfg.ssl_wd_backbone},
        {"params": head, "lr": cfg.ssl_lr_head, "weight_decay": cfg.ssl_wd_head},
    ])


COLLAPSED_SPREAD = 0.05


def embedding_spread(z: torch.Tensor) -> float:
    """Per-dimension std of L2-normalised embeddings times sqrt(dim): about 1 when they spread over the
    sphere, 0 when SimCLR has collapsed them onto one point (the loss then sits at ln(2N-1))."""
    z = nn.functional.normalize(z.float(), dim=1)
    return float(z.std(dim=0).mean() * z.shape[1] ** 0.5) if len(z) > 1 else float("nan")


class DrawingPairs(Dataset):
    """SimCLR pairs from several drawings of each record (N x D x S x S x 3 uint8 crops).

    The two views come from two different drawings (e.g. renders of one PTB-XL record in other paper,
    grid and photo distortions), so they share the trace and little else: the network has to tell
    records apart by their ECG. An item whose D drawings are copies of one page (a scan) gets two views of it.
    """

    def __init__(self, drawings: np.ndarray, views):
        if drawings.shape[1] < 2:
            raise ValueError("drawing pairs need at least 2 drawings per record")
        self.drawings, self.views = drawings, views

    def __len__(self) -> int:
        return len(self.drawings)

    def __getitem__(self, i: int):
        a, b = (Image.fromarray(self.drawings[i, d]) for d in random.sample(range(self.drawings.shape[1]), 2))
        if isinstance(self.views, tuple):  # independent pipelines (the paper's views)
            return (self.views[0](a), self.views[1](b)), 0
        return self.views.pair(a, b), 0


def pretrain(model: SimCardioNet, images: np.ndarray, cfg: TrainConfig, device: torch.device,
             checkpoint: Path, log, progress) -> tuple[list[dict], float]:
    """Run (or resume) SSL; returns the per-epoch history and the SSL time in seconds.

    `images`: N x S x S x 3 pages (two views of each), or N x D x S x S x 3 drawings (`DrawingPairs`).
    """
    two_views = TwoViewProjection(model, cfg.ssl_head_bn)
    optimizer = ssl_optimizer(model, cfg, two_views.head_bn)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.ssl_tmax, eta_min=cfg.ssl_eta_min)
    step = MixedPrecisionStep(optimizer, device)
    history, elapsed, start_epoch = [], 0.0, 1
    state = saved_state(checkpoint)
    if state is not None:
        model.load_state_dict(state["state_dict"])
        if two_views.head_bn is not None:
            two_views.head_bn.load_state_dict(state["head_bn"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, elapsed, start_epoch = state["history"], state["elapsed"], state["epoch"] + 1
        log(f"resuming SSL after epoch {state['epoch']}")
    views = ssl_views(cfg.ssl_views, cfg.input_size, IMAGENET_MEAN, IMAGENET_STD, cfg.ssl_min_scale, cfg.ssl_jitter,
                      cfg.ssl_colour, cfg.ssl_blur)
    if images.ndim == 5:
        dataset = DrawingPairs(images, views)
    else:
        dataset = CropDataset(images, np.zeros(len(images)), views, views=2 if isinstance(views, tuple) else 1)
    triplet = cfg.triplet_margin or None
    views_net = distributed.wrap(two_views.to(device), device)
    for epoch in range(start_epoch, cfg.ssl_epochs + 1):
        seed_everything(distributed.seed_for_rank(cfg.seed * 1000 + epoch))
        loader = distributed.loader(dataset, cfg.ssl_batch, cfg.workers, cfg.seed, epoch)
        model.train()
        tick, losses, spreads = time.perf_counter(), [], []
        task = progress.add_task(f"SSL epoch {epoch}", total=len(loader))
        for (x0, x1), _ in loader:
            x0, x1 = x0.to(device), x1.to(device)
            with autocast(device):
                z0, z1 = views_net(x0, x1)
            z0, z1 = distributed.gather_with_grad(z0.float()), distributed.gather_with_grad(z1.float())
            loss = hybrid_loss(z0, z1, cfg.ssl_temperature, cfg.cosine_weight, cfg.cosine_over, triplet)
            step(loss)
            losses.append(loss.item())
            spreads.append(embedding_spread(z0.detach()))
            progress.advance(task)
        progress.remove_task(task)
        distributed.sync_buffers(two_views)
        scheduler.step()
        seconds = time.perf_counter() - tick
        elapsed += seconds
        spread = float(np.mean(spreads))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "embedding_spread": spread,
                        "seconds": seconds})
        log(f"SSL Epoch {epoch}/{cfg.ssl_epochs}, Loss: {np.mean(losses):.4f}, Time: {seconds:.2f}s, "
            f"Embedding spread: {spread:.3f}")
        collapsed = [h for h in history if h.get("embedding_spread", 1.0) < COLLAPSED_SPREAD]
        if collapsed == history[-1:]:  # the first collapsed epoch: warn once
            log(f"warning: SSL embeddings have collapsed (spread {spread:.3f}, 1.0 when spread evenly; the loss "
                f"sits near ln(2N-1) = {np.log(2 * cfg.ssl_batch - 1):.3f}): pretraining is learning nothing")
        if distributed.is_main():
            save_checkpoint(checkpoint, {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "scheduler": scheduler.state_dict(), "epoch": epoch,
                                         "history": history, "elapsed": elapsed,
                                         **({"head_bn": two_views.head_bn.state_dict()} if cfg.ssl_head_bn else {})})
    return history, elapsed

