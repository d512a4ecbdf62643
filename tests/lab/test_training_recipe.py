"""The separator's training recipe: what ships is the mean the recipe says it is.

``scripts/train_separator.py --export --average-from N [--branch DIR]`` writes the
shipped weights. These tests build small checkpoints by hand (no training), so
they check the averaging itself: which snapshots count, that branches are
included and named in the recipe, and that a missing final snapshot is refused.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from podsep.models.embedded.convtasnet import ConvTasNet, ConvTasNetConfig
from script_loader import SCRIPTS, load_script


def _recipe_module():
    return load_script("train_separator")


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


def test_the_speechbrain_folder_holds_the_shipped_mean_not_the_last_checkpoint(tmp_path):
    """``--export --average-from N --speechbrain DIR``: both formats carry the same weights.

    Until session 20 the folder was written from the run's last checkpoint, so the
    speechbrain-format copy of an averaged export was another model.
    """
    recipe = _recipe_module()
    main = _run_dir(tmp_path, "main", {100: 1.0, 110: 3.0})
    folder = tmp_path / "speechbrain"
    recipe.export(main, tmp_path / "separator.pt",
                  argparse.Namespace(average_from=100, branch=[], speechbrain=folder))
    shipped = torch.load(tmp_path / "separator.pt", weights_only=True)["state_dict"]
    encoder = torch.load(folder / "encoder.ckpt", weights_only=True)
    masknet = torch.load(folder / "masknet.ckpt", weights_only=True)
    assert torch.equal(encoder["conv1d.weight"], shipped["encoder.weight"])
    assert _first_weight(masknet) == pytest.approx(2.0)  # the mean of 1 and 3, not the last checkpoint's 3


def test_an_average_without_the_final_step_is_refused(tmp_path):
    recipe = _recipe_module()
    main = _run_dir(tmp_path, "main", {100: 1.0})
    final = _checkpoint(2.0, 120)
    with pytest.raises(SystemExit, match="step 120"):
        recipe.average_snapshots([main], 100, final)


def _fake_corpus(speakers: int, seconds: float, rate: int = 8000) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(f"spk{k % speakers}", (0.05 * rng.standard_normal(int(seconds * rate))).astype(np.float32))
            for k in range(2 * speakers)]


def test_packed_corpora_read_back_as_written(tmp_path, monkeypatch):
    recipe = _recipe_module()
    train, heldout = _fake_corpus(4, 3.0), _fake_corpus(2, 5.0)
    monkeypatch.setattr(recipe, "training_corpus", lambda rate: train)
    monkeypatch.setattr(recipe, "heldout_corpus", lambda rate: heldout)
    recipe.pack_corpora(tmp_path, 8000)
    for name, original in (("train", train), ("heldout", heldout)):
        back = recipe.unpack_corpus(tmp_path, name, 8000)
        assert [speaker for speaker, _ in back] == [speaker for speaker, _ in original]
        for (_, a), (_, b) in zip(back, original):
            assert a.shape == b.shape
            assert np.max(np.abs(a - b)) < 2e-4 * np.max(np.abs(b))  # 16-bit steps of each utterance's peak


def test_worker_processes_mix_the_same_batches_as_the_loop():
    recipe = _recipe_module()
    corpus = _fake_corpus(5, 4.0)
    groups = recipe.group_by_speaker(corpus)
    args = argparse.Namespace(seed=11, stream=1, batch=3, speed_perturbation=0.5, channel_eq=0.5)
    loader = torch.utils.data.DataLoader(recipe.StepBatches(corpus, groups, 8000, args), batch_size=None,
                                         sampler=range(40, 44), num_workers=2)
    for step, (mix, src) in zip(range(40, 44), loader):
        expected_mix, expected_src = recipe.training_batch(corpus, groups, 8000, 11, 1, step, 3, 0.5, 0.5)
        assert torch.equal(mix, expected_mix) and torch.equal(src, expected_src)
    other_stream = recipe.training_batch(corpus, groups, 8000, 11, 0, 40, 3, 0.5)[0]
    first = recipe.training_batch(corpus, groups, 8000, 11, 1, 40, 3, 0.5)[0]
    assert other_stream.shape != first.shape or not torch.equal(other_stream, first)


def test_recording_chain_colouring_is_a_smooth_bounded_equaliser():
    """``--channel-eq``: each voice's spectrum changes by at most EQ_MAX_DB, smoothly, reproducibly."""
    recipe = _recipe_module()
    voice = np.random.default_rng(3).standard_normal(16000).astype(np.float32)
    assert recipe.colour(np.random.default_rng(0), voice, 8000, 0.0) is voice
    coloured = recipe.colour(np.random.default_rng(5), voice, 8000, 1.0)
    again = recipe.colour(np.random.default_rng(5), voice, 8000, 1.0)
    assert np.array_equal(coloured, again)
    gain_db = 20 * np.log10(np.abs(np.fft.rfft(coloured)) / np.abs(np.fft.rfft(voice)))
    assert np.max(np.abs(gain_db)) <= recipe.EQ_MAX_DB + 1e-3
    assert np.ptp(gain_db) > 3.0  # it does colour
    assert np.max(np.abs(np.diff(gain_db))) < 0.5  # smooth across neighbouring bins: no comb


