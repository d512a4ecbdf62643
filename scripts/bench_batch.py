#!/usr/bin/env python3
"""Throughput of ``podsep batch``: 1 and 2 local workers and the Ray engine, on generated episodes.

Generates ``--count`` conversations of ``--minutes`` each from LibriSpeech
(seeded; two voices each, overlap ratio 0.15), then splits them with each engine
configuration into a fresh output folder and a fresh diarization cache (so no run
reuses another's work), with the embedded models (``--diarizer embedded
--separator embedded``; overlaps are copied into both tracks when the embedded
separator's weights are not installed, and the table says which ran). Reports:

* throughput in audio hours per wall hour, whole batch (worker start-up and model
  loading included) and once the workers are ready;
* the scaling ratio of 2 workers over 1;
* each engine's per-episode overhead (time from handing an episode to a worker to
  having its outcome back, minus the split itself) and its start-up time;
* peak resident memory per worker;
* the rerun time when everything is already done (``podsep batch`` as a user runs
  it: a new process that reads the status records and starts no worker).

``--thread-check FILE`` also times ``podsep split FILE`` (embedded diarizer,
``--overlap duplicate``) with 1 thread, 2 threads, and 2 threads whose OpenMP
threads spin while waiting (what torch did by default before podsep set its
threads), optionally with a busy loop holding one core (``--busy-core``).

    python scripts/bench_batch.py --count 20 --minutes 2
    python scripts/bench_batch.py --count 6 --minutes 1 --thread-check conv10.wav --busy-core
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPLIT_OPTIONS = {"diarization.backend": "embedded", "separation.backend": "embedded", "overlaps.fallback": "duplicate"}
CLI_OPTIONS = ("--diarizer", "embedded", "--separator", "embedded", "--overlap-fallback", "duplicate")


def generate(folder: Path, count: int, minutes: float, speech_dir: Path) -> list[Path]:
    """``ep_000.wav``... (16 kHz, 16-bit); existing files are kept (same seeds, same audio)."""
    import soundfile

    from podsep.lab.synth import ConversationSpec, conversation_seed, generate_conversation

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"ep_{index:03d}.wav"
        if not path.exists():
            spec = ConversationSpec(num_speakers=2, duration=minutes * 60.0, overlap_ratio=0.15)
            conversation = generate_conversation(speech_dir, spec, conversation_seed(0, index))
            soundfile.write(str(path), conversation.mixture, conversation.sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def run_engine(name: str, engine: str, workers: int, episodes_dir: Path, work: Path) -> dict:
    """One batch with a fresh output folder and diarization cache; the figures of its summary."""
    from podsep.batch import BatchOptions, discover, run_batch
    from podsep.config import load_settings

    out, cache = work / f"out-{name}", work / f"cache-{name}"
    for folder in (out, cache):
        shutil.rmtree(folder, ignore_errors=True)
    os.environ["PODSEP_CACHE"] = str(cache)  # inherited by the workers (and by a local Ray started now)
    settings = load_settings(None, SPLIT_OPTIONS)
    episodes = discover([episodes_dir], out)
    summary = run_batch(episodes, settings, BatchOptions(output=out, engine=engine, workers=workers))
    done = [row for row in summary.rows if row.status == "done"]
    audio = sum(row.summary["duration"] for row in done)
    ready = summary.startup_seconds or 0.0
    manifests = [p for p in sorted(out.rglob("*.json")) if not p.name.endswith(".podsep-status.json")]
    first = json.loads(manifests[0].read_text()) if manifests else {}
    return {
        "name": name, "engine": engine, "workers": summary.workers, "threads": summary.threads,
        "episodes": len(summary.rows), "done": len(done), "failed": summary.failed,
        "audio_hours": audio / 3600, "wall_seconds": summary.wall_seconds, "startup_seconds": ready,
        "throughput": audio / summary.wall_seconds if summary.wall_seconds else 0.0,
        "throughput_ready": audio / (summary.wall_seconds - ready) if summary.wall_seconds > ready else 0.0,
        "overhead_ms": 1000 * sum(summary.overheads) / max(1, len(summary.overheads)),
        "split_seconds_mean": sum(summary.split_seconds) / max(1, len(summary.split_seconds)),
        "peak_rss_gb": max(summary.peak_rss.values(), default=0) / 2 ** 30,
        "overlaps": first.get("overlap_policy"),
        "separator": (first.get("models") or {}).get("separation"),
        "output": str(out),
    }


def rerun_seconds(episodes_dir: Path, out: Path, engine: str) -> float:
    """``podsep batch`` again on a finished output, as a user runs it (new process, imports included)."""
    command = [sys.executable, "-m", "podsep", "batch", str(episodes_dir), "-o", str(out), "-q", "--engine", engine,
               *CLI_OPTIONS]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"rerun failed: {result.stderr.strip()}")
    return elapsed


def _spin() -> None:
    while True:
        pass


def thread_check(path: Path, timeout: float, busy_core: bool) -> list[dict]:
    """``podsep split`` with 1 and 2 threads, and 2 spinning OpenMP threads (the old default)."""
    busy = None
    if busy_core:
        busy = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
        busy.start()
    rows = []
    try:
        for label, threads, policy in (("1 thread", "1", None), ("2 threads", "2", None),
                                       ("2 threads, spinning (old default)", "2", "ACTIVE")):
            out = Path(f"/tmp/podsep-thread-check-{os.getpid()}")
            shutil.rmtree(out, ignore_errors=True)
            env = dict(os.environ, HF_HUB_OFFLINE="1")
            env.pop("OMP_WAIT_POLICY", None)
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            command = [sys.executable, "-m", "podsep", "split", str(path), "-o", str(out), "--diarizer", "embedded",
                       "--overlap", "duplicate", "--no-cache", "-q", "--threads", threads]
            started = time.perf_counter()
            try:
                subprocess.run(command, env=env, timeout=timeout, capture_output=True, check=True)
                seconds: float | str = round(time.perf_counter() - started, 1)
            except subprocess.TimeoutExpired:
                seconds = f"> {timeout:.0f} s (stopped)"
            shutil.rmtree(out, ignore_errors=True)
            rows.append({"run": label, "seconds": seconds})
            print(f"  {label}: {seconds if isinstance(seconds, str) else f'{seconds} s'}", flush=True)
    finally:
        if busy is not None:
            busy.terminate()
    return rows


def main() -> None:
    from podsep.lab.paths import shared_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--speech-dir", type=Path,
                        default=shared_root() / "data" / "librispeech" / "test-other")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "podsep-bench-batch",
                        help="episodes, outputs and bench_batch.json (default: %(default)s)")
    parser.add_argument("--configs", default="local1,local2,ray2",
                        help="comma-separated: local1, local2, ray2 (engine and worker count)")
    parser.add_argument("--thread-check", type=Path, metavar="FILE", help="also time podsep split FILE by threads")
    parser.add_argument("--busy-core", action="store_true", help="hold one core with a busy loop for --thread-check")
    parser.add_argument("--thread-timeout", type=float, default=120.0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from podsep.cli.main import _quiet_libraries
    from podsep.threads import free_cores, usable_cores

    _quiet_libraries()
    episodes_dir = args.work / "episodes"
    started = time.perf_counter()
    generate(episodes_dir, args.count, args.minutes, args.speech_dir)
    print(f"{args.count} episodes of {args.minutes:g} min in {episodes_dir} ({time.perf_counter() - started:.0f} s); "
          f"{usable_cores()} cores, {free_cores()} free", flush=True)
    results = []
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        engine = "ray" if config.startswith("ray") else "local"
        workers = int(config[len(engine):] or 1)
        print(f"running {config}...", flush=True)
        results.append(run_engine(config, engine, workers, episodes_dir, args.work))
        print(f"  {results[-1]['wall_seconds']:.1f} s, {results[-1]['throughput']:.1f} audio h/wall h", flush=True)
    rerun = rerun_seconds(episodes_dir, Path(results[-1]["output"]), results[-1]["engine"]) if results else None
    if args.thread_check:
        print(f"podsep split {args.thread_check} by threads ({free_cores()} free cores"
              + (", plus a busy loop on one" if args.busy_core else "") + "):", flush=True)
    threads = thread_check(args.thread_check, args.thread_timeout, args.busy_core) if args.thread_check else []
    if results:
        print_table(results, args, rerun)
    report = {"count": args.count, "minutes": args.minutes, "results": results, "rerun_seconds": rerun,
              "thread_check": threads, "busy_core": args.busy_core}
    (args.work / "bench_batch.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"JSON: {args.work / 'bench_batch.json'}")


def print_table(results: list[dict], args: argparse.Namespace, rerun: float | None) -> None:
    from podsep.threads import usable_cores

    print()
    print(f"{args.count} episodes x {args.minutes:g} min ({results[0]['audio_hours']:.2f} h of audio); "
          f"overlaps: {results[0]['overlaps']}; {usable_cores()} cores")
    print()
    print("| engine | workers x threads | wall (s) | audio h / wall h | after start-up | start-up (s) | "
          "split per episode (s) | overhead per episode (ms) | peak RSS per worker (GB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['engine']} | {row['workers']} x {row['threads']} | {row['wall_seconds']:.1f} | "
              f"{row['throughput']:.1f} | {row['throughput_ready']:.1f} | {row['startup_seconds']:.1f} | "
              f"{row['split_seconds_mean']:.2f} | {row['overhead_ms']:.0f} | {row['peak_rss_gb']:.2f} |")
    by_name = {row["name"]: row for row in results}
    if "local1" in by_name and "local2" in by_name:
        print(f"\nscaling 2 workers / 1 worker: {by_name['local2']['throughput'] / by_name['local1']['throughput']:.2f}x "
              f"(after start-up: {by_name['local2']['throughput_ready'] / by_name['local1']['throughput_ready']:.2f}x)")
    if rerun is not None:
        print(f"rerun with everything done: {rerun:.1f} s")


if __name__ == "__main__":
    main()
