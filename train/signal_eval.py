"""Score a finished Mendeley signal run on scans it never saw (the held-out `calib_data/heldout_eval.csv`).

Group CV picks the configuration, so its figures carry a little selection
optimism; the held-out groups were excluded from every fold and from the final
model, so scoring the final model on them once is the honest check.
Usage: python -m edgeecg.train.signal_eval RUN_DIR LISTING [--json OUT]
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch

from edgeecg.backends import softmax
from edgeecg.errors import EdgeECGError
from edgeecg.atomic import write_text
from edgeecg.metrics import classification_metrics
from edgeecg.signal_runtime import is_signal_contract, signal_spec

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import load_table, one_per_group
from .run_folder import jsonable
from .signal_data import load_digitized, predict_signal_logits


def evaluate(run_dir: str | Path, listing: str | Path, workers: int = 2) -> dict:
    """Per-file and one-file-per-group metrics of the run's final model (with its temperature) on `listing`."""
    model, contract = model_from_checkpoint(load_checkpoint(run_dir), run_dir)
    if not is_signal_contract(contract) or contract.task != "multiclass":
        raise EdgeECGError(f"{run_dir}: not a multiclass signal run")
    spec = signal_spec(contract, str(run_dir))  # the runtime's own checks: leads, length, digitizer settings
    table = load_table(listing, workers=workers)
    if table.classes != list(contract.classes):
        raise EdgeECGError(f"{listing}: classes {table.classes} differ from the model's {list(contract.classes)}")
    signals, _ = load_digitized(table, spec, workers)
    probs = softmax(predict_signal_logits(model, signals, spec, torch.device("cpu")), contract.temperature)
    distinct = one_per_group(table)
    return {"run": str(run_dir), "listing": str(listing), "files": len(table), "groups": table.n_groups,
            "per_file": classification_metrics(table.labels, probs, table.classes),
            "one_per_group": classification_metrics(table.labels[distinct], probs[distinct], table.classes)}


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("listing", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="write the metrics here")
def main(run_dir: Path, listing: Path, json_out: Path | None) -> None:
    result = evaluate(run_dir, listing)
    for view in ("per_file", "one_per_group"):
        m = result[view]
        click.echo(f"{view}: accuracy {m['accuracy']:.4f}, macro-F1 {m['f1_macro']:.4f}, "
                   f"macro AUC {m['auc_roc_macro']:.4f}, ECE {m['ece']:.4f} ({m['n_samples']} files)")
    if json_out:
        write_text(json_out, json.dumps(result, indent=2, default=jsonable))


if __name__ == "__main__":
    main()
