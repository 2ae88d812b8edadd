"""Read a scan or photo from disk as 8-bit BGR, refusing broken or unsafe files up front.

OpenCV decodes JPEG, PNG, TIFF and BMP, but it silently returns half an image
for a truncated JPEG and happily allocates gigabytes for a huge one. So the
file's own header is read first (a few bytes, no decoding): its format comes
from its magic bytes, not its name, its dimensions are checked against the
size limits before any pixel is decoded, and a JPEG/PNG must end with its
end marker. Whatever OpenCV then decodes (grayscale, RGBA, 16-bit, float,
CMYK JPEG) is converted to the one form the runtime uses: uint8 BGR H x W x 3.
A JPEG at least four times as large as the page reader reads (a 48 MP phone
photo) is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's own scaled decoding,
which skips most of the work, while still at least twice the reader's size.
The memory that takes is estimated from the header (pixels x channels x bit
depth, plus the conversion; the reduced size where the JPEG is decoded reduced)
and refused above a byte budget. What libjpeg and
libpng write to stderr is captured: corrupt data is an error unless allowed.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import EdgeECGError
from .page import MAX_READ_SIDE

MIN_SIDE = 64  # smaller images cannot hold a readable 12-lead trace
MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (memory, decompression bombs)
BYTES_PER_PIXEL_LIMIT = 8  # an uncompressed 16-bit RGBA file: the most bytes a pixel can take on disk
MAX_DECODE_BYTES = 600_000_000  # peak memory of decoding and converting one image
MAX_ASPECT = 20  # a page is never a thin strip; the cropper cannot use one
# what libjpeg/libpng say about damaged data (their other messages, e.g. an sRGB profile note, are harmless)
_CORRUPT_WORDS = re.compile(r"corrupt|premature|error|crc|invalid|extraneous|truncat|bad ", re.IGNORECASE)
_STDERR_LOCK = threading.Lock()
# libjpeg's scaled decoding, largest reduction first: the image comes out ceil(size / factor) px. It stops at
# twice the page reader's side: the reader's own shrinking then still averages 2 x 2 decoded pixels or more.
# Decoded down to the reader's side itself, clean 3x4+1 renders read 0.6-0.8 dB worse (16 and 28 px/mm, JPEG
# q90); stopping at twice it, 0.0-0.14 dB.
REDUCED_DECODE_MARGIN = 2
_REDUCED_JPEG = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), which carry the size
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES = 256, 257, 258, 277


class TruncatedImage(EdgeECGError):
    """The bytes stop before their format's end: a file cut short, or one still being written."""


def looks_complete(data: bytes) -> bool:
    """False while an image file's bytes stop before their format's end (a scanner still writing it);
    True for a complete file and for anything that is no image at all (the reader then says what is wrong)."""
    if len(data) < len(_PNG_SIGNATURE):
        return False
    try:
        kind, _, _ = image_header(data)
        _check_complete(data, kind, "image")
    except TruncatedImage:
        return False
    except EdgeECGError:  # not an image, or one refused for its size: complete as far as waiting goes
        pass
    return True


def read_image(
    path: str | Path,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    allow_corrupt: bool = False,
    max_side: int | None = MAX_READ_SIDE,
) -> np.ndarray:
    """Decode a JPEG, PNG, TIFF or BMP file into uint8 BGR (H x W x 3), or raise EdgeECGError
    (`max_side`: see `decode_image`)."""
    return decode_image(read_file(path, max_pixels), str(path), max_pixels=max_pixels, min_side=min_side,
                        allow_corrupt=allow_corrupt, max_side=max_side)


