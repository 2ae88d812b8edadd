"""`edgeecg bench` outputs: terminal table, JSON, flat CSV, accuracy-vs-latency plot, Markdown.

All take the report dict of `edgeecg.bench.run_bench` and every file is
written atomically, so an interrupted bench never leaves half a file behind.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_text
from .errors import EdgeECGError

WIDE = 200  # columns when printing to a file or pipe, where rich would otherwise wrap at 80
E2E_STAGES = "decode, quality gate (which reads the page), then crop and preprocess for an image model, model"


def describe_machine(env: dict) -> str:
    """One paragraph naming the machine, so numbers are never quoted without it."""
    libraries = ", ".join(f"{name} {version}" for name, version in env["libraries"].items())
    load = " / ".join(f"{v:.2f}" for v in env["load_average"]) if env.get("load_average") else "n/a"
    return (
        f"{env['cpu']}, {env['cpu_cores_physical']} physical / {env['cpu_cores_logical']} logical cores, "
        f"{env['threads']} thread(s) ({env['threads_source']}), {env['memory_gb']} GB RAM, "
        f"GPU: {env['gpu'] or 'none'}; load average {load}; {env['os']}, python {env['python']}; {libraries}"
    )


def print_report(report: dict, console: Any = None) -> None:
    """The rich table: quality against the reference, speed, and cost, one row per model/backend."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else WIDE)
    data, settings = report["data"], report["settings"]
    batches = "/".join(str(b) for b in settings["batches"])
    table = Table(title=escape(f"edgeecg bench: {data['n_images']} labelled scans from {data['source']}"))
    columns = ["model", "backend", "acc", "F1", "agree", "|Δp| mean/max", "model ms p50/p90/p99", "× ref/ORT32",
               "e2e ms p50/p99", f"img/s @{batches}", "MB", "RSS MB"]
    show_gpu = any(r["gpu_mem_mb"] is not None for r in report["rows"])
    columns += ["GPU MB"] if show_gpu else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "backend") else "right")
    for row in report["rows"]:
        marks = (" [bold](ref)[/]" if row["is_reference"] else "") + (" [green]◆[/]" if row["pareto"] else "")
        cells = [
            escape(row["model"]) + marks, f"{row['backend']} {row['precision']} {row['device']}",
            _pct(row["accuracy"]), _pct(row["macro_f1"]), _pct(row["agreement"]),
            f"{row['mean_abs_dprob']:.4f}/{row['max_abs_dprob']:.4f}",
            "/".join(_ms(row[f"latency_ms_{p}"]) for p in ("p50", "p90", "p99")), _speedups(row, "/"),
            "/".join(_ms(row[f"e2e_ms_{p}"]) for p in ("p50", "p99")),
            "/".join(_ms(row["throughput"][str(b)]) for b in settings["batches"]),
            _ms(row["size_mb"]), _num(row["peak_rss_mb"], 0),
        ]
        cells += [_num(row["gpu_mem_mb"], 0)] if show_gpu else []
        table.add_row(*cells)
    console.print(table)
    console.print(f"reference for agreement, |Δp| and × ref (each model's own, one per training run): "
                  f"{report['reference']};  × ORT32 = speed-up over the same model's ONNX Runtime FP32 row;  "
                  "◆ = on the accuracy/latency Pareto front", highlight=False, markup=False)
    console.print(f"timing: {settings['warmup']} warm-up + {settings['runs']} timed calls at batch 1 and end to end "
                  f"(file bytes -> {E2E_STAGES}); each batch size times ~{settings['runs']} images; "
                  "each row in its own process", highlight=False)
    console.print(f"machine: {describe_machine(report['environment'])}", highlight=False, markup=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False, markup=False)


def to_json(report: dict) -> str:
    """Strict JSON (NaN/inf written as null)."""
    return json.dumps(_finite(report), indent=2, allow_nan=False) + "\n"


