"""How the page reader and the quality gate fare when a real printout reaches them the way clinics send it.

The LUDB printouts (another renderer, with their true signals) are read as
they are and as a clinic's scanner, phone or messaging app would hand them
over: a greyscale scan, recompressed JPEG (q50, q35), a photo of the sheet on a
desk, a smaller image, a page turned upside down or on its side, a large photo
(enlarged to 6000 px and saved as JPEG). Per variant it prints how many pages
the gate lets through, how many of those are read badly (at least a quarter of
the leads at Pearson r < 0.5: a diagnosis from such a reading is unsafe), the
layout read, and the median SNR and r of all pages read (scored as
`benchmarks/digitize_snr.py` scores them: best shift within 0.2 s). Prints the
machine.

    python benchmarks/page_variants.py --ludb ../shared/data/ludb-printouts [--pages 25] [--variants grey q35 ...]

Variant keys: printed, grey, q50, q35, desk, small, upside-down, sideways, large.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import cv2
import numpy as np
import wfdb

from edgeecg.errors import EdgeECGError
from edgeecg.gate import assess
from edgeecg.layouts import LEADS
from edgeecg.machine import cpu_model
from edgeecg.signal_score import score_lead

BAD_LEAD_R = 0.5  # a lead read at a lower Pearson r than this is mostly not the lead
UNSAFE_SHARE = 0.25  # a page with this share of its leads read that badly gives an unsafe diagnosis


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def _on_desk(image: np.ndarray) -> np.ndarray:
    """The sheet (with a white margin) photographed on a brown desk, filling about half the frame."""
    sheet = cv2.copyMakeBorder(image, 50, 50, 50, 50, cv2.BORDER_CONSTANT, value=(250, 250, 250))
    h, w = sheet.shape[:2]
    desk = np.full((int(h * 1.8), int(w * 1.8), 3), (60, 80, 100), np.uint8)
    desk += np.random.default_rng(0).integers(0, 20, desk.shape, dtype=np.uint8)
    top, left = int(h * 0.4), int(w * 0.4)
    desk[top:top + h, left:left + w] = sheet
    return desk


def _enlarged(image: np.ndarray) -> np.ndarray:
    """A large phone photo's pixel count: the page enlarged to 6000 px across, saved as JPEG q90."""
    big = cv2.resize(image, (6000, round(6000 * image.shape[0] / image.shape[1])), interpolation=cv2.INTER_CUBIC)
    return _jpeg(big, 90)


VARIANTS = {  # key: (what the page went through, how)
    "printed": ("as printed", lambda image: image),
    "grey": ("greyscale scan", lambda image: cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)),
    "q50": ("recompressed JPEG q50", lambda image: _jpeg(image, 50)),
    "q35": ("recompressed JPEG q35", lambda image: _jpeg(image, 35)),
    "desk": ("photo on a desk (half the frame)", _on_desk),
    "small": ("70 % size", lambda image: cv2.resize(image, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)),
    "upside-down": ("upside down", lambda image: cv2.rotate(image, cv2.ROTATE_180)),
    "sideways": ("on its side", lambda image: cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)),
    "large": ("enlarged to a 6000 px JPEG", _enlarged),
}


def _pages(folder: Path, count: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(image, true signal in LEADS order, rate) of `count` printouts spread over the folder's listing."""
    entries = list(csv.DictReader(open(folder / "manifest.csv")))
    picks = np.linspace(0, len(entries) - 1, min(count, len(entries))).round().astype(int)
    pages = []
    for i in picks:
        record = wfdb.rdrecord(str(folder / entries[i]["record"]))
        order = [[name.lower() for name in record.sig_name].index(lead.lower()) for lead in LEADS]
        image = cv2.imread(str(folder / entries[i]["image"]))
        if image is None:
            raise EdgeECGError(f"{entries[i]['image']} cannot be read as an image")
        pages.append((image, record.p_signal[:, order], float(record.fs)))
    return pages


def _row(key: str, pages: list[tuple[np.ndarray, np.ndarray, float]]) -> str:
    label, turn_into = VARIANTS[key]
    passed = unsafe = layouts = 0
    snrs, rs, ms = [], [], []
    for image, truth, rate in pages:
        variant = turn_into(image)
        start = time.perf_counter()
        verdict = assess(variant, rate=rate)
        ms.append((time.perf_counter() - start) * 1e3)
        if verdict.reading is None:
            continue
        scores = [s for s in (score_lead(truth[:, i], verdict.reading.signal[:, i], rate) for i in range(len(LEADS)))
                  if s is not None]
        snrs += [s.snr_db for s in scores]
        rs += [s.pearson_r for s in scores]
        layouts += verdict.reading.layout == "3x4+1"
        bad = np.mean([s.pearson_r < BAD_LEAD_R for s in scores]) if scores else 1.0
        if verdict.readable:
            passed += 1
            unsafe += bad >= UNSAFE_SHARE
    median = lambda values: float(np.median(values)) if values else float("nan")
    return (f"| {label} | {len(pages)} | {passed} | {unsafe} | {layouts} | {median(snrs):.1f} | {median(rs):.3f} "
            f"| {median(ms):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ludb", type=Path, required=True, help="folder of the LUDB printouts (manifest.csv, images/)")
    parser.add_argument("--pages", type=int, default=25, help="printouts per variant (spread over the folder)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="KEY",
                        help=f"which variants (default all: {', '.join(VARIANTS)})")
    args = parser.parse_args()
    try:
        pages = _pages(args.ludb, args.pages)
    except (OSError, ValueError, EdgeECGError) as exc:
        raise SystemExit(f"error: {args.ludb}: cannot read the LUDB printouts ({exc})") from None
    print(f"machine: {cpu_model()}, one process; {len(pages)} LUDB printouts from {args.ludb} per variant")
    print(f"| variant | pages | gate passed | of them unsafe (>= {UNSAFE_SHARE:.0%} of leads r < {BAD_LEAD_R:g}) "
          f"| layout read | median SNR dB | median r | median ms |")
    print("|---|---|---|---|---|---|---|---|")
    for key in args.variants:
        print(_row(key, pages), flush=True)


if __name__ == "__main__":
    main()
