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
