"""PTB-XL: records, diagnostic superclass labels, strat_fold splits and signals.

Labels follow the PTB-XL benchmark code: every key of a record's `scp_codes`
whose statement has `diagnostic == 1` in `scp_statements.csv` maps to its
`diagnostic_class` (NORM, MI, STTC, CD, HYP), whatever its likelihood; a record
gets each superclass at most once (multi-label). Records with no diagnostic
superclass are dropped by default, as the standard benchmark does
(`keep_unlabelled=True` keeps them with all-zero labels).

The table is the unit of work for training: one row per record with its fold,
its superclasses and one 0/1 column per superclass, so a caller lists
(record, multi-hot label, fold) with `multi_hot(df)` / `df.strat_fold` and reads
signals with `read_signal` (one record) or `read_signals` (all of them, to
cache in memory and render on the fly). Needs pandas and wfdb, never torch.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    # wfdb's own pandas calls warn at import time about pandas deprecations; nothing a user can act on
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", FutureWarning)
    import wfdb

from edgeecg.errors import EdgeECGError

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
# The order edgeecg.render expects; PTB-XL spells the augmented leads in capitals.
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# The shared subset holds strat_fold 1-9 only; the full release's standard split is 1-8 / 9 / 10.
DEFAULT_TRAIN_FOLDS = (1, 2, 3, 4, 5, 6, 7)
DEFAULT_VAL_FOLDS = (8,)
DEFAULT_TEST_FOLDS = (9,)

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"


class Signal(NamedTuple):
    """One ECG record: (samples, 12) float32 in mV, columns in `LEADS` order."""

    mv: np.ndarray
    leads: tuple[str, ...]
    fs: float


class Split(NamedTuple):
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def diagnostic_classes(statements: pd.DataFrame) -> dict[str, str]:
    """SCP code -> diagnostic superclass, for the statements marked diagnostic."""
    diagnostic = statements[statements["diagnostic"] == 1]
    return {code: str(cls) for code, cls in diagnostic["diagnostic_class"].items() if isinstance(cls, str)}


def superclass_labels(scp_codes: Mapping[str, float], code_to_class: Mapping[str, str]) -> tuple[str, ...]:
    """The superclasses of one record, in `SUPERCLASSES` order (every likelihood counts)."""
    found = {code_to_class[code] for code in scp_codes if code in code_to_class}
    return tuple(c for c in SUPERCLASSES if c in found)


def load_ptbxl(root: str | Path, keep_unlabelled: bool = False) -> pd.DataFrame:
    """Read `ptbxl_database.csv` + `scp_statements.csv` into one row per record, indexed by ecg_id.

    Adds `scp_codes` as a dict, `superclasses` (tuple of names) and one 0/1
    int column per name in `SUPERCLASSES`.
    """
    root = Path(root)
    database, statements = root / DATABASE_CSV, root / STATEMENTS_CSV
    for path in (database, statements):
        if not path.is_file():
            raise EdgeECGError(f"{root}: not a PTB-XL folder ({path.name} is missing)")
    try:
        df = pd.read_csv(database, index_col="ecg_id")
        code_to_class = diagnostic_classes(pd.read_csv(statements, index_col=0))
        df["scp_codes"] = df["scp_codes"].apply(ast.literal_eval)
    except (ValueError, SyntaxError, KeyError, pd.errors.ParserError) as exc:
        raise EdgeECGError(f"{root}: cannot read the PTB-XL tables ({exc})") from None
    missing = {"strat_fold", "filename_lr"} - set(df.columns)
    if missing:
        raise EdgeECGError(f"{database}: missing column(s) {', '.join(sorted(missing))}")
    df["superclasses"] = [superclass_labels(codes, code_to_class) for codes in df["scp_codes"]]
    for name in SUPERCLASSES:
        df[name] = [int(name in labels) for labels in df["superclasses"]]
    if not keep_unlabelled:
        df = df[df["superclasses"].map(len) > 0]
    return df


def multi_hot(df: pd.DataFrame) -> np.ndarray:
    """(records, 5) float32 targets in `SUPERCLASSES` order."""
    return df[list(SUPERCLASSES)].to_numpy(np.float32)


def split_records(
    df: pd.DataFrame,
    train_folds: Iterable[int] = DEFAULT_TRAIN_FOLDS,
    val_folds: Iterable[int] = DEFAULT_VAL_FOLDS,
    test_folds: Iterable[int] = DEFAULT_TEST_FOLDS,
) -> Split:
    """Split by `strat_fold` (patient-disjoint in PTB-XL); pass (1..8), (9,), (10,) for the full release."""
    folds = {"train": set(train_folds), "val": set(val_folds), "test": set(test_folds)}
    names = list(folds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if folds[a] & folds[b]:
                raise EdgeECGError(f"strat_fold(s) {sorted(folds[a] & folds[b])} are in both the {a} and {b} split")
    present = set(df["strat_fold"].unique().tolist())
    for name, wanted in folds.items():
        absent = sorted(wanted - present)
        if absent:
            raise EdgeECGError(
                f"{name} strat_fold(s) {absent} hold no records here (present: {sorted(present)})"
            )
    return Split(*(df[df["strat_fold"].isin(folds[name])] for name in names))


def read_signal(root: str | Path, row: pd.Series, high_rate: bool = False) -> Signal:
    """Read one record with wfdb: 100 Hz `filename_lr`, or 500 Hz `filename_hr` if `high_rate`."""
    column = "filename_hr" if high_rate else "filename_lr"
    path = Path(root) / str(row[column])
    if not path.with_suffix(".hea").is_file():
        raise EdgeECGError(f"{path}.hea: record not found")
    try:
        values, fields = wfdb.rdsamp(str(path))
    except (OSError, ValueError) as exc:
        raise EdgeECGError(f"{path}: cannot read the WFDB record ({exc})") from None
    names = [n.upper() for n in fields["sig_name"]]
    try:
        order = [names.index(lead.upper()) for lead in LEADS]
    except ValueError:
        raise EdgeECGError(f"{path}: expected the 12 standard leads, found {fields['sig_name']}") from None
    units = {fields["units"][i] for i in order}
    if units != {"mV"}:
        raise EdgeECGError(f"{path}: signals must be in mV, found {sorted(units)}")
    return Signal(np.ascontiguousarray(values[:, order], dtype=np.float32), LEADS, float(fields["fs"]))


def read_signals(root: str | Path, df: pd.DataFrame, high_rate: bool = False) -> np.ndarray:
    """All records of `df` as one (records, samples, 12) float32 array, to cache for on-the-fly rendering."""
    from rich.progress import track

    signals = [read_signal(root, row, high_rate).mv for _, row in track(df.iterrows(), total=len(df), description="reading PTB-XL")]
    lengths = {s.shape[0] for s in signals}
    if len(lengths) > 1:
        raise EdgeECGError(f"{root}: records have different lengths {sorted(lengths)}; read them one by one")
    return np.stack(signals) if signals else np.zeros((0, 0, len(LEADS)), np.float32)


def printout_header(row: pd.Series, fs: float) -> str:
    """Patient-like header lines for a printout (row from `load_ptbxl`, named by its ecg_id).

    It holds no diagnosis or report text, so it cannot leak the label.
    """

    def text(column: str) -> str:
        value = row.get(column)
        return "" if value is None or pd.isna(value) else " ".join(str(value).split())

    age = row.get("age")
    age_text = "" if age is None or pd.isna(age) else (">89" if age >= 300 else f"{int(age)}")
    sex = {"0": "Male", "1": "Female"}.get(text("sex"), "")
    return (
        f"ID : {int(row.name):05d}    Age: {age_text}    Sex: {sex}    Recorded: {text('recording_date')}\n"
        f"Device: {text('device')}    {fs:g} Hz    25mm/s  10mm/mV"
    )
