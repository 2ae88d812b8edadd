"""A small 1-D ResNet over the 12 leads (+ their 12 mask channels), after the PTB-XL benchmark's resnet1d/xresnet1d.

Plain convolutions + batch norm + ReLU only (no depthwise, no attention), so
conv-BN folds and every layer has an INT8 kernel on CPUs, TensorRT and Jetson
DLAs. Layout: a stride-2 stem and max-pool, four stages of basic residual
blocks (kernel 5; widths w, w, 2w, 2w; strides 1, 2, 2, 2), then the
benchmark's concat pooling (average and max over time) and a linear head.
The network has two named parts: `trunk` (everything before pooling, what
PTB-XL pretraining hands on) and `classifier` (pooling + head, replaced when
the classes change).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

SIGNAL_PARTS = ("trunk", "classifier")
ARCHITECTURE = "signal_resnet1d"  # model_config["architecture"] of a signal checkpoint


@dataclass
class SignalNetConfig:
    num_classes: int = 4
    in_channels: int = 24  # 12 leads + 12 masks (edgeecg.signal_input)
    width: int = 64
    depth: int = 1  # residual blocks per stage
    kernel: int = 5
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return {"architecture": ARCHITECTURE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "SignalNetConfig":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm1d(cout)]


class BasicBlock1d(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (1x1 conv-BN when the shape changes) shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, kernel, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(cout, cout, kernel))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ConcatPoolHead(nn.Module):
    """Average and max over time, concatenated, then dropout and a linear layer."""

    def __init__(self, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.avg, self.max = nn.AdaptiveAvgPool1d(1), nn.AdaptiveMaxPool1d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(2 * channels), nn.Dropout(dropout),
                                  nn.Linear(2 * channels, num_classes))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(N, channels, time) trunk output -> (N, 2 * channels) pooled features, what the linear layer reads."""
        return torch.cat([self.avg(x), self.max(x)], 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x))


class SignalResNet(nn.Module):
    """(N, 24, length) -> (N, num_classes) logits."""

    def __init__(self, config: SignalNetConfig):
        super().__init__()
        self.config = config
        w, k = config.width, config.kernel
        layers: list[nn.Module] = [*_conv_bn(config.in_channels, w, 7, 2), nn.ReLU(inplace=True), nn.MaxPool1d(3, 2, 1)]
        cin = w
        for cout, stride in ((w, 1), (w, 2), (2 * w, 2), (2 * w, 2)):
            for b in range(config.depth):
                layers.append(BasicBlock1d(cin, cout, k, stride if b == 0 else 1))
                cin = cout
        self.trunk = nn.Sequential(*layers)
        self.classifier = ConcatPoolHead(cin, config.num_classes, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.trunk(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 24, length) -> (N, 4 * width) pooled trunk features (the out-of-distribution score's space)."""
        return self.classifier.pool(self.trunk(x))


def build_signal_model(config: SignalNetConfig) -> SignalResNet:
    return SignalResNet(config)


def load_trunk(model: SignalResNet, state_dict: dict) -> int:
    """Copy the `trunk.*` weights of another signal model (other classes allowed); returns tensors copied."""
    trunk = {k[len("trunk."):]: v for k, v in state_dict.items() if k.startswith("trunk.")}
    model.trunk.load_state_dict(trunk)
    return len(trunk)
