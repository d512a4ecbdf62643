"""``podsep eval`` and ``podsep bench`` on tiny inputs: files written, systems ranked, failures contained."""

from __future__ import annotations

import csv
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from podsep.lab.baselines import chunk_bounds, full_file_tracks
from podsep.cli import main
from podsep.diarization import Diarization
from podsep.lab.evaluate import EvalOptions, Item, evaluate, read_set, turns_from_tracks


@pytest.fixture(scope="module")
def tiny_eval(shared_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("eval")
    code = main([
        "eval", "--speech-dir", str(shared_dir / "data" / "librispeech"), "--count", "2", "--duration", "20",
        "--overlap-ratio", "0.2", "--seed", "3", "--systems", "duplicate,mute,oracle,podsep", "-o", str(out), "-q",
        "--diarization-model", str(out / "no-such-pipeline"),
    ])
    assert code == 0
    return out, json.loads((out / "results.json").read_text())


def test_eval_writes_json_csv_png_and_the_generated_set(tiny_eval):
    out, report = tiny_eval
    assert (out / "si_sdr_vs_overlap.png").stat().st_size > 10_000
    assert sorted(p.name for p in (out / "set").iterdir()) == ["conv_000", "conv_001"]
    assert (out / "set" / "conv_000" / "reference.rttm").is_file()
    rows = list(csv.DictReader((out / "results.csv").open()))
    ok_rows = [r for r in rows if r["status"] == "ok"]
    # Offline, podsep's row runs what `podsep split` runs (the embedded path) and is reported.
    assert {r["system"] for r in ok_rows} == {"duplicate", "mute", "oracle", "podsep"}
    assert len(ok_rows) == 4 * 2 * 2  # systems x recordings x speakers
    assert report["systems"]["podsep"]["status"] == "ok"
    assert len(report["items"]) == 2
    for item in report["items"]:
        assert item["overlap_ratio"] > 0.1
        run = item["systems"]["duplicate"]
        assert set(run["rtf"]) >= {"total", "assembly"}
        for values in run["speakers"].values():
            assert {"si_sdr", "sdr", "si_sdr_overlap", "sdr_overlap", "si_sdr_solo", "sdr_solo", "leakage_db"} <= set(values)
    assert report["systems"]["oracle"]["peak_rss_mb"] > 0
    # Every run's manifest is kept beside the scores, named in results.json.
    for item in report["items"]:
        for system in ("duplicate", "oracle", "podsep"):
            manifest = json.loads((out / item["systems"][system]["manifest"]).read_text())
            assert manifest["overlaps"] and {"start", "end", "handling"} <= set(manifest["overlaps"][0])
        oracle_windows = [w for region in json.loads((out / item["systems"]["oracle"]["manifest"]).read_text())
                          ["overlaps"] for w in region.get("windows", [])]
        assert oracle_windows and all("assignment" in w for w in oracle_windows)


def test_oracle_beats_duplicate_beats_mute_in_overlaps(tiny_eval):
    _, report = tiny_eval
    summary = report["summary"]
    oracle, duplicate, mute = (summary[s]["si_sdr_overlap"] for s in ("oracle", "duplicate", "mute"))
    assert mute == "-inf"  # silence where the speaker talks: nothing of them is left
    assert oracle > 30.0
    assert oracle > duplicate > -20.0
    # Outside overlaps both pass the mixture through (exact for duplicate; mute fades out near overlaps).
    assert summary["duplicate"]["si_sdr_solo"] == "inf"
    assert summary["mute"]["si_sdr_solo"] > 15.0
    assert summary["oracle"]["si_sdr"] > summary["duplicate"]["si_sdr"] >= summary["mute"]["si_sdr"] - 1e-6


def test_unavailable_system_is_reported_with_its_reason(shared_dir, tmp_path):
    # Only an explicit `--diarizer pyannote` makes a missing pipeline an error (no fallback).
    code = main([
        "eval", "--speech-dir", str(shared_dir / "data" / "librispeech"), "--count", "1", "--duration", "10",
        "--systems", "duplicate,podsep", "-o", str(tmp_path), "-q", "--diarizer", "pyannote",
        "--diarization-model", str(tmp_path / "no-such-pipeline"),
    ])
    assert code == 0
    report = json.loads((tmp_path / "results.json").read_text())
    podsep_system = report["systems"]["podsep"]
    assert podsep_system["status"] == "unavailable"
    assert "no-such-pipeline" in podsep_system["reason"] and "\n" not in podsep_system["reason"]
    assert report["summary"]["podsep"]["status"] == "unavailable"


def test_a_failing_system_does_not_stop_the_others(monkeypatch):
    rate = 8000
    t = np.arange(rate * 4) / rate
    a = (0.1 * np.sin(2 * np.pi * 220 * t) * (t < 2.5)).astype(np.float32)
    b = (0.1 * np.sin(2 * np.pi * 330 * t) * (t > 1.5)).astype(np.float32)
    item = Item("toy", a + b, rate, Diarization.from_turns([(0, 2.5, "A"), (1.5, 4, "B")]), {"A": a, "B": b})

    def broken(*args, **kwargs):
        raise RuntimeError("separator exploded")

    import podsep.lab.baselines

    monkeypatch.setattr(podsep.lab.baselines, "full_file_tracks", broken)
    monkeypatch.setattr("podsep.lab.evaluate._Systems.separator", lambda self: object())
    report = evaluate([item], ["full-file", "duplicate"], EvalOptions())
    assert report["systems"]["full-file"]["status"] == "failed"
    assert "separator exploded" in report["systems"]["full-file"]["reason"]
    assert report["systems"]["duplicate"]["status"] == "ok"
    assert math.isfinite(report["summary"]["duplicate"]["si_sdr"])


def test_full_file_baseline_with_perfect_separator_matches_speakers():
    rate = 8000
    rng = np.random.default_rng(0)
    n = rate * 25
    a = np.zeros(n, np.float32)
    b = np.zeros(n, np.float32)
    a[: 12 * rate] = rng.standard_normal(12 * rate) * 0.1
    b[10 * rate: 22 * rate] = rng.standard_normal(12 * rate) * 0.1
    mixture = a + b
    turns = Diarization.from_turns([(0, 12, "A"), (10, 22, "B")])

    def perfect(window: np.ndarray, sample_rate: int) -> np.ndarray:
        start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(mixture, 50) == window[:50], axis=1))[0])
        return np.stack([b[start:start + len(window)] * 3.0, a[start:start + len(window)] * -0.5])

    tracks, timings = full_file_tracks(mixture, rate, perfect, turns, chunk=8.0, overlap=1.0)
    assert set(timings) == {"separation", "matching"}
    assert np.allclose(tracks["A"], a, atol=1e-4) and np.allclose(tracks["B"], b, atol=1e-4)
    bounds = chunk_bounds(n, rate, 8.0, 1.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == n and all(e - s == 8 * rate for s, e in bounds)


def test_reads_librimix_folders_stereo_recordings_and_rttm_sets(shared_dir):
    librimix = read_set(shared_dir / "data" / "librimix", limit=2)
    assert len(librimix) == 2 and librimix[0].sample_rate == 8000
    assert librimix[0].references and len(librimix[0].references) == 2
    assert len(librimix[0].diarization.speakers) == 2 and librimix[0].overlap_ratio > 0.5
    ami = read_set(shared_dir / "data" / "ami")
    assert ami and all(item.references is None for item in ami)
    assert {item.name for item in ami} >= {"tst00", "tst01"}
    assert next(i for i in ami if i.name == "tst00").uem == [(0.0, 30.0)]


def test_turns_from_tracks_finds_speech():
    rate = 16000
    track = np.zeros(rate * 3, np.float32)
    track[rate: 2 * rate] = 0.1 * np.sin(np.arange(rate) * 0.3)
    turns = turns_from_tracks({"X": track}, rate).turns
    assert len(turns) == 1 and turns[0].start == pytest.approx(1.0, abs=0.02) and turns[0].end == pytest.approx(2.0, abs=0.02)


def test_bench_tiny_reports_every_field(shared_dir, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where bench puts its conversations
    code = main([
        "bench", "--speech-dir", str(shared_dir / "data" / "librispeech"), "--minutes", "0.25", "--size", "small",
        "--paths", "overlap-only,whole-file", "--budget", "4", "--chunk", "6", "--in-process", "-q",
        "--models-dir", str(tmp_path / "models"), "-o", str(tmp_path / "bench"),
    ])
    assert code == 0
    report = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert "random" in report["models"]["weights"]
    rows = {row["path"]: row for row in report["rows"]}
    assert set(rows) == {"overlap-only", "whole-file"}
    for row in rows.values():
        assert "error" not in row, row
        assert row["stages"]["separation"] > 0 and row["rtf"]["total"] > 0
        assert row["peak_rss_mb"] > 100 and "separation" in row["peak_rss_by_stage_mb"]
        assert 0 < row["measured_fraction"]["separation"] <= 1
        assert row["extrapolated"] == ({"separation": True} if row["measured_fraction"]["separation"] < 1 else {})
    assert {"decode", "overlaps", "assignment", "assembly"} <= set(rows["overlap-only"]["stages"])
    assert not list(scratch.iterdir()), "bench left its scratch folder behind"


def test_bench_names_the_shipped_separator_when_it_times_it():
    """Timings of the embedded separator ran the shipped weights, not random ones; the label says so."""
    import hashlib

    from podsep.lab.bench import _weights_label
    from podsep.models.embedded.separator import shipped_weights_path

    label = _weights_label("embedded", ["overlap-only"])
    assert "random" not in label
    assert hashlib.sha256(shipped_weights_path().read_bytes()).hexdigest()[:16] in label
    assert "random" in _weights_label("sepformer", ["overlap-only"])
    assert "diarization stand-in random" in _weights_label("embedded", ["overlap-only", "diarization"])


def test_full_band_eval_shows_the_air_kept_by_rebuilding_and_the_identity(shared_dir, tmp_path):
    """At 48 kHz with real full-band voices: rebuilt overlaps keep their energy above 8 kHz,
    pasted ones (podsep 0.1) lose it; the tracks plus the background add up to the input."""
    def run(rendering: str) -> dict:
        config = tmp_path / f"{rendering}.yaml"
        config.write_text(f"assembly:\n  overlap_rendering: {rendering}\n")
        out = tmp_path / rendering
        code = main(["eval", "--speech-dir", str(shared_dir / "data" / "fullband"), "--rate", "48000",
                     "--count", "1", "--duration", "20", "--seed", "1", "--systems",
                     "oracle-diarization,duplicate", "--separator", "embedded", "--config", str(config),
                     "-o", str(out), "-q"])
        assert code == 0
        return json.loads((out / "results.json").read_text())["summary"]

    rebuild, paste = run("rebuild"), run("paste")
    assert rebuild["oracle-diarization"]["energy_high_db"] > paste["oracle-diarization"]["energy_high_db"] + 10
    assert -6 < rebuild["oracle-diarization"]["energy_high_db"] < 6
    assert rebuild["oracle-diarization"]["si_sdr_high"] > paste["oracle-diarization"]["si_sdr_high"]
    assert rebuild["oracle-diarization"]["high_band_edges_hz"] == [8000.0]
    assert rebuild["oracle-diarization"]["identity_max_error"] < 1e-5
    assert rebuild["duplicate"]["identity_max_error"] is None  # duplicate writes no background
    assert rebuild["duplicate"]["energy_high_db"] > 0  # the other voice's air is in the track too