def test_a_run_sized_by_its_speed_records_the_steps_it_chose(tmp_path, monkeypatch):
    """``--steps-for-minutes`` (for a lent machine of unknown speed) resolves a reproducible step count.

    ``--total-steps`` below the probe's steps (as the default is below a resumed run's step)
    must not end the run before the probe has replaced it: session 20's first launch did.
    """
    recipe = _recipe_module()
    train, heldout = _fake_corpus(4, 4.0), _fake_corpus(2, 5.0)
    monkeypatch.setattr(recipe, "training_corpus", lambda rate: train)
    monkeypatch.setattr(recipe, "heldout_corpus", lambda rate: heldout)
    recipe.pack_corpora(tmp_path / "packed", 8000)
    run_dir = tmp_path / "run"
    tiny = '{"filters": 8, "kernel": 16, "bottleneck": 8, "hidden": 8, "blocks": 1, "repeats": 1}'
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_separator.py"), "--run-dir", str(run_dir),
         "--data", str(tmp_path / "packed"), "--config", tiny, "--batch", "1", "--warmup", "200",
         "--steps-for-minutes", "0.02", "--total-steps", "5", "--checkpoint-every", "999", "--workers", "1"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    chosen = int(state["command"].split("(resolved: --total-steps ")[1].rstrip(")"))
    assert chosen >= 210 and chosen % 10 == 0
    assert state["step"] == chosen
    assert state["log"][-1]["device"] == "cpu"


def test_adaptation_development_pairs_use_training_voices_only(shared_dir):
    """``tune_adaptation.py`` chooses adaptation's recipe: its voices must never be held-out ones."""
    module = load_script("tune_adaptation")
    pairs = module.development_pairs(12)
    speakers = [speaker for pair in pairs for speaker in pair]
    assert len(pairs) == 12 and pairs[:4] == module.DEV_PAIRS
    assert len(set(speakers)) == len(speakers)  # each voice once
    training = {path.name.split("-")[0] for path in (shared_dir / "data" / "librispeech" / "train-clean-100").glob("*.flac")}
    held_out = {path.name for path in (shared_dir / "data" / "librispeech" / "test-other").iterdir() if path.is_dir()}
    assert set(speakers) <= training and not set(speakers) & held_out
    assert module.development_pairs(12) == pairs  # seeded: the same pairs every time



def test_adaptation_unseen_pairs_are_seeded_pairs_of_distinct_voices():
    """``tune_adaptation.py --speech-set unseen`` judges the never-worse check on new voices: each
    pair two different voices, no pair twice, the same pairs every run; each voice's test part is
    its last ``TEST_SECONDS`` and its adaptation part the first ``solo_seconds``."""
    module = load_script("tune_adaptation")
    rate = 8000
    voices = {f"v{i}": np.zeros(int((module.MIN_UNSEEN_SECONDS + i) * rate), np.float32) for i in range(5)}
    pairs = module.unseen_pairs(voices, 6)
    assert len(pairs) == 6 and all(a != b for a, b in pairs)
    assert len({frozenset(pair) for pair in pairs}) == 6
    assert module.unseen_pairs(voices, 6) == pairs
    adaptation, test = module.split_voice(voices["v3"], rate, solo_seconds=6.0)
    assert test.size == int(module.TEST_SECONDS * rate) and adaptation.size == 6 * rate

