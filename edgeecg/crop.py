"""Find and straighten the ECG trace region (the pink/red grid box) of a printout.

The classifier must see the traces, not the report's header, footer or white
borders (the paper's model learned those as a shortcut). The grid box is found
on a downscaled working copy (at most `WORK_SIDE` pixels, so a few ms on one
core) and its corners are mapped back to input pixels:

1. a mask of the box's outline: pink ink (lighting-invariant colour ratio after
   white balance) or, for grayscale input and photos whose colour is too weak,
   thin faint lines (a black-hat relative to the local paper level, black ink
   excluded);
2. the long strokes of that mask, the largest quadrilateral inside their convex
   hull, then each side re-fitted as a straight line to the outermost long
   stroke beside it (text specks and inner grid lines do not pull it);
3. checks: the quad's border lies on ink with paper just outside it, and the
   upright region holds grid lines repeating in both directions; otherwise
   `NoGridFound`.

`warp_quad` then removes rotation and perspective, so phone photos of a page
give the same upright crop as a scan.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import EdgeECGError

WORK_SIDE = 640  # longest side of the working copy, in pixels
# A pixel is "pink" when its red channel exceeds green by this fraction of its
# brightness (after white balance); green above blue (orange, brown, skin, wood)
# counts against it, so tables and hands are not mistaken for grid ink.
PINK_THRESHOLD = 0.035
ORANGE_PENALTY = 1.5
MIN_BRIGHTNESS = 60  # darker pixels (ink, deep shadow) carry no usable colour
LINE_KERNEL = 5  # a black-hat of this size finds lines up to ~3 working pixels wide
FAINT_DEPTH = 0.04  # a faint line is at least this much darker than the paper beside it ...
GRID_DEPTH = 0.015  # the grid check also counts fainter lines (blurred photos)
INK_DEPTH = 0.35  # ... and black ink (traces, text) at least this much
MIN_PAPER_LEVEL = 0.5  # paper is at least this bright relative to the brightest paper in view
MIN_GRID_PERIOD = 3  # grid line spacing searched, in working pixels ...
MAX_GRID_PERIOD = 40  # ... (a scan's 5 mm lines are ~10 apart)
MIN_AREA_FRACTION = 0.05  # the grid box covers at least this much of the frame
PINK_STROKE_GAP = 5  # gaps this small (working pixels) do not break a pink stroke (faded outline);
# faint grey lines are not bridged: there, text fringes would join into long strokes
MIN_STROKE_FRACTION = 0.15  # a stroke this long (of the longest side) may be outline
SIDE_BAND = 0.025  # ink this close to a coarse side (of the longest side) belongs to it
MIN_SIDE_SUPPORT = 0.5  # a side's stroke has at least this many ink pixels per pixel of length
ANGLE_SEARCH_DEG = 4  # how far a side's true angle may differ from the coarse quad's
CONFIDENT_BORDER_INK = 0.9  # a colour outline this complete is taken without trying the grid lines
MIN_GRID_SCORE = 12.0  # spectral peak / median power of the grid lines' spacing, in both directions
# OpenBLAS hands a product of more than ~2.6e5 multiply-adds (a side's 4000 points by 33 angles) to worker
# threads, which then spin idle for a while: CPU time (~15 ms a page) a single-core reader never gets back
BLAS_ROWS = 2048
MIN_BORDER_INK = 0.6  # at least this much of the box's border is pink ink ...
MAX_OUTSIDE_INK = 0.25  # ... and at most this much of a parallel line just outside it
OUTSIDE_GAP = 3.0  # working-copy pixels between the border and that outside line


class NoGridFound(EdgeECGError):
    """The image holds no recognisable ECG grid, so there is nothing to classify."""

    def __init__(self, message: str = "no ECG grid found") -> None:
        super().__init__(message)


def _as_bgr(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """(BGR uint8 image, whether it has colour) from grayscale (H x W or H x W x 1), BGR or BGRA."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise NoGridFound()
    if image.dtype != np.uint8:
        raise EdgeECGError(f"expected an 8-bit image, got {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR), False
    if image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image, True


def _downscale(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Working copy (area-averaged, which also merges the dotted grid) and its scale.

    An integer reduction factor keeps INTER_AREA on its fast path.
    """
    h, w = image.shape[:2]
    factor = -(-max(h, w) // WORK_SIDE)  # ceil
    if factor <= 1:
        return image, 1.0
    small = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    return small, 1.0 / factor


def _percentile_level(image: np.ndarray, channel: int, fraction: float) -> float:
    """Grey level below which `fraction` of a uint8 channel's pixels lie (a histogram, so fast)."""
    hist = cv2.calcHist([image], [channel], None, [256], [0, 256]).ravel()
    return float(np.searchsorted(np.cumsum(hist), fraction * hist.sum()))


def _paper_white(image: np.ndarray) -> np.ndarray:
    """Per-channel level of the paper (the 95th percentile), for white balance."""
    return np.maximum(np.array([_percentile_level(image, c, 0.95) for c in range(3)], np.float32), 1.0)


def _pink_mask(small_bgr: np.ndarray) -> np.ndarray:
    """uint8 mask of pixels tinted like ECG grid ink, robust to shading and colour cast.

    pink = (R - G - ORANGE_PENALTY * max(G - B, 0)) / R after white balance,
    computed with OpenCV's saturating arithmetic to stay within a few ms.
    """
    white = _paper_white(small_bgr)
    balanced = cv2.transform(small_bgr, np.diag(white.max() / white).astype(np.float32))
    b, g, r = cv2.split(balanced)
    red_minus_green = cv2.subtract(r, g, dtype=cv2.CV_32F)
    green_over_blue = cv2.subtract(g, b)  # saturates at 0: max(G - B, 0)
    pink = cv2.addWeighted(red_minus_green, 1.0, green_over_blue, -ORANGE_PENALTY, 0.0, dtype=cv2.CV_32F)
    tinted = cv2.compare(pink, cv2.multiply(r, PINK_THRESHOLD, dtype=cv2.CV_32F), cv2.CMP_GT)
    lit = cv2.compare(r, MIN_BRIGHTNESS, cv2.CMP_GT)
    return cv2.bitwise_and(tinted, lit)


def _faint_line_mask(green: np.ndarray, min_depth: float = FAINT_DEPTH) -> np.ndarray:
    """uint8 mask of thin, faint lines (grid ink seen without its colour), ignoring black ink.

    Used for grayscale input and when the colour cue is too weak. Thin lines are
    what a black-hat (closing minus image) finds; dividing by the closing (the
    local paper level) makes it independent of lighting. Pixels near black ink
    (traces, text, the header's rules) are dropped, so only grid-like lines stay.
    `green` is the green channel: grid ink absorbs green most (for grayscale
    input it is the luma).
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (LINE_KERNEL, LINE_KERNEL))
    paper = cv2.morphologyEx(green, cv2.MORPH_CLOSE, kernel)
    depth = cv2.divide(cv2.subtract(paper, green), paper, scale=255, dtype=cv2.CV_8U)  # 255 * bh / paper
    ink = cv2.dilate(cv2.compare(depth, INK_DEPTH * 255, cv2.CMP_GT), kernel)
    faint = cv2.compare(depth, min_depth * 255, cv2.CMP_GT)
    # Only lines on paper: a dark desk or deep shadow around the page is grainy, not ruled.
    on_paper = cv2.compare(paper, MIN_PAPER_LEVEL * _percentile_level(green, 0, 0.95), cv2.CMP_GT)
    return cv2.bitwise_and(cv2.bitwise_and(faint, on_paper), cv2.bitwise_not(ink))


def nonzero_xy(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) int32 of a 2-D mask's nonzero pixels, row by row as np.nonzero lists them: OpenCV's
    findNonZero is ~4x faster on a page. Any single-channel OpenCV type; bool is read as uint8."""
    points = cv2.findNonZero(mask.view(np.uint8) if mask.dtype == bool else mask)
    if points is None:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    points = points.reshape(-1, 2)
    return points[:, 0], points[:, 1]


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, int32 labels, stats) of a uint8 mask's 8-connected components: cv2.connectedComponentsWithStats'
    labels and stats, by the BBDT algorithm (the same labelling; OpenCV's default one takes ~2.5x as long)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, cv2.CV_32S, cv2.CCL_BBDT)
    return count, labels, stats


def _outline_points(mask: np.ndarray, gap: int) -> np.ndarray | None:
    """Pixels of the mask's long strokes (the grid box's outline and grid lines).

    Short specks (JPEG colour fringes around black text, stray grid dots) are
    dropped, so they cannot bend the box; the outline's sides are long.
    """
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    # Strokes are measured with small gaps bridged, so a dashed or faded outline still counts as long.
    bridged = cv2.dilate(mask, np.ones((gap, gap), np.uint8)) if gap > 1 else mask
    count, labels, stats = components(bridged)
    min_length = MIN_STROKE_FRACTION * max(mask.shape)
    long = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]) >= min_length
    long[0] = False  # background
    if not long.any():
        return None
    # pixels of a long stroke that are ink: the per-component flag read straight into 8 bits (np.take)
    xs, ys = nonzero_xy(cv2.bitwise_and(np.take(long.view(np.uint8), labels), cv2.compare(mask, 0, cv2.CMP_GT)))
    return np.column_stack([xs, ys]).astype(np.int32)


