"""Classify one ECG printout image: decode -> quality gate -> crop -> preprocess -> model -> probabilities.

The quality gate (`edgeecg.gate`) reads the page first: a page without a
readable 12-lead ECG is refused with its reason instead of being diagnosed
(`force=True` classifies it anyway, and the result says so). The page
reading (layout, scale, per-lead quality) goes into every result.

Each stage is timed separately, so a clinic engineer sees where the
milliseconds go on their device. The stages are the pieces of
`edgeecg.preprocess.preprocess` called one by one (the tensor is identical),
so the model is fed exactly what it was validated on.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from pathlib import Path
from time import perf_counter
from typing import TypedDict

import cv2
import numpy as np

from .atomic import write_bytes
from .backends import Backend, file_sha256, probabilities
from .crop import NoGridFound, find_trace_quad, warp_quad
from .digitize import Digitized
from .errors import EdgeECGError
from .gate import Verdict, assess
from .imageio import decode_image, image_header, read_file, to_bgr8
from .preprocess import crop_and_resize, full_frame_quad, normalize
from .signal_runtime import SignalModel, is_signal_contract, page_input, signal_spec

MULTILABEL_THRESHOLD = 0.5


class InferenceResult(TypedDict, total=False):
    """The JSON-ready result of classifying one image (`labels` only for multilabel models)."""

    path: str | None
    task: str  # "multiclass" or "multilabel"
    label: str  # most probable class
    labels: list[str]  # multilabel: every class above MULTILABEL_THRESHOLD
    probs: dict[str, float]  # class -> probability, most probable first (top-k only when asked)
    ms: dict[str, float]  # decode, crop, preprocess, model, total
    crop: list[list[float]]  # region fed to the model: 4 corners in input pixels, clockwise from top-left
    model: dict[str, str]  # name, version, file, sha256, precision, backend
    saved_crop: str  # where --save-crop wrote what the model saw
    refused: str  # why the page was not diagnosed (then no label or probs)
    forced: str  # the gate's refusal that `force` overrode
    gate: dict  # the gate's evidence: grid, trace, leads found, pen width, heart rate
    page: dict  # the page reading: layout, columns, rhythm leads, scale, per-lead quality
    branches: dict  # per-branch probabilities (signal, image) behind the answer
    confidence: dict  # top probability against the model's abstain threshold, when its contract has one
    ood: dict  # a signal model's feature distance from its training pages, against its threshold


def classify_path(
    path: str | Path,
    backend: Backend,
    crop: bool | None = None,
    save_crop_dir: str | Path | None = None,
    top_k: int | None = None,
    allow_corrupt: bool = False,
    data: bytes | None = None,
    force: bool = False,
    allow_partial: bool = False,
    abstain: bool = False,
) -> InferenceResult:
    """Read an image file (or its bytes, already read as `data`) and classify it (see `classify_image`).

    Data the decoder reports as corrupt is refused unless `allow_corrupt`.
    """
    start = perf_counter()
    if data is None:
        data = read_file(path)
    image = decode_image(data, str(path), allow_corrupt=allow_corrupt)
    decode_ms = (perf_counter() - start) * 1e3
    result = _classify(image, backend, crop, save_crop_dir, top_k, Path(path), start, decode_ms, force,
                       allow_partial, abstain)
    return in_file_pixels(result, data, image)


def in_file_pixels(result: InferenceResult, data: bytes, image: np.ndarray) -> InferenceResult:
    """`result` with its crop corners in the pixels of the file `data`, not of the `image` decoded from it
    (a large JPEG is decoded reduced)."""
    if "crop" in result:
        _, width, height = image_header(data)
        scale = max(width, height) / max(image.shape[:2])
        result["crop"] = np.round(np.asarray(result["crop"]) * scale, 1).tolist()
    return result


def classify_image(
    image_bgr: np.ndarray,
    backend: Backend,
    crop: bool | None = None,
    save_crop_dir: str | Path | None = None,
    top_k: int | None = None,
    force: bool = False,
    allow_partial: bool = False,
    abstain: bool = False,
) -> InferenceResult:
    """Classify a decoded image; `crop=None` follows the model's contract, False feeds the whole frame.

    A page the quality gate refuses gets `refused` (its reason) and no label, unless `force`;
    a partial capture (fewer than 12 leads) is refused unless `allow_partial`. A model whose contract
    carries an abstain threshold (chosen on validation folds for a target risk) marks answers below it
    as not confident, and `abstain` refuses them.
    """
    return _classify(image_bgr, backend, crop, save_crop_dir, top_k, None, perf_counter(), 0.0, force, allow_partial,
                     abstain)


def _classify(
    image: np.ndarray,
    backend: Backend,
    crop: bool | None,
    save_crop_dir: str | Path | None,
    top_k: int | None,
    path: Path | None,
    start: float,
    decode_ms: float,
    force: bool,
    allow_partial: bool,
    abstain: bool,
) -> InferenceResult:
    contract = backend.contract
    image = to_bgr8(image)
    use_crop = contract.crop if crop is None else crop

    g0 = perf_counter()
    verdict = assess(image, allow_partial=allow_partial)
    gate_ms = (perf_counter() - g0) * 1e3
    if not verdict.readable and not force:
        return _refusal(verdict, backend, path, decode_ms, gate_ms, start)
    if is_signal_contract(contract):
        result = _classify_signals(verdict, backend, top_k, path, start, decode_ms, gate_ms)
        return _abstention(result) if abstain else result

    t0 = perf_counter()
    if use_crop:
        quad = _crop_quad(image, verdict.reading)
        region = warp_quad(image, quad, margin=contract.crop_margin)
    else:
        quad, region = full_frame_quad(image), image
    t1 = perf_counter()
    rgb, _ = crop_and_resize(region, contract.input_size, crop=False)
    batch = normalize(rgb, contract.mean, contract.std)[None]
    t2 = perf_counter()
    logits = backend.run(batch)
    t3 = perf_counter()

    if logits.shape != (1, len(contract.classes)):
        raise EdgeECGError(
            f"{backend.path}: model returned shape {tuple(logits.shape)}, "
            f"its contract lists {len(contract.classes)} classes"
        )
    if not np.all(np.isfinite(logits)):
        raise EdgeECGError(f"{backend.path}: model returned non-finite outputs (NaN/inf)")
    probs = probabilities(logits, contract)[0]
    result = _labelled(probs, contract, top_k, path)
    result.update(_confidence(probs, contract))
    result["crop"] = np.round(quad.astype(np.float64), 1).tolist()
    _annotate(result, verdict, backend)
    if save_crop_dir is not None:
        result["saved_crop"] = str(save_model_view(rgb, Path(save_crop_dir) / crop_name(path)))
    end = perf_counter()
    result["ms"] = {
        "decode": round(decode_ms, 3),
        "gate": round(gate_ms, 3),
        "crop": round((t1 - t0) * 1e3, 3),
        "preprocess": round((t2 - t1) * 1e3, 3),
        "model": round((t3 - t2) * 1e3, 3),
        "total": round((end - start) * 1e3, 3),
    }
    return _abstention(result) if abstain else result


def _crop_quad(image: np.ndarray, reading: Digitized | None) -> np.ndarray:
    """The region an image model sees: the printed box the cropper finds (as its training crops were made).
    The gate's reader already found it with the cropper itself; where it turned the page upright, its region's
    corners are in reading order; where the cropper finds no box (a full-page grid), the reader's region."""
    if reading is not None and (reading.geometry.outline_box or reading.turned_deg):
        return reading.geometry.quad
    try:
        return find_trace_quad(image)
    except NoGridFound:
        if reading is None:
            raise
        return reading.geometry.quad


