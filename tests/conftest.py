"""Shared fixtures: where the read-only shared data lives, and small slices of it."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEECG_SHARED", REPO.parent / "shared"))
MENDELEY = SHARED / "data" / "mendeley-ecg-images"
PTBXL = SHARED / "data" / "ptbxl-subset"


@pytest.fixture(scope="session")
def mendeley_dir() -> Path:
    if not (MENDELEY / "manifest.csv").is_file():
        pytest.skip(f"shared Mendeley scans not found at {MENDELEY}")
    return MENDELEY


@pytest.fixture(scope="session")
def ptbxl_dir() -> Path:
    if not (PTBXL / "ptbxl_database.csv").is_file():
        pytest.skip(f"shared PTB-XL subset not found at {PTBXL}")
    return PTBXL


@pytest.fixture(scope="module")
def text_page(tmp_path_factory) -> Path:
    """A white page with black text lines: an image, but no ECG grid."""
    page = np.full((600, 800, 3), 255, np.uint8)
    for y in range(60, 560, 40):
        cv2.putText(page, "lorem ipsum dolor sit amet", (40, y), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    path = tmp_path_factory.mktemp("page") / "page.png"
    cv2.imwrite(str(path), page)
    return path
