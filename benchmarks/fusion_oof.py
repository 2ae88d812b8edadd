"""Late fusion of the image and signal branches, scored on out-of-fold predictions of the same group folds.

Reads two run folders of `edgeecg train` on the same data and seed (the image run and a `--modality signal`
run): their folds must hold the same validation files. Each branch's probabilities use its own fitted
temperature; the fusion is the weighted geometric mean p_signal^w * p_image^(1-w), renormalised. The weight
is chosen leave-one-fold-out (on the other folds' files, never on the fold it scores), so the fused figures
are as honest as the branches'. Prints accuracy and macro-F1 per file for image, signal and fusion.

    python benchmarks/fusion_oof.py runs/edge-fusion runs/sig-mendeley-final-pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from edgeecg.backends import softmax

WEIGHTS = np.linspace(0.0, 1.0, 11)


def folds(run: Path) -> list[dict]:
    """Per fold: validation files, labels and probabilities at the run's temperature."""
    temperature = json.loads((run / "metrics.json").read_text())["calibration"]["temperature"]
    splits = {s["fold"]: s["validation"] for s in json.loads((run / "splits.json").read_text())}
    out = []
    for path in sorted((run / "folds").glob("fold*.json")):
        record = json.loads(path.read_text())
        out.append({"files": splits[record["fold"]], "labels": np.asarray(record["validation_labels"]),
                    "probs": softmax(np.asarray(record["validation_logits"]), temperature)})
    return out


def fuse(p_image: np.ndarray, p_signal: np.ndarray, weight: float) -> np.ndarray:
    logp = weight * np.log(np.clip(p_signal, 1e-9, 1)) + (1 - weight) * np.log(np.clip(p_image, 1e-9, 1))
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_run", type=Path)
    parser.add_argument("signal_run", type=Path)
    args = parser.parse_args()
    image, signal = folds(args.image_run), folds(args.signal_run)
    if [f["files"] for f in image] != [f["files"] for f in signal]:
        raise SystemExit("the two runs' folds do not hold the same validation files (same data, exclusions, seed?)")
    chosen, rows = [], {"image": [], "signal": [], "fusion": []}
    for k, (im, sg) in enumerate(zip(image, signal)):
        others = [j for j in range(len(image)) if j != k]
        labels = np.concatenate([image[j]["labels"] for j in others])

        def score(w: float) -> float:
            fused = np.concatenate([fuse(image[j]["probs"], signal[j]["probs"], w) for j in others])
            return f1_score(labels, fused.argmax(1), average="macro")

        weight = float(max(WEIGHTS, key=score))
        chosen.append(weight)
        for name, p in (("image", im["probs"]), ("signal", sg["probs"]), ("fusion", fuse(im["probs"], sg["probs"], weight))):
            rows[name].append((accuracy_score(im["labels"], p.argmax(1)), f1_score(im["labels"], p.argmax(1), average="macro")))
    print(f"{len(image)} folds, {sum(len(f['labels']) for f in image)} validation files; "
          f"signal weight chosen on the other folds: {', '.join(f'{w:.1f}' for w in chosen)}")
    print("| branch | accuracy per file | macro-F1 per file |")
    print("|---|---|---|")
    for name, values in rows.items():
        acc, f1 = np.asarray(values).T
        print(f"| {name} | {acc.mean():.3f} ± {acc.std():.3f} | {f1.mean():.3f} ± {f1.std():.3f} |")


if __name__ == "__main__":
    main()