def _classify_signals(verdict: Verdict, model: Backend, top_k: int | None, path: Path | None, start: float,
                      decode_ms: float, gate_ms: float) -> InferenceResult:
    """Classify the leads the gate's reading of the page gave (a signal model needs no crop)."""
    if verdict.reading is None:
        raise EdgeECGError(f"a signal model needs a page it can read ({verdict.reason})")
    contract = model.contract
    t0 = perf_counter()
    x = page_input(verdict.reading, signal_spec(contract, str(model.path)))[None]
    logits, distance = model.run_with_distance(x) if isinstance(model, SignalModel) else (model.run(x), None)
    probs = probabilities(logits, contract)[0]
    model_ms = (perf_counter() - t0) * 1e3
    result = _labelled(probs, contract, top_k, path)
    result.update(_confidence(probs, contract))
    if distance is not None:
        ood = model.ood  # validated when the model was opened
        result["ood"] = {"distance": round(float(distance[0]), 3), "threshold": round(ood["threshold"], 3),
                         "typical": bool(distance[0] <= ood["threshold"])}
    result["branches"] = {"signal": {name: round(float(p), 6) for name, p in zip(contract.classes, probs)}}
    _annotate(result, verdict, model)
    result["ms"] = {"decode": round(decode_ms, 3), "gate": round(gate_ms, 3), "model": round(model_ms, 3),
                    "total": round((perf_counter() - start) * 1e3, 3)}
    return result


