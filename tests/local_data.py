"""Data the default suite makes for itself, so that a fresh clone tests without ../shared.

- `mendeley_like`: the repository's own real Mendeley scans (`calib_data/`, `examples/`) in the shared
  folder's shape (one folder per class + manifest.csv), with an exact and a re-encoded copy of one scan
  per class, because the published set repeats its scans and duplicate handling must be exercised.
- `ptbxl_like`: a PTB-XL-shaped folder (ptbxl_database.csv, scp_statements.csv, 100 Hz WFDB records of
  `edgeecg.synthetic.synthetic_ecg`) covering every superclass in every strat_fold 1-9.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np

from edgeecg.synthetic import synthetic_ecg

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("abnormal_heartbeat", "history_of_mi", "myocardial_infarction", "normal")

# The rows of the shared subset's scp_statements.csv for the codes used below.
STATEMENTS = """\
,description,diagnostic,form,rhythm,diagnostic_class
NORM,normal ECG,1.0,,,NORM
LVOLT,low QRS voltages in the frontal and horizontal leads,,1.0,,
SR,sinus rhythm,,,1.0,
IMI,inferior myocardial infarction,1.0,,,MI
LNGQT,long QT-interval,1.0,1.0,,STTC
NST_,non-specific ST changes,1.0,1.0,,STTC
DIG,digitalis-effect,1.0,1.0,,STTC
ABQRS,abnormal QRS,,1.0,,
AMI,anterior myocardial infarction,1.0,,,MI
IRBBB,incomplete right bundle branch block,1.0,,,CD
LVH,left ventricular hypertrophy,1.0,,,HYP
AFLT,atrial flutter,,,1.0,
NDT,non-diagnostic T abnormalities,1.0,1.0,,STTC
"""
# ecg_id -> (scp_codes, strat_fold, report): the shared subset's own rows for these records, whose
# superclasses tests/test_ptbxl.py works out by hand.
KNOWN_RECORDS = {
    1: ("{'NORM': 100.0, 'LVOLT': 0.0, 'SR': 0.0}", 3, "sinusrhythmus periphere niederspannung"),
    18: ("{'AFLT': 100.0}", 9, "vorhofflattern 2:1 ueberleitung"),
    30: ("{'LVH': 100.0, 'SR': 0.0}", 9, "sinusrhythmus linkshypertrophie"),
    39: ("{'IMI': 15.0, 'LNGQT': 100.0, 'NST_': 100.0, 'DIG': 100.0, 'ABQRS': 0.0, 'SR': 0.0}", 9,
         "sinusrhythmus linkstyp qrs(t) abnormal inferiorer myokardschaden"),
    77: ("{'AMI': 50.0, 'IRBBB': 100.0, 'SR': 0.0}", 6, "sinusrhythmus unvollstaendiger rechtsschenkelblock"),
}
# One record per superclass in every fold, so any split and any per-class cap finds each class.
FILLER_CODES = ("{'NORM': 100.0, 'SR': 0.0}", "{'IMI': 50.0, 'SR': 0.0}", "{'NDT': 100.0}",
                "{'IRBBB': 100.0}", "{'LVH': 100.0, 'SR': 0.0}")
FILLER_START = 100
PTBXL_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")  # as PTB-XL spells them


def local_scans() -> list[tuple[Path, str]]:
    """(path, class) of every real scan shipped in the repository."""
    with open(REPO / "calib_data" / "manifest.csv", newline="") as fh:
        scans = [(REPO / "calib_data" / row["file"], row["label"]) for row in csv.DictReader(fh)]
    for path in sorted((REPO / "examples").glob("*.jpg")):
        scans.append((path, next(c for c in CLASSES if path.name.startswith(c + "_"))))
    return scans


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mendeley_like(root: Path) -> Path:
    """Write the Mendeley-shaped folder under `root`; manifest rows share `source_sha256` with their copies."""
    rows = []
    for path, label in local_scans():
        (root / label).mkdir(parents=True, exist_ok=True)
        name = path.name.removeprefix(label + "_")
        shutil.copyfile(path, root / label / name)
        rows.append((f"{label}/{name}", label, _sha256(path)))
    for label in CLASSES:
        last = max(r for r in rows if r[1] == label)
        original = root / last[0]
        copy, reencoded = original.with_name(f"{original.stem}_copy.jpg"), original.with_name(f"{original.stem}_q80.jpg")
        shutil.copyfile(original, copy)
        cv2.imwrite(str(reencoded), cv2.resize(cv2.imread(str(original)), (1000, 711)), [cv2.IMWRITE_JPEG_QUALITY, 80])
        rows += [(f"{label}/{p.name}", label, last[2]) for p in (copy, reencoded)]
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label", "source_sha256"])
        writer.writerows(sorted(rows))
    return root


def _write_record(folder: Path, ecg_id: int) -> str:
    """A 10 s, 100 Hz, 12-lead synthetic record in mV (1 uV steps, as PTB-XL stores them); its filename_lr."""
    import wfdb

    name = f"{ecg_id:05d}_lr"
    sub = folder / "records100" / f"{ecg_id // 1000 * 1000:05d}"
    sub.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=100, units=["mV"] * 12, sig_name=list(PTBXL_LEADS),
                p_signal=synthetic_ecg(ecg_id, fs=100.0).astype(np.float64), fmt=["16"] * 12,
                adc_gain=[1000.0] * 12, baseline=[0] * 12, write_dir=str(sub))
    return f"records100/{sub.name}/{name}"


def ptbxl_like(root: Path) -> Path:
    """Write the PTB-XL-shaped folder under `root`."""
    records = dict(KNOWN_RECORDS)
    ecg_id = FILLER_START
    for fold in range(1, 10):
        for codes in FILLER_CODES:
            records[ecg_id] = (codes, fold, "sinusrhythmus")
            ecg_id += 1
    root.mkdir(parents=True, exist_ok=True)
    (root / "scp_statements.csv").write_text(STATEMENTS)
    with open(root / "ptbxl_database.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["ecg_id", "patient_id", "age", "sex", "device", "recording_date", "report", "scp_codes",
                         "strat_fold", "filename_lr"])
        for ecg_id, (codes, fold, report) in sorted(records.items()):
            writer.writerow([ecg_id, 10000.0 + ecg_id, 40.0 + ecg_id % 40, ecg_id % 2, "CS-12   E",
                             "1985-01-01 09:00:00", report, codes, fold, _write_record(root, ecg_id)])
    return root
