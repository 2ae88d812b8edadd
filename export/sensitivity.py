"""Which parts of a model INT8 hurts: a per-part sensitivity sweep, and the parts kept in FP32 because of it.

Each part of the graph (trunk, conv_block1..3, attention, fusion, classifier)
is kept in FP32 in turn while the rest is quantized, and each such model is
compared with FP32 on the checking scans (the labelled evaluation set when
there is one): top-1 agreement and mean |delta probability|. The part whose
FP32 copy brings the answers back is the one quantization costs; it is then
swept block by block (trunk.0, trunk.1, ...), since keeping a whole trunk in
FP32 would forfeit what INT8 is for. With
`--int8-exclude auto` the most helpful parts are kept in FP32, one at a time and
each combination re-measured, until the model agrees with FP32 on at least 98 %
of the checking scans or no part helps any more.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from rich.table import Table

from edgeecg.contract import ModelContract

from .int8_eval import MIN_TOP1_AGREEMENT
from .quantize import fidelity, graph_parts, nodes_for_parts, quantize_int8
from .scans import evenly_spaced
from .ui import step, tables
from .verify import onnx_logits

AUTO = "auto"  # --int8-exclude auto: choose the FP32 parts by the sweep
SWEEP_CALIB_SCANS = 64  # calibration scans per sweep model (the final INT8 model is calibrated on all of them)
NO_PART = "(none)"


class Sweep:
    """Quantizes the prepared model with chosen parts in FP32 and scores each result against FP32."""

    def __init__(self, prepared: Path, fp32_path: Path, calib: np.ndarray, check: np.ndarray,
                 contract: ModelContract, target: str, method: str, work: Path):
        self.prepared, self.proto = prepared, onnx.load(str(prepared))
        self.calib = calib[evenly_spaced(range(len(calib)), SWEEP_CALIB_SCANS)]
        self.check, self.contract, self.target, self.method, self.work = check, contract, target, method, work
        self.reference = onnx_logits(fp32_path, check)

    def score(self, fp32_parts: Sequence[str]) -> dict:
        """Top-1 agreement and mean |delta p| against FP32 with these parts kept in FP32."""
        path = self.work / "sweep.onnx"
        quantize_int8(self.prepared, path, self.calib, self.target, self.method,
                      nodes_for_parts(self.proto, fp32_parts))
        result = fidelity(self.reference, path, self.check, self.contract)
        path.unlink()
        return result

    def rows(self, kept: Sequence[str]) -> list[dict]:
        """One row with only `kept` in FP32, then one per further part kept in FP32 as well; the part whose FP32
        copy helps most is then opened up block by block (a whole trunk in FP32 would forfeit INT8's speed)."""
        out = [self._row(NO_PART, kept)]
        out += [self._row(part, kept) for part in graph_parts(self.proto) if part not in kept]
        best = max(out[1:], key=lambda r: r["top1_agreement"], default=None)
        if best is not None and best["top1_agreement"] > out[0]["top1_agreement"]:
            blocks = graph_parts(self.proto, within=best["fp32_part"])
            out += [self._row(block, kept, inside=best["fp32_part"]) for block in blocks if len(blocks) > 1]
        return out

    def _row(self, part: str, kept: Sequence[str], inside: str | None = None) -> dict:
        step(f"INT8 ({self.target}) sensitivity: {part} in FP32")
        extra = [] if part == NO_PART else [part]
        return {"fp32_part": part, "inside": inside, **self.score([*kept, *extra])}

    def choose(self, rows: list[dict], kept: Sequence[str]) -> list[str]:
        """`kept` plus the most helpful parts, one at a time (each combination measured), until the target;
        where a part was opened up, its blocks are tried instead of the whole part."""
        chosen, best = list(kept), rows[0]["top1_agreement"]
        opened = {r["inside"] for r in rows if r.get("inside")}
        candidates = [r for r in rows[1:] if r["fp32_part"] not in opened]
        helpful = sorted((r for r in candidates if r["top1_agreement"] > best), key=lambda r: -r["top1_agreement"])
        for row in helpful:
            if best >= MIN_TOP1_AGREEMENT:
                break
            trial = self.score([*chosen, row["fp32_part"]])["top1_agreement"]
            if trial > best:
                chosen, best = [*chosen, row["fp32_part"]], trial
        return chosen


def sensitivity(prepared: Path, fp32_path: Path, calib: np.ndarray, check: np.ndarray, contract: ModelContract,
                target: str, method: str, exclude: Sequence[str]) -> tuple[list[dict], list[str]]:
    """The sweep's rows (printed) and the parts to keep in FP32: `exclude` as given, or chosen when it says auto."""
    kept = [part for part in exclude if part != AUTO]
    with tempfile.TemporaryDirectory(dir=fp32_path.parent, prefix=".int8-sweep-") as work:
        sweep = Sweep(prepared, fp32_path, calib, check, contract, target, method, Path(work))
        rows = sweep.rows(kept)
        chosen = sweep.choose(rows, kept) if AUTO in exclude else kept
    _print(rows, target, len(check), chosen)
    return rows, chosen


def _print(rows: list[dict], target: str, scans: int, chosen: list[str]) -> None:
    baseline = rows[0]["top1_agreement"]
    table = Table(title=f"INT8 ({target}) sensitivity: one part kept in FP32, against FP32 on {scans} scans")
    for column in ("part in FP32", "top-1 agree", "change", "mean |dp|"):
        table.add_column(column, justify="left" if column == "part in FP32" else "right")
    for row in rows:
        name = row["fp32_part"] if not row.get("inside") else f"  {row['fp32_part']}"
        table.add_row(name, f"{row['top1_agreement']:.1%}",
                      f"{(row['top1_agreement'] - baseline) * 100:+.1f} pp", f"{row['mean_abs_delta_prob']:.3f}")
    tables.print(table)
    step(f"INT8 ({target}): parts kept in FP32: {', '.join(chosen) or 'none'}")
