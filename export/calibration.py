"""INT8 calibration data: held-out scans, preprocessed like the runtime does, fed to ONNX Runtime.

Static quantization fixes an int8 range per activation from what the network
sees on the calibration images, so those must be real, held-out ECG scans
that went through the runtime's own preprocessing (`edgeecg.export.scans`), never
random tensors or training images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from edgeecg.contract import ModelContract
from edgeecg.errors import EdgeECGError

from .scans import PreparedScans, evenly_spaced, image_files, prepare_scans
from .ui import note, warn

CALIB_DIRNAME = "calib_data"
RECOMMENDED_MIN_IMAGES = 32
REPO_ROOT = Path(__file__).resolve().parents[1]  # export/ sits at the repository root


def resolve_calib_dir(explicit: str | Path | None = None) -> Path:
    """The calibration folder: the one given, else ./calib_data, else calib_data/ beside the package."""
    if explicit is not None:
        folder = Path(explicit)
        if not folder.is_dir():
            raise EdgeECGError(f"{folder}: calibration folder does not exist")
        return folder
    for folder in (Path.cwd() / CALIB_DIRNAME, REPO_ROOT / CALIB_DIRNAME):
        if folder.is_dir():
            return folder
    raise EdgeECGError(
        f"no calibration folder: pass --calib DIR or create ./{CALIB_DIRNAME}/ with held-out ECG scans"
    )


def list_calibration_files(folder: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every image file under `folder` (recursively, sorted), minus the ones in `exclude`."""
    excluded = {Path(p).resolve() for p in exclude}
    files = image_files(folder)
    kept = [p for p in files if p.resolve() not in excluded]
    if len(kept) < len(files):
        note(f"{len(files) - len(kept)} image(s) in {folder} belong to the evaluation set and are not used to calibrate")
    return kept


def load_calibration_set(
    folder: Path, contract: ModelContract, max_images: int = 0, exclude: Iterable[Path] = ()
) -> PreparedScans:
    """Preprocessed calibration scans; refuses a folder with no usable image, warns under 32."""
    files = list_calibration_files(folder, exclude)
    if not files:
        raise EdgeECGError(f"{folder}: no calibration images (JPEG/PNG/TIFF/BMP scans of held-out ECGs expected)")
    scans = prepare_scans(evenly_spaced(files, max_images), contract, "calibration scans")
    if not len(scans):
        reason = scans.skipped[0][1]
        raise EdgeECGError(f"{folder}: none of the {len(files)} calibration images could be used (e.g. {reason})")
    if scans.skipped:
        warn(f"{len(scans.skipped)} calibration image(s) skipped, e.g. {scans.skipped[0][1]}")
    if len(scans) < RECOMMENDED_MIN_IMAGES:
        warn(
            f"only {len(scans)} calibration image(s) in {folder}; use at least {RECOMMENDED_MIN_IMAGES} "
            "held-out scans covering every class for stable INT8 ranges"
        )
    return scans


class ScanCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed scans to ONNX Runtime's calibrators, `batch_size` at a time.

    `set_range` (in batches) lets the quantizer collect statistics a few batches
    at a time (its `CalibStridedMinMax` option) instead of holding every
    intermediate tensor of the whole set in memory.
    """

    def __init__(self, tensors: np.ndarray, input_name: str = "input", batch_size: int = 1):
        self.tensors = tensors
        self.input_name = input_name
        self.batch_size = batch_size
        self.set_range(0, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        start = self._next * self.batch_size
        self._next += 1
        return {self.input_name: self.tensors[start : start + self.batch_size]}

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self))

    def rewind(self) -> None:
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-len(self.tensors) // self.batch_size)