def flat_row(row: dict) -> dict[str, Any]:
    """One CSV line: nested dicts become columns (throughput_b8, e2e_crop_ms_p50, ...)."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key == "throughput":
            flat.update({f"throughput_b{batch}": v for batch, v in value.items()})
        elif key == "e2e_stages_ms_p50":
            flat.update({f"e2e_{stage}_ms_p50": v for stage, v in value.items()})
        else:
            flat[key] = value
    return flat


def to_csv(report: dict) -> str:
    rows = [flat_row(_finite(r)) for r in report["rows"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_outputs(report: dict, json_path: Path | None, csv_path: Path | None, plot_path: Path | None) -> None:
    """Write whichever of --json/--csv/--plot were asked for (each atomically)."""
    try:
        if json_path:
            write_text(json_path, to_json(report))
        if csv_path:
            write_text(csv_path, to_csv(report))
        if plot_path:
            write_plot(report, plot_path)
    except OSError as exc:
        raise EdgeECGError(f"{exc.filename or 'output'}: cannot write ({exc.strerror})") from None


def check_plot_path(path: Path) -> str:
    """The image format matplotlib will write, from the file's suffix; refuse one it cannot."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fmt = path.suffix.lower().lstrip(".")
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if fmt not in supported:
        raise EdgeECGError(f"{path}: the plot needs an image suffix (.png, or one of .{', .'.join(sorted(supported))})")
    return fmt


def write_plot(report: dict, path: Path) -> None:
    """Scatter of model latency p50 against accuracy, the Pareto front joined and ringed.

    Rows are named in a legend below the axes rather than beside their points:
    FP32/FP16/INT8 of one model usually sit on top of each other.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fmt = check_plot_path(path)
    rows = [r for r in report["rows"] if _is_number(r["latency_ms_p50"]) and _is_number(r["accuracy"])]
    figure = Figure(figsize=(8, 5 + 0.18 * len(rows)), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    markers = "osD^vP<>Xh"
    for i, row in enumerate(rows):
        name = f"{row['model']}: {row['backend']} {row['precision']} {row['device']}"
        name += " (reference)" if row["is_reference"] else ""
        ax.scatter(row["latency_ms_p50"], 100 * row["accuracy"], s=110 if row["is_reference"] else 50, zorder=3,
                   marker="*" if row["is_reference"] else markers[i % len(markers)], label=name, alpha=0.85)
    front = sorted((r["latency_ms_p50"], 100 * r["accuracy"]) for r in rows if r["pareto"])
    if front:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="post", color="tab:green", linewidth=1.2, zorder=2, label="Pareto front")
        ax.scatter(xs, ys, s=220, facecolors="none", edgecolors="tab:green", linewidths=1.5, zorder=4)
    latencies = [r["latency_ms_p50"] for r in rows]
    if latencies and min(latencies) > 0 and max(latencies) / min(latencies) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.1, y=0.1)
    ax.set_xlabel("model latency p50 at batch 1 (ms)")
    ax.set_ylabel(f"accuracy on {report['data']['n_images']} labelled scans (%)")
    figure.suptitle("edgeecg bench: accuracy versus latency", fontsize=10)
    ax.set_title(_machine_line(report["environment"]), fontsize=7, color="0.4")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=7, frameon=False)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt)


def markdown_table(report: dict) -> str:
    """The README's benchmark table: one Markdown row per model/backend."""
    batches = report["settings"]["batches"]
    header = ["model", "backend", "precision", "device", "accuracy", "macro-F1", "agreement", "mean / max abs(Δp)",
              "latency p50/p90/p99 (ms)", "speed-up × ref / × ORT FP32", "end-to-end p50/p99 (ms)",
              *[f"img/s @{b}" for b in batches], "size (MB)", "peak RSS (MB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in report["rows"]:
        name = row["model"] + (" (reference)" if row["is_reference"] else "")
        cells = [name, row["backend"], row["precision"], row["device"], _pct(row["accuracy"]),
                 _pct(row["macro_f1"]), _pct(row["agreement"]),
                 f"{row['mean_abs_dprob']:.4f} / {row['max_abs_dprob']:.4f}",
                 " / ".join(_ms(row[f"latency_ms_{p}"]) for p in ("p50", "p90", "p99")), _speedups(row, " / "),
                 " / ".join(_ms(row[f"e2e_ms_{p}"]) for p in ("p50", "p99")),
                 *[_ms(row["throughput"][str(b)]) for b in batches],
                 _ms(row["size_mb"]), _num(row["peak_rss_mb"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _speedups(row: dict, separator: str) -> str:
    return separator.join(_num(row.get(key), 2) for key in ("speedup_vs_reference", "speedup_vs_ort_fp32"))


def _machine_line(env: dict) -> str:
    return (f"{env['cpu']}, {env['threads']} thread(s), GPU: {env['gpu'] or 'none'}; "
            f"onnxruntime {env['libraries'].get('onnxruntime')}")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f} %" if _is_number(value) else "n/a"


def _ms(value: Any) -> str:
    """Three significant figures or more: 0.0254, 3.46, 152.8, 15138."""
    if not _is_number(value):
        return "n/a"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 1 else 3
    return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2g}"


def _num(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else "n/a"
