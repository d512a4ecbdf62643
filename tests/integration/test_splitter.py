"""The Splitter object: models loaded once, fallbacks visible, frozen settings, fixed defects."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import podsep
import podsep.hooks
from podsep.config import load_settings
from podsep.errors import PodsepError

REPO = Path(__file__).resolve().parents[2]


def _sample(shared_dir: Path) -> tuple[np.ndarray, int, Path]:
    audio, rate = soundfile.read(str(shared_dir / "data" / "pyannote-sample" / "sample.wav"), dtype="float32")
    return audio, rate, shared_dir / "data" / "pyannote-sample" / "sample.rttm"


def test_settings_are_frozen_and_overrides_make_new_objects():
    settings = load_settings()
    with pytest.raises(Exception):
        settings.overlaps.policy = "mute"  # type: ignore[misc]
    changed = settings.with_overrides({"overlaps.policy": "mute"}, assembly__crossfade=0.01)
    assert changed is not settings
    assert (changed.overlaps.policy, changed.assembly.crossfade) == ("mute", 0.01)
    assert (settings.overlaps.policy, settings.assembly.crossfade) == ("separate", 0.03)
    with pytest.raises(PodsepError, match="unknown setting"):
        settings.with_overrides({"overlaps.nope": 1})


def test_mute_fallback_silences_overlaps_and_the_manifest_agrees(shared_dir, tmp_path):
    audio, rate, rttm = _sample(shared_dir)
    result = podsep.split(audio, sample_rate=rate, diarization=rttm, overrides={
        "separation.backend": "sepformer", "separation.model": str(tmp_path / "absent"), "overlaps.fallback": "mute",
    })
    overlaps = result.manifest["overlaps"]
    assert overlaps and all(o["handling"] == "muted" for o in overlaps)
    assert result.manifest["overlap_policy"] == "mute"
    assert result.manifest["fallbacks"]["separation_fallback"]["policy"] == "mute"
    assert result.manifest["parameters"]["overlaps"]["policy"] == "separate"  # what the user asked, unchanged
    fade = int(0.03 * rate) + 1
    for region in overlaps:
        a, b = int(region["start"] * rate) + fade, int(region["end"] * rate) - fade
        if b <= a:
            continue
        for track in result.tracks.values():
            assert np.max(np.abs(track[:, a:b])) == 0.0, region


def test_splitter_loads_models_once_and_says_what_it_loaded(shared_dir, monkeypatch, tmp_path):
    import podsep.pipeline as pipeline

    calls = {"diarizer": 0, "separator": 0}
    real_diarizer, real_separator = pipeline.build_diarizer, pipeline.build_separator

    def counting_diarizer(*args, **kwargs):
        calls["diarizer"] += 1
        return real_diarizer(*args, **kwargs)

    def counting_separator(*args, **kwargs):
        calls["separator"] += 1
        return real_separator(*args, **kwargs)

    monkeypatch.setattr(pipeline, "build_diarizer", counting_diarizer)
    monkeypatch.setattr(pipeline, "build_separator", counting_separator)
    audio, rate, _ = _sample(shared_dir)
    splitter = podsep.Splitter(diarization__backend="embedded", separation__backend="sepformer",
                               separation__model=str(tmp_path / "absent"), diarization__cache=False)
    assert splitter.models() == {"diarization": {"loaded": None}, "separation": {"loaded": None}}
    first = splitter.split(audio[: rate * 15], sample_rate=rate, num_speakers=2)
    second = splitter.split(audio[rate * 10:], sample_rate=rate, num_speakers=2)
    assert len(first.tracks) == 2 and len(second.tracks) == 2
    assert calls["diarizer"] == 1
    assert calls["separator"] <= 1
    models = splitter.models()
    assert models["diarization"]["requested"] == "embedded" and models["diarization"]["loaded"] == "embedded"
    if calls["separator"]:
        assert models["separation"]["loaded"] == "none"
        assert "absent" in models["separation"]["fallback_reason"]


def test_quiet_recording_is_split_while_noise_is_still_refused(shared_dir):
    audio, rate, _ = _sample(shared_dir)
    quiet = audio * (1e-3 / np.max(np.abs(audio)))  # -60 dBFS peak: quiet but ordinary speech
    result = podsep.split(quiet, sample_rate=rate, overrides={"diarization.backend": "embedded",
                                                              "diarization.cache": False, "overlaps.policy": "duplicate"})
    assert len(result.tracks) == 2
    noise = (np.random.default_rng(0).standard_normal(rate * 10) * 1e-3).astype(np.float32)
    with pytest.raises(PodsepError, match="no speech found"):
        podsep.split(noise, sample_rate=rate, overrides={"diarization.backend": "embedded", "diarization.cache": False})


def test_the_product_never_imports_the_lab():
    package = REPO / "podsep"
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if relative.parts[0] == "lab" or relative == Path("cli/main.py"):  # the CLI registers eval/bench explicitly
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                if "lab" in module.split(".") or "testing" in module.split("."):
                    offenders.append(f"{relative}: {module}")
            elif isinstance(node, ast.Import):
                offenders += [f"{relative}: {a.name}" for a in node.names if a.name.startswith("podsep.lab")]
    assert offenders == []
    code = ("import sys, podsep, podsep.pipeline, podsep.models.factory, podsep.editor;"
            "print(sorted(m for m in sys.modules if m.startswith('podsep.lab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_hooks_combine_and_receive_real_artifacts(shared_dir):
    audio, rate, rttm = _sample(shared_dir)
    artifacts: dict[str, object] = {}
    warnings: list[str] = []

    def collect(step, artifact=None, *, completed=None, total=None):
        if artifact is not None and completed is not None and completed == total:
            artifacts.setdefault(step, artifact)

    class Warnings:
        def __call__(self, *args, **kwargs):
            pass

        def warning(self, message):
            warnings.append(message)

    timing = podsep.hooks.TimingHook()

    class Doubled:
        def __call__(self, window, rate):
            return np.stack([window, 0.5 * window])

    podsep.split(audio, sample_rate=rate, diarization=rttm, separator=Doubled(), names=["A", "B", "C"],
                 hook=podsep.Hooks(collect, Warnings(), timing))
    assert isinstance(artifacts["diarization"], podsep.Diarization)
    assert isinstance(artifacts["overlaps"], list) and artifacts["overlaps"]
    assert type(artifacts["separation"]).__name__ == "WindowAssignment"
    assert set(artifacts["assembly"]) == {"A", "B"}  # the track plans
    assert isinstance(artifacts["done"], podsep.SplitResult)
    assert any("3 name(s) given for 2" in w for w in warnings)
    assert {"decode", "diarization", "overlaps", "separation", "assembly"} <= set(timing.seconds)
