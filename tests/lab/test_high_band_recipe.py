"""``scripts/train_high_band.py --export``: the shipped top-octave file carries a recipe that says what
it was trained on, and loads as podsep loads it; ``score_fullband.py --renderings`` refuses names it
does not know."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from podsep.models.embedded.high_band import HighBandConfig, HighBandNet
from script_loader import load_script


def _examples(path, count: int, n: int = 64) -> None:
    rng = np.random.default_rng(count)
    np.savez(path, mix=rng.standard_normal((count, n)).astype(np.float16),
             refs=rng.standard_normal((count, 2, n)).astype(np.float16),
             ests=rng.standard_normal((count, 2, n)).astype(np.float16))


def test_the_export_records_the_run_and_loads_as_podsep_loads_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _examples(run / "train-0.npz", 3)
    _examples(run / "train-1.npz", 2)
    net = HighBandNet(HighBandConfig())
    torch.save({"net": net.state_dict(), "optimiser": {}, "step": 7}, run / "checkpoint.pt")
    (run / "log.jsonl").write_text(json.dumps({"step": 7, "learned": 1.5}) + "\n")
    script = load_script("train_high_band")
    assert script.example_count(run) == 5  # read from the arrays' headers
    exported = tmp_path / "high_band.pt"
    monkeypatch.setattr(sys, "argv", ["train_high_band.py", "--run-dir", str(run), "--export", str(exported),
                                      "--recorded-command", "the command", "--wall-seconds", "12"])
    script.main()
    payload = torch.load(exported, map_location="cpu", weights_only=True)  # as EmbeddedSeparator reads it
    recipe = payload["recipe"]
    assert recipe["examples"] == 5 and recipe["steps"] == 7 and recipe["command"] == "the command"
    assert recipe["wall_seconds"] == 12.0 and recipe["development"]["learned"] == 1.5
    loaded = HighBandNet(HighBandConfig.from_dict(payload["config"]))
    loaded.load_state_dict(payload["state_dict"])
    for name, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_score_fullband_refuses_an_unknown_rendering(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["score_fullband.py", "--pairs-only", "--renderings", "rebuild,pasted"])
    with pytest.raises(SystemExit) as stopped:
        load_script("score_fullband").main()
    assert stopped.value.code == 2 and "pasted" in capsys.readouterr().err
