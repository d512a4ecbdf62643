"""Batch status records, the skip/redo/retry decision, the report, memory sizing and thread settings."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from podsep.batch import state
from podsep.batch.inputs import Episode
from podsep.batch.local import GB, MemoryPlan, check_memory, memory_plan
from podsep.batch.report import Row, write_report
from podsep.config import load_settings
from podsep.errors import PodsepError


def episode_in(tmp_path: Path, content: bytes = b"RIFF....") -> Episode:
    path = tmp_path / "in" / "ep.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return Episode(path, "ep.wav", tmp_path / "out")


def done_record(episode: Episode, key: str = "k") -> dict:
    folder = episode.result_folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ep.json").write_text("{}")
    return {"status": state.DONE, "key": key, "result": {"manifest": "ep.json"},
            "input": dict(state.input_stat(episode.path), sha256=state.file_sha256(episode.path))}


def test_records_are_replaced_whole_and_read_back(tmp_path):
    path = tmp_path / "out" / "ep.podsep-status.json"
    state.write_record(path, {"status": "running", "episode": "ep.wav", "error": None})
    state.write_record(path, {"status": "done", "episode": "ep.wav", "error": None})
    record = state.read_record(path)
    assert record["status"] == "done" and record["format"] == state.RECORD_FORMAT
    assert list(record)[:3] == ["status", "episode", "error"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    state.write_record(path, dict(record, note="read back, then written again"))  # e.g. a refreshed input stat
    assert state.read_record(path)["note"] == "read back, then written again"
    path.write_text('{"status": "done"}')  # not one of ours
    assert state.read_record(path) is None


def test_done_with_same_input_and_key_is_skipped(tmp_path):
    episode = episode_in(tmp_path)
    record = done_record(episode)
    assert state.decide(episode, "k", record, retry_failed=False, overwrite=False).action == "skip"
    redo = state.decide(episode, "other", record, retry_failed=False, overwrite=False)
    assert (redo.action, redo.reason, redo.overwrite) == ("run", "settings or models changed", True)
    assert state.decide(episode, "k", record, retry_failed=False, overwrite=True).action == "run"


def test_touched_but_identical_input_is_still_skipped_and_a_changed_one_redone(tmp_path):
    episode = episode_in(tmp_path)
    record = done_record(episode)
    os.utime(episode.path, ns=(1, 1))
    decision = state.decide(episode, "k", record, retry_failed=False, overwrite=False)
    assert decision.action == "skip" and decision.refresh_stat
    episode.path.write_bytes(b"RIFF!!!!")  # same size, other content
    assert state.decide(episode, "k", record, retry_failed=False, overwrite=False).reason == "input changed"


def test_failures_are_retried_only_when_asked_or_when_something_changed(tmp_path):
    episode = episode_in(tmp_path)
    record = {"status": state.FAILED, "key": "k", "error": "cannot read ep.wav: Invalid data",
              "input": state.input_stat(episode.path)}
    kept = state.decide(episode, "k", record, retry_failed=False, overwrite=False)
    assert kept.action == "fail" and kept.reason.startswith("cannot read ep.wav: Invalid data (failed before")
    assert state.decide(episode, "k", record, retry_failed=True, overwrite=False).action == "run"
    assert state.decide(episode, "new", record, retry_failed=False, overwrite=False).action == "run"


@pytest.mark.parametrize("status", [state.RUNNING, state.PENDING])
def test_episodes_in_flight_when_a_batch_stopped_are_redone(tmp_path, status):
    episode = episode_in(tmp_path)
    decision = state.decide(episode, "k", {"status": status, "key": "k", "input": state.input_stat(episode.path)},
                            retry_failed=False, overwrite=False)
    assert decision.action == "run" and decision.overwrite and status in decision.reason


def test_a_result_folder_without_a_record_is_not_replaced_silently(tmp_path):
    episode = episode_in(tmp_path)
    episode.result_folder.mkdir(parents=True)
    decision = state.decide(episode, "k", None, retry_failed=False, overwrite=False)
    assert decision.action == "fail" and "--overwrite" in decision.reason
    assert state.decide(episode, "k", None, retry_failed=False, overwrite=True).action == "run"


def test_only_settings_that_shape_the_result_count():
    base = load_settings(None, {"overlaps.policy": "duplicate", "diarization.backend": "embedded"})
    relevant = state.relevant_settings(base, given_diarization=False)
    for irrelevant in ({"cache_dir": "/elsewhere"}, {"diarization.cache": False}, {"overlaps.context": 3.0},
                       {"separation.model": "other/model"}, {"diarization.model": "other/pipeline"}):
        assert state.relevant_settings(base.with_overrides(irrelevant), given_diarization=False) == relevant
    for relevant_change in ({"assembly.crossfade": 0.05}, {"output.format": "flac"}, {"diarization.num_speakers": 3},
                            {"overlaps.policy": "mute"}):
        assert state.relevant_settings(base.with_overrides(relevant_change), given_diarization=False) != relevant
    separate = load_settings(None, {"overlaps.policy": "separate"})
    assert state.relevant_settings(separate.with_overrides({"overlaps.context": 3.0}), given_diarization=False) != \
        state.relevant_settings(separate, given_diarization=False)


def test_episode_key_covers_names_and_models(tmp_path):
    episode = Episode(tmp_path / "a.wav", "a.wav", tmp_path)
    settings = {"x": 1}
    key = state.episode_key(settings, episode, {"podsep": "1"})
    assert key == state.episode_key(settings, episode, {"podsep": "1"})
    assert key != state.episode_key(settings, Episode(tmp_path / "a.wav", "a.wav", tmp_path, names=("A", "B")),
                                    {"podsep": "1"})
    assert key != state.episode_key(settings, episode, {"podsep": "2"})


def test_model_identity_of_the_embedded_models_is_their_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = load_settings(None, {"diarization.backend": "embedded", "overlaps.policy": "duplicate"})
    identity = state.model_identity(settings)
    assert set(identity) == {"podsep", "diarization"}
    assert identity["diarization"]["embedded"]["data"]["overlap_detector.pt"]
    assert "separation" in state.model_identity(settings.with_overrides({"overlaps.policy": "separate"}))


def test_stale_staging_of_a_killed_worker_is_cleaned(tmp_path):
    episode = episode_in(tmp_path)
    episode.output_parent.mkdir(parents=True)
    (episode.output_parent / ".ep.partial-abc").mkdir()
    (episode.output_parent / ".ep.old-def").mkdir()
    (episode.output_parent / ".epilogue.partial-x").mkdir()  # another episode's: kept
    state.clean_staging(episode)
    assert sorted(p.name for p in episode.output_parent.iterdir()) == [".epilogue.partial-x"]


def test_one_batch_at_a_time_per_output_folder(tmp_path):
    with state.BatchLock(tmp_path):
        with pytest.raises(PodsepError, match="another podsep batch"):
            with state.BatchLock(tmp_path):
                pass
    with state.BatchLock(tmp_path):  # released
        pass


def test_report_lists_every_episode(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    rows = [Row(Episode(tmp_path / "a.wav", "a.wav", out), "done", None,
                {"duration": 12.5, "speakers": ["Ann", "Bo"], "overlap_seconds": 1.2, "separated_regions": 3}, 4.0),
            Row(Episode(tmp_path / "b.wav", "b.wav", out), "failed", "cannot read b.wav: Invalid data", {}, 0.1)]
    path = write_report(out, rows)
    lines = list(csv.DictReader(path.open(encoding="utf-8")))
    assert lines[0]["status"] == "done" and lines[0]["speakers"] == "2" and lines[0]["output"] == "a"
    assert lines[0]["duration_s"] == "12.50" and lines[0]["separated_regions"] == "3"
    assert lines[1]["error"] == "cannot read b.wav: Invalid data" and lines[1]["output"] == ""


def test_too_many_workers_for_the_memory_are_refused_with_the_reason():
    settings = load_settings(None, {"diarization.backend": "embedded", "overlaps.policy": "duplicate"})
    plan = memory_plan(settings, 1800.0)
    assert plan.parts == ("process", "embedded_diarizer")
    assert 1.5 * GB < plan.per_worker < 2.2 * GB  # measured: 1.77 GB for 30 min
    small = MemoryPlan(plan.per_worker, 4 * GB, plan.parts)
    check_memory(small, 1, 1800.0)  # one worker is never refused
    with pytest.raises(PodsepError) as caught:
        check_memory(small, 4, 1800.0)
    message = str(caught.value)
    assert "4 workers would need about" in message and "4.0 GB is available" in message
    assert "use --workers 2 or fewer" in message and "embedded diarizer, longest episode 0.5 h" in message


def test_threads_are_divided_between_workers_and_set_everywhere(monkeypatch):
    import torch

    from podsep.threads import configure_threads, threads_per_worker

    assert threads_per_worker(2, cores=8) == 4
    assert threads_per_worker(3, cores=2) == 1
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                 "VECLIB_MAXIMUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("podsep.threads._configured", False)  # restored after the test
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        assert configure_threads(None) == 1  # a user's OMP_NUM_THREADS is the default of a single split
    finally:
        torch.set_num_threads(before)


def test_missing_ray_is_one_line_saying_how_to_install_it(monkeypatch):
    import sys

    from podsep.batch.ray_engine import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra looks like
    with pytest.raises(PodsepError) as caught:
        import_ray()
    assert "pip install 'podsep[ray]'" in str(caught.value) and "\n" not in str(caught.value)


def test_a_library_call_uses_the_free_cores_and_gives_the_threads_back(monkeypatch):
    """podsep.split inside someone else's program: torch's one-thread-per-core default is
    brought within the free cores for the call, then restored; a choice made by podsep's
    CLI, an explicit OMP_NUM_THREADS or a single thread is left alone."""
    import numpy as np
    import torch

    import podsep
    from podsep import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_configured", False)
    monkeypatch.setattr(threads, "free_cores", lambda *a, **k: 1)
    before = torch.get_num_threads()
    seen = []

    class CountingSeparator:
        sample_rate = 16000

        def __call__(self, mixture, rate):
            seen.append(torch.get_num_threads())
            return np.stack([mixture * 0.5, mixture * 0.5])

    try:
        torch.set_num_threads(3)
        with threads.threads_for_a_library_call() as allowed:
            assert allowed == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        rate = 16000
        rng = np.random.default_rng(0)
        audio = (rng.standard_normal(6 * rate) * 0.1).astype(np.float32)
        turns = podsep.Diarization.from_turns([(0.0, 4.0, "A"), (2.0, 6.0, "B")])
        podsep.split(audio, sample_rate=rate, diarization=turns, separator=CountingSeparator(),
                     overrides={"assignment.embedding_weight": 0.0, "separation.adapt": "off"})
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 3
        monkeypatch.setattr(threads, "_configured", True)
        with threads.threads_for_a_library_call() as allowed:
            assert allowed == 3
    finally:
        torch.set_num_threads(before)


class _InterruptedSplitter:
    """Stands in for a Splitter that is stopped (SIGTERM -> KeyboardInterrupt) at a chosen moment."""

    def __init__(self, commit_first: bool) -> None:
        self.commit_first = commit_first

    def split(self, path, *, output_dir, overwrite, **_):
        if self.commit_first:  # the stop lands after the result folder was renamed into place
            folder = Path(output_dir) / Path(path).stem
            if folder.exists():
                os.rename(folder, folder.with_name(".retired"))
            staging = Path(output_dir) / ".ep.partial-x"
            staging.mkdir()
            manifest = {"podsep_version": "t", "input": {"duration": 3.0, "sha256": "abc"}, "speakers": [],
                        "overlaps": [], "overlap_policy": "separate", "files": {"manifest": "ep.json"}}
            (staging / "ep.json").write_text(json.dumps(manifest))
            os.rename(staging, folder)
        raise KeyboardInterrupt


def _stand_in_worker(splitter: object):
    """An EpisodeWorker without models: ``splitter`` stands in for its Splitter."""
    from podsep.batch.worker import EpisodeWorker

    worker = object.__new__(EpisodeWorker)
    worker.splitter, worker.name = splitter, "test-worker"
    return worker


def _interrupted_run(tmp_path: Path, *, commit_first: bool, old_result: bool) -> dict:
    from podsep.batch.worker import Job

    episode = episode_in(tmp_path)
    if old_result:  # a result from before (the job replaces it with --overwrite)
        done_record(episode)
    job = Job(0, episode, "k", old_result, {"key": "k"})
    with pytest.raises(KeyboardInterrupt):
        _stand_in_worker(_InterruptedSplitter(commit_first)).run(job)
    return state.read_record(episode.record_path)


@pytest.mark.parametrize("old_result", [False, True])
def test_a_worker_stopped_mid_episode_records_pending_unless_its_result_is_in_place(tmp_path, old_result):
    """A stop before the rename leaves ``pending`` (and any old result untouched); one landing between the
    splitter's rename and the ``done`` record still records ``done``: the folder under its final name is new."""
    stopped_early = _interrupted_run(tmp_path / "a", commit_first=False, old_result=old_result)
    assert (stopped_early["status"], stopped_early["error"]) == ("pending", "interrupted")
    committed = _interrupted_run(tmp_path / "b", commit_first=True, old_result=old_result)
    assert committed["status"] == "done" and committed["error"] is None
    assert committed["result"]["manifest"] == "ep.json" and committed["input"]["sha256"] == "abc"



