"""Audacity labels: who speaks when, as a label track (File ▸ Import ▸ Labels).

Audacity reads one label per line, ``start<TAB>end<TAB>text`` with times in
seconds. Every turn becomes a label named after its speaker, so an editor sees
the diarization above the waveforms; every overlap becomes one more label whose
text starts with ``overlap:`` and says how it was handled, so the moments worth
listening to are one click away.
"""

from __future__ import annotations

from pathlib import Path

from .model import EditorInput
from .style import confidence_words

OVERLAP_PREFIX = "overlap: "


def label_text(text: str) -> str:
    """A label text Audacity keeps intact (no tabs or line breaks, which end a field)."""
    return " ".join(str(text).split()) or "?"


def overlap_label(entry: dict) -> str:
    """``overlap: Alice + Bob (separated, confidence 0.82 high)``."""
    speakers = " + ".join(label_text(s) for s in entry.get("speakers") or []) or "several speakers"
    handling = entry.get("handling") or "unknown"
    confidence = entry.get("confidence")
    if confidence is None:
        detail = str(handling)
    else:
        detail = f"{handling}, confidence {float(confidence):.2f} {confidence_words(float(confidence))}"
    return f"{OVERLAP_PREFIX}{speakers} ({detail})"


def labels_text(data: EditorInput) -> str:
    """The whole label file: turns and overlaps in time order (turns first at equal starts)."""
    rows: list[tuple[float, int, float, str]] = [
        (start, 0, end, label_text(speaker)) for start, end, speaker in data.turns
    ]
    rows += [(float(e["start"]), 1, float(e["end"]), overlap_label(e)) for e in data.overlaps]
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return "".join(f"{start:.6f}\t{end:.6f}\t{text}\n" for start, _, end, text in rows)


def write_labels(path: Path, data: EditorInput) -> Path:
    """Write ``<stem>.labels.txt`` (UTF-8, which Audacity reads on every platform)."""
    path.write_text(labels_text(data), encoding="utf-8", newline="\n")
    return path
