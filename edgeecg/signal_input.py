"""What a signal model is fed: 12 leads at a fixed rate and length, NaN -> 0 plus a mask, normalised per lead.

Torch-free so the runtime and training build exactly the same input from a
digitized page (`edgeecg.digitize`) or a recorded signal. The digitizer writes
NaN wherever the page plots nothing (a 3x4+1 page shows each lead for 2.5 s),
so the model gets, per lead, the signal with those gaps set to 0 and a 0/1
channel saying which samples are real: channels 0-11 signal, 12-23 mask,
in `edgeecg.layouts.LEADS` order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import EdgeECGError
from .layouts import LEADS

NORMALISATIONS = {
    # Amplitude carries diagnosis (voltage criteria), so the default keeps mV and only removes each lead's offset.
    "median": "per lead: median of the plotted samples subtracted, in mV, clipped to +-clip",
    # Scale-free alternative, for pages whose gain is uncertain.
    "zscore": "per lead: median subtracted, divided by the plotted samples' std (>= 0.05 mV), clipped to +-clip",
}


@dataclass(frozen=True)
class SignalSpec:
    """The input contract of a signal model."""

    rate: float = 100.0
    seconds: float = 10.0
    norm: str = "median"
    clip: float = 10.0
    leads: tuple[str, ...] = LEADS

    def __post_init__(self) -> None:
        if self.norm not in NORMALISATIONS:
            raise EdgeECGError(f"unknown signal normalisation {self.norm!r}; choose one of {', '.join(NORMALISATIONS)}")
        if not (self.rate > 0 and self.seconds > 0):
            raise EdgeECGError(f"signal rate and length must be positive, got {self.rate} Hz x {self.seconds} s")

    @property
    def length(self) -> int:
        return int(round(self.rate * self.seconds))

    @property
    def channels(self) -> int:
        return 2 * len(self.leads)

    def to_dict(self) -> dict:
        return {**asdict(self), "leads": list(self.leads), "length": self.length,
                "normalisation": NORMALISATIONS[self.norm], "channels": "signal 0-11, mask 12-23"}


def resample(signal: np.ndarray, rate_in: float, rate_out: float, length: int) -> np.ndarray:
    """(n, leads) at `rate_in` -> (length, leads) at `rate_out`, NaN kept where the input has no samples.

    Down-sampling first averages the plotted samples over one output period
    (a box filter against aliasing that ignores NaN); a sample is NaN when
    less than half of its window was plotted or it lies past the input's end.
    """
    signal = np.asarray(signal, np.float32)
    valid = np.isfinite(signal)
    width = max(1, int(round(rate_in / rate_out)))
    if width > 1:
        kernel = np.ones(width, np.float32)
        filled = np.where(valid, signal, 0.0)
        total = np.stack([np.convolve(filled[:, j], kernel, "same") for j in range(signal.shape[1])], 1)
        count = np.stack([np.convolve(valid[:, j].astype(np.float32), kernel, "same") for j in range(signal.shape[1])], 1)
        signal = np.where(count >= width / 2, total / np.maximum(count, 1), np.nan)
        valid = np.isfinite(signal)
    position = np.arange(length) * (rate_in / rate_out)
    left = np.clip(np.floor(position).astype(int), 0, len(signal) - 1)
    right = np.clip(left + 1, 0, len(signal) - 1)
    frac = (position - left)[:, None].astype(np.float32)
    out = signal[left] * (1 - frac) + signal[right] * frac
    nearest = np.where(frac[:, 0] < 0.5, left, right)
    out = np.where(valid[left] & valid[right], out, np.where(valid[nearest], signal[nearest], np.nan))
    out[position > len(signal) - 1] = np.nan
    return out.astype(np.float32)


def model_input(signal: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(length, 12) mV with NaN gaps, at `spec.rate` -> (24, length) float32 as the model reads it."""
    if signal.ndim != 2 or signal.shape[1] != len(spec.leads):
        raise EdgeECGError(f"expected (samples, {len(spec.leads)}) signals, got shape {signal.shape}")
    x = np.full((spec.length, len(spec.leads)), np.nan, np.float32)
    n = min(spec.length, len(signal))
    x[:n] = signal[:n]
    mask = np.isfinite(x)
    plotted = mask.any(0)
    safe = np.where(mask, x, np.nan)
    centre = np.zeros(x.shape[1], np.float32)
    scale = np.ones(x.shape[1], np.float32)
    if plotted.any():
        centre[plotted] = np.nanmedian(safe[:, plotted], axis=0)
        if spec.norm == "zscore":
            scale[plotted] = np.maximum(np.nanstd(safe[:, plotted], axis=0), 0.05)
    values = np.clip((x - centre) / scale, -spec.clip, spec.clip)
    return np.concatenate([np.where(mask, values, 0.0).T, mask.T]).astype(np.float32)


def batch_input(signals: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """(N, length, 12) -> (N, 24, length): `model_input` per record."""
    return np.stack([model_input(s, spec) for s in signals]) if len(signals) else \
        np.zeros((0, spec.channels, spec.length), np.float32)
