"""``podsep batch`` end to end, through the real command line, on generated episodes.

A small archive (five generated conversations of 12-40 s, one of them with three
voices, and a file of random bytes named ``.wav``) is split with the embedded
diarizer and ``--overlap duplicate`` (fast, no download). The first batch runs
once per module with two local workers; the other tests copy its output and
rerun against it, or start their own batches to be killed or interrupted. The
Ray engine runs in local mode on one Ray instance for the whole test session
(two CPUs), reached through ``--ray-address`` like a cluster.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[2]
FAST = ("--diarizer", "embedded", "--overlap", "duplicate")
GOOD = ("s1/ep0.wav", "s1/ep1.wav", "s2/ep2.wav", "s2/ep3.wav", "s2/ep4.wav")


def environment(cache: Path) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", PODSEP_CACHE=str(cache))


def batch(*args: str, cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podsep", "batch", *args], capture_output=True, text=True,
                          env=environment(cache), timeout=timeout)


def start_batch(*args: str, cache: Path) -> subprocess.Popen:
    """A batch in its own process group, so that a test can Ctrl-C it like a terminal would."""
    return subprocess.Popen([sys.executable, "-m", "podsep", "batch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment(cache), start_new_session=True)


def report(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "batch-report.csv", encoding="utf-8") as stream:
        return {row["episode"]: row for row in csv.DictReader(stream)}


def record(out: Path, label: str) -> dict:
    return json.loads((out / Path(label).with_suffix(".podsep-status.json")).read_text(encoding="utf-8"))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("podsep: error:")]


def hidden_leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*") if p.is_dir()]


def tracks(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.wav"))}


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the batch")
        time.sleep(0.05)


def status_of(out: Path, label: str) -> str | None:
    try:
        return record(out, label)["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def archive(tmp_path_factory, shared_dir) -> Path:
    """``show/s1/ep0.wav`` (40 s) ... ``s2/ep4.wav``, ``s2/ep2.wav`` with three voices, ``s1/broken.wav``, ``good.csv``."""
    from podsep.lab.synth import ConversationSpec, generate_conversation

    show = tmp_path_factory.mktemp("show")
    speech = shared_dir / "data" / "librispeech" / "test-other"
    for index, label in enumerate(GOOD):
        spec = ConversationSpec(num_speakers=3 if index == 2 else 2, duration=40.0 if index == 0 else 12.0,
                                overlap_ratio=0.1)
        conversation = generate_conversation(speech, spec, seed=500 + index)
        path = show / label
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(path), conversation.mixture, conversation.sample_rate, subtype="PCM_16")
    (show / "s1" / "broken.wav").write_bytes(np.random.default_rng(0).bytes(65536))
    (show / "good.csv").write_text("path\n" + "\n".join(GOOD) + "\n", encoding="utf-8")
    return show


@pytest.fixture(scope="module")
def first_run(archive, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The archive folder split once by two local workers (fresh diarization cache)."""
    root = tmp_path_factory.mktemp("first")
    out = root / "out"
    result = batch(str(archive), "-o", str(out), "--workers", "2", *FAST, cache=root / "cache")
    return out, result


def copy_of(first_run, tmp_path: Path) -> Path:
    out, _ = first_run
    target = tmp_path / "out"
    shutil.copytree(out, target)
    return target


def test_two_local_workers_split_the_archive_and_report_the_broken_file(first_run, archive):
    out, result = first_run
    assert result.returncode == 2, result.stderr
    errors = error_lines(result.stderr)
    assert errors[0].startswith("podsep: error: s1/broken.wav: cannot read") and "Invalid data" in errors[0]
    assert errors[-1].startswith("podsep: error: 1 of 6 episodes failed (see ") and len(errors) == 2
    assert "Traceback" not in result.stderr
    rows = report(out)
    assert {label: row["status"] for label, row in rows.items()} == {**{g: "done" for g in GOOD},
                                                                      "s1/broken.wav": "failed"}
    assert rows["s2/ep2.wav"]["duration_s"] and rows["s1/ep0.wav"]["speakers"] == "2"
    for label in GOOD:  # the output tree mirrors the input tree; each result is complete
        folder = out / Path(label).with_suffix("")
        manifest = json.loads((folder / f"{folder.name}.json").read_text(encoding="utf-8"))
        assert manifest["input"]["sha256"] == record(out, label)["input"]["sha256"]
        assert record(out, label)["status"] == "done"
        for name in tracks(folder):
            assert soundfile.info(str(folder / name)).frames == manifest["input"]["num_samples"]
    assert record(out, "s1/broken.wav")["status"] == "failed"
    assert not hidden_leftovers(out)


