"""Render 12-lead ECG signals as printout images, clean or photographed-looking.

Training on PTB-XL needs images that look like the scanned printouts the model
meets in the clinic, plus the exact grid outline for training/checking the
trace cropper. So every render returns the BGR image AND the grid quadrilateral
in output pixels, moved by the same rotation/perspective as the image.

Layout (a standard 3x4 + rhythm printout): rows I/aVR/V1/V4, II/aVL/V2/V5,
III/aVF/V3/V6, each column showing the next 2.5 s of the record (as ECG carts
print them), then a 10 s lead-II rhythm strip; 25 mm/s, 10 mm/mV, a 1 mV x
0.2 s calibration pulse at the start of each row, 1 mm / 5 mm grid. Sizes are
defined in millimetres on a 280 x 199 mm page and scaled by `px_per_mm`; the
default gives 1106 x 786 pixels, the size of the shared Mendeley scans.

Distortions are all optional and drawn from a seed, each from its own random
stream, so switching one on or off never changes what the others do.
Torch-free: numpy and OpenCV only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .errors import EdgeECGError

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
LAYOUT_ROWS = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
SEGMENT_S = 2.5
STRIP_S = 10.0

PAGE_MM = (280.0, 199.0)
GRID_BOX_MM = (7.5, 37.0, 265.0, 155.0)  # left, top, width, height: whole 5 mm squares
TRACE_START_MM = 12.5  # from the grid's left edge: room for the calibration pulse
FIRST_BASELINE_MM = 21.0  # from the grid's top edge
ROW_PITCH_MM = 38.0
DEFAULT_PX_PER_MM = 3.95  # 280 x 199 mm -> 1106 x 786 px, like the shared scans

# BGR colours
INK = (0, 0, 0)
GRID_HUES = ((150, 120, 245), (120, 120, 230), (110, 160, 240), (170, 170, 170), (200, 150, 190))
BACKGROUNDS = ((60, 70, 80), (35, 40, 45), (120, 130, 140), (80, 95, 110), (160, 165, 170))
PEN_INKS = ((140, 50, 20), (30, 30, 30), (40, 40, 170))
MARK_WORDS = ("ok", "MI?", "see", "NSR", "Dr. K", "rpt", "12/3", "AF?", "cf old", "!!")


@dataclass(frozen=True)
class RenderOptions:
    """How to draw the printout, and how much of each photo-like distortion to add.

    Each distortion is off at 0; otherwise its value is the largest amount,
    and the amount used is drawn from the render's seed.
    """

    px_per_mm: float = DEFAULT_PX_PER_MM
    remove_baseline: bool = True  # subtract each lead's median, as a cart's baseline filter would
    trace_mm: float = 0.3
    minor_line_mm: float = 0.15
    major_line_mm: float = 0.25
    minor_bgr: tuple[int, int, int] = (236, 232, 248)
    major_bgr: tuple[int, int, int] = (220, 212, 242)
    border_bgr: tuple[int, int, int] = (180, 170, 238)
    paper_bgr: tuple[int, int, int] = (255, 255, 255)
    rotation_deg: float = 0.0
    perspective: float = 0.0  # corner shift as a fraction of the page size
    crease: float = 0.0  # darkening of fold lines and wrinkles, 0..1
    blur_sigma: float = 0.0  # pixels
    noise_std: float = 0.0  # grey levels
    jpeg_quality: int = 0  # lowest JPEG quality used (0 = no JPEG round trip)
    lighting: float = 0.0  # brightness drop across the image, 0..1
    grid_color_jitter: float = 0.0  # 0..1, how far the grid colour moves towards another hue
    grid_width_jitter: float = 0.0  # relative change of the grid line widths
    handwriting: int = 0  # most pen marks added

    @classmethod
    def photo(cls, px_per_mm: float = DEFAULT_PX_PER_MM) -> "RenderOptions":
        """Every distortion on at a moderate strength: a phone photo or a tired scan of a printout."""
        return cls(
            px_per_mm=px_per_mm, rotation_deg=4.0, perspective=0.04, crease=0.3, blur_sigma=1.2,
            noise_std=6.0, jpeg_quality=35, lighting=0.35, grid_color_jitter=0.6,
            grid_width_jitter=0.5, handwriting=3,
        )

    @property
    def geometric(self) -> bool:
        return self.rotation_deg > 0 or self.perspective > 0


@dataclass(frozen=True)
class RenderResult:
    """A rendered printout: `image` (BGR uint8), `grid_quad` (float32 4x2, clockwise from top-left,
    output pixels) and what is needed to locate any signal sample in the image."""

    image: np.ndarray
    grid_quad: np.ndarray
    homography: np.ndarray  # 3x3: undistorted page pixels -> output pixels
    px_per_mm: float
    baseline_mv: np.ndarray = field(repr=False)  # (12,) offset removed from each lead

    def sample_pixel(self, lead: str, t: float, mv: float, rhythm: bool = False) -> np.ndarray:
        """Output pixel (x, y) where lead `lead` at time `t` s with value `mv` (as given to the renderer) is drawn."""
        offset = float(self.baseline_mv[LEADS.index(lead)])
        point = page_position(lead, t, mv - offset, self.px_per_mm, rhythm)
        return cv2.perspectiveTransform(point.reshape(1, 1, 2).astype(np.float64), self.homography)[0, 0]


def page_position(lead: str, t: float, mv: float, px_per_mm: float = DEFAULT_PX_PER_MM, rhythm: bool = False) -> np.ndarray:
    """Undistorted page pixel (x, y) of a displayed value; `rhythm` picks the lead-II strip."""
    if lead not in LEADS:
        raise ValueError(f"unknown lead {lead!r}; expected one of {LEADS}")
    if rhythm:
        if lead != RHYTHM_LEAD or not 0 <= t <= STRIP_S:
            raise ValueError(f"the rhythm strip shows lead {RHYTHM_LEAD} from 0 to {STRIP_S} s")
        row = len(LAYOUT_ROWS)
    else:
        row, column = next((r, c) for r, leads in enumerate(LAYOUT_ROWS) for c, name in enumerate(leads) if name == lead)
        if not column * SEGMENT_S <= t <= (column + 1) * SEGMENT_S:
            raise ValueError(f"lead {lead} is printed from {column * SEGMENT_S} to {(column + 1) * SEGMENT_S} s")
    x_mm = GRID_BOX_MM[0] + TRACE_START_MM + t * SPEED_MM_PER_S
    y_mm = _baseline_mm(row) - mv * GAIN_MM_PER_MV
    return np.array([x_mm * px_per_mm, y_mm * px_per_mm], dtype=np.float64)


def page_size(px_per_mm: float) -> tuple[int, int]:
    """(width, height) in pixels of the page at this resolution."""
    return round(PAGE_MM[0] * px_per_mm), round(PAGE_MM[1] * px_per_mm)


def render_printout(
    signal_mv: np.ndarray,
    fs: float,
    options: RenderOptions | None = None,
    header: str | None = None,
    seed: int | None = None,
) -> RenderResult:
    """Draw a 12-lead record ((samples, 12) mV, columns in `LEADS` order) as a printout.

    `header` (lines separated by newlines) is printed under an "ECG REPORT"
    title above the grid; None leaves that area blank. NaN samples draw as 0;
    values beyond the grid box are clipped to its edge, as a printer's would be.
    The same seed and options always give the same image.
    """
    options = options or RenderOptions()
    signal = np.asarray(signal_mv, dtype=np.float32)
    if signal.ndim != 2 or signal.shape[1] != len(LEADS) or signal.shape[0] < 2:
        raise EdgeECGError(f"a record to render must be (samples, 12) in mV, got shape {signal.shape}")
    if not fs > 0:
        raise EdgeECGError(f"sampling rate must be positive, got {fs}")
    if options.px_per_mm <= 0:
        raise EdgeECGError(f"px_per_mm must be positive, got {options.px_per_mm}")
    streams = dict(zip(("grid", "marks", "geometry", "crease", "lighting", "blur", "noise", "jpeg"),
                       (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8))))

    baseline = np.nan_to_num(np.nanmedian(signal, axis=0)) if options.remove_baseline else np.zeros(len(LEADS))
    shown = np.nan_to_num(signal - baseline.astype(np.float32))
    page = _paper(options, streams["grid"])
    _draw_traces(page, shown, fs, options.px_per_mm, options.trace_mm)
    _draw_text(page, options.px_per_mm, header)
    if options.handwriting > 0:
        _draw_pen_marks(page, options.handwriting, options.px_per_mm, streams["marks"])

    homography = np.eye(3)
    if options.geometric:
        homography = _page_homography(page.shape, options, streams["geometry"])
    image = _photograph(page, homography, options, streams)
    ppm = options.px_per_mm
    quad = cv2.perspectiveTransform(_grid_box_px(ppm).reshape(-1, 1, 2), homography).reshape(4, 2).astype(np.float32)
    return RenderResult(image, quad, homography, ppm, baseline.astype(np.float32))


def _grid_box_px(ppm: float) -> np.ndarray:
    """Corners of the grid box on the undistorted page, clockwise from top-left."""
    left, top, width, height = (v * ppm for v in GRID_BOX_MM)
    return np.array([[left, top], [left + width, top], [left + width, top + height], [left, top + height]])


def _baseline_mm(row: int) -> float:
    return GRID_BOX_MM[1] + FIRST_BASELINE_MM + row * ROW_PITCH_MM


def _paper(options: RenderOptions, rng: np.random.Generator) -> np.ndarray:
    """White page with the pink grid (from a cached index image and a colour look-up table)."""
    minor, major, border = (np.array(c, float) for c in (options.minor_bgr, options.major_bgr, options.border_bgr))
    minor_w, major_w = options.minor_line_mm, options.major_line_mm
    if options.grid_color_jitter > 0:
        hue = np.array(GRID_HUES[rng.integers(len(GRID_HUES))], float)
        mix = options.grid_color_jitter * rng.uniform()
        darken = 1 + options.grid_color_jitter * rng.uniform(-0.5, 0.5)

        def shift(colour: np.ndarray, hue_depth: float) -> np.ndarray:
            return np.clip(255 - ((1 - mix) * (255 - colour) + mix * (255 - hue) * hue_depth) * darken, 0, 255)

        minor, major, border = shift(minor, 0.7), shift(major, 1.0), shift(border, 1.0)
    if options.grid_width_jitter > 0:
        minor_w *= 1 + options.grid_width_jitter * rng.uniform(-1, 1)
        major_w *= 1 + options.grid_width_jitter * rng.uniform(-1, 1)
    ppm = options.px_per_mm
    # widths rounded to 0.05 px so jittered renders reuse a few cached line images
    index = _grid_index(ppm, round(minor_w * ppm * 20) / 20, round(major_w * ppm * 20) / 20)
    levels = np.arange(256)
    minor_a, major_a = (levels >> 4)[:, None] / 15.0, (levels & 15)[:, None] / 15.0
    paper = np.array(options.paper_bgr, float)
    lut = paper - np.maximum(minor_a * (paper - minor), major_a * (paper - major))
    page = cv2.LUT(index, np.clip(lut, 0, 255).astype(np.uint8).reshape(256, 1, 3))
    cv2.polylines(page, [_fixed(_grid_box_px(ppm))], True, tuple(int(v) for v in border),
                  max(1, round(0.3 * ppm)), cv2.LINE_AA, shift=_SHIFT)
    return page


def _grid_index(ppm: float, minor_px: float, major_px: float) -> np.ndarray:
    """3-channel uint8 LUT index: high nibble = minor-line coverage, low nibble = major-line coverage (0-15)."""
    index = cv2.bitwise_or(_grid_lines(ppm, 1.0, minor_px) << 4, _grid_lines(ppm, 5.0, major_px))
    return cv2.merge([index, index, index])


@lru_cache(maxsize=32)
def _grid_lines(ppm: float, step_mm: float, line_px: float) -> np.ndarray:
    """Anti-aliased coverage (0-15) of the grid lines every `step_mm` inside the grid box."""
    width, height = page_size(ppm)
    left, top, box_w, box_h = GRID_BOX_MM

    def coverage(n_px: int, start_mm: float, length_mm: float) -> np.ndarray:
        """Fraction of each pixel covered by the nearest line (a box filter), in 16ths."""
        centres = np.arange(n_px, dtype=np.float64)
        k = np.clip(np.round((centres / ppm - start_mm) / step_mm), 0, round(length_mm / step_mm))
        line = (start_mm + k * step_mm) * ppm
        overlap = np.minimum(centres + 0.5, line + line_px / 2) - np.maximum(centres - 0.5, line - line_px / 2)
        return np.round(np.clip(overlap, 0, 1) * 15).astype(np.uint8)

    across = coverage(width, left, box_w)[None, :] * _span(height, top, box_h, ppm)[:, None]
    down = coverage(height, top, box_h)[:, None] * _span(width, left, box_w, ppm)[None, :]
    return np.maximum(across, down).astype(np.uint8)


def _span(n_px: int, start_mm: float, length_mm: float, ppm: float) -> np.ndarray:
    """Pixels whose centre lies within [start, start + length] mm (half a pixel of slack)."""
    centres = np.arange(n_px)
    return (centres >= start_mm * ppm - 0.5) & (centres <= (start_mm + length_mm) * ppm + 0.5)


_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel precise polylines


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << _SHIFT)).astype(np.int32)


def _draw_traces(page: np.ndarray, shown: np.ndarray, fs: float, ppm: float, trace_mm: float) -> None:
    """All 13 trace segments, calibration pulses and column markers, in one polylines call."""
    n = shown.shape[0]
    x0 = (GRID_BOX_MM[0] + TRACE_START_MM) * ppm
    top, bottom = GRID_BOX_MM[1] * ppm, (GRID_BOX_MM[1] + GRID_BOX_MM[3]) * ppm
    times = np.arange(n) / fs
    xs = x0 + times * SPEED_MM_PER_S * ppm
    lines = []

    def segment(column_index: int, row: int, t0: float, t1: float) -> None:
        first, last = int(math.ceil(t0 * fs - 1e-9)), min(n - 1, int(math.floor(t1 * fs + 1e-9)))
        if last - first < 1:
            return
        ys = _baseline_mm(row) * ppm - shown[first : last + 1, column_index] * GAIN_MM_PER_MV * ppm
        lines.append(_fixed(np.stack([xs[first : last + 1], np.clip(ys, top, bottom)], axis=1)))

    for row, leads in enumerate(LAYOUT_ROWS):
        for column, lead in enumerate(leads):
            segment(LEADS.index(lead), row, column * SEGMENT_S, (column + 1) * SEGMENT_S)
    segment(LEADS.index(RHYTHM_LEAD), len(LAYOUT_ROWS), 0.0, STRIP_S)

    pulse_mm = np.array([[2, 0], [4, 0], [4, -10], [9, -10], [9, 0], [11, 0]], float)
    for row in range(len(LAYOUT_ROWS) + 1):
        lines.append(_fixed((pulse_mm + [GRID_BOX_MM[0], _baseline_mm(row)]) * ppm))
    thickness = max(1, round(trace_mm * ppm))
    cv2.polylines(page, lines, False, INK, thickness, cv2.LINE_AA, shift=_SHIFT)

    marker_top, marker_bottom = (_baseline_mm(0) - 11) * ppm, (_baseline_mm(len(LAYOUT_ROWS) - 1) + 6) * ppm
    markers = [_fixed([[x, marker_top], [x, marker_bottom]]) for x in x0 + np.arange(1, 4) * SEGMENT_S * SPEED_MM_PER_S * ppm]
    cv2.polylines(page, markers, False, INK, 1, cv2.LINE_AA, shift=_SHIFT)


def _put(page: np.ndarray, text: str, x_mm: float, y_mm: float, height_mm: float, ppm: float,
         font: int = cv2.FONT_HERSHEY_COMPLEX, color=INK, thickness: int = 1) -> None:
    scale = cv2.getFontScaleFromHeight(font, max(1, round(height_mm * ppm)), thickness)
    cv2.putText(page, text, (round(x_mm * ppm), round(y_mm * ppm)), font, scale, color, thickness, cv2.LINE_AA)


def _draw_text(page: np.ndarray, ppm: float, header: str | None) -> None:
    """Lead labels and the footer always; the report header only when given."""
    for row, leads in enumerate(LAYOUT_ROWS):
        for column, lead in enumerate(leads):
            x = GRID_BOX_MM[0] + TRACE_START_MM + column * SEGMENT_S * SPEED_MM_PER_S + 0.8
            _put(page, lead, x, _baseline_mm(row) - 3, 2.6, ppm)
    _put(page, RHYTHM_LEAD, GRID_BOX_MM[0] + TRACE_START_MM + 0.8, _baseline_mm(len(LAYOUT_ROWS)) - 3, 2.6, ppm)
    _put(page, "0.67~25Hz  AC50  25mm/s  10mm/mV  4*2.5s+1r", GRID_BOX_MM[0], PAGE_MM[1] - 3, 2.0, ppm)
    if header is None:
        return
    title_w = cv2.getTextSize("ECG REPORT", cv2.FONT_HERSHEY_TRIPLEX,
                              cv2.getFontScaleFromHeight(cv2.FONT_HERSHEY_TRIPLEX, round(4 * ppm)), 1)[0][0]
    _put(page, "ECG REPORT", PAGE_MM[0] / 2 - title_w / ppm / 2, 7.0, 4.0, ppm, cv2.FONT_HERSHEY_TRIPLEX)
    for i, line in enumerate(header.splitlines()[:3]):
        _put(page, line, GRID_BOX_MM[0], 11.5 + 3.6 * i, 2.3, ppm)
    rule_y = 22.0 * ppm
    cv2.line(page, (round(GRID_BOX_MM[0] * ppm), round(rule_y)), (round(page.shape[1] - GRID_BOX_MM[0] * ppm), round(rule_y)),
             INK, max(1, round(0.5 * ppm)), cv2.LINE_AA)
    for i, line in enumerate(("Technician :", "Ref-Phys. :", "Report Confirmed by:")):
        _put(page, line, 198.0, 26.5 + 3.3 * i, 2.3, ppm)


def _draw_pen_marks(page: np.ndarray, most: int, ppm: float, rng: np.random.Generator) -> None:
    """Handwriting-like marks: scribbled words, circled spots and underlines in pen ink."""
    height, width = page.shape[:2]
    for _ in range(int(rng.integers(1, most + 1))):
        ink = PEN_INKS[rng.integers(len(PEN_INKS))]
        x, y = rng.uniform(0.05, 0.85) * width, rng.uniform(0.05, 0.92) * height
        kind = rng.integers(3)
        if kind == 0:
            _put(page, str(rng.choice(MARK_WORDS)), x / ppm, y / ppm, rng.uniform(3, 6), ppm,
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
            cv2.polylines(page, [_fixed(points)], False, ink, int(rng.integers(1, 3)), cv2.LINE_AA, shift=_SHIFT)


def _page_homography(shape: tuple[int, ...], options: RenderOptions, rng: np.random.Generator) -> np.ndarray:
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


def _photograph(page: np.ndarray, homography: np.ndarray, options: RenderOptions, streams: dict) -> np.ndarray:
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

