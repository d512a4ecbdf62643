"""Reuse the diarization of an identical input diarized with identical settings.

Diarization is the slowest stage on a CPU and its result depends only on the
input's bytes, the diarizer and the speaker-count hints; re-running podsep with
other assembly or output settings should not pay for it again. Entries are
RTTM files under ``$PODSEP_CACHE/diarization``, keyed by a hash of all that,
written atomically; a damaged or unwritable cache is never an error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..diarization import Diarization
from ..errors import PodsepError
from ..export import write_atomically
from .hub import podsep_cache_root


def cache_entry(fingerprint: str, diarizer: Any, hints: dict[str, Any], version: str) -> Path:
    """The cache file for this input, diarizer and speaker-count hints."""
    describe = diarizer.describe() if hasattr(diarizer, "describe") else {"kind": type(diarizer).__name__}
    identity = {"input": fingerprint, "diarizer": describe, "num": hints.get("num_speakers"),
                "min": hints.get("min_speakers"), "max": hints.get("max_speakers"), "version": version}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return podsep_cache_root() / "diarization" / f"{key}.rttm"


def read_entry(path: Path) -> Diarization | None:
    """The cached diarization, or ``None`` when absent or damaged."""
    if not path.is_file():
        return None
    try:
        return Diarization.from_rttm(path)
    except PodsepError:
        return None


def store_entry(path: Path, diarization: Diarization) -> bool:
    """Write an entry atomically; returns whether it was stored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda temporary: temporary.write_text(diarization.to_rttm("cached"), encoding="utf-8"))
        return True
    except OSError:
        return False
