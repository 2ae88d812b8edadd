"""Augmentation pipelines of the paper, on PIL images of the cropped scan.

Inputs are the runtime's crops (already `input_size` square), so augmentation
only perturbs what inference would see. Pipelines run on PIL images because
rotation, affine warps and blur are several times faster there than on CPU
tensors (a 23-tap tensor blur alone cost ~170 ms per 224 px image), and end
with the same ImageNet normalisation the runtime's `edgeecg.preprocess.normalize`
applies.
"""

from __future__ import annotations

import math
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


def _strong_colour(colour: float = 0.8, blur: float = 2.0) -> list:
    """Colour jitter (brightness, contrast, saturation `colour`, hue `colour`/4; the paper's is 0.8) with p 0.8,
    greyscale with p 0.2, and Gaussian blur of sigma up to `blur` pixels with p 0.5 (0 = none)."""
    steps = [v2.RandomApply([v2.ColorJitter(colour, colour, colour, colour / 4)], p=0.8)] if colour > 0 else []
    steps.append(v2.RandomGrayscale(p=0.2))
    if blur > 0:
        steps.append(v2.RandomApply([RandomGaussianBlur((min(0.1, blur), blur))], p=0.5))
    return steps


def ssl_strong(size: int, mean, std, min_scale: float = 0.1, colour: float = 0.8, blur: float = 2.0) -> v2.Compose:
    """Colour jitter (paper: 0.8), RandomResizedCrop down to `min_scale` of the image (paper: 10 %), Gaussian blur
    of sigma up to `blur` pixels (paper: 2)."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True),
        *_strong_colour(colour, blur),
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


class PairedCrop:
    """Two views of one region of the page, so that they always show the same leads.

    A region of `scale` of the page's area (aspect ratio 3/4..4/3) is drawn; each view is that region
    moved by up to `jitter` of its width/height and rescaled by up to 1 +- `jitter`, clipped to the
    page, then resized to `size`. Independent RandomResizedCrops of a printout whose every lead sits
    on the same grid often share no lead at all (see `ssl_views`).
    """

    def __init__(self, size: int, scale: tuple[float, float] = (0.25, 1.0), jitter: float = 0.1):
        self.size, self.scale, self.jitter = size, scale, jitter

    def region(self, width: int, height: int) -> tuple[float, float, float, float]:
        area = random.uniform(*self.scale) * width * height
        ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = min(width, math.sqrt(area * ratio)), min(height, math.sqrt(area / ratio))
        return random.uniform(0, width - w), random.uniform(0, height - h), w, h

    def view(self, image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
        x, y, w, h = box
        j = self.jitter
        w2, h2 = w * random.uniform(1 - j, 1 + j), h * random.uniform(1 - j, 1 + j)
        cx, cy = x + w / 2 + random.uniform(-j, j) * w, y + h / 2 + random.uniform(-j, j) * h
        left, top = max(0.0, cx - w2 / 2), max(0.0, cy - h2 / 2)
        right, bottom = min(float(image.width), cx + w2 / 2), min(float(image.height), cy + h2 / 2)
        return image.resize((self.size, self.size), Image.BILINEAR, box=(left, top, right, bottom))


class TwoViews:
    """image -> (view 0, view 1): a shared `PairedCrop`, then each view's own photometric pipeline."""

    def __init__(self, crop: PairedCrop, first: v2.Compose, second: v2.Compose):
        self.crop, self.first, self.second = crop, first, second

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pair(image, image)

    def pair(self, a: Image.Image, b: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """View 0 of page `a` and view 1 of page `b`, cut from one shared region (two drawings of a record)."""
        box = self.crop.region(a.width, a.height)
        view_a, view_b = self.crop.view(a, box), self.crop.view(b, box)
        return self.first(view_a), self.second(view_b)


SSL_VIEWS = ("paper", "paired")


def ssl_views(kind: str, size: int, mean, std, min_scale: float = 0.1, jitter: float = 0.1, colour: float = 0.8,
              blur: float = 2.0):
    """The SimCLR view pair: a tuple of two independent pipelines, or one callable returning both views.

    "paper": the paper's strong view (RandomResizedCrop down to `min_scale` of the page, heavy colour
    jitter, greyscale, blur) and moderate view (crop >= 50 %, mild jitter, 5 deg rotation), drawn
    independently. "paired": both views crop one shared region of `min_scale`..100 % of the page
    (`PairedCrop`, each view shifted/rescaled by `jitter`); view 0 then gets the strong colour pipeline,
    view 1 the moderate one (mild jitter, 5 deg rotation).
    """
    if kind == "paper":
        return ssl_strong(size, mean, std, min_scale, colour, blur), ssl_moderate(size, mean, std)
    if kind == "paired":
        strong = v2.Compose([*_strong_colour(colour, blur), *_finish(mean, std)])
        moderate = v2.Compose([v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.5),
                               v2.RandomRotation(5, fill=WHITE), *_finish(mean, std)])
        return TwoViews(PairedCrop(size, (min_scale, 1.0), jitter), strong, moderate)
    raise ValueError(f"ssl views must be one of {', '.join(SSL_VIEWS)}, not {kind!r}")


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
