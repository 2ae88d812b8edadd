"""PTB-XL loader: superclass labels, fold splits, signals (on a PTB-XL-shaped synthetic folder and the shared subset)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgeecg.errors import EdgeECGError
from edgeecg.train import ptbxl

# Expected superclasses worked out by hand from the shared ptbxl_database.csv rows and
# scp_statements.csv (statements with diagnostic == 1 -> diagnostic_class); tests/local_data.py
# writes these rows into the synthetic folder too:
#   1:  {'NORM': 100, 'LVOLT': 0, 'SR': 0}             LVOLT is form-only, SR rhythm-only -> NORM
#   39: {'IMI': 15, 'LNGQT': 100, 'NST_': 100, 'DIG': 100, 'ABQRS': 0, 'SR': 0}
#       IMI -> MI (a 15 % likelihood still counts); LNGQT, NST_, DIG -> STTC; ABQRS form-only -> MI, STTC
#   77: {'AMI': 50, 'IRBBB': 100, 'SR': 0}             AMI -> MI, IRBBB -> CD
#   30: {'LVH': 100, 'SR': 0}                          LVH -> HYP
#   18: {'AFLT': 100}                                  rhythm only: no diagnostic superclass
KNOWN = {1: (("NORM",), 3), 39: (("MI", "STTC"), 9), 77: (("MI", "CD"), 6), 30: (("HYP",), 9)}
UNLABELLED = 18


@pytest.fixture(scope="module")
def table(ptbxl_dir):
    return ptbxl.load_ptbxl(ptbxl_dir)


@pytest.mark.parametrize("ecg_id", sorted(KNOWN))
def test_known_records_get_their_superclasses(table, ecg_id):
    labels, fold = KNOWN[ecg_id]
    row = table.loc[ecg_id]
    assert row["superclasses"] == labels
    assert row["strat_fold"] == fold
    assert [c for c in ptbxl.SUPERCLASSES if row[c] == 1] == list(labels)


def test_shared_subset_records_get_their_superclasses(shared_ptbxl_dir):
    table = ptbxl.load_ptbxl(shared_ptbxl_dir)
    for ecg_id, (labels, fold) in KNOWN.items():
        assert (table.loc[ecg_id, "superclasses"], table.loc[ecg_id, "strat_fold"]) == (labels, fold), ecg_id
    assert UNLABELLED not in table.index
    assert ptbxl.read_signal(shared_ptbxl_dir, table.loc[1]).mv.shape == (1000, 12)


def test_records_without_a_diagnostic_superclass_are_dropped_unless_asked(ptbxl_dir, table):
    assert UNLABELLED not in table.index
    kept = ptbxl.load_ptbxl(ptbxl_dir, keep_unlabelled=True)
    assert kept.loc[UNLABELLED, "superclasses"] == ()
    assert kept.loc[UNLABELLED, list(ptbxl.SUPERCLASSES)].sum() == 0
    assert len(kept) > len(table)
    assert (table["superclasses"].map(len) > 0).all()


def test_superclass_labels_follow_superclass_order_and_ignore_unknown_codes():
    code_to_class = {"IMI": "MI", "NORM": "NORM", "LVH": "HYP"}
    assert ptbxl.superclass_labels({"LVH": 0.0, "SR": 0.0, "IMI": 50.0, "NORM": 10.0}, code_to_class) == ("NORM", "MI", "HYP")
    assert ptbxl.superclass_labels({"SR": 0.0}, code_to_class) == ()


def test_multi_hot_matches_the_superclass_tuples(table):
    targets = ptbxl.multi_hot(table)
    assert targets.shape == (len(table), len(ptbxl.SUPERCLASSES)) and targets.dtype == np.float32
    rebuilt = [tuple(c for c, v in zip(ptbxl.SUPERCLASSES, row) if v) for row in targets]
    assert rebuilt == list(table["superclasses"])


def test_default_split_uses_folds_1_to_7_8_and_9_without_overlap(table):
    split = ptbxl.split_records(table)
    assert set(split.train["strat_fold"]) == set(range(1, 8))
    assert set(split.val["strat_fold"]) == {8} and set(split.test["strat_fold"]) == {9}
    assert len(split.train) + len(split.val) + len(split.test) == len(table)
    assert not set(split.train.index) & set(split.test.index)


def test_split_refuses_overlapping_or_absent_folds(table):
    with pytest.raises(EdgeECGError, match="both"):
        ptbxl.split_records(table, train_folds=range(1, 9), val_folds=(8,), test_folds=(9,))
    with pytest.raises(EdgeECGError, match=r"test strat_fold\(s\) \[10\]"):
        ptbxl.split_records(table, train_folds=range(1, 9), val_folds=(9,), test_folds=(10,))


def test_read_signal_gives_twelve_leads_in_millivolts(ptbxl_dir, table):
    signal = ptbxl.read_signal(ptbxl_dir, table.loc[1])
    assert signal.mv.shape == (1000, 12) and signal.mv.dtype == np.float32
    assert signal.leads == ptbxl.LEADS and signal.fs == 100
    assert np.isfinite(signal.mv).all()
    # Einthoven: lead III = II - I, up to the 1 uV quantisation of each stored lead
    assert np.abs(signal.mv[:, 2] - (signal.mv[:, 1] - signal.mv[:, 0])).max() < 0.01


def test_read_signals_stacks_records_for_caching(ptbxl_dir, table):
    rows = table.iloc[:3]
    stacked = ptbxl.read_signals(ptbxl_dir, rows)
    assert stacked.shape == (3, 1000, 12)
    np.testing.assert_array_equal(stacked[2], ptbxl.read_signal(ptbxl_dir, rows.iloc[2]).mv)


def test_bad_folder_and_missing_record_are_one_line_errors(tmp_path, ptbxl_dir, table):
    with pytest.raises(EdgeECGError, match="not a PTB-XL folder"):
        ptbxl.load_ptbxl(tmp_path)
    row = table.loc[1].copy()
    row["filename_lr"] = "records100/00000/99999_lr"
    with pytest.raises(EdgeECGError, match="record not found"):
        ptbxl.read_signal(ptbxl_dir, row)


def test_header_holds_no_diagnosis(table):
    row = table.loc[39]
    header = ptbxl.printout_header(row, 100)
    assert "00039" in header
    assert not any(code in header for code in row["scp_codes"])
    assert row["report"].split()[0] not in header


def test_loader_does_not_import_torch():
    code = "import sys, edgeecg.train.ptbxl; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
