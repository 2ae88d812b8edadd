"""`edgeecg digitize`: printout images -> 12-lead signals (WFDB, CSV or JSON) and an overlay to check them.

A batch goes on past a page it cannot read (one line for it, exit 1 at the
end); a bad option stops everything with one line (exit 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import cv2

from .atomic import write_bytes
from .errors import EdgeECGError
from .layouts import LAYOUTS
from .signal_io import FORMATS

DEFAULT_RATE = 500.0


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for the records (and overlays)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="wfdb", show_default=True)
@click.option("--rate", type=click.FloatRange(min=50.0, max=5000.0), default=DEFAULT_RATE, show_default=True,
              help="sampling rate of the written signals, Hz")
@click.option("--layout", type=click.Choice(sorted(LAYOUTS)), help="skip layout detection (default: read it from the page)")
@click.option("--mm-per-s", type=click.FloatRange(min=5.0, max=100.0), default=25.0, show_default=True,
              help="paper speed the page was printed at")
@click.option("--mm-per-mv", type=click.FloatRange(min=1.0, max=40.0),
              help="gain; default: read from the calibration pulse, else 10")
@click.option("--plot", is_flag=True, help="also write OUT/<name>.overlay.png: the read traces drawn over the page")
@click.option("--json", "as_json", is_flag=True, help="one JSON summary per input per line on stdout")
def digitize(paths, out_dir, fmt, rate, layout, mm_per_s, mm_per_mv, plot, as_json) -> None:
    """Read the 12 leads of ECG printout images (files or folders) as calibrated signals in mV."""
    from .digitize import digitize as read_leads
    from .digitize_plot import overlay
    from .imageio import read_image
    from .infer_cli import expand_inputs, failure_message, format_error
    from .signal_io import write_signals

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    inputs = expand_inputs(paths)
    failed = 0
    for path, problem in inputs:
        try:
            if problem:
                raise EdgeECGError(problem)
            image = read_image(path)
            result = read_leads(image, rate=rate, layout=layout, mm_per_s=mm_per_s, mm_per_mv=mm_per_mv)
            written = write_signals(result, out_dir, path.stem, fmt)
            if plot:
                ok, encoded = cv2.imencode(".png", overlay(image, result))
                if not ok:
                    raise EdgeECGError("could not encode the overlay as PNG")
                target = out_dir / f"{path.stem}.overlay.png"
                write_bytes(target, encoded.tobytes())
                written.append(target)
        except Exception as exc:  # noqa: BLE001  one bad page never stops a batch (as in `edgeecg infer`)
            failed += 1
            click.echo(format_error(path, failure_message(exc), as_json), err=not as_json)
            continue
        summary = {"path": str(path), **result.summary(), "files": [str(p) for p in written]}
        click.echo(json.dumps(summary) if as_json else _describe(summary))
    if failed and len(inputs) > 1:
        click.echo(f"{failed} of {len(inputs)} input(s) failed", err=True)
    if failed:
        sys.exit(1)


def _describe(summary: dict) -> str:
    from .infer_cli import display

    scale = summary["scale"]
    found = summary["leads_found"]
    status = "partial: " + ", ".join(found) if summary["partial"] else "12 leads"
    turned = f", read turned {summary['turned_deg']} degrees clockwise" if summary["turned_deg"] else ""
    return (f"{display(summary['path'])}: layout {summary['layout']} ({summary['columns']} columns, rhythm "
            f"{', '.join(summary['rhythm_leads']) or 'none'}), {status}{turned}\n"
            f"  scale {scale['px_per_mm'][0]:.2f} x {scale['px_per_mm'][1]:.2f} px/mm, {scale['mm_per_s']:g} mm/s, "
            f"{scale['mm_per_mv']:g} mm/mV ({scale['mm_per_mv_from']})\n"
            f"  wrote {', '.join(map(display, summary['files']))}")