def order_clockwise(points: np.ndarray) -> np.ndarray:
    """Four points ordered clockwise (in image coordinates) starting at the top-left."""
    pts = np.asarray(points, np.float32).reshape(4, 2)
    center = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - center[1], pts[:, 0] - center[0])
    pts = pts[np.argsort(angles)]  # y grows downwards, so increasing angle is clockwise
    start = int(np.argmin(pts.sum(axis=1)))  # top-left: smallest x + y
    return np.roll(pts, -start, axis=0)


def _largest_inscribed_quad(polygon: np.ndarray) -> np.ndarray:
    """The four vertices of a convex polygon spanning the largest area (O(n^3), n is small)."""
    pts = polygon.astype(np.float64)
    n = len(pts)
    idx = np.arange(n)
    d = pts[None, :, :] - pts[:, None, :]  # d[i, j] = P[j] - P[i]
    tri = 0.5 * np.abs(d[:, None, :, 0] * d[:, :, None, 1] - d[:, None, :, 1] * d[:, :, None, 0])  # [i, k, j]
    between = ((idx[None, None, :] - idx[:, None, None]) % n) < ((idx[None, :, None] - idx[:, None, None]) % n)
    between &= idx[None, None, :] != idx[:, None, None]
    tri = np.where(between, tri, -1.0)
    best_j = tri.argmax(axis=2)
    half = tri.max(axis=2)  # best triangle on the i -> k arc
    total = half + half.T
    i, k = np.unravel_index(int(np.argmax(total)), total.shape)
    return pts[[i, best_j[i, k], k, best_j[k, i]]].astype(np.float32)


