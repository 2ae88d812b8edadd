"""Write digitized signals as WFDB records, CSV or JSON, atomically.

WFDB (with the `wfdb` package, which physionet tools and the PTB-XL code read)
stores NaN as its "no sample" value, so unplotted stretches stay unplotted.
Each format carries the page summary (layout, scale, per-lead quality): WFDB
in its header comments, CSV in a `.page.json` beside it, JSON inline.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .atomic import write_text
from .digitize import Digitized
from .errors import EdgeECGError
from .layouts import LEADS

FORMATS = ("wfdb", "csv", "json")


def write_signals(result: Digitized, out_dir: Path, stem: str, fmt: str) -> list[Path]:
    """Write one digitized page as `out_dir/stem.*` in `fmt`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "wfdb":
        return _write_wfdb(result, out_dir, stem)
    if fmt == "csv":
        return _write_csv(result, out_dir, stem)
    if fmt == "json":
        return _write_json(result, out_dir, stem)
    raise EdgeECGError(f"unknown signal format {fmt!r}; known: {', '.join(FORMATS)}")


def _write_wfdb(result: Digitized, out_dir: Path, stem: str) -> list[Path]:
    try:
        import wfdb
    except ImportError:
        raise EdgeECGError("--format wfdb needs the wfdb package: pip install wfdb (or the '.[train]' extra)") from None
    signal = result.signal.astype(np.float64)
    if np.isnan(signal).all():
        raise EdgeECGError("nothing to write: no lead was read")
    comments = [f"edgeecg {key}: {json.dumps(value)}" for key, value in result.summary().items()]
    # wfdb writes two files; build them in a private folder and move both in, so a reader never sees half a record
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{stem}.") as tmp:
        wfdb.wrsamp(stem, fs=result.rate, units=["mV"] * len(LEADS), sig_name=list(LEADS), p_signal=signal,
                    fmt=["16"] * len(LEADS), adc_gain=[1000.0] * len(LEADS), baseline=[0] * len(LEADS),
                    comments=comments, write_dir=tmp)
        written = []
        for suffix in (".dat", ".hea"):  # header last: it is what readers open first
            target = out_dir / f"{stem}{suffix}"
            shutil.move(str(Path(tmp) / f"{stem}{suffix}"), str(target))
            written.append(target)
    return written


def _write_csv(result: Digitized, out_dir: Path, stem: str) -> list[Path]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["time_s", *LEADS])
    for i, row in enumerate(result.signal):
        writer.writerow([f"{i / result.rate:.4f}", *("" if np.isnan(v) else f"{v:.4f}" for v in row)])
    target, sidecar = out_dir / f"{stem}.csv", out_dir / f"{stem}.page.json"
    write_text(target, buffer.getvalue())
    write_text(sidecar, json.dumps(result.summary(), indent=1))
    return [target, sidecar]


def _write_json(result: Digitized, out_dir: Path, stem: str) -> list[Path]:
    document = dict(result.summary())
    document["leads"] = {lead: [None if np.isnan(v) else round(float(v), 4) for v in result.signal[:, i]]
                         for i, lead in enumerate(LEADS)}
    target = out_dir / f"{stem}.json"
    write_text(target, json.dumps(document))
    return [target]
