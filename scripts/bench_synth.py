#!/usr/bin/env python3
"""How long the lab's generator takes to make one 60 s conversation (a table).

The evaluation generates its material on the fly (``podsep eval``, the scorers), so
generation must stay a small part of a run. This used to be a timed test; speed
belongs in a benchmark, where a busy machine makes a slow row instead of a red
build. Each row is the best of ``--repeats`` runs after one run that warms the file
cache, at each rate, plain and with a measured room and noise (``meeting-sim``).

    python scripts/bench_synth.py [--shared ../shared] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from podsep.lab.paths import shared_root
from podsep.lab.synth import ConversationSpec, generate_conversation

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=shared_root())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    speech = args.shared / "data" / "librispeech" / "test-other"
    rooms = args.shared / "data" / "meeting-sim"
    print(f"{'rate':>6} {'room + noise':>12} {'best s':>7} {'× real time':>11}")
    for rate in (16000, 44100, 48000):
        for dressed in (False, True):
            spec = ConversationSpec(duration=args.seconds, sample_rate=rate, reverb=dressed,
                                    rir_glob="000_rir*__0.wav", noise_snr=20.0 if dressed else None)
            timings = []
            for seed in range(args.repeats + 1):  # the first warms the file cache and is not counted
                started = time.perf_counter()
                generate_conversation(speech, spec, 100 + seed, rir_dir=rooms,
                                      noise_path=rooms / "000_noise__0.wav")
                timings.append(time.perf_counter() - started)
            best = min(timings[1:])
            print(f"{rate:>6} {'yes' if dressed else 'no':>12} {best:7.2f} {best / args.seconds:11.3f}")


if __name__ == "__main__":
    main()
