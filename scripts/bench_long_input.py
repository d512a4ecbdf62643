#!/usr/bin/env python3
"""Peak memory of podsep on a long recording, per stage.

Generates a long conversation procedurally (consecutive seeded 60 s
conversations from LibriSpeech, two voices per minute, each voice panned in
stereo), written block by block to a 16-bit WAV at the chosen rate, with its
reference RTTM. Then runs ``podsep.split`` on it in a fresh child process, with
a sampler thread reading the process's resident set size (VmRSS) every 50 ms
and the stage it is in (from the progress hook). Prints a table and writes JSON.

The models are podsep's fixture models (random weights, real architectures and
formats) or reference turns: memory here is buffers, not weights.

    python scripts/bench_long_input.py --hours 3 --rate 48000 --channels 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def generate(folder: Path, hours: float, rate: int, channels: int, speech_dir: Path) -> tuple[Path, Path]:
    """Write ``long.wav`` and ``long.rttm`` without ever holding the whole recording."""
    import soundfile

    from podsep.lab.synth import ConversationSpec, generate_conversation

    minutes = max(1, int(round(hours * 60)))
    audio_path, rttm_path = folder / "long.wav", folder / "long.rttm"
    pans = {"A": np.array([0.9, 0.5, 0.7, 0.6, 0.8, 0.4][:channels]), "B": np.array([0.4, 0.9, 0.6, 0.7, 0.5, 0.8][:channels])}
    lines = []
    # Generate a handful of distinct minutes and cycle them (generation time, not realism, is the limit here).
    distinct = []
    for seed in range(min(minutes, 6)):
        spec = ConversationSpec(num_speakers=2, duration=60.0, sample_rate=rate, overlap_ratio=0.15)
        distinct.append(generate_conversation(speech_dir, spec, seed))
    with soundfile.SoundFile(str(audio_path), "w", samplerate=rate, channels=channels, subtype="PCM_16",
                             format="RF64") as out:
        offset = 0.0
        for minute in range(minutes):
            conversation = distinct[minute % len(distinct)]
            labels = conversation.diarization.speakers
            names = {labels[0]: "A", labels[1]: "B"}
            block = sum(pans[names[label]][:, None] * conversation.references[label][None, :] for label in labels)
            out.write((0.7 * block).T.astype(np.float32))
            for turn in conversation.diarization.turns:
                lines.append(f"SPEAKER long 1 {offset + turn.start:.3f} {turn.duration:.3f} <NA> <NA> "
                             f"{names[turn.speaker]} <NA> <NA>")
            offset += conversation.num_samples / rate
    rttm_path.write_text("\n".join(lines) + "\n")
    return audio_path, rttm_path


def child(args: argparse.Namespace) -> None:
    """Run one split and report peak RSS per stage as JSON on stdout."""
    import podsep

    current = {"stage": "startup"}
    peaks: dict[str, float] = {}
    stop = threading.Event()

    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def sample() -> None:
        while not stop.is_set():
            value = rss_mb()
            stage = current["stage"]
            peaks[stage] = max(peaks.get(stage, 0.0), value)
            time.sleep(0.05)

    def hook(step, artifact=None, *, completed=None, total=None):
        stage = step.partition("/")[0]
        if stage not in ("warning", "done"):
            current["stage"] = stage

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    overrides = {"diarization.cache": False}
    kwargs = {}
    if args.diarizer == "rttm":
        kwargs["diarization"] = args.rttm
    elif args.diarizer == "fixture":
        overrides.update({"diarization.backend": "pyannote", "diarization.model": args.pyannote})
    else:
        overrides["diarization.backend"] = "embedded"
    overrides["separation.model"] = args.sepformer
    started = time.perf_counter()
    result = podsep.split(args.input, output_dir=args.out, overwrite=True, hook=hook, overrides=overrides,
                          num_speakers=2, **kwargs)
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    print(json.dumps({"peak_rss_mb": peaks, "timings": result.manifest["timings"], "wall_s": wall,
                      "duration_s": result.manifest["input"]["duration"],
                      "windows": sum(len(o["windows"]) for o in result.manifest["overlaps"])}))


def main() -> int:
    from podsep.lab.paths import shared_root

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--rate", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--diarizer", choices=["rttm", "fixture", "embedded"], default="rttm",
                        help="rttm: reference turns; fixture: the random-weight pyannote pipeline; embedded: podsep's own")
    parser.add_argument("--shared", type=Path, default=shared_root())
    parser.add_argument("--work", help="folder for the generated input and outputs (default: a temp folder)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--rttm", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--pyannote", help=argparse.SUPPRESS)
    parser.add_argument("--sepformer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        return measure(work, args)
    with tempfile.TemporaryDirectory(prefix="podsep-bench-long-") as scratch:  # a multi-GB input goes with it
        return measure(Path(scratch), args)


def measure(work: Path, args: argparse.Namespace) -> int:
    """Generate the long input under ``work``, split it in a child process, print the table."""
    from podsep.lab.fixture_models import build_pyannote_pipeline, build_sepformer

    shared = Path(args.shared)
    started = time.perf_counter()
    audio, rttm = generate(work, args.hours, args.rate, args.channels, shared / "data" / "librispeech")
    generated = time.perf_counter() - started
    pyannote = build_pyannote_pipeline(work / "pyannote", plda_dir=shared / "models" / "pyannote-community-1-plda")
    sepformer = build_sepformer(work / "sepformer")
    command = [sys.executable, __file__, "--child", "--input", str(audio), "--rttm", str(rttm),
               "--out", str(work / "out"), "--pyannote", str(pyannote), "--sepformer", str(sepformer),
               "--diarizer", args.diarizer]
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PODSEP_CACHE=str(work / "cache"))
    completed = subprocess.run(command, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        print(completed.stderr[-3000:], file=sys.stderr)
        return completed.returncode
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    size_gb = audio.stat().st_size / 1e9
    print(f"input: {args.hours:g} h, {args.rate} Hz, {args.channels} ch, 16-bit WAV {size_gb:.2f} GB "
          f"(float32 at its own rate would be {args.hours * 3600 * args.rate * args.channels * 4 / 1e9:.2f} GB); "
          f"generated in {generated:.0f} s; diarization: {args.diarizer}; {report['windows']} separation windows")
    print(f"{'stage':<14}{'seconds':>10}{'peak RSS (MB)':>16}")
    for stage, peak in report["peak_rss_mb"].items():
        seconds = report["timings"].get(stage, float("nan"))
        print(f"{stage:<14}{seconds:>10.1f}{peak:>16.0f}")
    overall = max(report["peak_rss_mb"].values())
    print(f"{'overall':<14}{report['wall_s']:>10.1f}{overall:>16.0f}   (real-time factor "
          f"{report['wall_s'] / report['duration_s']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"hours": args.hours, "rate": args.rate, "channels": args.channels,
                                               "diarizer": args.diarizer, **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
