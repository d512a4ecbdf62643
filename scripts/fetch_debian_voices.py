#!/usr/bin/env python
"""Build extra *training* voices for the embedded separator from a Debian package.

The separator's training speech in ``../shared`` is about an hour from ~370 voices,
almost all read English from two recording chains; the gap between training
voices and new ones (about 3 dB SI-SDRi) is the largest loss left. Debian's
``ktuberling-data`` (KDE's stamp toy, GPL-2+) holds the names of the toy's
objects spoken by one volunteer per language: about 22 voices of as many
languages, recorded on their own microphones at 8-48 kHz, about 30 minutes in all.
Package registries are reachable here, so ``apt-get download`` fetches it.

Each language folder is one voice (the four Serbian folders hold the same
recordings and count once; files identical byte for byte count once). Isolated
words are not running speech, so each voice's words are trimmed of silence,
levelled to the voice's median loudness, shuffled with a fixed seed and joined
with short pauses (0.08-0.25 s) into pseudo-utterances of about 6 s, written as
16 kHz FLAC: ``OUT/ktuberling-<lang>/NNN.flac``, the layout
``train_separator.py --extra-voices OUT`` reads.

Not used for anything else: klettres-data (spoken letters, another Debian
package) stays the full-band *development* set of ``score_fullband.py``, so the
two never meet.

  python scripts/fetch_debian_voices.py --out runs/voices
"""

from __future__ import annotations

import argparse
import hashlib
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from train_separator import trim_silence  # noqa: E402  (the recipe's own trim, so both cut words alike)

PACKAGE = "ktuberling-data"
RATE = 16000
SEED = 20261201
UTTERANCE_SECONDS = 6.0
#: Folders whose recordings are another folder's (Serbian scripts and dialect spellings).
SAME_AS_ANOTHER = ("sr@ijekavian", "sr@ijekavianlatin", "sr@latin")


def download_package(cache: Path) -> Path:
    """The package's .deb in ``cache`` (downloaded with apt-get when absent)."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if not found:
        result = subprocess.run(["apt-get", "download", PACKAGE], cwd=cache, capture_output=True, text=True)
        found = sorted(cache.glob(f"{PACKAGE}_*.deb"))
        if not found:
            raise SystemExit(f"apt-get download {PACKAGE} failed: {result.stderr.strip().splitlines()[-1:]}")
    return found[-1]


def word_audio(path: Path) -> np.ndarray | None:
    """One spoken word at 16 kHz, trimmed to its frames within 35 dB of its loudest (None if empty)."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != RATE:
        g = math.gcd(rate, RATE)
        audio = resample_poly(audio, RATE // g, rate // g).astype(np.float32)
    word = trim_silence(audio - audio.mean(), RATE, floor_db=-35.0)
    return word if word.size >= int(0.2 * RATE) else None


def write_voice(target: Path, utterances: list[np.ndarray]) -> float:
    """Write one voice's utterances as ``target/NNN.flac`` (the ``--extra-voices`` layout), replacing
    any from an earlier run, and return their seconds."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.flac"):
        old.unlink()
    for n, audio in enumerate(utterances):
        sf.write(str(target / f"{n:03d}.flac"), audio, RATE, subtype="PCM_16")
    return sum(u.size for u in utterances) / RATE


def build_voice(files: list[Path], rng: np.random.Generator) -> list[np.ndarray]:
    """A voice's words joined into ~6 s pseudo-utterances with short pauses."""
    words = [w for w in (word_audio(f) for f in files) if w is not None]
    if not words:
        return []
    levels = np.array([np.sqrt(np.mean(w**2)) for w in words])
    target = float(np.median(levels))
    words = [w * (target / (level + 1e-9)) for w, level in zip(words, levels)]
    order = rng.permutation(len(words))
    utterances, current, length = [], [], 0
    for k in order:
        current.append(words[k])
        length += words[k].size
        if length >= UTTERANCE_SECONDS * RATE:
            utterances.append(current)
            current, length = [], 0
    if current and (length >= 2.0 * RATE or not utterances):
        utterances.append(current)
    elif current:
        utterances[-1].extend(current)
    joined = []
    for pieces in utterances:
        parts = []
        for n, w in enumerate(pieces):
            if n:
                parts.append(np.zeros(int(rng.uniform(0.08, 0.25) * RATE), np.float32))
            parts.append(w.astype(np.float32))
        audio = np.concatenate(parts)
        joined.append(audio / (np.abs(audio).max() + 1e-9) * 0.9)
    return joined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "voices")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "debian")
    args = parser.parse_args()
    deb = download_package(args.cache)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        sounds = Path(tmp) / "usr" / "share" / "ktuberling" / "sounds"
        seen: set[str] = set()
        rng = np.random.default_rng(SEED)
        total, voices = 0.0, 0
        for folder in sorted(p for p in sounds.iterdir() if p.is_dir()):
            if folder.name in SAME_AS_ANOTHER:
                continue
            files = []
            for path in sorted(folder.iterdir()):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    files.append(path)
            utterances = build_voice(files, rng)
            if not utterances:
                continue
            target = args.out / f"ktuberling-{folder.name.replace('@', '-')}"
            seconds = write_voice(target, utterances)
            total += seconds
            voices += 1
            print(f"{target.name}: {len(files)} words, {len(utterances)} utterances, {seconds / 60:.1f} min")
    print(f"{voices} voices, {total / 60:.1f} min -> {args.out} (from {deb.name})")


if __name__ == "__main__":
    sys.exit(main())
