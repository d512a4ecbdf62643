#!/usr/bin/env python
"""Fit the GE2E population mean that the embedded diarizer uses to tell one voice from several.

Why: the embedded diarizer centres its window embeddings on the *recording's*
mean before clustering, which pulls two speakers apart nicely but also spreads
a lone speaker's windows over the sphere, so a monologue used to come out as
two or three speakers. Deciding "is this one voice?" needs a fixed reference
instead: the mean embedding of many speakers. Centred on it, one speaker's
windows point one way (high concentration) while several speakers' windows do
not.

The mean is taken over LibriSpeech train-clean-100 (251 speakers, one
utterance each; CC-BY-4.0) from ``../shared``: every utterance goes through the
diarizer's own VAD and window layout, and each speaker weighs the same (mean of
per-utterance means of unit vectors). The result, 256 float32 values, is written
to ``podsep/data/ge2e_population_mean.npy``; the product reads only that file.

    .venv/bin/python scripts/fit_population_mean.py [--shared DIR] [--out FILE]

Held-out check (speakers not used here): ``scripts/score_speaker_count.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from podsep.lab.paths import shared_root  # noqa: E402
from podsep.models.embedded.clustering import POPULATION_MEAN_PATH  # noqa: E402
from podsep.models.embedded.diarizer import EmbeddedDiarizer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=shared_root())
    parser.add_argument("--out", type=Path, default=POPULATION_MEAN_PATH)
    args = parser.parse_args()

    files = sorted((args.shared / "data" / "librispeech" / "train-clean-100").rglob("*.flac"))
    if not files:
        print(f"no LibriSpeech train-clean-100 files under {args.shared}", file=sys.stderr)
        return 2
    diarizer = EmbeddedDiarizer()
    means = []
    for path in files:
        waveform, rate = sf.read(str(path), dtype="float32")
        windows = diarizer.window_embeddings(waveform, rate)
        if len(windows):
            unit = windows / np.maximum(np.linalg.norm(windows, axis=1, keepdims=True), 1e-8)
            means.append(unit.mean(axis=0))
    population = np.mean(means, axis=0).astype(np.float32)
    np.save(args.out, population, allow_pickle=False)
    print(f"{len(means)} speakers -> {args.out} (norm {np.linalg.norm(population):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
