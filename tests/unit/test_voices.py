"""Voice profiles hold only what a ``weights_only`` load and JSON can read back."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from podsep.models.embedded.convtasnet import ConvTasNet, ConvTasNetConfig
from podsep.voices import load_profile, save_profile


def test_a_nested_recipe_and_numpy_notes_survive_a_safe_round_trip(tmp_path: Path) -> None:
    network = ConvTasNet(ConvTasNetConfig(filters=8, bottleneck=8, hidden=8, blocks=2, repeats=1))
    recipe = {"command": "train", "resumes": [{"step": np.int64(5000), "command": ("a", "b")}],
              "steps": np.int64(7), "heldout": np.float32(2.5), "path": Path("/x/y"),
              "curve": np.arange(3, dtype=np.float32)}
    separator = SimpleNamespace(network=network, recipe=recipe)
    notes = {"gain_db": np.float32(1.25), "pairs": [("A", "B")], "counts": {"A": np.int32(3)}}
    save_profile(tmp_path / "show", {"A": np.ones(4, np.float32)}, separator=separator,
                 embedder="ge2e", notes=notes)

    payload = torch.load(tmp_path / "show" / "separator.pt", weights_only=True)
    assert payload["recipe"]["resumes"] == [{"step": 5000, "command": ["a", "b"]}]
    assert payload["recipe"]["steps"] == 7 and isinstance(payload["recipe"]["steps"], int)
    assert payload["recipe"]["heldout"] == 2.5
    assert payload["recipe"]["path"] == "/x/y"
    assert payload["recipe"]["curve"] == [0.0, 1.0, 2.0]

    profile = load_profile(tmp_path / "show")
    assert profile.notes == {"gain_db": 1.25, "pairs": [["A", "B"]], "counts": {"A": 3}}
    assert set(profile.voices) == {"A"}


def test_profile_files_are_ordinary_files_and_no_temporary_is_left(tmp_path: Path) -> None:
    import os

    from podsep.audio import current_umask

    save_profile(tmp_path / "show", {"A": np.ones(4, np.float32)}, embedder="ge2e")
    files = [p for p in (tmp_path / "show").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["A.npy", "profile.json"]
    for path in files:
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~current_umask()


def test_an_adapted_top_octave_network_is_kept_and_is_the_next_episodes_starting_point(tmp_path: Path) -> None:
    import copy
    import hashlib

    from podsep.lab.fixture_models import build_embedded_separator, build_high_band
    from podsep.models.embedded.separator import EmbeddedSeparator

    generic_file = build_high_band(tmp_path / "high_band.pt")
    generic = EmbeddedSeparator(build_embedded_separator(tmp_path / "separator.pt"), high_band=generic_file).load()
    show = tmp_path / "show"

    # A generic network is no news: nothing is written for it.
    save_profile(show, {"A": np.ones(4, np.float32)}, separator=generic, embedder="ge2e")
    first = load_profile(show)
    assert first.top_octave is None and first.top_octave_sha256 is None

    learnt = copy.deepcopy(generic.top_octave_network)
    with torch.no_grad():
        for parameter in learnt.parameters():
            parameter.add_(0.01)
    save_profile(show, {"A": np.ones(4, np.float32)}, separator=generic.with_top_octave_network(learnt, "tensors"),
                 previous=first, embedder="ge2e")
    second = load_profile(show)
    assert second.top_octave == show / "top_octave.pt"
    assert second.top_octave_sha256 == hashlib.sha256(second.top_octave.read_bytes()).hexdigest()
    payload = torch.load(second.top_octave, weights_only=True)
    assert payload["recipe"]["adapted_to_episode"] is True

    resumed = second.separator(high_band=generic_file)
    assert resumed.high_band == second.top_octave
    assert resumed.describe()["high_band"]["sha256"] == second.top_octave_sha256
    for name, tensor in learnt.state_dict().items():
        assert torch.equal(resumed.top_octave_network.state_dict()[name], tensor), name
    assert second.separator(high_band=False).top_octave_network is None  # separation.high_band: off holds

    # An episode that did not adapt the network (here: the profile's, as loaded) leaves the file alone.
    before = second.top_octave.read_bytes()
    save_profile(show, {"A": np.ones(4, np.float32)}, separator=resumed, previous=second, embedder="ge2e")
    third = load_profile(show)
    assert third.top_octave.read_bytes() == before and third.top_octave_sha256 == second.top_octave_sha256
