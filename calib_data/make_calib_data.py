"""Choose the held-out scans: INT8 calibration images and a labelled FP32-vs-INT8 evaluation set.

Run once from the repository root:
    python calib_data/make_calib_data.py ../shared/data/mendeley-ecg-images

20 % of the duplicate groups of every class (seeded) are held out of the shipped
default model's training. 40 % of those groups give one image each to
`calib_data/<class>/` (copied, with `manifest.csv` saying where each came from);
every file of the other held-out groups is listed, not copied, in
`heldout_eval.csv` (paths relative to this folder, so a clone with ../shared
beside it finds them). Train with `--exclude calib_data/manifest.csv
--exclude calib_data/heldout_eval.csv` so none of these, nor a duplicate of one,
is ever trained on.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from edgeecg.train.data import load_table

HELDOUT_FRACTION = 0.2
CALIB_FRACTION = 0.4
SEED = 2026


def main(source: str) -> None:
    here = Path(__file__).resolve().parent
    table = load_table(source)
    rng = np.random.default_rng(SEED)
    calib_rows, eval_rows = [], []
    for c, name in enumerate(table.classes):
        groups = rng.permutation(np.unique(table.groups[table.labels == c]))
        held = groups[: max(2, round(HELDOUT_FRACTION * len(groups)))]
        n_calib = max(1, round(CALIB_FRACTION * len(held)))
        for g in held[:n_calib]:
            i = int(np.nonzero(table.groups == g)[0][0])
            src = table.items[i].path
            dest = here / name / src.name
            dest.parent.mkdir(exist_ok=True)
            shutil.copyfile(src, dest)
            calib_rows.append({"file": f"{name}/{src.name}", "label": name, "source": src.name,
                               "source_dataset": "Mendeley ECG images of cardiac patients (CC BY 4.0)",
                               "source_sha256": table.sha256[i], "group": int(g)})
        for g in held[n_calib:]:
            for i in np.nonzero(table.groups == g)[0]:
                rel = os.path.relpath(table.items[i].path.resolve(), here)
                eval_rows.append({"file": rel, "label": name, "source_sha256": table.sha256[i], "group": int(g)})
    for filename, rows in (("manifest.csv", calib_rows), ("heldout_eval.csv", eval_rows)):
        with open(here / filename, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(f"{len(calib_rows)} calibration images, {len(eval_rows)} held-out evaluation files "
          f"({len({r['group'] for r in eval_rows})} groups)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mendeley-ecg-images")
