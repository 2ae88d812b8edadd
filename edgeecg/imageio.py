"""Read a scan or photo from disk as 8-bit BGR, refusing broken or unsafe files up front.

OpenCV decodes JPEG, PNG, TIFF and BMP, but it silently returns half an image
for a truncated JPEG and happily allocates gigabytes for a huge one. So the
file's own header is read first (a few bytes, no decoding): its format comes
from its magic bytes, not its name, its dimensions are checked against the
size limits before any pixel is decoded, and a JPEG/PNG must end with its
end marker. Whatever OpenCV then decodes (grayscale, RGBA, 16-bit, float,
CMYK JPEG) is converted to the one form the runtime uses: uint8 BGR H x W x 3.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from .errors import EdgeECGError

MIN_SIDE = 64  # smaller images cannot hold a readable 12-lead trace
MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (memory, decompression bombs)
BYTES_PER_PIXEL_LIMIT = 8  # an uncompressed 16-bit RGBA file: the most bytes a pixel can take on disk

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), which carry the size
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257


def read_image(
    path: str | Path, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Decode a JPEG, PNG, TIFF or BMP file into uint8 BGR (H x W x 3), or raise EdgeECGError."""
    path = Path(path)
    if not path.exists():
        raise EdgeECGError(f"{path}: no such file")
    if not path.is_file():
        raise EdgeECGError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise EdgeECGError(f"{path}: empty file")
    if size > max_pixels * BYTES_PER_PIXEL_LIMIT:
        raise EdgeECGError(
            f"{path}: file is too large ({size / 1e6:.0f} MB) to be an image of at most {max_pixels / 1e6:g} MP"
        )
    data = path.read_bytes()
    return decode_image(data, str(path), max_pixels=max_pixels, min_side=min_side)


def decode_image(
    data: bytes, source: str = "image", max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> np.ndarray:
    """Check the header of encoded image bytes, then decode them into uint8 BGR."""
    kind, width, height = image_header(data, source)
    if width * height > max_pixels:
        raise EdgeECGError(
            f"{source}: {width}x{height} image is too large "
            f"({width * height / 1e6:.1f} MP, limit {max_pixels / 1e6:g} MP)"
        )
    if min(width, height) < min_side:
        raise EdgeECGError(f"{source}: {width}x{height} image is too small (at least {min_side} px per side)")
    _check_complete(data, kind, source)
    # JPEG: let OpenCV apply the EXIF orientation (phone photos); it has no alpha to lose.
    # Lossless formats: keep alpha so transparent areas become white paper, not black.
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH if kind == "JPEG" else cv2.IMREAD_UNCHANGED
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise EdgeECGError(f"{source}: cannot decode {kind} image ({getattr(exc, 'err', exc)})") from None
    if image is None or image.size == 0:
        raise EdgeECGError(f"{source}: corrupt or unsupported {kind} image")
    return to_bgr8(image)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (gray, BGR, BGRA; 8/16-bit or float) -> uint8 BGR, alpha composited on white."""
    image = _to_uint8(image)
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[2]
    if channels <= 2:  # gray, or gray + alpha
        color = cv2.cvtColor(np.ascontiguousarray(image[..., 0]), cv2.COLOR_GRAY2BGR)
    else:
        color = image[..., :3]
    alpha = image[..., -1] if channels in (2, 4) else None
    if alpha is None:
        return np.ascontiguousarray(color)
    a = alpha.astype(np.float32)[..., None] / 255.0
    return (color.astype(np.float32) * a + 255.0 * (1.0 - a)).round().astype(np.uint8)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(image) * scale, 0, 255).round().astype(np.uint8)
    info = np.iinfo(image.dtype)
    return ((image.astype(np.float64) - info.min) * 255.0 / (info.max - info.min)).round().astype(np.uint8)


def image_header(data: bytes, source: str = "image") -> tuple[str, int, int]:
    """(format, width, height) from the first bytes of a file, without decoding pixels."""
    if data[:2] == b"\xff\xd8":
        return ("JPEG",) + _jpeg_size(data, source)
    if data[:8] == _PNG_SIGNATURE:
        return ("PNG",) + _png_size(data, source)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ("TIFF",) + _tiff_size(data, source)
    if data[:2] == b"BM":
        return ("BMP",) + _bmp_size(data, source)
    raise EdgeECGError(f"{source}: not a JPEG, PNG, TIFF or BMP image")


def _jpeg_size(data: bytes, source: str) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            if width == 0 or height == 0:
                raise EdgeECGError(f"{source}: JPEG header gives no image size")
            return width, height
        if marker in (0xDA, 0xD9):  # start of scan / end of image before any frame header
            break
        pos += 2 + length
    raise EdgeECGError(f"{source}: corrupt or truncated JPEG (no frame header)")


def _png_size(data: bytes, source: str) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise EdgeECGError(f"{source}: corrupt or truncated PNG (no IHDR header)")
    return struct.unpack(">II", data[16:24])


def _tiff_size(data: bytes, source: str) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
        dims = {}
        for i in range(count):
            entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
            tag, typ = struct.unpack(order + "HH", entry[:4])
            if tag in (_TIFF_WIDTH, _TIFF_HEIGHT):
                fmt = "H" if typ == 3 else "I"  # SHORT or LONG, stored left-justified in the value field
                (dims[tag],) = struct.unpack(order + fmt, entry[8 : 8 + struct.calcsize(fmt)])
    except struct.error:
        raise EdgeECGError(f"{source}: corrupt or truncated TIFF (unreadable directory)") from None
    if _TIFF_WIDTH not in dims or _TIFF_HEIGHT not in dims:
        raise EdgeECGError(f"{source}: TIFF header gives no image size")
    return dims[_TIFF_WIDTH], dims[_TIFF_HEIGHT]


def _bmp_size(data: bytes, source: str) -> tuple[int, int]:
    if len(data) < 26:
        raise EdgeECGError(f"{source}: corrupt or truncated BMP header")
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # negative height: rows stored top-down


def _check_complete(data: bytes, kind: str, source: str) -> None:
    """Refuse a file cut short: decoders fill the missing rows with grey without failing."""
    if kind == "JPEG":
        scan = data.find(b"\xff\xda")  # the end-of-image marker must follow the first scan
        if scan < 0 or data.rfind(b"\xff\xd9") < scan:
            raise EdgeECGError(f"{source}: truncated JPEG (no end-of-image marker)")
    elif kind == "PNG":
        if data.rfind(b"IEND", max(0, len(data) - 64)) < 0:
            raise EdgeECGError(f"{source}: truncated PNG (no IEND chunk)")
    elif kind == "BMP":
        (declared,) = struct.unpack("<I", data[2:6])
        if declared and len(data) < declared:
            raise EdgeECGError(f"{source}: truncated BMP ({len(data)} of {declared} bytes)")

