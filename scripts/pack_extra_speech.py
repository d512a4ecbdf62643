#!/usr/bin/env python
"""Turn ``scripts/fetch_extra_speech.sh``'s output into ``train_separator.py --extra-voices`` folders.

The fetched speech is lines of dialogue, prompts and short phrases, one folder per voice where the
source says who speaks, and one folder for each of the two big games (Flight of the Amazon Queen,
Beneath a Steel Sky), whose files do not say. ``train_separator.py`` draws every voice folder as
often as any other, so:

* each game's lines are dealt, in file order (neighbouring lines are often one scene's speakers),
  into pseudo-voices of LINES_PER_PSEUDO_VOICE lines. A pseudo-voice holds several characters and
  two pseudo-voices can share an actor, so some training mixtures are of one actor with himself: a
  harder case of the same task, not a wrong one;
* Beneath a Steel Sky's lines that clip (more than CLIPPED_FRACTION of samples at full scale) are
  dropped: a clipped target teaches the network distortion;
* lines of Fish Fillets' ``unknown`` speaker (no dialogue table entry) are dropped;
* every voice's lines are trimmed, levelled and joined into ~6 s pseudo-utterances with short
  pauses, as ``fetch_debian_voices.py`` does (its ``build_voice``), and written as 16 kHz FLAC
  (``OUT/<source>-<voice>/NNN.flac``), the layout ``--extra-voices OUT`` reads.

  python scripts/pack_extra_speech.py --fetched runs/extra-speech --out runs/extra-voices
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_debian_voices import RATE, build_voice, write_voice  # noqa: E402,F401 (RATE: the rate it writes)

SEED = 20261205
LINES_PER_PSEUDO_VOICE = 150
UNLABELLED_SOURCES = ("fotaq", "bass")
CLIPPED_FRACTION = 1e-3
SKIPPED_PREFIXES = {"asterisk": "es_"}  # the Spanish prompts: read by the English prompts' speaker


def clipped(path: Path) -> bool:
    audio, _ = sf.read(str(path), dtype="float32")
    return bool(np.mean(np.abs(audio) >= 0.99) > CLIPPED_FRACTION)


def voice_groups(fetched: Path) -> dict[str, list[Path]]:
    """Voice name -> its files, pseudo-voices dealt for the unlabelled sources."""
    groups: dict[str, list[Path]] = {}
    for source in sorted(p for p in fetched.iterdir() if p.is_dir()):
        for voice in sorted(p for p in source.iterdir() if p.is_dir()):
            skipped = SKIPPED_PREFIXES.get(source.name)
            if voice.name == "unknown" or (skipped and voice.name.startswith(skipped)):
                continue
            files = sorted(voice.glob("*.wav"), key=lambda p: (len(p.stem), p.stem))
            if source.name == "bass":
                files = [f for f in files if not clipped(f)]
            if source.name in UNLABELLED_SOURCES:
                for start in range(0, len(files), LINES_PER_PSEUDO_VOICE):
                    chunk = files[start:start + LINES_PER_PSEUDO_VOICE]
                    if len(chunk) >= LINES_PER_PSEUDO_VOICE // 3:
                        groups[f"{source.name}-{start // LINES_PER_PSEUDO_VOICE:03d}"] = chunk
            elif files:
                groups[f"{source.name}-{voice.name}"] = files
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetched", type=Path, default=ROOT / "runs" / "extra-speech")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "extra-voices")
    args = parser.parse_args()
    if not args.fetched.is_dir():
        raise SystemExit(f"{args.fetched}: no such folder (run scripts/fetch_extra_speech.sh first)")
    rng = np.random.default_rng(SEED)
    total, count = 0.0, 0
    for name, files in voice_groups(args.fetched).items():
        utterances = build_voice(files, rng)
        if not utterances:
            continue
        total += write_voice(args.out / name, utterances)
        count += 1
    print(f"{count} voices, {total / 3600:.2f} h -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