def read_file(path: str | Path, max_pixels: int = MAX_PIXELS) -> bytes:
    """An image file's bytes; a missing, unreadable, special, empty or oversized file is one EdgeECGError."""
    path = Path(path)
    size = _regular_file_size(path)
    if size == 0:
        raise EdgeECGError(f"{path}: empty file")
    if size > max_pixels * BYTES_PER_PIXEL_LIMIT:
        raise EdgeECGError(
            f"{path}: file is too large ({size / 1e6:.0f} MB) to be an image of at most {max_pixels / 1e6:g} MP"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EdgeECGError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None


def _regular_file_size(path: Path) -> int:
    """The size of a regular file; a missing, unreadable or special path is one clear error, never an OSError."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise EdgeECGError(f"{path}: no such file") from None
    except OSError as exc:  # permission denied, name too long, a symlink loop, ...
        raise EdgeECGError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise EdgeECGError(f"{path}: not a file")
    return info.st_size


def decode_image(
    data: bytes,
    source: str = "image",
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    allow_corrupt: bool = False,
    max_bytes: int = MAX_DECODE_BYTES,
    max_side: int | None = MAX_READ_SIDE,
) -> np.ndarray:
    """Check the header of encoded image bytes, then decode them into uint8 BGR.

    A JPEG whose longer side is at least 2 x REDUCED_DECODE_MARGIN x `max_side` comes out reduced 2, 4 or 8
    times, as much as keeps that side at REDUCED_DECODE_MARGIN x `max_side` or more (the page reader reads
    nothing finer than `edgeecg.page.MAX_READ_SIDE`); None decodes every JPEG at full size. Other formats are
    always decoded at full size.
    """
    kind, width, height = image_header(data, source)
    _check_size(width, height, source, max_pixels, min_side)
    flags, factor = _decode_flags(data, kind, max(width, height), max_side)
    needed = decode_bytes(-(-width // factor), -(-height // factor), *sample_layout(data, kind))
    if needed > max_bytes:
        raise EdgeECGError(
            f"{source}: {width}x{height} {kind} image needs about {needed / 1e6:.0f} MB to decode "
            f"(limit {max_bytes / 1e6:.0f} MB)"
        )
    _check_complete(data, kind, source)
    try:
        with decoder_messages() as messages:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise EdgeECGError(f"{source}: cannot decode {kind} image ({getattr(exc, 'err', exc)})") from None
    damage = [m for m in messages if _CORRUPT_WORDS.search(m)]
    if image is None or image.size == 0:
        why = f" ({damage[0][:120]})" if damage else ""
        raise EdgeECGError(f"{source}: corrupt or unsupported {kind} image{why}")
    if damage and not allow_corrupt:
        raise EdgeECGError(f"{source}: corrupt {kind} data ({damage[0][:120]}); --allow-corrupt reads it anyway")
    return to_bgr8(image)


def _decode_flags(data: bytes, kind: str, long_side: int, max_side: int | None) -> tuple[int, int]:
    """(cv2.imdecode's flags, the reduction they decode at). JPEG: let OpenCV apply the EXIF orientation (phone
    photos); it has no alpha to lose; 8-bit ones large enough are decoded reduced. Lossless formats: keep alpha
    so transparent areas become white paper, not black."""
    if kind != "JPEG":
        return cv2.IMREAD_UNCHANGED, 1
    if max_side is not None and _jpeg_precision(data) == 8:
        for factor, flag in _REDUCED_JPEG:
            if -(-long_side // factor) >= REDUCED_DECODE_MARGIN * max_side:
                return flag, factor
    return cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH, 1


def _check_size(width: int, height: int, source: str, max_pixels: int, min_side: int) -> None:
    if width * height > max_pixels:
        raise EdgeECGError(
            f"{source}: {width}x{height} image is too large "
            f"({width * height / 1e6:.1f} MP, limit {max_pixels / 1e6:g} MP)"
        )
    if min(width, height) < min_side:
        raise EdgeECGError(f"{source}: {width}x{height} image is too small (at least {min_side} px per side)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise EdgeECGError(f"{source}: {width}x{height} image is a strip, not a page (sides over {MAX_ASPECT}:1)")


def decode_bytes(width: int, height: int, channels: int, sample_bytes: int) -> int:
    """Peak bytes to decode and convert to uint8 BGR: the decoded samples, the 8-bit copy of 16-bit
    samples (through uint32), float32 alpha compositing, and the BGR result. An upper bound of to_bgr8."""
    pixels = width * height
    decoded = pixels * channels * sample_bytes
    to_8bit = pixels * channels * 5 if sample_bytes > 1 else 0
    composite = pixels * 16 if channels in (2, 4) else 0
    return decoded + to_8bit + composite + pixels * 3


@contextmanager
def decoder_messages() -> Iterator[list[str]]:
    """Collect what C decoders write to file descriptor 2 (libjpeg's "Corrupt JPEG data", libpng's errors)
    instead of letting it reach the user's terminal raw; the list is filled when the block ends."""
    messages: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(64_000).decode("utf-8", "replace")
            messages += [line.strip() for line in text.splitlines() if line.strip()]


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


def sample_layout(data: bytes, kind: str) -> tuple[int, int]:
    """(channels, bytes per sample) the decoder will produce, read from the header (an upper bound)."""
    if kind == "PNG" and len(data) >= 26:
        depth, colour = data[24], data[25]
        channels = {0: 1, 2: 3, 3: 4 if b"tRNS" in data[: data.find(b"IDAT")] else 3}.get(colour, 4)
        return channels, 2 if depth > 8 else 1
    if kind == "TIFF":
        return _tiff_layout(data)
    if kind == "BMP" and len(data) >= 30:
        (bits,) = struct.unpack("<H", data[28:30])
        return (4 if bits == 32 else 3), 1
    return 3, 2 if kind == "JPEG" and _jpeg_precision(data) > 8 else 1


def _jpeg_precision(data: bytes) -> int:
    frame = _jpeg_frame(data)
    return data[frame + 4] if frame is not None and frame + 4 < len(data) else 8


def _jpeg_frame(data: bytes) -> int | None:
    """Offset of the JPEG start-of-frame marker (which holds precision and size), if there is one."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in _JPEG_SOF:
            return pos
        if marker in (0xDA, 0xD9):  # start of scan / end of image before any frame header
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return None


def _jpeg_size(data: bytes, source: str) -> tuple[int, int]:
    frame = _jpeg_frame(data)
    if frame is None or frame + 9 > len(data):
        raise TruncatedImage(f"{source}: corrupt or truncated JPEG (no frame header)")
    height, width = struct.unpack(">HH", data[frame + 5 : frame + 9])
    if width == 0 or height == 0:
        raise EdgeECGError(f"{source}: JPEG header gives no image size")
    return width, height


def _png_size(data: bytes, source: str) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise TruncatedImage(f"{source}: corrupt or truncated PNG (no IHDR header)")
    return struct.unpack(">II", data[16:24])


def _tiff_size(data: bytes, source: str) -> tuple[int, int]:
    try:
        dims = _tiff_tags(data)
    except struct.error:
        raise EdgeECGError(f"{source}: corrupt or truncated TIFF (unreadable directory)") from None
    if _TIFF_WIDTH not in dims or _TIFF_HEIGHT not in dims:
        raise EdgeECGError(f"{source}: TIFF header gives no image size")
    return dims[_TIFF_WIDTH], dims[_TIFF_HEIGHT]


def _tiff_layout(data: bytes) -> tuple[int, int]:
    """(samples per pixel, bytes per sample) of a TIFF."""
    try:
        tags = _tiff_tags(data)
    except struct.error:
        return 4, 4  # unreadable directory: assume the worst (the decoder will refuse it anyway)
    return max(tags.get(_TIFF_SAMPLES, 1), 1), max(1, -(-tags.get(_TIFF_BITS, 8) // 8))


def _tiff_tags(data: bytes) -> dict[int, int]:
    """The first directory's width, height, bits per sample and samples per pixel (first value of a list)."""
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    tags = {}
    for i in range(count):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, typ, n = struct.unpack(order + "HHI", entry[:8])
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_BITS, _TIFF_SAMPLES):
            fmt = "H" if typ == 3 else "I"  # SHORT or LONG, stored left-justified in the value field
            value = entry[8:12]
            if n * struct.calcsize(fmt) > 4:  # a list (bits per channel) lies elsewhere; its values agree
                (offset,) = struct.unpack(order + "I", value)
                value = data[offset : offset + 4]
            (tags[tag],) = struct.unpack(order + fmt, value[: struct.calcsize(fmt)])
    return tags


def _bmp_size(data: bytes, source: str) -> tuple[int, int]:
    if len(data) < 26:
        raise TruncatedImage(f"{source}: corrupt or truncated BMP header")
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
            raise TruncatedImage(f"{source}: truncated JPEG (no end-of-image marker)")
    elif kind == "PNG":
        if data.rfind(b"IEND", max(0, len(data) - 64)) < 0:
            raise TruncatedImage(f"{source}: truncated PNG (no IEND chunk)")
    elif kind == "BMP":
        (declared,) = struct.unpack("<I", data[2:6])
        if declared and len(data) < declared:
            raise TruncatedImage(f"{source}: truncated BMP ({len(data)} of {declared} bytes)")

