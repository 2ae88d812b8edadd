"""What a training run feeds its model: image crops (SimCardioNet) or digitized signals (the 1-D ResNet).

`edgeecg train` runs one recipe (group folds, fine-tuning with early stopping,
temperature scaling, final model, run folder) for either branch; a modality
supplies the parts that differ: how a table's files become model inputs, the
network, the training dataset, prediction and the model contract.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeecg.contract import IMAGENET_MEAN, IMAGENET_STD, ModelContract
from edgeecg.errors import EdgeECGError

from . import distributed
from .augment import finetune_train
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .data import ImageTable, load_crops
from .loops import CropDataset, predict_logits
from .model import MODEL_PARTS, ModelConfig, build_model

MODALITIES = ("image", "signal")


def model_config(cfg: TrainConfig, n_classes: int) -> ModelConfig:
    return ModelConfig(num_classes=n_classes, trunk=cfg.trunk, channels=cfg.channels, dropouts=cfg.dropouts,
                       attention=cfg.attention, heads=cfg.heads, fusion_dim=cfg.fusion_dim,
                       projection_dim=cfg.projection_dim)


def image_contract(cfg: TrainConfig, classes: list[str], **fields) -> ModelContract:
    """An image run's contract, from its config: its crop cache and its model file carry this one record."""
    return ModelContract(classes=classes, input_size=cfg.input_size, crop=cfg.crop, crop_margin=cfg.crop_margin,
                         trunk=cfg.trunk, **{"name": f"simcardionet-{cfg.trunk}", **fields})


def load_all_but_classifier(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """Copy another SimCardioNet's weights into `model`, all but the classifier (other classes allowed)."""
    kept = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    try:
        missing, unexpected = model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:
        missing, unexpected = [str(exc).splitlines()[-1].strip()], []
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise EdgeECGError(f"--init-from {source}: its network does not fit this model (same --trunk, --channels, "
                           f"--heads, --fusion-dim and --attention needed): {(missing + unexpected)[0]}")


class ImageModality:
    """SimCardioNet on the runtime's cached crops, ImageNet-normalised."""

    name = "image"
    loading = "cropping"
    parts = MODEL_PARTS

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.init_state = load_checkpoint(cfg.init_from)["state_dict"] if cfg.init_from else None

    def inputs(self, table: ImageTable, advance, log) -> np.ndarray:
        with distributed.main_first():  # rank 0 fills the crop cache, the other ranks read it
            return load_crops(table, image_contract(self.cfg, table.classes), max(1, self.cfg.workers), advance)

    def model_config(self, n_classes: int) -> ModelConfig:
        return model_config(self.cfg, n_classes)

    def fresh_model(self, n_classes: int, weights: dict | None = None) -> torch.nn.Module:
        """A new network: from SSL `weights`, else from the `--init-from` run (its classifier left new, so a
        PTB-XL run can start a Mendeley one), else ImageNet weights when asked for."""
        start = weights if weights is not None else self.init_state
        model = build_model(self.model_config(n_classes), pretrained=self.cfg.pretrained and start is None)
        if weights is not None:
            model.load_state_dict(weights)
        elif self.init_state is not None:
            load_all_but_classifier(model, self.init_state, self.cfg.init_from)
        return model

    def train_dataset(self, x: np.ndarray, y: np.ndarray) -> Dataset:
        return CropDataset(x, y, finetune_train(self.cfg.input_size, IMAGENET_MEAN, IMAGENET_STD, self.cfg.domain_aug))

    def predict(self, model: torch.nn.Module, x: np.ndarray, device: torch.device) -> np.ndarray:
        return predict_logits(model, x, IMAGENET_MEAN, IMAGENET_STD, device)

    def contract(self, classes: list[str], **fields) -> ModelContract:
        return image_contract(self.cfg, classes, **fields)


def modality_for(cfg: TrainConfig):
    """The modality `cfg.modality` names."""
    if cfg.modality == "signal":
        from .signal_modality import SignalModality

        return SignalModality(cfg)
    return ImageModality(cfg)
