"""Signals for the signal model: digitized Mendeley pages (cached), panel masking, tensors.

Digitizing a page takes ~0.25 s, so each scan is digitized once at the
digitizer's own rate and kept as `.npz` under the crop cache, keyed by the
file's sha256 and a hash of the digitizer's sources: a digitizer change
re-reads every page, nothing else does. A page the digitizer cannot read is
cached as all-NaN (the model then sees an all-masked input) and counted.

`panel_mask` makes a full 10 s recording (PTB-XL) look like what the
digitizer reads from a 3x4+1 page: each lead keeps only its 2.5 s panel,
one lead the whole 10 s strip. The Mendeley template prints lead II as the
strip, but the digitizer often names the strip's lead wrongly, so with
probability `misread` the strip lands in a random lead's channel, holding
lead II's signal there, as the digitizer writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeecg.digitize import DEFAULT_RATE, digitize
from edgeecg.errors import EdgeECGError
from edgeecg.imageio import read_image
from edgeecg.layouts import LAYOUTS, LEADS, RECORD_S
from edgeecg.signal_input import SignalSpec, batch_input, model_input, resample
from edgeecg.signal_runtime import digitizer_key

from .data import ImageTable, cache_dir

PAGE_LAYOUT = "3x4+1"  # the Mendeley template, and the renderer's default page
PRINTED_STRIP = "II"


def _digitize_cached(path: Path, sha256: str, folder: Path) -> tuple[np.ndarray, dict]:
    cached = folder / f"{sha256}.npz"
    if cached.is_file():
        with np.load(cached) as data:
            return data["signal"], json.loads(str(data["summary"]))
    try:
        page = digitize(read_image(path), DEFAULT_RATE)
        signal, summary = page.signal, page.summary()
    except EdgeECGError as exc:  # no grid / no trace: an all-masked input, counted by the caller
        signal = np.full((int(RECORD_S * DEFAULT_RATE), len(LEADS)), np.nan, np.float32)
        summary = {"error": str(exc)}
    # one temporary name per process and thread: duplicate files of a table are digitized side by side
    tmp = folder / f".{sha256}.{os.getpid()}.{threading.get_ident()}.npz"
    np.savez_compressed(tmp, signal=signal, summary=json.dumps(summary))
    os.replace(tmp, cached)
    return signal, summary


def load_digitized(table: ImageTable, spec: SignalSpec, workers: int = 2, progress=None) -> tuple[np.ndarray, list[dict]]:
    """(N, length, 12) digitized signals at `spec.rate` (NaN where not plotted) and each page's summary."""
    folder = cache_dir() / f"digitized-{digitizer_key()}-{DEFAULT_RATE:g}"
    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> tuple[np.ndarray, dict]:
        return _digitize_cached(table.items[i].path, table.sha256[i], folder)

    out = np.empty((len(table), spec.length, len(LEADS)), np.float32)
    summaries = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, (signal, summary) in enumerate(pool.map(one, range(len(table)))):
            out[i] = resample(signal, DEFAULT_RATE, spec.rate, spec.length)
            summaries.append(summary)
            if progress is not None:
                progress()
    return out, summaries


def panel_mask(signal: np.ndarray, rate: float, rng: np.random.Generator, misread: float) -> np.ndarray:
    """A full (length, 12) recording as the digitizer reads a 3x4+1 page of it (module docstring)."""
    out = np.full_like(signal, np.nan)
    for panel in LAYOUTS[PAGE_LAYOUT].panels():
        if panel.rhythm:
            continue
        first, last = int(round(panel.t0 * rate)), int(round(panel.t1 * rate))
        column = LEADS.index(panel.lead)
        out[first:last, column] = signal[first:last, column]
    strip = LEADS.index(PRINTED_STRIP)
    channel = int(rng.integers(len(LEADS))) if rng.random() < misread else strip
    out[:, channel] = signal[:, strip]
    return out


