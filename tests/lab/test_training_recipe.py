"""The separator's training recipe: what ships is the mean the recipe says it is.

``scripts/train_separator.py --export --average-from N [--branch DIR]`` writes the
shipped weights. These tests build small checkpoints by hand (no training), so
they check the averaging itself: which snapshots count, that branches are
included and named in the recipe, and that a missing final snapshot is refused.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from podsep.models.embedded.convtasnet import ConvTasNet, ConvTasNetConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def _recipe_module():
    spec = importlib.util.spec_from_file_location("train_separator", REPO_ROOT / "scripts" / "train_separator.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_separator", module)
    spec.loader.exec_module(module)
    return module


TINY = ConvTasNetConfig(filters=8, kernel=16, bottleneck=8, hidden=8, blocks=1, repeats=1)


def _checkpoint(value: float, step: int) -> dict:
    model = ConvTasNet(TINY)
    state = {k: torch.full_like(v, value) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    return {"config": TINY.to_dict(), "model": state, "optimiser": {}, "step": step, "elapsed": 60.0 * step,
            "log": [{"step": step, "minutes": step, "val_si_sdri": 1.0, "train_si_sdr": 2.0}],
            "seed": 7, "command": "scripts/train_separator.py --run-dir runs/x",
            "resumes": [{"step": 0, "command": f"resume {value}"}]}


def _run_dir(root: Path, name: str, snapshots: dict[int, float]) -> Path:
    run_dir = root / name
    (run_dir / "snapshots").mkdir(parents=True)
    for step, value in snapshots.items():
        torch.save(_checkpoint(value, step), run_dir / "snapshots" / f"step-{step:05d}.pt")
    last = max(snapshots)
    torch.save(_checkpoint(snapshots[last], last), run_dir / "checkpoint.pt")
    return run_dir


def _first_weight(state: dict) -> float:
    return float(next(v for v in state.values() if v.is_floating_point()).flatten()[0])


def test_snapshot_mean_counts_only_the_steps_from_the_chosen_one(tmp_path):
    recipe = _recipe_module()
    main = _run_dir(tmp_path, "main", {90: 100.0, 100: 1.0, 110: 3.0})
    final = torch.load(main / "checkpoint.pt", weights_only=True)
    weights, averaged = recipe.average_snapshots([main], 100, final)
    assert averaged == [100, 110]
    assert _first_weight(weights) == pytest.approx(2.0)


def test_branches_join_the_mean_and_the_recipe(tmp_path):
    recipe = _recipe_module()
    main = _run_dir(tmp_path, "main", {100: 1.0, 110: 3.0})
    branch = _run_dir(tmp_path, "branch", {100: 5.0, 110: 7.0, 50: -100.0})
    destination = tmp_path / "separator.pt"
    args = argparse.Namespace(average_from=100, branch=[branch], speechbrain=None)
    recipe.export(main, destination, args)
    shipped = torch.load(destination, weights_only=True)
    assert _first_weight(shipped["state_dict"]) == pytest.approx(4.0)
    assert shipped["recipe"]["averaged_steps"] == [100, 110, "branch:100", "branch:110"]
    assert shipped["recipe"]["branches"][0]["run_dir"] == "branch"
    assert shipped["recipe"]["branches"][0]["resumes"] == [{"step": 0, "command": "resume 7.0"}]


def test_an_average_without_the_final_step_is_refused(tmp_path):
    recipe = _recipe_module()
    main = _run_dir(tmp_path, "main", {100: 1.0})
    final = _checkpoint(2.0, 120)
    with pytest.raises(SystemExit, match="step 120"):
        recipe.average_snapshots([main], 100, final)
