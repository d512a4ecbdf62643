#!/usr/bin/env python
"""Score the packaged overlap detector on the AMI excerpts.

Reports frame-level precision and recall of *overlapped speech* (>= 2 reference
speakers active) on 10 ms frames inside each file's UEM scoring region, per
excerpt and pooled per split, so we can tell whether the detector is good
enough for podsep to trust it.  Only the **train** split may be used to choose
the operating threshold; development and test are reported separately, and the
train rows are marked as seen.

Usage::

    .venv/bin/python scripts/score_overlap_detector.py [--shared DIR] [--weights FILE]
        [--threshold T] [--splits train development test]

The helpers here (reading the AMI lists/RTTM/UEM, frame scoring) are also used
by ``train_overlap_detector.py`` and the tests, so every number is computed the
same way.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from podsep.lab.paths import shared_root  # noqa: E402

SCORE_HOP = 0.01  # seconds per scoring frame


def fold_name(name: str) -> str:
    """Accent-free, normalised form of a file id.

    The AMI lists and the audio files spell some ids with accents (``trñ00``)
    while the RTTM/UEM use plain ASCII (``trn00``); folding both sides lets
    them be matched without hard-coding any name.
    """
    decomposed = unicodedata.normalize("NFKD", name.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass
class AmiExcerpt:
    """One scored excerpt: audio, reference turns and UEM regions."""

    uri: str
    split: str
    waveform: np.ndarray
    turns: list[tuple[float, float, str]]
    uem: list[tuple[float, float]]

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return len(self.waveform) / 16000.0


def _read_rttm(path: Path) -> dict[str, list[tuple[float, float, str]]]:
    turns: dict[str, list[tuple[float, float, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[0] != "SPEAKER":
            continue
        start, dur = float(parts[3]), float(parts[4])
        turns.setdefault(fold_name(parts[1]), []).append((start, start + dur, parts[7]))
    return turns


def _read_uem(path: Path) -> dict[str, list[tuple[float, float]]]:
    regions: dict[str, list[tuple[float, float]]] = {}
    if not path.exists():
        return regions
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 4:
            regions.setdefault(fold_name(parts[0]), []).append((float(parts[2]), float(parts[3])))
    return regions


def _find_audio(ami_dir: Path, name: str) -> Path:
    for candidate in (name, unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)):
        path = ami_dir / f"{candidate}.wav"
        if path.exists():
            return path
    folded = fold_name(name)
    for path in sorted(ami_dir.glob("*.wav")):
        if fold_name(path.stem) == folded:
            return path
    raise FileNotFoundError(f"no audio for AMI excerpt {name!r} in {ami_dir}")


def load_ami_split(ami_dir: Path, split: str) -> list[AmiExcerpt]:
    """Load every excerpt listed in ``debug.<split>.lst`` with its reference and UEM."""
    names = [n.strip() for n in (ami_dir / f"debug.{split}.lst").read_text(encoding="utf-8").splitlines()
             if n.strip()]
    turns = _read_rttm(ami_dir / f"debug.{split}.rttm")
    uems = _read_uem(ami_dir / f"debug.{split}.uem")
    excerpts = []
    for name in names:
        wav, sr = sf.read(_find_audio(ami_dir, name), dtype="float32", always_2d=True)
        if sr != 16000:
            raise ValueError(f"{name}: expected 16 kHz audio, got {sr}")
        wav = wav.mean(axis=1)
        key = fold_name(name)
        uem = uems.get(key, [(0.0, len(wav) / sr)])
        excerpts.append(AmiExcerpt(uri=name, split=split, waveform=wav, turns=turns.get(key, []), uem=uem))
    return excerpts


def overlap_frames(turns: list[tuple[float, float, str]], n_frames: int, hop: float = SCORE_HOP) -> np.ndarray:
    """Boolean per-frame reference: at least two distinct speakers active at the frame centre."""
    centres = (np.arange(n_frames) + 0.5) * hop
    speakers = sorted({t[2] for t in turns})
    count = np.zeros(n_frames, dtype=np.int32)
    for spk in speakers:
        active = np.zeros(n_frames, dtype=bool)
        for start, end, who in turns:
            if who == spk:
                active |= (centres >= start) & (centres < end)
        count += active
    return count >= 2


def region_frames(regions: list[tuple[float, float]], n_frames: int, hop: float = SCORE_HOP) -> np.ndarray:
    """Boolean per-frame mask of the given (start, end) regions."""
    centres = (np.arange(n_frames) + 0.5) * hop
    mask = np.zeros(n_frames, dtype=bool)
    for start, end in regions:
        mask |= (centres >= start) & (centres < end)
    return mask


@dataclass
class Counts:
    """Frame counts for precision/recall; adding them pools files."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    ref: int = 0
    scored: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                      self.ref + other.ref, self.scored + other.scored)

    @property
    def precision(self) -> float:
        """Share of detected overlap frames that are overlap (1.0 when nothing is detected)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """Share of reference overlap frames that are detected (1.0 when there are none)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score_regions(excerpt: AmiExcerpt, regions: list[tuple[float, float]]) -> Counts:
    """Compare detected regions with the reference on 10 ms frames inside the UEM."""
    n_frames = int(np.ceil(excerpt.duration / SCORE_HOP))
    ref = overlap_frames(excerpt.turns, n_frames)
    hyp = region_frames(regions, n_frames)
    inside = region_frames(excerpt.uem, n_frames)
    ref, hyp = ref & inside, hyp & inside
    return Counts(tp=int(np.sum(ref & hyp)), fp=int(np.sum(~ref & hyp)), fn=int(np.sum(ref & ~hyp)),
                  ref=int(ref.sum()), scored=int(inside.sum()))


