"""Shared fixtures: where the read-only shared data lives, and small slices of it."""

from __future__ import annotations

import os
from pathlib import Path

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
