"""What decoding a phone-photo-sized JPEG reduced saves: decode and page reading, full size against reduced.

    python benchmarks/photo_decode.py [--images 8] [--sides 4000 8000] [--repeats 3] [--data DIR]

Shared scans (DIR defaults to shared/data/mendeley-ecg-images beside the
repository, or under $EDGEECG_SHARED) are enlarged to each long side and
encoded as JPEG (quality 90), as a phone would save them. Each is then decoded
at full size and as the runtime does (`edgeecg.imageio.decode_image`: reduced
2, 4 or 8 times by libjpeg while the long side stays at least twice
`edgeecg.page.MAX_READ_SIDE`), and the quality gate reads the page from both
(`edgeecg.gate.assess`, which digitizes it). Reports wall and CPU ms of each
step, and whether both decodings give the same reading (layout, and the
median correlation of the leads read from both). Prints the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from edgeecg.datasets import list_labelled_images
from edgeecg.gate import assess
from edgeecg.imageio import decode_image
from edgeecg.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("EDGEECG_SHARED", REPO.parent / "shared")) / "data" / "mendeley-ecg-images"


def photos(folder: Path, count: int, side: int) -> list[bytes]:
    """`count` scans spread over the listing, enlarged to `side` px across and JPEG-encoded."""
    items = list_labelled_images(folder)
    picks = np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int)
    encoded = []
    for i in picks:
        scan = cv2.imread(str(items[i].path), cv2.IMREAD_COLOR)
        big = cv2.resize(scan, (side, round(side * scan.shape[0] / scan.shape[1])), interpolation=cv2.INTER_CUBIC)
        encoded.append(cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return encoded


def timed(step, repeats: int) -> tuple[float, float, object]:
    """(least wall ms, least CPU ms of this process, result) of `repeats` calls of `step()`."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = step()
        cpus.append((time.process_time() - cpu) * 1e3)
        walls.append((time.perf_counter() - wall) * 1e3)
    return min(walls), min(cpus), result


def same_reading(a, b) -> tuple[bool, float]:
    """(same layout?, median over leads of the correlation between the two readings' signals)."""
    if a.reading is None or b.reading is None:
        return a.reading is b.reading, float("nan")
    rs = []
    for x, y in zip(a.reading.signal.T, b.reading.signal.T):
        both = np.isfinite(x) & np.isfinite(y)
        if both.sum() > 10 and np.std(x[both]) > 0 and np.std(y[both]) > 0:
            rs.append(np.corrcoef(x[both], y[both])[0, 1])
    return a.reading.layout == b.reading.layout, float(np.median(rs)) if rs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="scans to enlarge (spread over all classes)")
    parser.add_argument("--sides", type=int, nargs="+", default=[4000, 8000], help="photo widths (px)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per step (the least is kept)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="scan folder (class folders or manifest.csv)")
    args = parser.parse_args()

    console = Console(width=200)
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    console.print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {load} (1/5/15 min); "
                  f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__} "
                  f"({cv2.getNumThreads()} threads); {args.images} scans from {args.data}, least of {args.repeats}")
    table = Table(title="decode + read the page, per photo (median over photos; wall ms / CPU ms)")
    for column in ("photo px", "decoded px", "decode full", "decode reduced", "read full", "read reduced",
                   "total full", "total reduced", "same layout", "median lead r"):
        table.add_column(column, justify="right")
    for side in args.sides:
        rows = []
        for data in photos(args.data, args.images, side):
            full_decode = timed(lambda: decode_image(data, max_side=None), args.repeats)
            reduced_decode = timed(lambda: decode_image(data), args.repeats)
            full_read = timed(lambda: assess(full_decode[2]), args.repeats)
            reduced_read = timed(lambda: assess(reduced_decode[2]), args.repeats)
            same, r = same_reading(full_read[2], reduced_read[2])
            rows.append((*full_decode[:2], *reduced_decode[:2], *full_read[:2], *reduced_read[:2], same, r,
                         reduced_decode[2].shape[1]))
        m = np.median(np.array([row[:8] for row in rows]), axis=0)
        pair = lambda wall, cpu: f"{wall:.0f} / {cpu:.0f}"
        table.add_row(str(side), str(rows[0][-1]), pair(m[0], m[1]), pair(m[2], m[3]), pair(m[4], m[5]),
                      pair(m[6], m[7]), pair(m[0] + m[4], m[1] + m[5]), pair(m[2] + m[6], m[3] + m[7]),
                      f"{sum(row[8] for row in rows)}/{len(rows)}", f"{np.nanmedian([row[9] for row in rows]):.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
