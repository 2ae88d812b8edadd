"""Risk-coverage of a training run's out-of-fold predictions, and the abstain threshold for target risks.

Reads RUN/folds/fold*.json (each fold's validation logits and labels, scored
by a model that never trained on them) and the run's temperature, so the
threshold is chosen on validation folds, never on a test set. Writes the
curve as a PNG and prints its area (AURC) and, per target risk, the threshold
on the top probability and the coverage it keeps.

    python benchmarks/risk_coverage.py runs/sig-mendeley --target-risk 0.02 0.05 0.1 --out risk_coverage.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeecg.selective import out_of_fold, risk_coverage, threshold_for_risk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder of `edgeecg train`")
    parser.add_argument("--target-risk", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    parser.add_argument("--out", type=Path, help="PNG of the curve (default RUN/risk_coverage.png)")
    args = parser.parse_args()
    probs, labels = out_of_fold(args.run)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    curve = risk_coverage(confidence, correct)
    print(f"{args.run}: {len(labels)} out-of-fold validation files, accuracy {correct.mean():.3f}, AURC {curve.aurc:.4f}")
    chosen = []
    for target in args.target_risk:
        threshold = threshold_for_risk(curve, target)
        accepted = confidence >= threshold
        risk = (~correct[accepted]).mean() if accepted.any() else 0.0
        chosen.append((target, risk, accepted.mean()))
        print(f"  target risk {target:.3f}: answer when top probability >= {threshold:.4f}; "
              f"coverage {accepted.mean():.3f}, risk {risk:.3f}")
    _plot(curve, chosen, args.out or args.run / "risk_coverage.png", args.run.name)


def _plot(curve, chosen, target: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(curve.coverage, curve.risk, color="black", label=f"AURC {curve.aurc:.4f}")
    for goal, risk, coverage in chosen:
        ax.scatter([coverage], [risk], zorder=3, label=f"target risk {goal:.2f}: coverage {coverage:.2f}, risk {risk:.3f}")
    ax.set_xlabel("coverage (share answered)")
    ax.set_ylabel("risk (error rate among answered)")
    ax.set_title(f"risk-coverage, out-of-fold: {title}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, max(0.05, float(curve.risk.max()) * 1.1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)
    print(f"  curve written to {target}")


if __name__ == "__main__":
    main()
