"""Digitization quality and speed: render -> digitize -> SNR per layout (clean and photo-like), plus LUDB printouts.

Prints one table: per layout and condition, how often the layout was read,
the median SNR (dB, best shift within +-0.2 s and offset, as in the PhysioNet
Challenge 2024) and Pearson r over all leads, and the median page-reading +
digitization time on this machine (one process; the machine is stated).

    python benchmarks/digitize_snr.py --pages 5 [--ludb ../shared/data/ludb-printouts]
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeecg.digitize import digitize
from edgeecg.errors import EdgeECGError
from edgeecg.layouts import LAYOUTS, LEADS
from edgeecg.machine import cpu_model
from edgeecg.render import RenderOptions, render_printout
from edgeecg.signal_score import score_lead
from edgeecg.synthetic import synthetic_ecg

FS = 500.0


def _score(truth: np.ndarray, estimate: np.ndarray) -> list:
    return [s for s in (score_lead(truth[:, i], estimate[:, i], FS) for i in range(len(LEADS))) if s is not None]


def _render_rows(pages: int) -> list[tuple]:
    rows = []
    for name in LAYOUTS:
        for condition, base in (("clean", RenderOptions()), ("photo", RenderOptions.photo())):
            found, snrs, rs, ms = 0, [], [], []
            for seed in range(pages):
                signal = synthetic_ecg(seed, FS)
                page = render_printout(signal, FS, replace(base, layout=name), seed=seed)
                start = time.perf_counter()
                try:
                    result = digitize(page.image, rate=FS)
                except EdgeECGError:
                    continue
                ms.append((time.perf_counter() - start) * 1e3)
                found += result.layout == name
                scores = _score(signal - page.baseline_mv, result.signal)
                snrs += [s.snr_db for s in scores]
                rs += [s.pearson_r for s in scores]
            rows.append((name, condition, f"{found}/{pages}", _median(snrs), _median(rs), _median(ms)))
    return rows


def _ludb_row(folder: Path, limit: int) -> tuple:
    import cv2
    import wfdb

    entries = list(csv.DictReader(open(folder / "manifest.csv")))[:limit]
    found, snrs, rs, ms = 0, [], [], []
    for entry in entries:
        record = wfdb.rdrecord(str(folder / entry["record"]))
        order = [[n.lower() for n in record.sig_name].index(lead.lower()) for lead in LEADS]
        image = cv2.imread(str(folder / entry["image"]))
        start = time.perf_counter()
        try:
            result = digitize(image, rate=record.fs)
        except EdgeECGError:
            continue
        ms.append((time.perf_counter() - start) * 1e3)
        found += result.layout == "3x4+1"
        scores = [s for s in (score_lead(record.p_signal[:, j], result.signal[:, i], record.fs)
                              for i, j in enumerate(order)) if s is not None]
        snrs += [s.snr_db for s in scores]
        rs += [s.pearson_r for s in scores]
    return ("3x4+1 (LUDB, ECGMiner)", "jpeg q75", f"{found}/{len(entries)}", _median(snrs), _median(rs), _median(ms))


def _median(values: list) -> float:
    return float(np.median(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5, help="renders per layout and condition")
    parser.add_argument("--ludb", type=Path, help="folder of the LUDB printouts (manifest.csv, images/, records/)")
    parser.add_argument("--ludb-limit", type=int, default=100)
    args = parser.parse_args()
    rows = _render_rows(args.pages)
    if args.ludb:
        rows.append(_ludb_row(args.ludb, args.ludb_limit))
    print(f"machine: {cpu_model()}, one process")
    print("| layout | pages | layout read | median SNR dB | median r | median ms |")
    print("|---|---|---|---|---|---|")
    for name, condition, found, snr, r, ms in rows:
        print(f"| {name} | {condition} | {found} | {snr:.1f} | {r:.3f} | {ms:.0f} |")


if __name__ == "__main__":
    main()
