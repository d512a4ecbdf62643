#!/usr/bin/env python3
"""What the embedded separator's top-octave network costs: time per stage with it and without.

A generated test-other conversation (reference turns, so diarization is not timed), upsampled to
``--rate``, split with ``separation.high_band`` off and auto (the shipped network), alternately,
``--repeats`` times each; prints the median seconds of separation, assignment (which includes
rendering the overlaps, twice above 16 kHz with the network: see podsep.separate.rendering_bands)
and assembly.

    python scripts/bench_top_octave.py --minutes 5 --rate 48000

``--adaptation``: instead, the episode stage that learns the top octave
(:func:`podsep.adapt_top_octave.adapt_top_octave`, shipped networks) on the
solo speech of the first two train-clean-100 speakers (their utterances, up to
40 s each), with one worker and with two, ``--repeats`` times each; prints the
median wall seconds and whether both learnt the same bits.

    python scripts/bench_top_octave.py --adaptation
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from podsep.lab.paths import shared_root  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adaptation", action="store_true",
                        help="time the top-octave adaptation stage with one and two workers instead")
    args = parser.parse_args()
    if args.adaptation:
        adaptation_table(args.repeats)
        return
    import torch

    import podsep
    from podsep.audio import resample
    from podsep.lab.synth import ConversationSpec, generate_conversation

    torch.set_num_threads(args.threads)
    conversation = generate_conversation(shared_root() / "data" / "librispeech" / "test-other",
                                         ConversationSpec(duration=60.0 * args.minutes, overlap_ratio=0.2), 7)
    mixture = resample(conversation.mixture, 16000, args.rate).astype(np.float32)
    stages = ("separation", "assignment", "assembly")
    times: dict[str, list[dict[str, float]]] = {"off": [], "auto": []}
    windows = 0
    for _ in range(args.repeats):
        for setting in times:
            started = time.perf_counter()
            result = podsep.split(mixture, sample_rate=args.rate, diarization=conversation.diarization,
                                  overrides={"separation.high_band": setting, "separation.adapt": "off",
                                             "output.extras": False})
            timings = {stage: float(result.manifest["timings"].get(stage, 0.0)) for stage in stages}
            timings["total"] = time.perf_counter() - started
            times[setting].append(timings)
            windows = sum(len(region["windows"]) for region in result.manifest["overlaps"])
    print(f"{args.minutes:g} min at {args.rate / 1000:g} kHz, {windows} overlap windows, median of {args.repeats}, "
          f"{args.threads} threads (seconds)")
    print(f"{'high_band':<10}" + "".join(f"{name:>12}" for name in (*stages, "total")))
    for setting, runs in times.items():
        print(f"{setting:<10}" + "".join(f"{np.median([r[name] for r in runs]):>12.1f}" for name in (*stages, "total")))


def adaptation_table(repeats: int) -> None:
    """Wall seconds of the top-octave stage with one and two workers (the same weights either way)."""
    import collections

    import soundfile as sf

    from podsep.adapt_top_octave import adapt_top_octave
    from podsep.models.embedded.separator import EmbeddedSeparator

    folder = shared_root() / "data" / "librispeech" / "train-clean-100"
    by_speaker: dict[str, list[Path]] = collections.defaultdict(list)
    for path in sorted(folder.glob("*.flac")):
        by_speaker[path.name.split("-")[0]].append(path)
    solo = {}
    for label, speaker in zip("AB", sorted(by_speaker)[:2]):
        solo[label] = np.concatenate([sf.read(str(f), dtype="float32")[0] for f in by_speaker[speaker][:6]])[:40 * 16000]
    separator = EmbeddedSeparator().load()
    seconds: dict[int, list[float]] = {1: [], 2: []}
    digests: dict[int, set[str | None]] = {1: set(), 2: set()}
    for _ in range(repeats):
        for workers in seconds:
            started = time.perf_counter()
            result = adapt_top_octave(separator, solo, [("A", "B")], seed=3, workers=workers)
            seconds[workers].append(time.perf_counter() - started)
            digests[workers].add(result.sha256)
    lengths = ", ".join(f"{audio.size / 16000:.1f}" for audio in solo.values())
    print(f"top-octave adaptation, two train-clean-100 voices ({lengths} s alone), median of {repeats} (seconds)")
    for workers, runs in seconds.items():
        print(f"{workers} worker{'s' if workers > 1 else ' '}  {np.median(runs):8.1f}")
    print("same weights with one and two workers:", digests[1] == digests[2] and len(digests[1]) == 1)


if __name__ == "__main__":
    main()