def test_each_result_is_exactly_what_podsep_split_writes(first_run, archive, tmp_path):
    out, _ = first_run
    single = subprocess.run([sys.executable, "-m", "podsep", "split", str(archive / "s2" / "ep3.wav"), "-o",
                             str(tmp_path), *FAST, "-q"], capture_output=True, text=True,
                            env=environment(tmp_path / "cache"), timeout=300)
    assert single.returncode == 0, single.stderr
    assert tracks(tmp_path / "ep3") == tracks(out / "s2" / "ep3")
    assert (tmp_path / "ep3" / "ep3.rttm").read_text() == (out / "s2" / "ep3" / "ep3.rttm").read_text()
    assert sorted(p.name for p in (tmp_path / "ep3").iterdir()) == sorted(p.name for p in (out / "s2" / "ep3").iterdir())


def test_rerun_skips_what_is_done_and_settings_that_change_nothing(first_run, archive, tmp_path):
    out = copy_of(first_run, tmp_path)
    touched = archive / "s2" / "ep3.wav"  # copied or touched, same bytes: hashed once, still skipped
    before = touched.stat()
    os.utime(touched, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    try:
        # --no-cache, --workers, --context (no separation under duplicate) and the engine shape no result
        result = batch(str(archive), "-o", str(out), *FAST, "--no-cache", "--workers", "1", "--context", "3",
                       cache=tmp_path / "cache")
    finally:
        os.utime(touched, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "Traceback" not in result.stderr, result.stderr
    assert record(out, "s2/ep3.wav")["input"]["mtime_ns"] == before.st_mtime_ns + 10**9  # remembered
    assert result.returncode == 2
    rows = report(out)
    assert [rows[g]["status"] for g in GOOD] == ["skipped"] * 5
    assert rows["s1/broken.wav"]["status"] == "failed" and "--retry-failed" in rows["s1/broken.wav"]["error"]
    assert "0 to split" in result.stderr  # how long such a rerun takes: scripts/bench_batch.py (0.8 s)


def test_quiet_retry_prints_only_the_failure(first_run, archive, tmp_path):
    out = copy_of(first_run, tmp_path)
    result = batch(str(archive), "-o", str(out), *FAST, "-q", "--retry-failed", cache=tmp_path / "cache")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("podsep: error: s1/broken.wav: cannot read") and "failed before" not in lines[0]
    assert lines[1].startswith("podsep: error: 1 of 6 episodes failed")
    assert record(out, "s1/broken.wav")["reason"] == "retrying a failure"


def test_csv_speaker_counts_rerun_only_the_episode_they_change(first_run, archive, tmp_path):
    out = copy_of(first_run, tmp_path)
    listing = archive / "counts.csv"
    listing.write_text("path,num_speakers,names\n" + "\n".join(
        f"{label},{3 if label == 's2/ep2.wav' else ''}," for label in GOOD) + "\n", encoding="utf-8")
    try:
        result = batch(str(listing), "-o", str(out), *FAST, cache=tmp_path / "cache")
    finally:
        listing.unlink()
    assert result.returncode == 0, result.stderr
    rows = report(out)
    assert {label: rows[label]["status"] for label in GOOD} == {**{g: "skipped" for g in GOOD}, "s2/ep2.wav": "done"}
    assert rows["s2/ep2.wav"]["speakers"] == "3"
    assert record(out, "s2/ep2.wav")["hints"] == {"num_speakers": 3}
    assert not hidden_leftovers(out)


def test_a_killed_worker_loses_only_its_episode_which_is_tried_again(archive, tmp_path):
    out = tmp_path / "out"
    process = start_batch(str(archive / "good.csv"), "-o", str(out), "--workers", "2", *FAST,
                          cache=tmp_path / "cache")
    try:
        wait_for(lambda: status_of(out, "s1/ep0.wav") == "running")  # the longest goes first
        worker_pid = int(record(out, "s1/ep0.wav")["worker"].rpartition(":")[2])
        assert worker_pid != process.pid
        os.kill(worker_pid, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "s1/ep0.wav: worker" in stderr and "was killed by SIGKILL; trying it once more" in stderr
    assert all(row["status"] == "done" for row in report(out).values())
    assert record(out, "s1/ep0.wav")["attempt"] == 2
    assert not hidden_leftovers(out)


def test_interrupted_batch_resumes_without_losing_finished_episodes(archive, tmp_path):
    out = tmp_path / "out"
    process = start_batch(str(archive / "good.csv"), "-o", str(out), "--workers", "2", *FAST,
                          cache=tmp_path / "cache")
    try:
        # As soon as one episode is done (the others take seconds more; polled every 50 ms):
        # waiting to also see one "running" could miss the moment on a fast machine.
        wait_for(lambda: any(status_of(out, g) == "done" for g in GOOD))
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group, workers included
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    finished = [g for g in GOOD if status_of(out, g) == "done"]
    assert finished and len(finished) < len(GOOD)
    statuses = {g: status_of(out, g) for g in GOOD}
    assert set(statuses.values()) <= {"pending", None, "done"}, statuses
    for label in GOOD:  # a result folder under its final name is always complete, and recorded done
        folder = out / Path(label).with_suffix("")
        assert folder.is_dir() == (label in finished), statuses
    assert {r["status"] for r in report(out).values()} <= {"done", "pending"}
    assert not hidden_leftovers(out), "an interrupted episode left its staging folder"
    before = {g: tracks(out / Path(g).with_suffix("")) for g in finished}

    result = batch(str(archive / "good.csv"), "-o", str(out), "--workers", "2", *FAST, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    rows = report(out)
    assert {g for g in GOOD if rows[g]["status"] == "skipped"} == set(finished)
    assert all(rows[g]["status"] == "done" for g in GOOD if g not in finished)
    assert before == {g: tracks(out / Path(g).with_suffix("")) for g in finished}
    assert not hidden_leftovers(out)


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray instance (2 CPUs) for the whole session, reached by the CLI like a cluster."""
    ray = pytest.importorskip("ray", reason="the Ray engine needs the 'ray' extra (make test installs it)")
    import logging

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 * 1024, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_ray_engine_finishes_a_local_batch_with_identical_tracks(first_run, archive, tmp_path, ray_address):
    out = copy_of(first_run, tmp_path)
    original = {g: tracks(first_run[0] / Path(g).with_suffix("")) for g in GOOD}
    redo = ("s1/ep1.wav", "s2/ep3.wav")
    for label in redo:  # as if a local batch had been interrupted while splitting these two
        path = out / Path(label).with_suffix(".podsep-status.json")
        data = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(dict(data, status="pending")), encoding="utf-8")
        shutil.rmtree(out / Path(label).with_suffix(""))
    result = batch(str(archive), "-o", str(out), *FAST, "--no-cache", "--engine", "ray", "--ray-address",
                   ray_address, "--workers", "2", cache=tmp_path / "cache")
    assert result.returncode == 2, result.stderr  # the broken file is still reported
    rows = report(out)
    assert {g: rows[g]["status"] for g in GOOD} == {g: ("done" if g in redo else "skipped") for g in GOOD}
    for label in redo:
        assert tracks(out / Path(label).with_suffix("")) == original[label]
        assert record(out, label)["engine"] == "ray"
    assert "Ray engine" in result.stderr
