#!/usr/bin/env python3
"""How much podsep's own stages lose, measured with perfect parts.

Synthetic conversations from LibriSpeech with exact ground truth, reference
turns, and an oracle separator returning the reference sources in shuffled
order at random gains. Whatever is lost here is lost by podsep's windows,
assignment, level restoration and crossfades. Prints per-configuration
SI-SDR (min and mean over speakers and conversations) and the share of
windows whose sources were assigned to the right speakers.

    python scripts/oracle_check.py --count 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import podsep  # noqa: E402
from podsep.lab.metrics import si_sdr  # noqa: E402
from podsep.lab.paths import shared_root  # noqa: E402
from podsep.lab.synth import ConversationSpec, generate_conversation  # noqa: E402
from podsep.lab.oracle import OracleSeparator  # noqa: E402


def run(speech: Path, speakers: int, rate: int, count: int, overlap: float) -> dict:
    scores, correct, total, seconds = [], 0, 0, 0.0
    for seed in range(count):
        spec = ConversationSpec(num_speakers=speakers, duration=60.0, sample_rate=rate, overlap_ratio=overlap)
        conversation = generate_conversation(speech, spec, seed)
        oracle = OracleSeparator(conversation.mixture, dict(conversation.references), seed=seed)
        started = time.perf_counter()
        result = podsep.split(conversation.mixture, sample_rate=rate, diarization=conversation.diarization,
                              separator=oracle)
        seconds += time.perf_counter() - started
        for label, reference in conversation.references.items():
            scores.append(si_sdr(reference, result.tracks[label][0]))
        calls = {round(call.start / rate, 3): call for call in oracle.calls}
        for region in result.manifest["overlaps"]:
            for window in region["windows"]:
                call = calls[round(window["start"], 3)]
                total += 1
                correct += all(call.order[i] == s for s, i in window["assignment"].items())
    return {"min": float(np.min(scores)), "mean": float(np.mean(scores)), "windows": total,
            "accuracy": correct / max(total, 1), "rtf": seconds / (60.0 * count)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=shared_root())
    parser.add_argument("--count", type=int, default=10, help="conversations per configuration (60 s each)")
    parser.add_argument("--overlap-ratio", type=float, default=0.2)
    args = parser.parse_args()
    speech = Path(args.shared) / "data" / "librispeech"
    print(f"{'speakers':>8} {'rate':>6} {'SI-SDR min':>11} {'SI-SDR mean':>12} {'windows':>8} {'assigned right':>15} {'RTF':>6}")
    for speakers, rate in ((2, 16000), (2, 44100), (2, 48000), (3, 16000), (4, 16000)):
        row = run(speech, speakers, rate, args.count, args.overlap_ratio)
        print(f"{speakers:>8} {rate:>6} {row['min']:>11.1f} {row['mean']:>12.1f} {row['windows']:>8} "
              f"{100 * row['accuracy']:>14.1f}% {row['rtf']:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
