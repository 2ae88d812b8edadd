"""A physiologically shaped synthetic 12-lead ECG, for round-trip tests and benchmarks without any dataset.

Leads I and II are drawn beat by beat (P, Q, R, S, T as Gaussians); III and
the augmented leads follow from Einthoven's and Goldberger's laws, so a page
made from it obeys the same relations a real one does. V1-V6 are drawn alike.
"""

from __future__ import annotations

import numpy as np

from .layouts import RECORD_S


def synthetic_ecg(seed: int, fs: float = 500.0, seconds: float = RECORD_S) -> np.ndarray:
    """(samples, 12) float32 in mV, columns in `LEADS` order."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(fs * seconds))) / fs
    beats = np.arange(rng.uniform(0.0, 0.5), seconds, 60.0 / rng.uniform(55, 95))

    def lead() -> np.ndarray:
        # (offset from the R peak s, width s, amplitude mV): P 100 ms, Q and S 20-25 ms, R 35 ms, T 170 ms wide
        # (full width at half maximum), as in resting adult ECGs
        waves = ((-0.18, 0.06, rng.uniform(0.05, 0.2)), (-0.035, 0.012, rng.uniform(-0.3, 0.0)),
                 (0.0, 0.021, rng.uniform(0.3, 1.6)), (0.04, 0.015, rng.uniform(-0.5, 0.0)),
                 (0.28, 0.1, rng.uniform(-0.1, 0.4)))
        offsets = t[None, :] - beats[:, None]
        return sum(a * np.exp(-(((offsets - dt) / w) ** 2)).sum(axis=0) for dt, w, a in waves)

    i, ii = lead(), lead()
    limb = [i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2]
    signal = np.stack(limb + [lead() for _ in range(6)], axis=1)
    return signal.astype(np.float32)
