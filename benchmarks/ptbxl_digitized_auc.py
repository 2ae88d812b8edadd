"""PTB-XL through the whole runtime: macro AUC and ECE of a signal model, recorded signals against digitized pages.

Fold 9 (the test fold) unless `--fold` says otherwise (8, the validation fold, is where a choice between models
is made): the recorded signals, digitized clean renders and digitized photo-like renders of the same records.

ECE is each sigmoid output's binary ECE, averaged over the classes (`edgeecg.metrics.multilabel_metrics`).
The renders use `edgeecg.render.random_options` (3x4+1 layout, random grid styles; "photo" adds rotation,
perspective, creases, blur, noise and JPEG); each page is read by `edgeecg.digitize` exactly as
`edgeecg infer` reads a page. A page the digitizer cannot read counts as all-masked input (the model's
answer without leads), so refusals cost AUC here instead of being left out.

    python benchmarks/ptbxl_digitized_auc.py ../shared/data/ptbxl-subset [--model ptbxl-signal] [--limit N] [--fold 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgeecg.digitize import digitize
from edgeecg.errors import EdgeECGError
from edgeecg.layouts import LEADS
from edgeecg.machine import cpu_model
from edgeecg.metrics import multilabel_metrics
from edgeecg.registry import resolve_model
from edgeecg.render import random_options, render_printout
from edgeecg.signal_input import resample
from edgeecg.signal_runtime import SignalModel
from edgeecg.train.ptbxl import SUPERCLASSES, load_ptbxl, multi_hot, read_signal

READ_RATE = 500.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ptbxl", help="PTB-XL folder (ptbxl_database.csv, records100/)")
    parser.add_argument("--model", default="ptbxl-signal", help="shipped signal model name or .onnx file")
    parser.add_argument("--limit", type=int, help="only the first N records of the fold")
    parser.add_argument("--fold", type=int, default=9, help="strat_fold to score: 9 is the test fold, 8 the "
                                                            "validation fold a choice between models is made on")
    args = parser.parse_args()
    model = SignalModel(resolve_model(args.model))
    table = load_ptbxl(args.ptbxl)
    test = table[table.strat_fold == args.fold]
    if args.limit:
        test = test.iloc[: args.limit]
    targets = multi_hot(test)
    spec = model.spec
    probs = {"recorded signals": [], "digitized clean renders": [], "digitized photo-like renders": []}
    unread = {name: 0 for name in probs}
    started = time.perf_counter()
    for k, (_, row) in enumerate(test.iterrows()):
        record = read_signal(args.ptbxl, row)
        signal = np.asarray(record.mv, np.float32)
        probs["recorded signals"].append(model.probabilities(resample(signal, record.fs, spec.rate, spec.length)[None])[0])
        for name, photo in (("digitized clean renders", False), ("digitized photo-like renders", True)):
            page = render_printout(np.nan_to_num(signal), record.fs, random_options(k, photo=photo, layout="3x4+1"), seed=k)
            try:
                read = digitize(page.image, rate=READ_RATE)
                leads = resample(read.signal, read.rate, spec.rate, spec.length)
            except EdgeECGError:
                unread[name] += 1
                leads = np.full((spec.length, len(LEADS)), np.nan, np.float32)
            probs[name].append(model.probabilities(leads[None])[0])
    print(f"machine: {cpu_model()}; model {model.path.name}; {len(test)} fold-{args.fold} records; "
          f"{time.perf_counter() - started:.0f} s")
    print("| input | macro AUC | " + " | ".join(SUPERCLASSES) + " | ECE | pages not read |")
    print("|---|---|" + "---|" * len(SUPERCLASSES) + "---|---|")
    for name, p in probs.items():
        m = multilabel_metrics(targets, np.asarray(p), SUPERCLASSES)
        aucs = [m["per_class"][c]["auc_roc"] for c in SUPERCLASSES]
        print(f"| {name} | {m['auc_roc_macro']:.3f} | " + " | ".join(f"{a:.3f}" for a in aucs)
              + f" | {m['ece']:.3f} | {unread[name]} |")


if __name__ == "__main__":
    main()
