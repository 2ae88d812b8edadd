"""Photo-like distortions of a rendered page: pen marks, tilt and perspective, creases, light, blur, noise, JPEG.

The model meets phone photos and tired scans, not clean renders. Each
distortion draws from its own random stream, so switching one on or off
never changes what the others do; the geometric ones are one homography,
which the renderer also applies to its ground truth (grid box, trace mask,
panel boxes) so they stay on the image.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .render_geometry import SHIFT, to_fixed
from .render_text import put_text

if TYPE_CHECKING:
    from .render import RenderOptions

BACKGROUNDS = ((60, 70, 80), (35, 40, 45), (120, 130, 140), (80, 95, 110), (160, 165, 170))
PEN_INKS = ((140, 50, 20), (30, 30, 30), (40, 40, 170))
MARK_WORDS = ("ok", "MI?", "see", "NSR", "Dr. K", "rpt", "12/3", "AF?", "cf old", "!!")


def draw_pen_marks(page: np.ndarray, most: int, ppm: float, rng: np.random.Generator) -> None:
    """Handwriting-like marks: scribbled words, circled spots and underlines in pen ink."""
    height, width = page.shape[:2]
    for _ in range(int(rng.integers(1, most + 1))):
        ink = PEN_INKS[rng.integers(len(PEN_INKS))]
        x, y = rng.uniform(0.05, 0.85) * width, rng.uniform(0.05, 0.92) * height
        kind = rng.integers(3)
        if kind == 0:
            put_text(page, str(rng.choice(MARK_WORDS)), x / ppm, y / ppm, rng.uniform(3, 6), ppm,
                 cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, ink, int(rng.integers(1, 3)))
        elif kind == 1:
            axes = (round(rng.uniform(6, 20) * ppm), round(rng.uniform(4, 10) * ppm))
            cv2.ellipse(page, (round(x), round(y)), axes, rng.uniform(-20, 20), rng.uniform(0, 40),
                        rng.uniform(300, 360), ink, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            length = rng.uniform(15, 50) * ppm
            u = np.linspace(0, 1, 24)
            wobble = np.cumsum(rng.normal(0, 0.25 * ppm, u.size))
            points = np.stack([x + u * length, y + wobble + rng.uniform(-0.1, 0.1) * length * u], axis=1)
            cv2.polylines(page, [to_fixed(points)], False, ink, int(rng.integers(1, 3)), cv2.LINE_AA, shift=SHIFT)


def page_homography(shape: tuple[int, ...], options: "RenderOptions", rng: np.random.Generator) -> np.ndarray:
    """Rotation + perspective tilt of the page, shrunk so the whole page stays in the frame."""
    height, width = shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    centre = np.array([width, height]) / 2
    angle = math.radians(options.rotation_deg * rng.uniform(-1, 1))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = (corners - centre) @ rotation.T + centre
    moved += rng.uniform(-1, 1, (4, 2)) * options.perspective * np.array([width, height])
    span = moved.max(0) - moved.min(0)
    scale = min(1.0, *(0.98 * np.array([width, height]) / span))
    moved = (moved - (moved.max(0) + moved.min(0)) / 2) * scale + centre
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(np.float64)


def photograph(page: np.ndarray, homography: np.ndarray, options: "RenderOptions", streams: dict) -> np.ndarray:
    """Geometry, then shading (creases in paper coordinates, lighting in image coordinates), blur, noise, JPEG."""
    height, width = page.shape[:2]
    image = page
    if options.geometric:
        background = BACKGROUNDS[streams["geometry"].integers(len(BACKGROUNDS))]
        image = cv2.warpPerspective(page, homography, (width, height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    if options.crease > 0 or options.lighting > 0:
        low = (max(2, width // 4), max(2, height // 4))
        shade = np.ones((low[1], low[0]), np.float32)
        if options.crease > 0:
            to_low = np.diag([low[0] / width, low[1] / height, 1.0])
            low_homography = to_low @ homography @ np.linalg.inv(to_low)
            shade *= cv2.warpPerspective(_crease_map(low, options.crease, streams["crease"]), low_homography, low,
                                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
        if options.lighting > 0:
            shade *= _lighting_map(low, options.lighting, streams["lighting"])
        full = cv2.resize(np.round(shade * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
        image = cv2.multiply(image, cv2.merge([full, full, full]), scale=1 / 255)
    if options.blur_sigma > 0:
        sigma = options.blur_sigma * streams["blur"].uniform(0.3, 1.0)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if options.noise_std > 0:
        rng = streams["noise"]
        field_, pad = _noise_field(height, width)
        dy, dx = int(rng.integers(pad + 1)), 3 * int(rng.integers(pad + 1))
        noise = field_[dy : dy + height, dx : dx + 3 * width]
        weight = options.noise_std * rng.uniform(0.3, 1.0) / _NOISE_SCALE
        image = cv2.addWeighted(image.reshape(height, 3 * width), 1.0, noise, weight, -_NOISE_ZERO * weight)
        image = image.reshape(height, width, 3)
    if options.jpeg_quality > 0:
        quality = int(streams["jpeg"].integers(min(options.jpeg_quality, 95), 96))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return image if image is not page else page.copy()


_NOISE_SCALE, _NOISE_ZERO = 16.0, 128.0  # the cached field holds 128 + 16 N(0, 1) as uint8 (all-uint8 maths is fast)


@lru_cache(maxsize=4)
def _noise_field(height: int, width: int) -> tuple[np.ndarray, int]:
    """A fixed Gaussian noise field a little larger than the image; each render crops it at a seeded offset.

    Cropping is far cheaper than drawing 2.6 million normals per image, and the
    offsets keep the noise different from render to render.
    """
    pad = 64
    rng = np.random.default_rng(20240917)
    field_ = _NOISE_ZERO + rng.standard_normal((height + pad, 3 * (width + pad))) * _NOISE_SCALE
    return np.clip(np.round(field_), 0, 255).astype(np.uint8), pad


def _crease_map(size: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative paper shading: 1-3 fold lines (dark ridge, one side shadowed) plus soft wrinkles."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    shade = np.ones((height, width), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        angle = rng.uniform(0, math.pi)
        px, py = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        distance = (xs - px) * math.sin(angle) - (ys - py) * math.cos(angle)
        depth = strength * rng.uniform(0.4, 1.0)
        ridge = 0.7 * np.exp(-((distance / rng.uniform(0.6, 1.5)) ** 2))
        shadow = (distance > 0) * np.exp(-distance / (0.12 * width)) * 0.3
        highlight = (distance < 0) * np.exp(distance / (0.05 * width)) * 0.15
        shade *= 1 - depth * (ridge + shadow - highlight)
    bumps = cv2.resize(rng.uniform(-1, 1, (6, 8)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    shade *= 1 - 0.25 * strength * (bumps + 1) / 2
    return np.clip(shade, 0.2, 1.0).astype(np.float32)


def _lighting_map(size: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Uneven light: a linear gradient in a random direction and a vignette."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xs / (width - 1) - 0.5, ys / (height - 1) - 0.5
    angle = rng.uniform(0, 2 * math.pi)
    gradient = (u * math.cos(angle) + v * math.sin(angle)) + 0.5  # 0..~1 across the frame
    drop = strength * rng.uniform(0.4, 1.0)
    vignette = 1 - strength * rng.uniform(0, 0.6) * (u**2 + v**2) * 2
    return np.clip((1 - drop * gradient) * vignette, 0.05, 1.0).astype(np.float32)



def move_points(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Page pixels (..., 2) -> output pixels, moved like the image."""
    flat = np.asarray(points, np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(flat, homography).reshape(np.shape(points))


def move_labels(labels: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """A label image moved like the image; nearest neighbour, so labels never blend into other labels."""
    height, width = labels.shape[:2]
    return cv2.warpPerspective(labels, homography, (width, height), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
