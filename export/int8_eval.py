"""FP32 vs INT8 on a separate labelled set: does quantization cost accuracy?

Calibration scans only fix the int8 ranges; whether the quantized model still
classifies like the FP32 one is measured on other, labelled held-out scans:
accuracy and macro-F1 of both, top-1 agreement and how far the class
probabilities move. Targets: at most 1 percentage point accuracy drop and at
least 98 % top-1 agreement.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from edgeecg.backends import probabilities
from edgeecg.contract import ModelContract
from edgeecg.datasets import list_labelled_images
from edgeecg.errors import EdgeECGError
from edgeecg.metrics import classification_metrics

from .scans import PreparedScans, prepare_scans
from .ui import loud_warning, tables, warn

EVAL_CSV_NAME = "heldout_eval.csv"
MAX_ACCURACY_DROP_PP = 1.0
MIN_TOP1_AGREEMENT = 0.98


def resolve_eval_source(explicit: str | Path | None, calib_dir: Path | None) -> Path | None:
    """--eval-data if given, else heldout_eval.csv in the calibration folder if it exists."""
    if explicit is not None:
        return Path(explicit)
    default = calib_dir / EVAL_CSV_NAME if calib_dir is not None else None
    return default if default is not None and default.is_file() else None


def eval_files(source: Path) -> list[Path]:
    return [item.path for item in list_labelled_images(source)]


def load_eval_set(source: Path, contract: ModelContract) -> tuple[PreparedScans, np.ndarray]:
    """Preprocessed labelled scans and their class indices in the contract's order."""
    items = list_labelled_images(source)
    unknown = sorted({i.label for i in items} - set(contract.classes))
    if unknown:
        raise EdgeECGError(
            f"{source}: label(s) {', '.join(unknown)} are not classes of this model ({', '.join(contract.classes)})"
        )
    label_of = {i.path: i.label for i in items}
    scans = prepare_scans([i.path for i in items], contract, "evaluation scans")
    if not len(scans):
        raise EdgeECGError(f"{source}: none of the {len(items)} evaluation images could be used "
                           f"(e.g. {scans.skipped[0][1]})")
    if scans.skipped:
        warn(f"{len(scans.skipped)} evaluation image(s) skipped, e.g. {scans.skipped[0][1]}")
    labels = np.array([contract.classes.index(label_of[p]) for p in scans.paths])
    return scans, labels


def compare_fp32_int8(
    fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray, contract: ModelContract
) -> dict:
    """Accuracy / macro-F1 of both models, agreement, probability shift, and whether targets are met."""
    p32, p8 = probabilities(fp32_logits, contract), probabilities(int8_logits, contract)
    delta = np.abs(p32 - p8)
    result: dict = {
        "n_scans": int(len(labels)),
        "top1_agreement": float((p32.argmax(1) == p8.argmax(1)).mean()),
        "mean_abs_delta_prob": float(delta.mean()),
        "max_abs_delta_prob": float(delta.max()),
    }
    if contract.task == "multiclass":
        for name, probs in (("fp32", p32), ("int8", p8)):
            metrics = classification_metrics(labels, probs, contract.classes)
            result[name] = {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"]}
        result["accuracy_drop_pp"] = 100.0 * (result["fp32"]["accuracy"] - result["int8"]["accuracy"])
    result["targets"] = {"max_accuracy_drop_pp": MAX_ACCURACY_DROP_PP, "min_top1_agreement": MIN_TOP1_AGREEMENT}
    result["missed"] = targets_missed(result)
    result["meets_targets"] = not result["missed"]
    return result


def targets_missed(result: dict) -> list[str]:
    missed = []
    if result.get("accuracy_drop_pp", 0.0) > MAX_ACCURACY_DROP_PP:
        missed.append(f"accuracy drops by {result['accuracy_drop_pp']:.2f} pp (limit {MAX_ACCURACY_DROP_PP:g} pp)")
    if result["top1_agreement"] < MIN_TOP1_AGREEMENT:
        missed.append(f"top-1 agreement {result['top1_agreement']:.1%} (needs {MIN_TOP1_AGREEMENT:.0%})")
    return missed


def require_int8_targets(missed: dict[str, list[str]], accept: bool) -> None:
    """Fail the export (after every file is written) when an INT8 model misses its targets, unless accepted:
    a deployment script must not take a quietly degraded model for a good one."""
    failing = {target: reasons for target, reasons in missed.items() if reasons}
    if failing and not accept:
        detail = "; ".join(f"{target}: {', '.join(reasons)}" for target, reasons in failing.items())
        raise EdgeECGError(f"INT8 misses its targets ({detail}); the model is written and reported as FAILED, "
                           "do not deploy it (try --int8-exclude or --calib-method, or pass --accept-int8-miss)")


def print_int8_table(results: dict[str, dict], source: Path) -> None:
    """One row per INT8 flavour; a loud warning for every flavour that misses the targets."""
    table = Table(title=f"FP32 vs INT8 on {source}")
    for column in ("INT8", "scans", "accuracy FP32>INT8", "macro-F1 FP32>INT8", "top-1 agree", "|dp| mean/max",
                   "targets"):
        table.add_column(column, justify="left" if column == "INT8" else "right")
    for target, r in results.items():
        fp32, int8 = r.get("fp32", {}), r.get("int8", {})
        table.add_row(
            target, str(r["n_scans"]),
            f"{_pct(fp32.get('accuracy'))}>{_pct(int8.get('accuracy'))}",
            f"{_pct(fp32.get('f1_macro'))}>{_pct(int8.get('f1_macro'))}",
            f"{r['top1_agreement']:.1%}", f"{r['mean_abs_delta_prob']:.3f}/{r['max_abs_delta_prob']:.3f}",
            "[green]met[/]" if r["meets_targets"] else "[bold red]MISSED[/]",
        )
    tables.print(table)
    for target, r in results.items():
        if r["missed"]:
            loud_warning(
                f"INT8 ({target}) misses its accuracy targets",
                "; ".join(r["missed"]) + ".\nKeep sensitive parts in FP32 and re-export, e.g. "
                "--int8-exclude attention,classifier (parts: trunk, conv_block1..3, attention, fusion, classifier), "
                "or try another --calib-method.",
            )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
