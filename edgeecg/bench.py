"""`edgeecg bench`: accuracy versus latency of every model/backend on this machine, start to finish.

The steps each have a module: which rows (`bench_rows`), the labelled set
preprocessed once per contract (`bench_data`), each row timed in a fresh
process (`bench_measure`), scored against the labels and the reference row
(`bench_score`), the machine described (`machine`), and the outputs written
(`bench_report`). torch is imported only where a PyTorch row runs (see
`edgeecg.train.torch_backend`); none of these modules imports it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from .bench_data import prepare_labelled_set, resolve_data, spread
from .bench_measure import BenchSettings, measure_isolated
from .bench_rows import select_rows
from .bench_score import report_rows
from .datasets import class_names, list_labelled_images
from .errors import EdgeECGError
from .machine import busy_note, environment


def run_bench(
    data: str | Path | None,
    models: Sequence[str] = (),
    reference: str | Path | None = None,
    include_shipped: bool = True,
    settings: BenchSettings | None = None,
    limit: int | None = None,
    models_dir: Path | None = None,
    progress: BenchProgress | None = None,
) -> dict:
    """Measure every row; the report is {"environment", "data", "settings", "reference", "notes", "rows"}.

    "reference" names each family's reference row (see `edgeecg.bench_rows`), "; "-separated.
    """
    settings = settings or BenchSettings()
    progress = progress or BenchProgress(enabled=False)
    source = resolve_data(data)
    items = spread(list_labelled_images(source), limit)
    rows, notes = select_rows(class_names(items), models, reference, include_shipped, models_dir)
    notes += [busy] if (busy := busy_note()) else []
    with tempfile.TemporaryDirectory(prefix="edgeecg-bench-") as tmp:
        labelled = prepare_labelled_set(
            items, [r.contract for r in rows], Path(tmp),
            lambda scans: progress.track(scans, "preprocessing scans", len(items)),
        )
        if not labelled.paths:
            raise EdgeECGError(
                f"{source}: none of the {len(items)} images could be used (e.g. {labelled.skipped[0][1]})"
            )
        if labelled.skipped:
            notes.append(f"{len(labelled.skipped)} of {len(items)} image(s) skipped for every model, "
                         f"e.g. {labelled.skipped[0][1]}")
        measured = [
            measure_isolated(row, labelled.tensors[row.contract.preprocessing_key()], labelled.paths, settings)
            for row in progress.track(rows, "measuring", len(rows), labels=[r.label for r in rows])
        ]

    scored = report_rows(rows, measured, labelled.labels, settings)
    gpu = next((m["device_name"] for m in measured if m.get("device_name")), None)
    return {
        "environment": environment(settings.threads, any(r.backend == "pytorch" for r in rows), gpu),
        "data": {
            "source": str(source),
            "n_images": len(labelled.paths),
            "n_skipped": len(labelled.skipped),
            "classes": {label: labelled.labels.count(label) for label in sorted(set(labelled.labels))},
        },
        "settings": {"batches": list(settings.batches), "runs": settings.runs, "warmup": settings.warmup,
                     "threads": settings.threads, "limit": limit},
        "reference": "; ".join(r["reference"] for r in scored if r["is_reference"]),
        "notes": notes,
        "rows": scored,
    }


class BenchProgress:
    """rich progress bars on stderr while scans are preprocessed and rows measured (off when not a terminal)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def track(self, items: Sequence, description: str, total: int, labels: Sequence[str] | None = None):
        if not self.enabled:
            yield from items
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as bar:
            task = bar.add_task(description, total=total)
            for i, item in enumerate(items):
                if labels is not None:
                    bar.update(task, description=f"{description} {labels[i]}")
                yield item
                bar.advance(task)
