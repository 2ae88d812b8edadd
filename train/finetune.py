"""Supervised fine-tuning: progressive unfreezing, early stopping, resumable.

Multiclass labels (one index per image) train with cross-entropy and stop early
on validation accuracy; multi-label targets (N x K of 0/1, PTB-XL) train with
sigmoid + BCE and stop early on validation macro AUC-ROC.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from . import distributed
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .loops import MixedPrecisionStep, autocast, saved_state, seed_everything
from .modality import ImageModality
from .model import MODEL_PARTS

ALWAYS_TRAINABLE = ("attention", "fusion", "classifier")  # the "final layers" trained from epoch 1
SCHEDULED = ("trunk", "conv_block1", "conv_block2", "conv_block3")  # frozen until the schedule says
HEAD_SCHEDULABLE = ("attention", "fusion")  # trained from epoch 1 unless the schedule names them (linear probe)


def trainable_parts(epoch: int, schedule: dict[str, int], parts: tuple[str, ...] = MODEL_PARTS) -> set[str]:
    """Parts that train at `epoch` (1-based). An empty schedule trains everything from the start."""
    if not schedule:
        return set(parts)
    unknown = set(schedule) - set(SCHEDULED) - set(HEAD_SCHEDULABLE) - {"all"}
    if unknown:
        raise ValueError(f"unfreeze schedule names unknown part(s) {sorted(unknown)}; "
                         f"use {SCHEDULED + HEAD_SCHEDULABLE} or 'all'")
    everything = "all" in schedule and epoch >= schedule["all"]
    first_epoch = {**dict.fromkeys(ALWAYS_TRAINABLE, 1), **schedule}
    return {p for p in ALWAYS_TRAINABLE + SCHEDULED if everything or epoch >= first_epoch.get(p, 10**9)}


def apply_unfreeze_schedule(model: nn.Module, epoch: int, schedule: dict[str, int],
                            model_parts: tuple[str, ...] = MODEL_PARTS) -> set[str]:
    """Set requires_grad per part; frozen parts also stay in eval mode so their BN statistics keep."""
    parts = trainable_parts(epoch, schedule, model_parts)
    for name in model_parts:
        module = getattr(model, name)
        module.requires_grad_(name in parts)
        if name not in parts:
            module.eval()
    return parts


def make_criterion(labels: np.ndarray, n_classes: int, balanced: bool, device: torch.device) -> nn.Module:
    """Cross-entropy (multiclass) or BCE-with-logits (multi-label), optionally class-balanced."""
    if labels.ndim == 2:
        positives = labels.sum(0).astype(np.float64)
        pos_weight = torch.tensor((len(labels) - positives) / np.maximum(positives, 1), dtype=torch.float32)
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device) if balanced else None)
    weights = None
    if balanced:
        counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
        weights = torch.tensor(len(labels) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32).to(device)
    return nn.CrossEntropyLoss(weight=weights)


def validation_scores(logits: np.ndarray, labels: np.ndarray, criterion: nn.Module) -> dict:
    """Validation loss and the early-stopping score: accuracy, or macro AUC-ROC for multi-label targets."""
    device = next(iter(criterion.buffers()), torch.empty(0)).device
    logits_t = torch.from_numpy(logits).to(device)
    if labels.ndim == 2:
        loss = criterion(logits_t, torch.from_numpy(labels).float().to(device))
        present = (labels.sum(0) > 0) & (labels.sum(0) < len(labels))
        auc = roc_auc_score(labels[:, present], logits[:, present], average="macro") if present.any() else 0.0
        return {"val_loss": float(loss), "val_auc": float(auc), "val_metric": "AUC", "val_score": float(auc)}
    loss = criterion(logits_t, torch.from_numpy(labels).to(device))
    acc = float((logits.argmax(1) == labels).mean())
    return {"val_loss": float(loss), "val_acc": acc, "val_metric": "Acc", "val_score": acc}


@dataclass
class FitResult:
    model: nn.Module
    best_epoch: int
    best_score: float
    history: list[dict]
    seconds: float
    epochs_run: int


def fit(model: nn.Module, train_images: np.ndarray, train_labels: np.ndarray, cfg: TrainConfig,
        schedule: dict[str, int], device: torch.device, checkpoint: Path, log, progress, tag: str,
        val_images: np.ndarray | None = None, val_labels: np.ndarray | None = None,
        epochs: int | None = None, modality=None) -> FitResult:
    """Fine-tune with the unfreezing schedule; with validation data, keep the best epoch (early stopping).

    `modality` (train/modality.py) turns inputs into a training set and predicts; default: image crops.
    """
    modality = modality or ImageModality(cfg)
    criterion = make_criterion(train_labels, model.config.num_classes, cfg.class_weights, device)
    multilabel = train_labels.ndim == 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = MixedPrecisionStep(optimizer, device)
    epochs = epochs or cfg.epochs
    history, elapsed, start = [], 0.0, 1
    best_state, best_score, best_epoch, stale = None, -1.0, 0, 0
    state = saved_state(checkpoint)
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        history, elapsed, start = state["history"], state["elapsed"], state["epoch"] + 1
        best_state, best_score, best_epoch, stale = (state["best_state"], state["best_score"],
                                                     state["best_epoch"], state["stale"])
        log(f"{tag}: resuming after epoch {state['epoch']}")
    dataset = modality.train_dataset(train_images, train_labels)
    net = distributed.wrap(model, device)
    for epoch in range(start, epochs + 1):
        if val_images is not None and stale >= cfg.patience:
            break
        seed_everything(distributed.seed_for_rank(cfg.seed * 1000 + epoch))
        loader = distributed.loader(dataset, cfg.batch, cfg.workers, cfg.seed, epoch)
        model.train()
        parts = apply_unfreeze_schedule(model, epoch, schedule, modality.parts)
        tick, losses, correct, seen = time.perf_counter(), [], 0, 0
        task = progress.add_task(f"{tag} epoch {epoch}", total=len(loader))
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with autocast(device):
                logits = net(x)
                loss = criterion(logits.float(), y.float() if multilabel else y)
            step(loss)
            losses.append(loss.item())
            correct += ((logits > 0) == (y > 0.5)).float().mean(1).sum().item() if multilabel else \
                (logits.argmax(1) == y).sum().item()
            seen += len(y)
            progress.advance(task)
        progress.remove_task(task)
        distributed.sync_buffers(model)
        correct, seen, loss_sum, batches = distributed.sum_over_ranks(correct, seen, float(np.sum(losses)), len(losses))
        row = {"epoch": epoch, "train_loss": loss_sum / max(batches, 1),
               "train_acc": correct / max(seen, 1), "trainable": sorted(parts)}
        if val_images is not None:  # rank 0 scores the whole validation set; every rank takes its decision
            row.update(distributed.from_main(lambda: validation_scores(
                modality.predict(model, val_images, device), val_labels, criterion)))
            if row["val_score"] > best_score:
                best_state, best_score, best_epoch, stale = copy.deepcopy(model.state_dict()), row["val_score"], epoch, 0
            else:
                stale += 1
        row["seconds"] = time.perf_counter() - tick
        elapsed += row["seconds"]
        history.append(row)
        val_text = (f", Val Loss: {row['val_loss']:.4f}, Val {row['val_metric']}: {row['val_score']:.4f}"
                    if "val_score" in row else "")
        log(f"{tag} Epoch {epoch}/{epochs}, Loss: {row['train_loss']:.4f}, Acc: {row['train_acc']:.4f}"
            f"{val_text}, Time: {row['seconds']:.2f}s")
        if distributed.is_main():
            save_checkpoint(checkpoint, {"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "epoch": epoch, "history": history, "elapsed": elapsed,
                                         "best_state": best_state, "best_score": best_score,
                                         "best_epoch": best_epoch, "stale": stale})
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = len(history)
    model.eval()
    return FitResult(model, best_epoch, best_score, history, elapsed, len(history))
