"""Score a digitized signal against the truth, as the PhysioNet Challenge 2024 scores digitization.

Per lead: the SNR in dB (power of the true signal over the power of the error)
after the best time shift within +-0.2 s and the best vertical offset, and
Pearson's r at that shift. Only samples the digitizer plotted are compared;
how much it plotted is reported apart, as coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHIFT_S = 0.2


@dataclass(frozen=True)
class LeadScore:
    snr_db: float
    pearson_r: float
    shift_s: float


def score_lead(truth: np.ndarray, estimate: np.ndarray, rate: float, max_shift_s: float = MAX_SHIFT_S) -> LeadScore | None:
    """SNR and r of one lead at the best shift (estimate[t + shift] against truth[t]); None if too little overlaps."""
    truth = np.asarray(truth, np.float64)
    estimate = np.asarray(estimate, np.float64)
    n = min(len(truth), len(estimate))
    truth, estimate = truth[:n], estimate[:n]
    best = None
    limit = int(round(max_shift_s * rate))
    for shift in range(-limit, limit + 1):
        a = truth[max(0, -shift): n - max(0, shift)]
        b = estimate[max(0, shift): n - max(0, -shift)]
        ok = ~(np.isnan(a) | np.isnan(b))
        if ok.sum() < max(10, 0.1 * rate):
            continue
        a, b = a[ok], b[ok]
        error = (a - a.mean()) - (b - b.mean())
        signal_power = float(np.sum((a - a.mean()) ** 2))
        error_power = max(float(np.sum(error**2)), 1e-12)
        snr = 10 * np.log10(max(signal_power, 1e-12) / error_power)
        if best is None or snr > best[0]:
            r = float(np.corrcoef(a, b)[0, 1]) if np.std(a) > 0 and np.std(b) > 0 else 0.0
            best = (snr, r, shift / rate)
    return LeadScore(*best) if best else None
