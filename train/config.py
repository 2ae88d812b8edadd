"""Training configuration: every knob of the recipe, and the named presets.

`paper` is the published recipe (for a GPU); `edge` is sized to train the
shipped mobile model on 2 CPU cores in under an hour; `signal` trains the
signal branch (1-D ResNet) on 2 CPU cores; `tiny` is for tests.
Any preset value can be overridden from the command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .model import ModelConfig


@dataclass
class TrainConfig:
    data: str = ""
    dataset: str = "images"  # "images" (class folders / CSV manifest) or "ptbxl"
    modality: str = "image"  # "image" (SimCardioNet on crops) or "signal" (1-D ResNet on digitized leads)
    out: str = "runs/run"
    exclude: list[str] = field(default_factory=list)  # listings whose duplicate groups are held out
    max_per_class: int = 0  # 0 = all; else at most this many duplicate groups per class (tests)
    # model
    trunk: str = ModelConfig.trunk  # architecture defaults live in ModelConfig (the paper's values)
    pretrained: bool = True  # ImageNet weights, only if already on disk
    channels: tuple[int, int, int] = ModelConfig.channels
    dropouts: tuple[float, float, float] = ModelConfig.dropouts
    attention: bool = ModelConfig.attention
    heads: int = ModelConfig.heads
    fusion_dim: int = ModelConfig.fusion_dim
    projection_dim: int = ModelConfig.projection_dim
    # input
    input_size: int = 224
    crop: bool = True
    crop_margin: float = 0.0
    # self-supervised pretraining
    ssl: bool = True
    ssl_epochs: int = 50
    ssl_batch: int = 16
    ssl_lr_backbone: float = 3e-4
    ssl_wd_backbone: float = 1e-4
    ssl_lr_head: float = 1e-3
    ssl_wd_head: float = 1e-5
    ssl_tmax: int = 50
    ssl_eta_min: float = 1e-6
    ssl_temperature: float = 0.1  # InfoNCE's tau (calibration's temperature is fitted, not configured)
    cosine_weight: float = 0.1
    cosine_over: str = "positives"
    triplet_margin: float = 0.0  # 0 = no triplet loss; the paper's optional value is 0.1
    ssl_views: str = "paper"  # augment.SSL_VIEWS: "paper" (independent strong/moderate crops) or "paired"
    ssl_min_scale: float = 0.1  # smallest crop, as a share of the page's area (paper: 0.1)
    ssl_jitter: float = 0.1  # "paired" views: shift/rescale of each view within the shared region
    ssl_colour: float = 0.8  # strong view's colour jitter strength (paper: 0.8)
    ssl_blur: float = 2.0  # strong view's largest Gaussian blur sigma in pixels (paper: 2; 0 = none)
    ssl_head_bn: bool = False  # BatchNorm1d after the projection head's hidden layer during SSL
    # fine-tuning
    epochs: int = 100
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 20
    unfreeze: str = "conv_block3:3,conv_block2:6,all:10"
    class_weights: bool = False
    domain_aug: bool = True
    dedup_train: bool = False  # train on one file per duplicate group
    final_epochs: int = 0  # 0 = median of the folds' best epochs
    # signal branch (--modality signal)
    signal_rate: float = 100.0  # model input rate, Hz (resampled from the digitizer's 500 Hz)
    signal_seconds: float = 10.0
    signal_norm: str = "median"  # edgeecg.signal_input.NORMALISATIONS
    signal_width: int = 64
    signal_depth: int = 1  # residual blocks per stage
    signal_kernel: int = 5
    signal_dropout: float = 0.2
    panel_mask: float = 0.5  # PTB-XL: share of training records masked as a 3x4+1 page reads them
    strip_misread: float = 0.5  # ... of which the rhythm strip lands in a random lead's channel
    digitized_renders: bool = False  # PTB-XL: also train on every record drawn as a page and read back
    init_from: str = ""  # a run of the same branch whose weights (all but the classifier) start this one
    signal_aug: bool = False  # gain, noise and time-shift jitter of training signals (signal_data.jitter)
    # evaluation and machinery
    folds: int = 3
    seed: int = 42
    workers: int = 0
    device: str = "auto"

    def save(self, path: Path) -> None:
        from edgeecg.atomic import write_text

        write_text(path, json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """A config as saved in config.json or a checkpoint's train_config (unknown keys ignored)."""
        data = dict(data)
        if "temperature" in data and "ssl_temperature" not in data:  # run folders written before the rename
            data["ssl_temperature"] = data.pop("temperature")
        return cls(**{f.name: _coerce(f.name, data[f.name]) for f in fields(cls) if f.name in data})


def _coerce(name: str, value):
    return tuple(value) if name in ("channels", "dropouts") else value


# SimCLR (--ssl) from random init on near-identical printouts: the paper's views (independent crops down to 10 %,
# colour jitter 0.8, blur) collapse (loss at ln(2N-1)); whole-page paired views with a 5 % shift, no colour jitter
# or blur, tau 0.5 and a flat lr 1e-3 start to learn (benchmarks/ssl_diagnose.py, issue 18). The paper's SSL
# values stay the TrainConfig defaults (`paper` preset, or these as flags).
WHOLE_PAGE_SSL = dict(ssl_views="paired", ssl_min_scale=1.0, ssl_jitter=0.05, ssl_colour=0.0, ssl_blur=0.0,
                      ssl_temperature=0.5, ssl_lr_backbone=1e-3, ssl_lr_head=1e-3, ssl_tmax=1000)

PRESETS: dict[str, dict] = {
    "paper": dict(trunk="resnet50"),
    # The edge trunk starts from random weights on a CPU box (no ImageNet download). With the paper's
    # SSL warm-up and domain augmentations it did not learn within the CPU budget (training accuracy
    # stayed near chance for 13 epochs), so the edge recipe fine-tunes everything from epoch 1, without
    # SSL or augmentation, at the lower lr a from-scratch MobileNet needs; early stopping ends it.
    "edge": dict(
        trunk="mobilenet_v3_large", channels=(256, 128, 128), heads=4, fusion_dim=128,
        ssl=False, epochs=12, batch=16, patience=5, lr=1e-3, unfreeze="", domain_aug=False,
        class_weights=True, dedup_train=True, **WHOLE_PAGE_SSL,
    ),
    "tiny": dict(
        trunk="mobilenet_v3_small", channels=(32, 16, 16), heads=2, fusion_dim=32, input_size=64,
        ssl_epochs=1, ssl_tmax=1, ssl_batch=8, epochs=2, batch=8, patience=2, folds=2,
        unfreeze="conv_block3:1,conv_block2:1,all:2", max_per_class=10, class_weights=True, dedup_train=True,
        signal_width=8,
    ),
    # The signal branch on 2 CPU cores: the 0.4 M-parameter 1-D ResNet takes 3-7 s an epoch on 634 PTB-XL records.
    "signal": dict(
        modality="signal", ssl=False, unfreeze="", epochs=30, batch=32, lr=1e-3, patience=8,
        class_weights=True, dedup_train=True,
    ),
}


def preset_config(name: str, **overrides) -> TrainConfig:
    """The preset's values with `overrides` (None values are ignored) on top."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})


def parse_unfreeze(schedule: str) -> dict[str, int]:
    """'conv_block3:3,conv_block2:6,all:10' -> {'conv_block3': 3, 'conv_block2': 6, 'all': 10}."""
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in schedule.split(","))):
        name, _, epoch = item.partition(":")
        if not epoch.strip().isdigit():
            raise ValueError(f"bad unfreeze entry {item!r}: expected PART:EPOCH")
        out[name.strip()] = int(epoch)
    return out