def jitter(signal: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """What differs between two readings of one ECG: gain (page and per lead), pen noise, a small time shift.

    Gain x0.8-1.25 with +-10 % per lead, 0.02 mV noise, shift up to 0.2 s
    (the gap it opens is unplotted, NaN).
    """
    out = signal * rng.uniform(0.8, 1.25) * rng.uniform(0.9, 1.1, signal.shape[1]).astype(np.float32)
    out = out + rng.normal(0.0, 0.02, signal.shape).astype(np.float32)
    shift = int(rng.integers(-int(0.2 * rate), int(0.2 * rate) + 1))
    out = np.roll(out, shift, 0)
    if shift > 0:
        out[:shift] = np.nan
    elif shift < 0:
        out[shift:] = np.nan
    return out.astype(np.float32)


class SignalDataset(Dataset):
    """(N, length, 12) signals -> (24, length) tensors; training records optionally panel-masked and jittered."""

    def __init__(self, signals: np.ndarray, targets: np.ndarray, spec: SignalSpec, mask_p: float = 0.0,
                 misread: float = 0.0, augment: bool = False, seed: int = 0):
        self.signals, self.targets, self.spec = signals, targets, spec
        self.mask_p, self.misread, self.augment, self.seed = mask_p, misread, augment, seed

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, i: int):
        signal = self.signals[i]
        rng = np.random.default_rng([self.seed, i, int(torch.randint(2**31, ()).item())])
        if self.mask_p > 0 and rng.random() < self.mask_p:
            signal = panel_mask(signal, self.spec.rate, rng, self.misread)
        if self.augment:
            signal = jitter(signal, self.spec.rate, rng)
        return torch.from_numpy(model_input(signal, self.spec)), self.targets[i]


def masked_copy(signals: np.ndarray, rate: float, seed: int, misread: float = 0.0) -> np.ndarray:
    """Every record panel-masked once (seeded): a fixed 'as if read from a page' evaluation set."""
    rng = np.random.default_rng(seed)
    return np.stack([panel_mask(s, rate, rng, misread) for s in signals]) if len(signals) else signals


@torch.no_grad()
def predict_signal_logits(model: torch.nn.Module, signals: np.ndarray, spec: SignalSpec, device: torch.device,
                          batch: int = 64) -> np.ndarray:
    """Logits for (N, length, 12) signals through the runtime's own `batch_input`."""
    model.eval()
    out = [model(torch.from_numpy(batch_input(signals[s:s + batch], spec)).to(device)).float().cpu().numpy()
           for s in range(0, len(signals), batch)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def digitized_renders(signals: np.ndarray, rate: float, ids: list[int], seed: int, photo: float) -> np.ndarray:
    """Each record drawn as a page of a random style (`random_options`; photo-like with probability `photo`)
    and read back by the runtime's digitizer: what the model meets in the clinic, errors included. Cached per
    record (its id and content), seed, digitizer and renderer; a page the digitizer cannot read is an all-masked record."""
    from edgeecg.render import random_options, record_seed, render_printout, renderer_sources

    digest = hashlib.sha256(digitizer_key().encode())
    for source in renderer_sources():
        digest.update(source.read_bytes())
    key = digest.hexdigest()[:12]
    folder = cache_dir() / f"digitized-renders-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    out = np.empty_like(signals)
    for i, (signal, ecg_id) in enumerate(zip(signals, ids)):
        page_seed = record_seed(seed, ecg_id)
        is_photo = np.random.default_rng(page_seed).random() < photo
        content = hashlib.sha256(np.ascontiguousarray(signal).tobytes()).hexdigest()[:16]  # ids alone may collide
        cached = folder / f"{ecg_id}-{content}-{seed}-{int(is_photo)}.npy"
        if cached.is_file():
            out[i] = np.load(cached)
            continue
        options = random_options(page_seed, photo=is_photo)
        page = render_printout(np.nan_to_num(signal), rate, options, seed=page_seed)
        try:
            read = digitize(page.image, DEFAULT_RATE)
            out[i] = resample(read.signal, read.rate, rate, len(signal))
        except EdgeECGError:
            out[i] = np.nan
        tmp = folder / f".{cached.name}.{os.getpid()}.{threading.get_ident()}.npy"
        np.save(tmp, out[i])
        os.replace(tmp, cached)
    return out