def test_solo_pieces_keep_only_what_one_speaker_says_alone():
    recipe = _recipe_module()
    turns = [(0.0, 5.0, "A"), (2.0, 2.5, "B"), (4.5, 8.0, "B"), (6.0, 6.4, "C")]
    pieces = recipe.solo_pieces(turns)
    assert pieces == [(0.0, 2.0, "A"), (2.5, 4.5, "A"), (5.0, 6.0, "B"), (6.4, 8.0, "B")]
    assert recipe.solo_pieces(turns, shortest=1.8) == [(0.0, 2.0, "A"), (2.5, 4.5, "A")]


def test_unseen_development_voices_are_neither_training_nor_held_out(shared_dir, monkeypatch):
    """The shipping decision's voices (``--speech-set unseen``) must be new to the model and not evaluation voices."""
    recipe = _recipe_module()
    monkeypatch.setattr(recipe, "PACKED_DATA", None)
    monkeypatch.setenv("PODSEP_SHARED", str(shared_dir))
    corpus = recipe.unseen_corpus(8000)
    voices = {speaker for speaker, _ in corpus}
    training = {speaker for speaker, _ in recipe.training_corpus(8000)}
    held_out = {path.name for path in (shared_dir / "data" / "librispeech" / "test-other").iterdir() if path.is_dir()}
    assert len(voices) >= 20 and not voices & training
    librispeech_ids = {voice.removeprefix("ms") for voice in voices if voice.startswith("ms")}
    training_ids = {voice.removeprefix("ls") for voice in training if voice.startswith("ls")}
    assert len(librispeech_ids) == 7 and not librispeech_ids & (training_ids | held_out)
    assert all(audio.size >= 0.5 * 8000 for _, audio in corpus)
    assert sum(audio.size for _, audio in corpus) / 8000 > 180  # minutes of speech, not scraps


def _packed_corpora_and_shipped_weights(recipe, tmp_path: Path) -> tuple[Path, Path]:
    """Fake corpora packed as ``--pack`` writes them (``tmp_path/packed``) and tiny weights exported
    at step 100 as the package ships them (``tmp_path/separator.pt``): what a run from shipped weights reads."""
    train, heldout = _fake_corpus(4, 4.0), _fake_corpus(2, 5.0)
    packed = tmp_path / "packed"
    original_train, original_heldout = recipe.training_corpus, recipe.heldout_corpus
    recipe.training_corpus, recipe.heldout_corpus = (lambda rate: train), (lambda rate: heldout)
    try:
        recipe.pack_corpora(packed, 8000)
    finally:
        recipe.training_corpus, recipe.heldout_corpus = original_train, original_heldout
    shipped = tmp_path / "separator.pt"
    recipe.export(_run_dir(tmp_path, "before", {100: 0.01}), shipped,
                  argparse.Namespace(average_from=None, branch=[], speechbrain=None))
    return packed, shipped


def test_a_run_can_start_from_shipped_weights(tmp_path):
    """``--init-from``: the next steps start from the exported weights, their step and their history."""
    recipe = _recipe_module()
    packed, shipped = _packed_corpora_and_shipped_weights(recipe, tmp_path)
    run_dir = tmp_path / "after"
    run_dir.mkdir()
    (run_dir / "log.json").write_text('[{"step": 100, "minutes": 100.0, "val_si_sdri": 1.0}]')
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_separator.py"), "--run-dir", str(run_dir),
         "--data", str(packed), "--init-from", str(shipped), "--batch", "1", "--warmup", "2",
         "--schedule-start", "100", "--total-steps", "104", "--lr", "1e-4", "--checkpoint-every", "999"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 104 and state["elapsed"] > 6000.0  # 100 steps x 60 s carried over
    assert state["command"] == "scripts/train_separator.py --run-dir runs/x"  # the original run's command
    assert "sha256" in state["resumes"][-2]["init_from"] and "--init-from" in state["resumes"][-1]["command"]
    assert [entry["step"] for entry in state["log"]] == [100, 104]
    moved = _first_weight(state["model"]) != pytest.approx(0.01)
    assert moved and state["config"] == TINY.to_dict()


