#!/usr/bin/env python
"""How often the embedded diarizer finds the right number of speakers.

Runs the embedded diarizer (no ``--num-speakers``) on recordings whose speaker
count is known and counts the speakers it returns, with and without the
one-voice test (``looks_like_one_speaker``), per group:

* ``monologue``: one LibriSpeech test-other reader, the first 15/30/60 s of
  their utterances; the SiSEC/ARCTIC single-speaker clips; AMI excerpts where
  one person holds the floor (others under 1.5 s in the reference).
* ``conversation``: the pyannote sample (2), AMI excerpts (2-4), the Falcon
  3-speaker clip, the 7-speaker simulated meeting, the SpokenWOZ phone
  dialogue (2), and generated 2-4 speaker conversations of 20/30/60 s.
* ``interview``: a generated guest talking at length with a host who only
  interjects (1.5-4 s at a time, 8/15/25 % of the speech) -- the hard case
  for telling one voice from two.

None of these speakers was used to fit the population mean (that is
LibriSpeech train-clean-100, ``scripts/fit_population_mean.py``), but the
one-voice test's two thresholds were chosen on them. So two more groups check
the thresholds on voices they were not chosen on (train-clean-100's, which did
go into the population mean, one of 251 each):

* ``monologue, unseen``: every train-clean-100 utterance of at least 12 s;
* ``conversation, unseen``: generated 2- and 3-speaker conversations of 30 s.

Columns: exact count, and "merged" = a recording with several speakers given
one track.

    .venv/bin/python scripts/score_speaker_count.py [--shared DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from podsep.models.embedded import EmbeddedDiarizer  # noqa: E402
from podsep.errors import InputError  # noqa: E402
from podsep.lab.paths import shared_root  # noqa: E402
from score_overlap_detector import load_ami_split  # noqa: E402

RATE = 16000


def _read(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def _interview(guest: list[np.ndarray], host: list[np.ndarray], share: float, duration: float,
               rng: np.random.Generator) -> np.ndarray:
    pieces, guest_time, host_time, g, h = [], 0.0, 0.0, 0, 0
    while guest_time + host_time < duration:
        if host_time < share * (guest_time + host_time):
            utterance = host[h % len(host)]
            length = int(rng.uniform(1.5, 4.0) * RATE)
            start = int(rng.integers(0, max(1, utterance.size - length)))
            piece = utterance[start : start + length]
            h += 1
            host_time += piece.size / RATE
        else:
            piece = guest[g % len(guest)][: int(rng.uniform(5, 12) * RATE)]
            g += 1
            guest_time += piece.size / RATE
        level = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) + 1e-9
        pieces += [piece / level * 0.05, np.zeros(int(0.3 * RATE), dtype=np.float32)]
    return np.concatenate(pieces).astype(np.float32)


def recordings(shared: Path):
    """Yield (group, name, waveform, rate, true count)."""
    data = shared / "data"
    readers = sorted(p for p in (data / "librispeech" / "test-other").iterdir() if p.is_dir())
    utterances = {r.name: [_read(p)[0] for p in sorted(r.glob("*.flac"))] for r in readers}
    for reader in readers:
        speech = np.concatenate(utterances[reader.name])
        for seconds in (15, 30, 60):
            yield "monologue", f"librispeech-{reader.name}-{seconds}s", speech[: seconds * RATE], RATE, 1
    for path in sorted((data / "arctic-sisec").rglob("*.wav")):
        yield "monologue", f"arctic-sisec/{path.stem}", *_read(path), 1
    for split in ("train", "development", "test"):
        for excerpt in load_ami_split(data / "ami", split):
            seconds: dict[str, float] = defaultdict(float)
            for start, end, speaker in excerpt.turns:
                seconds[speaker] += end - start
            count = sum(1 for total in seconds.values() if total >= 1.5)  # AMI excerpts held by one person
            if count:
                yield ("monologue" if count == 1 else "conversation", f"ami/{excerpt.uri}", excerpt.waveform,
                       16000, count)
    yield "conversation", "pyannote-sample", *_read(data / "pyannote-sample" / "sample.wav"), 2
    yield "conversation", "falcon-3spk", *_read(data / "dialogues" / "falcon_3spk.wav"), 3
    yield "conversation", "meeting-sim", *_read(data / "meeting-sim" / "000__0.wav"), 7
    decoded = subprocess.run(["ffmpeg", "-v", "quiet", "-i", str(data / "dialogues" / "MUL1011.opus"),
                              "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"], capture_output=True, check=True)
    yield "conversation", "spokenwoz-MUL1011", np.frombuffer(decoded.stdout, dtype=np.float32).copy(), RATE, 2

    from podsep.lab.synth import ConversationSpec, generate_conversation

    for speakers in (2, 3, 4):
        for seconds in (20, 30, 60):
            for seed in range(3):
                spec = ConversationSpec(num_speakers=speakers, duration=float(seconds), overlap_ratio=0.1)
                conversation = generate_conversation(data / "librispeech" / "test-other", spec, seed=seed)
                yield ("conversation", f"generated-{speakers}spk-{seconds}s-{seed}", conversation.mixture,
                       conversation.sample_rate, len(conversation.diarization.speakers))
    unseen = data / "librispeech" / "train-clean-100"
    for path in sorted(unseen.rglob("*.flac")):
        if sf.info(str(path)).duration >= 12.0:
            yield "monologue, unseen", f"train-clean-100/{path.stem}", *_read(path), 1
    for speakers in (2, 3):
        made, seed = 0, 0
        while made < 10:
            spec = ConversationSpec(num_speakers=speakers, duration=30.0, overlap_ratio=0.1)
            seed += 1
            try:
                conversation = generate_conversation(unseen, spec, seed=seed)
            except InputError:  # drew a speaker whose one utterance is too short
                continue
            made += 1
            yield ("conversation, unseen", f"generated-unseen-{speakers}spk-30s-{seed}", conversation.mixture,
                   conversation.sample_rate, len(conversation.diarization.speakers))
    rng = np.random.default_rng(0)
    for index in range(24):
        guest, host = rng.choice(len(readers), 2, replace=False)
        share, seconds = (0.08, 0.15, 0.25)[index % 3], (30, 60)[(index // 3) % 2]
        audio = _interview(utterances[readers[guest].name], utterances[readers[host].name], share, seconds, rng)
        yield "interview", f"interview-host{int(share * 100)}%-{seconds}s-{index}", audio, RATE, 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=shared_root())
    parser.add_argument("--json", type=Path)
    parser.add_argument("--groups", nargs="*", help="score only these groups (default: all)")
    args = parser.parse_args()

    systems = {"without one-voice test": EmbeddedDiarizer(cluster_single_concentration=math.inf),
               "with one-voice test": EmbeddedDiarizer()}
    rows = []
    only = set(args.groups or [])
    for group, name, audio, rate, truth in recordings(args.shared):
        if only and group not in only:
            continue
        found = {label: len(diarizer(audio, rate).speakers) for label, diarizer in systems.items()}
        rows.append({"group": group, "name": name, "truth": truth, **found})
        print(f"{group:20s} {name:38s} true {truth}  " + "  ".join(f"{v}" for v in found.values()), flush=True)

    print()
    print(f"| group | recordings | {' | '.join(f'exact, {s}' for s in systems)} | "
          f"{' | '.join(f'merged to one, {s}' for s in systems)} |")
    print("|---|---|" + "---|" * (2 * len(systems)))
    for group in ("monologue", "conversation", "interview", "monologue, unseen", "conversation, unseen"):
        chosen = [r for r in rows if r["group"] == group]
        if not chosen:
            continue
        exact = [sum(r[s] == r["truth"] for r in chosen) for s in systems]
        merged = [sum(r[s] == 1 and r["truth"] > 1 for r in chosen) for s in systems]
        several = sum(r["truth"] > 1 for r in chosen)
        print(f"| {group} | {len(chosen)} | " + " | ".join(f"{e}/{len(chosen)}" for e in exact) + " | "
              + " | ".join(f"{m}/{several}" if several else "n/a" for m in merged) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
