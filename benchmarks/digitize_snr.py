"""Digitization quality and speed: render -> digitize -> SNR per layout (clean and photo-like), plus LUDB printouts.

Each page gets a random style (`edgeecg.render.random_options`: grid colour,
paper tone, outline box or full-page grid, pulse position, labels, separators,
header, simultaneous columns, strip lead) with the layout fixed; "photo" adds
rotation, perspective, creases, blur, noise and JPEG. The signals are PTB-XL
fold-9 records when `--ptbxl` is given (held out of every model's training;
`--fold 8`, the validation fold, is where a change to the reader is judged),
else synthetic ECGs (`edgeecg.synthetic`).

Prints one table: per layout and condition, how often the layout was read,
the median SNR (dB, best shift within +-0.2 s and offset, as in the PhysioNet
Challenge 2024) and Pearson r over all leads, and the median page-reading +
digitization time on this machine (one process; the machine is stated).
`--by-style` prints it per grid style instead (3x4+1 pages, every record drawn
in every style, paper tones in turn), with the share of leads read at r < 0.5:
a style the reader fails on hides in a median over mixed styles. `--greyscale`
reads every page (renders and LUDB) as a greyscale scan of it.

    python benchmarks/digitize_snr.py --pages 5 [--ptbxl ../shared/data/ptbxl-subset] [--ludb ../shared/data/ludb-printouts]
                                      [--px-per-mm 12] [--by-style] [--greyscale]
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from edgeecg.digitize import digitize
from edgeecg.errors import EdgeECGError
from edgeecg.layouts import LAYOUTS, LEADS
from edgeecg.machine import cpu_model
from edgeecg.render import random_options, render_printout
from edgeecg.render_grid import GRID_STYLES, PAPER_TONES
from edgeecg.signal_score import score_lead
from edgeecg.synthetic import synthetic_ecg

FS = 500.0
BAD_LEAD_R = 0.5  # a lead read at a lower Pearson r than this is mostly not the lead


def _score(truth: np.ndarray, estimate: np.ndarray, rate: float) -> list:
    return [s for s in (score_lead(truth[:, i], estimate[:, i], rate) for i in range(len(LEADS))) if s is not None]


def _at_rate(signal: np.ndarray, rate: float, target: float) -> np.ndarray:
    """The signal as the pen drew it (straight between samples), sampled at `target` Hz: a 100 Hz record is
    scored at 500 Hz, so the best-shift search is not limited to 10 ms steps."""
    times = np.arange(int(round(len(signal) / rate * target))) / target
    grid = np.arange(len(signal)) / rate
    return np.stack([np.interp(times, grid, signal[:, i]) for i in range(signal.shape[1])], axis=1)


def _signals(pages: int, ptbxl: Path | None, fold: int) -> list[tuple[np.ndarray, float]]:
    """(signal mV, rate) per page: PTB-XL records of `fold` in ecg_id order, or synthetic ECGs."""
    if ptbxl is None:
        return [(synthetic_ecg(seed, FS), FS) for seed in range(pages)]
    import wfdb

    table = list(csv.DictReader(open(ptbxl / "ptbxl_database.csv")))
    held_out = [row for row in table if row["strat_fold"] == str(fold)][:pages]
    records = [wfdb.rdrecord(str(ptbxl / row["filename_lr"])) for row in held_out]
    return [(r.p_signal[:, [[n.lower() for n in r.sig_name].index(lead.lower()) for lead in LEADS]].astype(np.float32),
             float(r.fs)) for r in records]


def _greyscale(image: np.ndarray) -> np.ndarray:
    """The page as a greyscale scan of it (many scanners' default): one grey level per pixel, in three channels."""
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def _as_is(image: np.ndarray) -> np.ndarray:
    return image


def _render_rows(pages: int, ptbxl: Path | None, fold: int, px_per_mm: float | None, by_style: bool,
                 scan=_as_is) -> list[tuple]:
    """One row per layout (or grid style) and condition: (name, condition, read, SNR, r, share r < 0.5, ms);
    `scan` turns each rendered page into the image read."""
    rows = []
    signals = _signals(pages, ptbxl, fold)
    papers = list(PAPER_TONES)
    for name in (GRID_STYLES if by_style else LAYOUTS):
        layout = "3x4+1" if by_style else name
        for condition in ("clean", "photo"):
            found, snrs, rs, ms = 0, [], [], []
            for seed, (signal, rate) in enumerate(signals):
                options = random_options(seed, photo=condition == "photo", layout=layout)
                if by_style:
                    options = options.with_style(name, papers[seed % len(papers)])
                if px_per_mm:  # a phone photo of a page is ~3x the shared scans' resolution
                    options = replace(options, px_per_mm=px_per_mm)
                page = render_printout(np.nan_to_num(signal), rate, options, seed=seed)
                start = time.perf_counter()
                try:
                    result = digitize(scan(page.image), rate=FS)
                except EdgeECGError:
                    continue
                ms.append((time.perf_counter() - start) * 1e3)
                found += result.layout == layout
                scores = _score(_at_rate(np.nan_to_num(signal) - page.baseline_mv, rate, FS), result.signal, FS)
                snrs += [s.snr_db for s in scores]
                rs += [s.pearson_r for s in scores]
            rows.append((name, condition, f"{found}/{len(signals)}", _median(snrs), _median(rs), _bad_share(rs),
                         _median(ms)))
    return rows


def _ludb_row(folder: Path, limit: int, scan=_as_is) -> tuple:
    import wfdb

    entries = list(csv.DictReader(open(folder / "manifest.csv")))[:limit]
    found, snrs, rs, ms = 0, [], [], []
    for entry in entries:
        record = wfdb.rdrecord(str(folder / entry["record"]))
        order = [[n.lower() for n in record.sig_name].index(lead.lower()) for lead in LEADS]
        image = scan(cv2.imread(str(folder / entry["image"])))
        start = time.perf_counter()
        try:
            result = digitize(image, rate=record.fs)
        except EdgeECGError:
            continue
        ms.append((time.perf_counter() - start) * 1e3)
        found += result.layout == "3x4+1"
        scores = _score(record.p_signal[:, order], result.signal, record.fs)
        snrs += [s.snr_db for s in scores]
        rs += [s.pearson_r for s in scores]
    return ("3x4+1 (LUDB, ECGMiner)", "jpeg q75", f"{found}/{len(entries)}", _median(snrs), _median(rs),
            _bad_share(rs), _median(ms))


def _bad_share(rs: list) -> float:
    """The share of leads read at a Pearson r below BAD_LEAD_R (NaN when no lead was read)."""
    return float(np.mean(np.asarray(rs) < BAD_LEAD_R)) if rs else float("nan")


def _median(values: list) -> float:
    return float(np.median(values)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=5, help="renders per layout and condition")
    parser.add_argument("--ptbxl", type=Path, help="PTB-XL folder: render its fold-9 records instead of synthetic ECGs")
    parser.add_argument("--fold", type=int, default=9, help="the PTB-XL strat_fold to render (9: test, 8: validation)")
    parser.add_argument("--ludb", type=Path, help="folder of the LUDB printouts (manifest.csv, images/, records/)")
    parser.add_argument("--ludb-limit", type=int, default=100)
    parser.add_argument("--px-per-mm", type=float, help="render at this resolution (default: the shared scans' 3.95)")
    parser.add_argument("--by-style", action="store_true", help="rows per grid style (3x4+1 pages) instead of layout")
    parser.add_argument("--greyscale", action="store_true", help="read every page (renders, LUDB) as a greyscale scan")
    args = parser.parse_args()
    scan = _greyscale if args.greyscale else _as_is
    rows = _render_rows(args.pages, args.ptbxl, args.fold, args.px_per_mm, args.by_style, scan)
    if args.ludb:
        rows.append(_ludb_row(args.ludb, args.ludb_limit, scan))
    source = f"PTB-XL fold {args.fold} ({args.ptbxl})" if args.ptbxl else "synthetic ECGs"
    resolution = f"{args.px_per_mm:g} px/mm" if args.px_per_mm else "default resolution"
    styles = "every grid style, 3x4+1" if args.by_style else "random styles"
    print(f"machine: {cpu_model()}, one process; signals: {source}; {args.pages} pages per row, {styles}, "
          f"{resolution}{', read as greyscale scans' if args.greyscale else ''}")
    print(f"| {'grid' if args.by_style else 'layout'} | pages | layout read | median SNR dB | median r "
          f"| leads r < {BAD_LEAD_R:g} | median ms |")
    print("|---|---|---|---|---|---|---|")
    for name, condition, found, snr, r, bad, ms in rows:
        print(f"| {name} | {condition} | {found} | {snr:.1f} | {r:.3f} | {bad:.1%} | {ms:.0f} |")


if __name__ == "__main__":
    main()