class _StopSurfacingAsAnError:
    """A stop that lands inside an import: the half-imported module then fails as an ImportError, which the
    editor files turn into a one-line OutputError (seen in CI: a Ctrl-C'd batch recorded ``failed``)."""

    def split(self, path, **_):
        from podsep.batch import worker
        from podsep.errors import OutputError

        worker.request_stop()
        raise OutputError("cannot draw ep.timeline.png: matplotlib is not installed (pip install matplotlib)")


class _FailingSplitter:
    def split(self, path, **_):
        from podsep.errors import OutputError

        raise OutputError("cannot write ep.wav: disk full")


@pytest.fixture
def no_stop_requested(monkeypatch):
    """The worker module's stop flag, cleared for the test and restored after it."""
    from podsep.batch import worker as worker_module

    monkeypatch.setattr(worker_module, "_stop_requested", False)


def test_an_error_caused_by_a_stop_records_pending_not_failed(tmp_path, no_stop_requested):
    from podsep.batch.worker import Job

    episode = episode_in(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _stand_in_worker(_StopSurfacingAsAnError()).run(Job(0, episode, "k", False, {"key": "k"}))
    record = state.read_record(episode.record_path)
    assert (record["status"], record["error"]) == ("pending", "interrupted")


def test_the_same_error_without_a_stop_still_fails_the_episode(tmp_path, no_stop_requested):
    from podsep.batch.worker import Job

    episode = episode_in(tmp_path)
    outcome = _stand_in_worker(_FailingSplitter()).run(Job(0, episode, "k", False, {"key": "k"}))
    record = state.read_record(episode.record_path)
    assert outcome.status == "failed" and (record["status"], record["error"]) == ("failed", "cannot write ep.wav: disk full")


def test_a_killed_workers_running_record_is_put_back_to_pending(tmp_path):
    episode = episode_in(tmp_path)
    state.write_record(episode.record_path, {"status": state.RUNNING, "episode": "ep.wav", "key": "k"})
    state.release_unfinished(episode)
    record = state.read_record(episode.record_path)
    assert record["status"] == "pending" and "interrupted" in record["error"] and record["key"] == "k"
    state.write_record(episode.record_path, {"status": state.DONE, "episode": "ep.wav"})
    state.release_unfinished(episode)  # finished meanwhile: left alone
    assert state.read_record(episode.record_path)["status"] == "done"


def test_a_stop_swallowed_inside_a_callback_is_sent_again_and_other_errors_still_print(monkeypatch):
    """Python swallows an exception raised in a weakref callback or ``__del__``; a worker's stop
    (SIGTERM -> KeyboardInterrupt) landing there must not be lost, or the worker splits on until killed."""
    import signal
    import sys
    import time
    from types import SimpleNamespace

    from podsep.batch.local import _quiet_interrupts

    received, printed = [], []
    monkeypatch.setattr(sys, "__unraisablehook__", printed.append)
    previous = signal.signal(signal.SIGTERM, lambda *_: received.append("SIGTERM"))
    try:
        _quiet_interrupts(SimpleNamespace(exc_value=KeyboardInterrupt()))
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == ["SIGTERM"] and printed == []
    other = SimpleNamespace(exc_value=ValueError("a real bug"))
    _quiet_interrupts(other)
    assert printed == [other]
