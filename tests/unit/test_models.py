"""Model management: status listing, fetching offline, and Hub ids served from the HF cache.

The Hub is unreachable here, so a Hub id is exercised through the layout the
Hugging Face cache really uses (``models--org--name/snapshots/<commit>/`` plus
``refs/main``), filled with the fixture models: podsep must resolve the id from
the cache, load it through the same loaders, and record the revision.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import podsep
from podsep.cli.models_cmd import collect
from podsep.config import load_settings

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, fixture_models) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    _fake_hub_cache(cache, "acme/diarizer", fixture_models["pyannote"])
    _fake_hub_cache(cache, "acme/separator", fixture_models["sepformer"])
    return cache


def test_hub_ids_load_from_the_cache_offline(monkeypatch, hub_cache, two_speaker_wav, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = podsep.split(two_speaker_wav, output_dir=tmp_path, overrides={
        "cache_dir": str(hub_cache), "diarization.backend": "pyannote", "diarization.model": "acme/diarizer",
        "separation.model": "acme/separator", "diarization.num_speakers": 2,
    })
    models = result.manifest["models"]
    assert models["diarization"]["source"] == "acme/diarizer" and models["diarization"]["revision"] == COMMIT
    if models["separation"] is not None:  # random weights may or may not produce an overlap to separate
        assert models["separation"]["revision"] == COMMIT
    assert all(track.shape == (1, 480000) for track in result.tracks.values())


def test_status_of_cached_local_missing_and_packaged_models(monkeypatch, hub_cache, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = load_settings(None, {"cache_dir": str(hub_cache), "diarization.model": "acme/diarizer",
                                    "separation.model": str(tmp_path / "nowhere")})
    rows = {row.role: row for row in collect(settings, None)}
    assert rows["diarization"].usable and rows["diarization"].revision == COMMIT
    assert rows["diarization"].size_bytes > 100_000
    assert not rows["separation"].usable and "not found" in rows["separation"].reason
    for role in ("embedded VAD", "embedded speaker encoder", "embedded overlap detector", "embedded separator"):
        assert rows[role].usable, rows[role].reason
    default = {row.role: row for row in collect(load_settings(), None)}
    assert not default["diarization"].usable and "cannot be reached" in default["diarization"].reason


def test_models_command_json_and_offline_fetch(tmp_path):
    environment = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    listing = subprocess.run([sys.executable, "-m", "podsep", "models", "--json"], capture_output=True, text=True,
                             env=environment, timeout=300)
    assert listing.returncode == 0, listing.stderr
    roles = [row["role"] for row in json.loads(listing.stdout)]
    assert roles[:2] == ["diarization", "separation"]
    fetch = subprocess.run([sys.executable, "-m", "podsep", "models", "fetch"], capture_output=True, text=True,
                           env=environment, timeout=300)
    assert fetch.returncode != 0
    assert fetch.stderr.count("\n") == 1 and "cannot be reached" in fetch.stderr


def test_embedded_fallback_is_announced_and_recorded(monkeypatch, two_speaker_wav, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    warnings = []

    class Hook:  # warnings arrive on the hook's own channel, not as a step
        def __call__(self, step, artifact=None, **_):
            assert step != "warning"

        def warning(self, message):
            warnings.append(message)

    result = podsep.split(two_speaker_wav, num_speakers=2, hook=Hook(),
                          overrides={"separation.model": str(tmp_path / "absent-separator"),
                                     "separation.backend": "sepformer"})
    assert result.manifest["models"]["diarization"]["kind"].startswith("embedded")
    assert "diarization_fallback" in result.manifest["fallbacks"]
    assert any("embedded diarizer" in w for w in warnings)
    assert len(result.tracks) == 2
    if result.manifest["overlaps"]:  # no separator here: overlaps are duplicated, and that is said once
        assert result.manifest["fallbacks"]["separation_fallback"]["policy"] == "duplicate"
        assert all(o["handling"] == "duplicated" for o in result.manifest["overlaps"])
        assert sum("copied into every active track" in w for w in warnings) == 1