def _labelled(probs: np.ndarray, contract, top_k: int | None, path: Path | None) -> InferenceResult:
    """path, task, label(s) and the probabilities, most probable first (the top k when asked)."""
    order = np.argsort(-probs, kind="stable")
    shown = order[:top_k] if top_k else order
    result: InferenceResult = {
        "path": str(path) if path is not None else None,
        "task": contract.task,
        "label": contract.classes[order[0]],
    }
    if contract.task == "multilabel":
        result["labels"] = [contract.classes[i] for i in order if probs[i] > MULTILABEL_THRESHOLD]
    result["probs"] = {contract.classes[i]: round(float(probs[i]), 6) for i in shown}
    return result


def _confidence(probs: np.ndarray, contract) -> dict:
    """{"confidence": ...} when the model's contract carries an abstain threshold (multiclass only), else {}."""
    rule = (contract.extra or {}).get("selective")
    if not rule or contract.task != "multiclass":
        return {}
    top = float(probs.max())
    return {"confidence": {"top": round(top, 6), "min": rule["min_confidence"], "target_risk": rule["target_risk"],
                           "confident": top >= rule["min_confidence"]}}


def _abstention(result: InferenceResult) -> InferenceResult:
    """An answer for a page unlike the model's training pages, or below its abstain threshold, becomes a
    refusal (no label), its reason the numbers."""
    confidence, ood = result.get("confidence"), result.get("ood")
    if ood and not ood["typical"]:
        reason = (f"unlike the pages this model was trained on (feature distance {ood['distance']:.1f} > "
                  f"{ood['threshold']:.1f}, set on its training pages)")
    elif confidence and not confidence["confident"]:
        reason = (f"not confident enough ({confidence['top']:.2f} < {confidence['min']:.2f}, the threshold chosen "
                  f"for {confidence['target_risk']:.0%} risk on validation folds)")
    else:
        return result
    kept = {k: v for k, v in result.items() if k not in ("label", "labels", "probs", "branches", "forced")}
    return {**kept, "refused": reason}


def _annotate(result: InferenceResult, verdict: Verdict, backend: Backend) -> None:
    """What every answer carries besides the label: the gate's reading, a forced refusal, the model."""
    result.update(_page_fields(verdict))
    if not verdict.readable:
        result["forced"] = verdict.reason
    result["model"] = model_info(backend)


def _page_fields(verdict: Verdict) -> dict:
    """What the gate saw, for the result: its evidence and, when the page was read, the page summary."""
    fields: dict = {"gate": verdict.evidence}
    if verdict.reading is not None:
        fields["page"] = verdict.reading.summary()
    return fields


def _refusal(verdict: Verdict, backend: Backend, path: Path | None, decode_ms: float, gate_ms: float,
             start: float) -> InferenceResult:
    """The result for a page the gate refused: the reason and the evidence, no label."""
    result: InferenceResult = {"path": str(path) if path is not None else None, "task": backend.contract.task,
                               "refused": verdict.reason}
    result.update(_page_fields(verdict))
    result["model"] = model_info(backend)
    result["ms"] = {"decode": round(decode_ms, 3), "gate": round(gate_ms, 3),
                    "total": round((perf_counter() - start) * 1e3, 3)}
    return result


def crop_name(path: Path | None) -> str:
    """A crop's file name, unique per input: the stem and a hash of the full path, so a.jpg in two folders
    never overwrite each other's crop (a camera frame: its time)."""
    if path is None:
        return time.strftime("frame-%Y%m%d-%H%M%S.png")
    digest = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:10]
    return f"{path.stem}-{digest}.png"


def save_model_view(rgb: np.ndarray, target: Path) -> Path:
    """Write what the model saw (the cropped, resized RGB image) as a PNG, atomically."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise EdgeECGError(f"{target}: could not encode the crop as PNG")
    try:
        write_bytes(target, encoded.tobytes())
    except OSError as exc:
        raise EdgeECGError(f"{target}: cannot write the crop ({exc.strerror})") from None
    return target


def model_info(backend: Backend) -> dict[str, str]:
    """Which model produced a result, down to the file's hash (for audit trails)."""
    path = Path(backend.path)
    stat = path.stat()
    return {
        "name": backend.contract.name,
        "version": backend.contract.model_version,
        "file": path.name,
        "sha256": _sha256_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size),
        "precision": backend.precision,
        "backend": backend.name,
    }


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    # keyed on mtime and size, so a model replaced in place is hashed again
    return file_sha256(path)