def test_the_wide_speed_range_draws_from_its_own_factors():
    """``--speed-range wide`` reaches 0.8 and 1.2; the default keeps sessions 2-8's 0.9-1.1 (their runs replay)."""
    recipe = _recipe_module()
    utterance = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    lengths = {recipe.perturb_speed(np.random.default_rng(seed), utterance, 1.0, recipe.SPEED_FACTORS_WIDE).size
               for seed in range(200)}
    assert min(lengths) == 6400 and max(lengths) == 9600  # 8000 x 4/5 ... 8000 x 6/5
    narrow = {recipe.perturb_speed(np.random.default_rng(seed), utterance, 1.0).size for seed in range(200)}
    assert min(narrow) == 7200 and max(narrow) == 8800
    corpus = _fake_corpus(5, 4.0)
    groups = recipe.group_by_speaker(corpus)
    args = argparse.Namespace(seed=11, stream=0, batch=3, speed_perturbation=1.0, channel_eq=0.0, speed_range="wide")
    wide = recipe.StepBatches(corpus, groups, 8000, args)[7]
    expected = recipe.training_batch(corpus, groups, 8000, 11, 0, 7, 3, 1.0, 0.0, recipe.SPEED_FACTORS_WIDE)
    assert torch.equal(wide[0], expected[0])


def _fetch_module():
    return load_script("fetch_debian_voices")


def test_extra_voices_are_speakers_of_their_own_and_named_in_the_recipe(tmp_path):
    """``--extra-voices DIR``: each subfolder is one more speaker; the exported recipe says the data grew."""
    import soundfile as sf

    recipe = _recipe_module()
    rng = np.random.default_rng(3)
    for voice, count in (("ktuberling-xx", 2), ("ktuberling-yy", 1)):
        (tmp_path / "voices" / voice).mkdir(parents=True)
        for n in range(count):
            sf.write(str(tmp_path / "voices" / voice / f"{n:03d}.flac"), 0.1 * rng.standard_normal(16000), 16000)
    items = recipe.extra_voice_corpus([tmp_path / "voices"], 8000)
    assert [speaker for speaker, _ in items] == ["xvktuberling-xx", "xvktuberling-xx", "xvktuberling-yy"]
    assert all(audio.size == pytest.approx(8000, abs=200) for _, audio in items)  # resampled to the model's rate
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no voice folders"):
        recipe.extra_voice_corpus([tmp_path / "empty"], 8000)
    plain = _checkpoint(0.1, 10)
    assert "ktuberling" not in recipe.training_data_description(plain)
    plain["resumes"].append({"step": 10, "command": "train_separator.py --extra-voices runs/voices"})
    assert "ktuberling" in recipe.training_data_description(plain)


