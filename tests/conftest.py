"""Shared fixtures: data the suite makes for itself, and the read-only shared data for the tests that need it.

`mendeley_dir` and `ptbxl_dir` are built here (tests/local_data.py), so a fresh clone runs them. Tests
that need the shared data itself ask for `shared_mendeley_dir`, `shared_ptbxl_dir` or `shared_ludb_dir`;
they are marked `shared` and skip with the reason when it is absent (EDGEECG_SHARED, default ../shared).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from local_data import mendeley_like, ptbxl_like

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEECG_SHARED", REPO.parent / "shared"))
SHARED_DATA = {  # fixture -> (folder, the file that shows it is there)
    "shared_mendeley_dir": (SHARED / "data" / "mendeley-ecg-images", "manifest.csv"),
    "shared_ptbxl_dir": (SHARED / "data" / "ptbxl-subset", "ptbxl_database.csv"),
    "shared_ludb_dir": (SHARED / "data" / "ludb-printouts", "manifest.csv"),
}


def _shared(fixture: str) -> Path:
    folder, marker = SHARED_DATA[fixture]
    if not (folder / marker).exists():
        pytest.skip(f"needs the shared data: {folder} not found (set EDGEECG_SHARED to the folder holding data/)")
    return folder


def pytest_collection_modifyitems(items):
    """A test that asks for shared data is marked `shared`, so `-m "not shared"` leaves it out."""
    for item in items:
        if SHARED_DATA.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def shared_mendeley_dir() -> Path:
    return _shared("shared_mendeley_dir")


@pytest.fixture(scope="session")
def shared_ptbxl_dir() -> Path:
    return _shared("shared_ptbxl_dir")


@pytest.fixture(scope="session")
def shared_ludb_dir() -> Path:
    return _shared("shared_ludb_dir")


@pytest.fixture(scope="session")
def mendeley_dir(tmp_path_factory) -> Path:
    """The repository's real scans in the shared Mendeley folder's shape (tests/local_data.py)."""
    return mendeley_like(tmp_path_factory.mktemp("mendeley"))


@pytest.fixture(scope="session")
def ptbxl_dir(tmp_path_factory) -> Path:
    """A PTB-XL-shaped folder of synthetic WFDB records (tests/local_data.py)."""
    return ptbxl_like(tmp_path_factory.mktemp("ptbxl"))


@pytest.fixture(scope="module")
def text_page(tmp_path_factory) -> Path:
    """A white page with black text lines: an image, but no ECG grid."""
    page = np.full((600, 800, 3), 255, np.uint8)
    for y in range(60, 560, 40):
        cv2.putText(page, "lorem ipsum dolor sit amet", (40, y), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    path = tmp_path_factory.mktemp("page") / "page.png"
    cv2.imwrite(str(path), page)
    return path
