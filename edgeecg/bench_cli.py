"""`edgeecg bench`: accuracy versus latency of every model/backend on this machine, against the FP32 reference."""

from __future__ import annotations

from pathlib import Path

import click

from .bench import BenchProgress, run_bench
from .bench_measure import DEFAULT_BATCHES, DEFAULT_RUNS, DEFAULT_WARMUP, BenchSettings
from .bench_report import check_plot_path, print_report, write_outputs


def _names(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """--models may be repeated and/or comma-separated."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _batches(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated batch sizes like 1,8,32, got {value!r}") from None
    if not sizes or sizes[0] < 1:
        raise click.BadParameter(f"batch sizes must be positive integers, got {value!r}")
    return sizes


@click.command()
@click.option("--models", "models", multiple=True, callback=_names, metavar="FILE_OR_NAME",
              help="extra model: a .onnx/.engine file or a shipped name; repeatable or comma-separated")
@click.option("--shipped/--no-shipped", default=True, show_default=True,
              help="include every shipped model whose classes cover the data's labels")
@click.option("--reference", type=click.Path(path_type=Path), metavar="RUN_DIR_OR_PT",
              help="PyTorch checkpoint (image or signal run) for the FP32 reference row of its model [default: "
                   "none; each model's FP32 ONNX Runtime row is its reference]")
@click.option("--data", type=click.Path(path_type=Path), metavar="DIR_OR_CSV",
              help="labelled scans: class folders or a CSV manifest [default: calib_data/heldout_eval.csv]")
@click.option("--limit", type=click.IntRange(min=1), help="use at most N scans, spread over the classes")
@click.option("--batch", "batches", default=",".join(map(str, DEFAULT_BATCHES)), show_default=True,
              callback=_batches, metavar="SIZES", help="comma-separated batch sizes for throughput")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for ONNX Runtime, PyTorch and OpenCV [default: their own]")
@click.option("--runs", type=click.IntRange(min=1), default=DEFAULT_RUNS, show_default=True,
              help="timed calls at batch 1 and end to end; each batch size times about this many images")
@click.option("--warmup", type=click.IntRange(min=0), default=DEFAULT_WARMUP, show_default=True,
              help="untimed calls before timing")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="write the report as JSON")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="write one CSV line per row")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="write latency p50 vs accuracy with the Pareto front (PNG)")
def bench(models, shipped, reference, data, limit, batches, threads, runs, warmup, json_path, csv_path,
          plot_path) -> None:
    """Accuracy, agreement with the FP32 reference, latency, throughput and memory of each model/backend."""
    if plot_path is not None:
        check_plot_path(plot_path)
    settings = BenchSettings(batches=batches, runs=runs, warmup=warmup, threads=threads)
    report = run_bench(data, models, reference, include_shipped=shipped, settings=settings, limit=limit,
                       progress=BenchProgress())
    print_report(report)
    write_outputs(report, json_path, csv_path, plot_path)
    for label, path in (("JSON", json_path), ("CSV", csv_path), ("plot", plot_path)):
        if path is not None:
            click.echo(f"{label}: {path}")
