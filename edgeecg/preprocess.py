"""Crop -> resize -> normalise: the one preprocessing path of edgeecg.

Inference, INT8 calibration, benchmarking and training's evaluation all call
these functions, so a model is always fed exactly what it was validated on.
`crop_and_resize` gives the uint8 RGB image the model sees (training caches
it and augments from it); `normalize` turns it into the float tensor.
"""

from __future__ import annotations

import cv2
import numpy as np

from .contract import ModelContract
from .crop import find_trace_quad, warp_quad


def full_frame_quad(image: np.ndarray) -> np.ndarray:
    """The whole image as a quadrilateral, clockwise from top-left."""
    h, w = image.shape[:2]
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float32)


def crop_and_resize(
    image_bgr: np.ndarray, size: int, crop: bool = True, margin: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (size x size x 3 uint8 RGB, quad of the region used in input pixels)."""
    if crop:
        quad = find_trace_quad(image_bgr)
        region = warp_quad(image_bgr, quad, margin=margin)
    else:
        quad = full_frame_quad(image_bgr)
        region = image_bgr
    resized = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), quad


def normalize(rgb: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HxWx3 RGB (or NxHxWx3) -> float32 CxHxW (or NxCxHxW), ImageNet-style."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def preprocess(
    image_bgr: np.ndarray, contract: ModelContract, crop: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded BGR image -> (1x3xSxS float32 tensor, crop quad), as the contract says."""
    use_crop = contract.crop if crop is None else crop
    rgb, quad = crop_and_resize(image_bgr, contract.input_size, use_crop, contract.crop_margin)
    return normalize(rgb, contract.mean, contract.std)[None], quad
