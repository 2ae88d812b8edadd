"""`edgeecg render`: PTB-XL records -> printout images + manifest.csv (labels, grid quads, layout).

Each record's distortions (and, with --random-style, its page style) are
seeded from (--seed, ecg_id), so an image does not change when --limit or the
record order changes. The manifest is written last and atomically: it only
ever lists images that exist.
"""

from __future__ import annotations

import csv
import importlib
from dataclasses import replace
from pathlib import Path

import click
import cv2

from .atomic import atomic_path, write_bytes
from .errors import EdgeECGError
from .layouts import LAYOUTS
from .render import (
    DEFAULT_PX_PER_MM, GRID_STYLES, PAPER_TONES, RenderOptions, random_options, record_seed, render_printout,
)

CORNERS = ("tl", "tr", "br", "bl")


def _ptbxl_module():
    """The PTB-XL loader needs pandas and wfdb (the `train` extra), so import it only here."""
    try:
        return importlib.import_module("edgeecg.train.ptbxl")
    except ImportError as exc:
        raise EdgeECGError(
            f"`edgeecg render` needs a missing package ({exc.name}); install it with: pip install -e '.[train]'"
        ) from None


def manifest_columns(superclasses: tuple[str, ...]) -> list[str]:
    """The manifest's header; the page-layout columns come last so older readers see the columns they know."""
    quad = [f"quad_{corner}_{axis}" for corner in CORNERS for axis in ("x", "y")]
    return ["file", "ecg_id", "strat_fold", "labels", *quad, *superclasses, "layout", "simultaneous", "rhythm_leads"]


@click.command()
@click.argument("records_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="folder for the images and manifest.csv")
@click.option("--limit", type=click.IntRange(min=1), help="render only the first N records (by ecg_id)")
@click.option("--distort/--no-distort", default=False, show_default=True, help="photo-like distortions (RenderOptions.photo)")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="seed of the distortions")
@click.option("--px-per-mm", default=DEFAULT_PX_PER_MM, show_default=True, type=click.FloatRange(min=1.0, max=40.0),
              help="resolution; the default gives 1106x786 pages like the shared scans")
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
@click.option("--high-rate", is_flag=True, help="read the 500 Hz records (filename_hr) instead of 100 Hz")
@click.option("--layout", type=click.Choice(list(LAYOUTS)), help="page layout  [default: 3x4+1, or random with --random-style]")
@click.option("--simultaneous", is_flag=True, help="every column shows the same first window of the record")
@click.option("--style", "grid_style", type=click.Choice(list(GRID_STYLES)), default="pink", show_default=True,
              help="grid colours")
@click.option("--paper", type=click.Choice(list(PAPER_TONES)), default="white", show_default=True, help="paper tone")
@click.option("--random-style", is_flag=True,
              help="draw each record's layout, grid, paper, calibration and header from its seed "
                   "(overrides the style options)")
def render(records_dir: Path, out_dir: Path, limit: int | None, distort: bool, seed: int, px_per_mm: float,
           image_format: str, high_rate: bool, layout: str | None, simultaneous: bool, grid_style: str, paper: str,
           random_style: bool) -> None:
    """Render the PTB-XL records in RECORDS_DIR (a folder with ptbxl_database.csv) as 12-lead printouts.

    Records without a diagnostic superclass are skipped, as in the PTB-XL benchmark.
    """
    from rich.console import Console
    from rich.progress import track

    if not records_dir.is_dir():
        raise EdgeECGError(f"{records_dir}: no such folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgeECGError(f"{out_dir}: exists and is not a folder")
    ptbxl = _ptbxl_module()
    table = ptbxl.load_ptbxl(records_dir)
    if table.empty:
        raise EdgeECGError(f"{records_dir}: no records with a diagnostic superclass")
    if limit is not None:
        table = table.iloc[:limit]
    base = RenderOptions.photo(px_per_mm) if distort else RenderOptions(px_per_mm=px_per_mm)
    base = replace(base, layout=layout or base.layout, simultaneous=simultaneous).with_style(grid_style, paper)
    encode_params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []

    rows = []
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    for ecg_id, record in track(table.iterrows(), total=len(table), description="rendering", console=console):
        signal = ptbxl.read_signal(records_dir, record, high_rate=high_rate)
        own_seed = record_seed(seed, int(ecg_id))
        options = random_options(own_seed, photo=distort, layout=layout, px_per_mm=px_per_mm) if random_style else base
        header = ptbxl.printout_header(record, signal.fs)
        result = render_printout(signal.mv, signal.fs, options, header=header, seed=own_seed)
        name = f"{int(ecg_id):05d}.{image_format}"
        ok, encoded = cv2.imencode(f".{image_format}", result.image, encode_params)
        if not ok:
            raise EdgeECGError(f"could not encode {name}")
        write_bytes(out_dir / name, encoded.tobytes())
        quad = [f"{v:.2f}" for v in result.grid_quad.reshape(-1)]
        labels = [int(record[c]) for c in ptbxl.SUPERCLASSES]
        rhythm = "|".join(panel.lead for panel in result.panels if panel.rhythm)
        rows.append([name, int(ecg_id), int(record["strat_fold"]), "|".join(record["superclasses"]), *quad, *labels,
                     result.layout_name, int(result.simultaneous), rhythm])

    with atomic_path(out_dir / "manifest.csv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(manifest_columns(ptbxl.SUPERCLASSES))
        writer.writerows(rows)
    console.print(f"wrote {len(rows)} images and manifest.csv to {out_dir}")
