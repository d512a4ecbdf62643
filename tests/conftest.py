"""Shared test settings.

Real speech and reference files live outside the repository, in ``../shared``
beside the checkout (also in CI). ``PODSEP_SHARED`` overrides that location.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_path() -> Path:
    """Where the shared speech/reference folder is (``PODSEP_SHARED`` or ``../shared``)."""
    return Path(os.environ.get("PODSEP_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = shared_path()
    if not (path / "data").is_dir():
        pytest.fail(f"shared data folder not found at {path}; set PODSEP_SHARED")
    return path