def _row_ends(points: np.ndarray) -> np.ndarray:
    """The points that can be on the convex hull of row-major (x, y) pixels (as np.nonzero lists them):
    each row's leftmost and rightmost, and the whole first and last rows (a level edge's inner points).

    Every other point lies between its row's ends, so the hull is the same, and cv2.convexHull sorts
    far fewer points (a pink grid's outline mask holds 10^5 pixels). Unsorted points are kept whole.
    """
    ys = points[:, 1]
    if len(points) < 3 or not (ys[1:] >= ys[:-1]).all():
        return points
    new_row = np.r_[True, ys[1:] != ys[:-1]]
    keep = new_row | np.r_[new_row[1:], True]  # first and last point of each row (x ascending within it)
    keep |= (ys == ys[0]) | (ys == ys[-1])
    return points[keep]


def _coarse_quad(points: np.ndarray) -> np.ndarray | None:
    """Largest quadrilateral inside the points' convex hull (may lean on stray specks)."""
    hull = cv2.approxPolyDP(cv2.convexHull(_row_ends(points)), 1.0, True).reshape(-1, 2)
    if len(hull) < 4:
        return None
    return order_clockwise(_largest_inscribed_quad(hull))


def _fit_side(
    points: np.ndarray, a: np.ndarray, b: np.ndarray, center: np.ndarray, band: float
) -> np.ndarray | None:
    """Line (x0, y0, vx, vy) of the outermost long ink stroke along side a->b.

    The coarse side may lean on specks, so the stroke's angle is searched near
    it (a small Hough transform: the angle whose distance histogram has the
    sharpest peak). The box outline is the outermost long stroke, so grid lines
    just inside it and JPEG specks of nearby text do not pull the side.
    """
    length = float(np.linalg.norm(b - a))
    direction = (b - a) / max(length, 1e-6)
    rel = points - a
    along = _project(rel, direction)
    normal = np.array([-direction[1], direction[0]], np.float32)
    if normal @ (center - a) > 0:
        normal = -normal  # outwards
    rel = rel[(np.abs(_project(rel, normal)) < band) & (along > 0.05 * length) & (along < 0.95 * length)]
    min_support = MIN_SIDE_SUPPORT * length
    if len(rel) < min_support:
        return None
    base = np.arctan2(normal[1], normal[0])
    angles = base + np.deg2rad(np.linspace(-ANGLE_SEARCH_DEG, ANGLE_SEARCH_DEG, 2 * ANGLE_SEARCH_DEG * 4 + 1))
    normals = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    offset = int(np.ceil(band + length * np.sin(np.deg2rad(ANGLE_SEARCH_DEG)))) + 2
    width = 2 * offset + 1
    # N x angles distance bins, all >= 0, each angle's in its own range (small integers: exact in float32)
    bins = np.rint(_project(rel, normals.T))
    bins += np.arange(len(angles), dtype=np.float32) * width + offset
    hist = np.bincount(bins.astype(np.intp).ravel(), minlength=width * len(angles))
    hist = hist.reshape(len(angles), width)
    best = int(np.argmax(hist.max(axis=1)))
    pairs = hist[best, :-1] + hist[best, 1:]  # a stroke may straddle two bins
    strong = np.nonzero(pairs >= min_support)[0]
    if len(strong) == 0:
        return None
    peak = strong[-1] + 0.5 - offset  # outermost long stroke
    stroke = rel[np.abs(_project(rel, normals[best]) - peak) <= 1.0] + a
    vx, vy, x0, y0 = cv2.fitLine(stroke, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
    return np.array([x0, y0, vx, vy], np.float32)


def _project(points: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """points @ axes, BLAS_ROWS rows at a time: the same products (row by row), each on the calling thread."""
    if len(points) <= BLAS_ROWS:
        return points @ axes
    return np.concatenate([points[i: i + BLAS_ROWS] @ axes for i in range(0, len(points), BLAS_ROWS)])


def _intersect(l1: np.ndarray, l2: np.ndarray) -> np.ndarray | None:
    """Intersection of two lines given as (x0, y0, vx, vy)."""
    matrix = np.array([[l1[2], -l2[2]], [l1[3], -l2[3]]], np.float64)
    if abs(np.linalg.det(matrix)) < 1e-6:
        return None
    t, _ = np.linalg.solve(matrix, np.array([l2[0] - l1[0], l2[1] - l1[1]], np.float64))
    return np.array([l1[0] + t * l1[2], l1[1] + t * l1[3]], np.float32)


def _near_side(points: np.ndarray, a: np.ndarray, b: np.ndarray, band: float, row_major: bool) -> np.ndarray:
    """The points inside side a->b's bounding box grown by `band` (+2 px): a superset of those `_fit_side`
    keeps, found without projecting every point of the mask onto every side (order kept).

    `row_major` points (sorted by y, as np.nonzero lists them) are cut to the box's rows by bisection first.
    """
    (x0, y0), (x1, y1) = np.minimum(a, b) - band - 2, np.maximum(a, b) + band + 2
    if row_major:
        points = points[np.searchsorted(points[:, 1], y0, "left"): np.searchsorted(points[:, 1], y1, "right")]
    xs, ys = points[:, 0], points[:, 1]
    return points[(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)]


def _refine_quad(points: np.ndarray, quad: np.ndarray, band: float) -> np.ndarray:
    """Corners from straight lines fitted to each side's ink; a side without enough ink keeps its coarse line."""
    pts = points.astype(np.float32)
    row_major = bool((pts[1:, 1] >= pts[:-1, 1]).all())
    center = quad.mean(axis=0)
    lines = []
    for a, b in zip(quad, np.roll(quad, -1, axis=0)):
        line = _fit_side(_near_side(pts, a, b, band, row_major), a, b, center, band)
        if line is None:
            d = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
            line = np.array([a[0], a[1], d[0], d[1]], np.float32)
        lines.append(line)
    corners = [_intersect(lines[i - 1], lines[i]) for i in range(4)]
    if any(c is None for c in corners):
        return quad
    return np.array(corners, np.float32)


def _outline_quad(mask: np.ndarray, gap: int) -> tuple[np.ndarray, float] | None:
    """(quad, fraction of its border on ink) of the box outlined in `mask`, or None if there is none."""
    points = _outline_points(mask, gap)
    if points is None:
        return None
    quad = _coarse_quad(points)
    if quad is None or cv2.contourArea(quad) < MIN_AREA_FRACTION * mask.size:
        return None
    quad = _refine_quad(points, quad, SIDE_BAND * max(mask.shape))
    if not cv2.isContourConvex(quad) or cv2.contourArea(quad) < MIN_AREA_FRACTION * mask.size:
        return None
    on_border, outside = _outline_contrast(mask, quad)
    if on_border < MIN_BORDER_INK or outside > MAX_OUTSIDE_INK:
        return None
    return quad, on_border


def _outline_contrast(mask: np.ndarray, quad: np.ndarray) -> tuple[float, float]:
    """(ink on the quad's border, ink just outside it): a box outline is a thin stroke on paper."""
    center = quad.mean(axis=0)
    starts, ends = quad, np.roll(quad, -1, axis=0)
    lengths = np.linalg.norm(ends - starts, axis=1)
    normals = np.stack([starts[:, 1] - ends[:, 1], ends[:, 0] - starts[:, 0]], axis=1) / np.maximum(lengths, 1e-6)[:, None]
    normals *= np.where(np.sum(normals * (center - starts), axis=1) > 0, -1.0, 1.0)[:, None]  # outwards
    samples, directions = [], []
    for a, b, normal, length in zip(starts, ends, normals, lengths):
        t = np.linspace(0.05, 0.95, max(2, int(length)))[:, None]
        samples.append(a + (b - a) * t)
        directions.append(np.broadcast_to(normal, (len(t), 2)))
    line, normal = np.concatenate(samples), np.concatenate(directions)

    def ink(shift: float) -> np.ndarray:
        xy = np.rint(line + shift * normal).astype(int)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < mask.shape[1]) & (xy[:, 1] >= 0) & (xy[:, 1] < mask.shape[0])
        values = np.zeros(len(xy), bool)
        values[inside] = mask[xy[inside, 1], xy[inside, 0]] > 0
        return values

    on = ink(-1.0) | ink(0.0) | ink(1.0)
    off = ink(OUTSIDE_GAP) | ink(OUTSIDE_GAP + 1.0)
    return float(on.mean()), float(off.mean())


def _periodicity(profile: np.ndarray) -> float:
    """Strongest spectral peak of a 1-D profile over the median power (grid lines repeat, clutter does not)."""
    n = len(profile)
    power = np.abs(np.fft.rfft(profile - profile.mean())) ** 2
    band = power[max(1, n // MAX_GRID_PERIOD): n // MIN_GRID_PERIOD + 1]
    if len(band) < 4 or band.max() <= 0:
        return 0.0
    return float(band.max() / max(float(np.median(band)), 1e-12 * band.max()))


def _grid_score(small_bgr: np.ndarray, quad: np.ndarray) -> float:
    """How regularly faint lines repeat across and down the upright region (the weaker direction)."""
    tl, tr, br, bl = quad
    width = int(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = int(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    if width < 4 * MIN_GRID_PERIOD or height < 4 * MIN_GRID_PERIOD:
        return 0.0
    dst = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    upright = cv2.warpPerspective(small_bgr[:, :, 1], cv2.getPerspectiveTransform(quad, dst), (width, height))
    lines = _faint_line_mask(upright, GRID_DEPTH)
    inner = lines[height // 20: -(height // 20) or None, width // 20: -(width // 20) or None].astype(np.float32)
    return min(_periodicity(inner.mean(axis=0)), _periodicity(inner.mean(axis=1)))


def find_trace_quad(image_bgr: np.ndarray) -> np.ndarray:
    """Corners (float32 4x2, clockwise from top-left, input pixels) of the ECG grid box.

    The box is first sought from the colour of its outline; when that outline is
    not crisp (grayscale input, a blurred or small photo) the faint grid lines
    themselves are used. Either way the region must hold a regular grid.
    Raises NoGridFound when no such box covers enough of the image.
    """
    image, colour = _as_bgr(image_bgr)
    return _trace_quad_in(*_downscale(image), colour)


def _trace_quad_in(small: np.ndarray, scale: float, colour: bool) -> np.ndarray:
    """`find_trace_quad` on the working copy `small` (`_downscale`'s, `scale` times the input's size), which
    the page reader makes anyway."""
    found = _outline_quad(_pink_mask(small), PINK_STROKE_GAP) if colour else None
    if found is None or found[1] < CONFIDENT_BORDER_INK:
        candidates = [c for c in (found, _outline_quad(_faint_line_mask(small[:, :, 1]), gap=1)) if c is not None]
        found = max(candidates, key=lambda c: c[1]) if candidates else None
    if found is None or _grid_score(small, found[0]) < MIN_GRID_SCORE:
        raise NoGridFound()
    # Pixel centres: small pixel i covers input pixels [i/scale, (i+1)/scale).
    return order_clockwise((found[0] + 0.5) / scale - 0.5)


def has_ecg_grid(image_bgr: np.ndarray) -> bool:
    """True when `find_trace_quad` would succeed (camera capture accepts the frame)."""
    try:
        find_trace_quad(image_bgr)
    except NoGridFound:
        return False
    return True


def expand_quad(quad: np.ndarray, margin: float) -> np.ndarray:
    """Grow (or shrink, if negative) a quad about its centre by `margin` of its size."""
    if np.asarray(quad).size != 8:
        raise EdgeECGError(f"a crop quad has 4 corners (x, y), got shape {np.shape(quad)}")
    quad = np.asarray(quad, np.float32).reshape(4, 2)
    center = quad.mean(axis=0)
    return (center + (quad - center) * (1.0 + 2.0 * margin)).astype(np.float32)


def warp_quad(image_bgr: np.ndarray, quad: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Perspective-corrected, upright copy of the region inside `quad` (clockwise from top-left).

    The output's width and height are the quad's mean opposite side lengths;
    `margin` expands the quad by that fraction of its size on every side.
    """
    src = expand_quad(quad, margin)
    tl, tr, br, bl = src
    width = max(1, round((np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2))
    height = max(1, round((np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2))
    dst = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(
        image_bgr, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