def score_table(results: dict[str, list[tuple[str, Counts]]], seen: tuple[str, ...] = ("train",)) -> str:
    """Text table of per-file and pooled per-split precision/recall."""
    lines = [f"{'split':<13}{'file':<10}{'ref ovl s':>10}{'hyp ovl s':>10}{'precision':>11}{'recall':>8}"]
    pooled_all = Counts()
    for split, rows in results.items():
        tag = f"{split}*" if split in seen else split
        pooled = Counts()
        for uri, c in rows:
            pooled = pooled + c
            lines.append(f"{tag:<13}{uri:<10}{c.ref * SCORE_HOP:>10.2f}{(c.tp + c.fp) * SCORE_HOP:>10.2f}"
                         f"{c.precision:>11.3f}{c.recall:>8.3f}")
        lines.append(f"{tag:<13}{'POOLED':<10}{pooled.ref * SCORE_HOP:>10.2f}"
                     f"{(pooled.tp + pooled.fp) * SCORE_HOP:>10.2f}{pooled.precision:>11.3f}{pooled.recall:>8.3f}")
        lines.append("-" * 62)
        if split not in seen:
            pooled_all = pooled_all + pooled
    lines.append(f"{'dev+test':<13}{'POOLED':<10}{pooled_all.ref * SCORE_HOP:>10.2f}"
                 f"{(pooled_all.tp + pooled_all.fp) * SCORE_HOP:>10.2f}{pooled_all.precision:>11.3f}"
                 f"{pooled_all.recall:>8.3f}")
    if seen:
        lines.append("* = seen while training / choosing the threshold")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the per-excerpt and pooled score table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=shared_root(), help="shared data folder")
    parser.add_argument("--ami", type=Path, default=None, help="AMI folder (default: <shared>/data/ami)")
    parser.add_argument("--weights", type=Path, default=None, help="weights file (default: packaged)")
    parser.add_argument("--threshold", type=float, default=None, help="default: the packaged threshold")
    parser.add_argument("--min-duration", type=float, default=0.1)
    parser.add_argument("--splits", nargs="+", default=["train", "development", "test"])
    args = parser.parse_args(argv)

    import torch

    from podsep.models.embedded.overlap import load_overlap_detector

    torch.set_num_threads(1)
    ami_dir = args.ami or args.shared / "data" / "ami"
    detector = load_overlap_detector(args.weights)
    threshold = detector.threshold if args.threshold is None else args.threshold
    results: dict[str, list[tuple[str, Counts]]] = {}
    for split in args.splits:
        results[split] = [(ex.uri, score_regions(ex, detector.regions(ex.waveform, threshold, args.min_duration)))
                          for ex in load_ami_split(ami_dir, split)]
    print(f"overlap detector: {args.weights or 'packaged weights'}, threshold {threshold:.3f}, "
          f"10 ms frames inside UEM")
    print(score_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
