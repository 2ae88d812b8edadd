"""What a server worker does with an upload: decode it, then classify or digitize it.

These run on the worker threads (never on the event loop) and know nothing
of HTTP: a decoding failure is an `UploadRefused` (400), a page that cannot
be read an `EdgeECGError`, and the caller picks the status.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import zipfile
from hashlib import sha256
from pathlib import Path
from time import perf_counter

import numpy as np

from .atomic import write_bytes
from .backends import Backend
from .errors import EdgeECGError
from .imageio import decode_image
from .infer import InferenceResult, classify_image, in_file_pixels
from .serve_upload import SOURCE, UploadRefused

SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp"}


def decode(data: bytes, max_pixels: int) -> tuple[np.ndarray, float]:
    """The upload as BGR pixels and the milliseconds decoding took; 400 for a broken image."""
    start = perf_counter()
    try:
        image = decode_image(data, SOURCE, max_pixels=max_pixels)
    except EdgeECGError as exc:
        raise UploadRefused(400, str(exc)) from None
    return image, (perf_counter() - start) * 1e3


def classify(data: bytes, backend: Backend, max_pixels: int) -> InferenceResult:
    """`edgeecg infer --json`'s result for an upload, decoding time included."""
    image, decode_ms = decode(data, max_pixels)
    result = in_file_pixels(classify_image(image, backend), data, image)
    if result.get("refused"):  # the quality gate's reason, as the page-reading errors are reported
        raise EdgeECGError(result["refused"])
    result["ms"]["decode"] = round(decode_ms, 3)
    result["ms"]["total"] = round(result["ms"]["total"] + decode_ms, 3)
    return result


def digitize(data: bytes, max_pixels: int, rate: float, layout: str | None, fmt: str) -> tuple[dict, bytes | None]:
    """The page summary with timings, and the signals: JSON (the summary plus leads) or a zip of files."""
    from .digitize import digitize as read_leads
    from .signal_io import write_signals

    image, decode_ms = decode(data, max_pixels)
    start = perf_counter()
    result = read_leads(image, rate=rate, layout=layout)
    ms = {"decode": round(decode_ms, 3), "digitize": round((perf_counter() - start) * 1e3, 3)}
    # the writers work on files: a private temporary folder, gone when the response is built
    with tempfile.TemporaryDirectory(prefix="edgeecg-serve-") as tmp:
        files = write_signals(result, Path(tmp), "ecg", fmt)
        if fmt == "json":
            document = json.loads(files[0].read_bytes())
            return {**document, "ms": ms}, None
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in files:
                zipped.write(path, path.name)
    return {**result.summary(), "ms": ms}, archive.getvalue()


def keep(folder: Path | None, data: bytes, kind: str, result: dict) -> None:
    """Save an upload and its result under `folder` (`edgeecg serve --keep`; None keeps nothing).

    A digitized page's signals are left out: they are read again from the kept image.
    """
    if folder is None:
        return
    result = {key: value for key, value in result.items() if key != "leads"}
    stem = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{sha256(data).hexdigest()[:12]}"
    write_bytes(folder / f"{stem}{SUFFIXES.get(kind, '.img')}", data)
    write_bytes(folder / f"{stem}.json", json.dumps(result).encode())
