"""Take an image upload off the wire: bounded, kept in memory, checked before any pixel is decoded.

A phone photo is a few MB, so the whole body is held in memory and never
spooled to a shared temp folder (a multipart file part too). Its size is
refused from the Content-Length header when the client declares it, and
while reading when it does not; the image's dimensions come from its header,
so a decompression bomb is refused (413) before the decoder allocates
anything. Every refusal is one line with the HTTP status that fits it.
"""

from __future__ import annotations

from typing import AsyncIterator, Mapping

from python_multipart.multipart import FormParser, parse_options_header
from python_multipart.exceptions import FormParserError

from .errors import EdgeECGError, first_line
from .imageio import image_header

SOURCE = "upload"


class UploadRefused(EdgeECGError):
    """An upload the server will not process, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed `max_bytes`."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def image_bytes(body: bytes, content_type: str) -> bytes:
    """The image in a body: the body itself (image/*), or the first file part of a multipart form."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        body = _first_file(body, content_type)
    elif kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise UploadRefused(415, f"send an image (image/* or a multipart form), not {kind}")
    if not body:
        raise UploadRefused(400, "empty upload")
    return body


def check_image(data: bytes, max_pixels: int) -> str:
    """The image's format; refuses what is not an image (400) or has over `max_pixels` pixels (413)."""
    try:
        kind, width, height = image_header(data, SOURCE)
    except EdgeECGError as exc:
        raise UploadRefused(400, str(exc)) from None
    if width * height > max_pixels:
        raise UploadRefused(
            413, f"{SOURCE}: {width}x{height} image is too large ({width * height / 1e6:.1f} MP, "
                 f"limit {max_pixels / 1e6:g} MP)"
        )
    return kind


def _first_file(body: bytes, content_type: str) -> bytes:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadRefused(400, "multipart form without a boundary")
    files: list[bytes] = []

    def on_file(file) -> None:
        file.file_object.seek(0)
        files.append(file.file_object.read())

    # files up to the body's own size stay in memory: nothing is written to disk
    parser = FormParser("multipart/form-data", None, on_file, boundary=boundary,
                        config={"MAX_MEMORY_FILE_SIZE": len(body) + 1})
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise UploadRefused(400, f"malformed multipart form ({first_line(exc)})") from None
    if not files:
        raise UploadRefused(400, "the form holds no file: send the image as the 'file' field")
    return files[0]


def _too_large(max_bytes: int) -> UploadRefused:
    return UploadRefused(413, f"upload is larger than the {max_bytes / 1e6:g} MB limit")
