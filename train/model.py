"""SimCardioNet: a CNN trunk, 1x1 conv blocks, multi-head self-attention, pooled fusion.

Parts carry the paper's names (`trunk`, `conv_block1..3`, `attention`, `fusion`,
`projection_head`, `classifier`) so unfreezing schedules, Grad-CAM and ablations
can address them. The trunk keeps its spatial feature map (the paper replaces
ResNet's fc by an identity; we also drop its global pooling so the attention
block has positions to attend over).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

# trunk name -> (torchvision builder, weights enum name, output channels)
TRUNKS = {
    "resnet50": ("resnet50", "ResNet50_Weights", 2048),
    "resnet18": ("resnet18", "ResNet18_Weights", 512),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", 960),
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", 576),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", 1280),
}
MODEL_PARTS = ("trunk", "conv_block1", "conv_block2", "conv_block3", "attention", "fusion",
               "projection_head", "classifier")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; saved in every checkpoint."""

    num_classes: int
    trunk: str = "resnet50"
    channels: tuple[int, int, int] = (1024, 512, 512)
    dropouts: tuple[float, float, float] = (0.05, 0.1, 0.2)
    attention: bool = True
    heads: int = 8
    fusion_dim: int = 512
    projection_dim: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        data = dict(data)
        data["channels"] = tuple(data["channels"])
        data["dropouts"] = tuple(data["dropouts"])
        return cls(**data)


class ConvBlock(nn.Module):
    """1x1 conv + BN + ReLU + dropout, residual when input and output shapes agree."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.residual = in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class SpatialSelfAttention(nn.Module):
    """Multi-head self-attention over the positions of a feature map, residual + LayerNorm."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B, HW, C
        attended, _ = self.mha(tokens, tokens, tokens, need_weights=False)
        tokens = self.norm(tokens + attended)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


def local_imagenet_weights(trunk: str) -> Path | None:
    """The torchvision ImageNet checkpoint for `trunk` if it is already on disk (never downloads)."""
    builder, weights_name, _ = TRUNKS[trunk]
    url = getattr(torchvision.models, weights_name).DEFAULT.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None


def build_trunk(trunk: str, pretrained: bool) -> nn.Module:
    """The torchvision trunk without its pooling/classifier; ImageNet weights only if local."""
    if trunk not in TRUNKS:
        raise ValueError(f"unknown trunk {trunk!r}; choose one of {', '.join(TRUNKS)}")
    builder, _, _ = TRUNKS[trunk]
    net = getattr(torchvision.models, builder)(weights=None)
    if pretrained:
        path = local_imagenet_weights(trunk)
        if path is None:
            print(f"notice: no local ImageNet weights for {trunk} "
                  f"(looked in {torch.hub.get_dir()}/checkpoints); using random init", file=sys.stderr)
        else:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            print(f"notice: loaded ImageNet weights for {trunk} from {path}", file=sys.stderr)
    # torchvision's MobileNet/EfficientNet BatchNorm momentum (0.01) suits long ImageNet runs; on a few
    # hundred fine-tuning steps the running statistics barely move from their init and the model
    # predicts one class in eval mode. PyTorch's default 0.1 converges within an epoch.
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    if trunk.startswith("resnet"):
        return nn.Sequential(*list(net.children())[:-2])
    return net.features


class SimCardioNet(nn.Module):
    """Backbone features -> projection head (SSL) or classifier (fine-tuning)."""

    def __init__(self, config: ModelConfig, pretrained: bool = False):
        super().__init__()
        self.config = config
        c0 = TRUNKS[config.trunk][2]
        c1, c2, c3 = config.channels
        d1, d2, d3 = config.dropouts
        self.trunk = build_trunk(config.trunk, pretrained)
        self.conv_block1 = ConvBlock(c0, c1, d1)
        self.conv_block2 = ConvBlock(c1, c2, d2)
        self.conv_block3 = ConvBlock(c2, c3, d3)
        self.attention = SpatialSelfAttention(c3, config.heads) if config.attention else nn.Identity()
        self.fusion = nn.Sequential(
            nn.Linear(2 * c3, config.fusion_dim),
            nn.BatchNorm1d(config.fusion_dim),
            nn.ReLU(inplace=True),
        )
        self.projection_head = nn.Sequential(
            nn.Linear(config.fusion_dim, config.fusion_dim),
            nn.ReLU(inplace=True),
            nn.Linear(config.fusion_dim, config.projection_dim),
        )
        self.classifier = nn.Sequential(nn.Dropout(d3), nn.Linear(config.fusion_dim, config.num_classes))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk(x)
        x = self.conv_block3(self.conv_block2(self.conv_block1(x)))
        return self.attention(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Fused backbone features (global average and max pooling, concatenated, then fusion)."""
        fmap = self.feature_map(x)
        pooled = torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)
        return self.fusion(pooled)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised SSL embedding."""
        return F.normalize(self.projection_head(self.features(x)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.classifier(self.features(x))


def build_model(config: ModelConfig, pretrained: bool = False) -> SimCardioNet:
    return SimCardioNet(config, pretrained=pretrained)
