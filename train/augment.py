"""Augmentation pipelines of the paper, on PIL images of the cropped scan.

Inputs are the runtime's crops (already `input_size` square), so augmentation
only perturbs what inference would see. Pipelines run on PIL images because
rotation, affine warps and blur are several times faster there than on CPU
tensors (a 23-tap tensor blur alone cost ~170 ms per 224 px image), and end
with the same ImageNet normalisation the runtime's `edgeecg.preprocess.normalize`
applies.
"""

from __future__ import annotations

import random

import torch
from PIL import Image, ImageFilter
from torchvision.transforms import v2

WHITE = (255, 255, 255)  # paper background: fill rotated/warped corners with white, not black


class RandomGaussianBlur:
    """Gaussian blur with sigma drawn from a range (SimCLR's blur), via PIL's fast filter."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.filter(ImageFilter.GaussianBlur(random.uniform(*self.sigma)))


def _finish(mean, std) -> list:
    return [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]


def ssl_strong(size: int, mean, std) -> v2.Compose:
    """Heavy colour jitter, RandomResizedCrop down to 10 % of the image, Gaussian blur."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.1, 1.0), antialias=True),
        v2.RandomApply([v2.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([RandomGaussianBlur((0.1, 2.0))], p=0.5),
        *_finish(mean, std),
    ])


def ssl_moderate(size: int, mean, std) -> v2.Compose:
    """Acquisition-like variation: mild crop, jitter and rotation."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.5),
        v2.RandomRotation(5, fill=WHITE),
        *_finish(mean, std),
    ])


def finetune_train(size: int, mean, std, domain: bool = True) -> v2.Compose:
    """Rotation 20 deg, colour jitter, affine, perspective, random erasing (domain=False: none of them)."""
    if not domain:
        return v2.Compose(_finish(mean, std))
    return v2.Compose([
        v2.RandomRotation(20, fill=WHITE),
        v2.ColorJitter(0.2, 0.2, 0.2, 0.02),
        v2.RandomAffine(degrees=0, translate=(0.05, 0.05), scale=(0.9, 1.1), fill=WHITE),
        v2.RandomPerspective(distortion_scale=0.2, p=0.5, fill=WHITE),
        *_finish(mean, std),
        v2.RandomErasing(p=0.25, scale=(0.02, 0.1)),
    ])