def test_debian_words_become_pseudo_utterances_with_pauses(tmp_path):
    """Isolated words (with silence around them) are trimmed, levelled and joined into ~6 s utterances."""
    import soundfile as sf

    fetch = _fetch_module()
    rng = np.random.default_rng(5)
    files = []
    for n in range(30):  # 30 words of 0.5 s at various levels, each padded with 0.3 s of silence
        word = np.concatenate([np.zeros(6615), rng.uniform(0.02, 0.5) * np.sin(np.arange(11025) * 0.07),
                               np.zeros(6615)])
        path = tmp_path / f"w{n:02d}.wav"
        sf.write(str(path), word, 22050)
        files.append(path)
    utterances = fetch.build_voice(files, np.random.default_rng(0))
    total = sum(u.size for u in utterances) / fetch.RATE
    assert len(utterances) == 3  # 12 + 12 words of 0.5 s reach 6 s; the last 6 words (3 s) stay an utterance
    assert all(u.size >= 6.0 * fetch.RATE for u in utterances[:2]) and utterances[2].size >= 2.0 * fetch.RATE
    assert 15.0 <= total <= 15.0 + 29 * 0.25 + 0.1  # the words without their silence, plus short pauses
    for u in utterances:
        frames = np.abs(u[: u.size // 320 * 320]).reshape(-1, 320).max(axis=1)
        loud = frames[frames > 0.05]
        assert np.max(loud) / np.median(loud) < 1.2  # levelled to one loudness
        assert np.any(frames < 1e-6)  # pauses between the words
    again = fetch.build_voice(files, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(utterances, again))  # a fixed seed gives the same voice


def test_polarity_flips_negate_whole_voices_and_leave_runs_without_them_unchanged():
    """``--polarity-flip P``: each voice negated with probability P (mixture = sum of the flipped targets);
    at 0 the batches are those of runs started before the option existed."""
    recipe = _recipe_module()
    voice = np.random.default_rng(2).standard_normal(800).astype(np.float32)
    flips = [recipe.flip_polarity(np.random.default_rng(seed), voice, 0.5) for seed in range(400)]
    negated = sum(np.array_equal(f, -voice) for f in flips)
    assert negated + sum(np.array_equal(f, voice) for f in flips) == 400
    assert 150 < negated < 250
    assert np.array_equal(recipe.flip_polarity(np.random.default_rng(0), voice, 1.0), -voice)
    corpus = _fake_corpus(5, 4.0)
    groups = recipe.group_by_speaker(corpus)
    before = recipe.training_batch(corpus, groups, 8000, 11, 0, 3, 4, 0.5, 0.5)
    off = recipe.training_batch(corpus, groups, 8000, 11, 0, 3, 4, 0.5, 0.5, recipe.SPEED_FACTORS, 0.0)
    assert torch.equal(before[0], off[0]) and torch.equal(before[1], off[1])
    args = argparse.Namespace(seed=11, stream=0, batch=4, speed_perturbation=0.0, channel_eq=0.0, polarity_flip=1.0)
    mix, src = recipe.StepBatches(corpus, groups, 8000, args)[3]
    assert torch.allclose(mix, src.sum(1), atol=1e-5)  # the targets are the flipped voices
    plain = recipe.training_batch(corpus, groups, 8000, 11, 0, 3, 4, 0.0, 0.0)
    assert not torch.equal(src, plain[1])


def test_a_grown_network_starts_as_the_one_it_grew_from():
    """``--grow-repeats``: the added repeats pass their input through, so nothing trained is lost."""
    recipe = _recipe_module()
    config = ConvTasNetConfig(filters=8, kernel=16, bottleneck=8, hidden=8, blocks=2, repeats=1)
    torch.manual_seed(0)
    trained = ConvTasNet(config).eval()
    grown, grown_config = recipe.grow_repeats(trained.state_dict(), config, 3)
    assert grown_config.repeats == 3 and len(grown.tcn) == 6
    mixture = torch.randn(2, 4000)
    with torch.no_grad():
        assert torch.equal(grown.eval()(mixture), trained(mixture))
    # The added blocks can learn: their projection has a gradient at the start.
    grown.train()
    grown(mixture).pow(2).mean().backward()
    assert grown.tcn[5].project.weight.grad.abs().sum() > 0
    with pytest.raises(SystemExit, match="already has|already have"):
        recipe.grow_repeats(trained.state_dict(), config, 1)
    other = ConvTasNetConfig(filters=8, kernel=16, bottleneck=12, hidden=8, blocks=2, repeats=1)
    with pytest.raises(SystemExit, match="another width"):
        recipe.grow_repeats(ConvTasNet(other).state_dict(), config, 2)


def test_the_device_script_trains_from_the_shipped_weights_and_brings_back_weights_only(tmp_path):
    """``scripts/device_train_separator.sh``, as a lent GPU machine runs it, here on the CPU: a device
    session has 15 minutes in all, so a script that breaks there wastes the machine. Tiny
    weights and packed fake corpora; the probe of 110 steps sizes a run of a few seconds."""
    packed, shipped = _packed_corpora_and_shipped_weights(_recipe_module(), tmp_path)
    run_dir = tmp_path / "gpu-run"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "DEVICE": "cpu", "WORKERS": "0", "BATCH": "1",
                   "KEEP": "2", "RUN_DIR": str(run_dir), "DATA": str(packed), "INIT_WEIGHTS": str(shipped),
                   "WHEELS": str(tmp_path / "no-wheels"), "PYTHON": sys.executable,
                   "AUGMENT": "--speed-perturbation 0.5"}
    done = subprocess.run(["bash", str(SCRIPTS / "device_train_separator.sh"), "0.05"], cwd=SCRIPTS.parent,
                          capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    out = run_dir / "out"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] > 100 + 110  # from the shipped weights' step, past the speed probe
    assert "--init-from" in state["resumes"][-1]["command"] and "sha256" in state["resumes"][-2]["init_from"]
    kept = sorted(out.glob("step-*.pt"))
    assert 1 <= len(kept) <= 2 and kept[-1].name == f"step-{state['step']:05d}.pt"
    for path in kept:  # weights only: what comes back from the machine must fit its 64 MiB
        assert "optimiser" not in torch.load(path, weights_only=True)
    assert (out / "train.log").read_text().count("val_si_sdri") >= 1
