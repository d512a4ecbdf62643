"""Adaptation end to end on a small random Conv-TasNet in the shipped export format, and real speech.

The shipped weights need not exist: every test builds its own network, saves it
like ``scripts/train_separator.py --export`` does and loads it through
:class:`EmbeddedSeparator`. Step counts and audio are tiny (a few seconds a test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import podsep
from podsep import adapt
from podsep.diarization import Diarization
from podsep.intervals import SpeakerActivity
from podsep.lab.synth import ConversationSpec, generate_conversation
from podsep.models.embedded.convtasnet import ConvTasNet, ConvTasNetConfig
from podsep.models.embedded.separator import EmbeddedSeparator
from podsep.overlaps import find_overlap_regions
from podsep.voices import load_profile, save_profile

TINY = ConvTasNetConfig(filters=16, kernel=16, bottleneck=16, hidden=32, blocks=2, repeats=2)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A random tiny separator in the export format ({"config", "state_dict", "recipe"})."""
    torch.manual_seed(0)
    model = ConvTasNet(TINY)
    path = tmp_path_factory.mktemp("separator") / "tiny.pt"
    torch.save({"config": TINY.to_dict(), "state_dict": model.state_dict(),
                "recipe": {"script": "tests", "seed": 0}}, path)
    return path


@pytest.fixture(scope="module")
def solo(training_voices) -> dict[str, np.ndarray]:
    """About 12 s of each of two training-set voices at 8 kHz (adaptation's solo speech)."""
    return training_voices(8000, 12)


def _adapt(weights: Path, solo: dict[str, np.ndarray], steps: int = 3, **options) -> adapt.AdaptationResult:
    separator = EmbeddedSeparator(weights).load()
    return adapt.adapt_separator(separator, solo, [("A", "B")], steps, seed=5, crop_seconds=1.0, batch=2,
                                 min_gain_db=-1e9, **options)


def _state_bytes(separator: EmbeddedSeparator) -> bytes:
    return b"".join(v.numpy().tobytes() for _, v in sorted(separator.network.state_dict().items()))


def test_same_input_gives_byte_identical_weights(weights: Path, solo: dict) -> None:
    threads = torch.get_num_threads()
    first = _adapt(weights, solo)
    second = _adapt(weights, solo)
    assert torch.get_num_threads() == threads  # restored
    assert first.used and second.used
    assert first.sha256 == second.sha256
    assert _state_bytes(first.separator) == _state_bytes(second.separator)
    assert _state_bytes(first.separator) != _state_bytes(EmbeddedSeparator(weights).load())
    other_seed = adapt.adapt_separator(EmbeddedSeparator(weights).load(), solo, [("A", "B")], 3, seed=6,
                                       crop_seconds=1.0, batch=2, min_gain_db=-1e9)
    assert other_seed.sha256 != first.sha256


def test_the_worker_and_thread_counts_do_not_change_the_weights(weights: Path, solo: dict) -> None:
    one = _adapt(weights, solo, workers=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's setting must not matter either (training sets its own)
    try:
        two = _adapt(weights, solo, workers=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert one.sha256 == two.sha256


def test_the_adapted_separator_is_a_labelled_embedded_separator(weights: Path, solo: dict) -> None:
    calls = []
    result = _adapt(weights, solo, hook=lambda step, artifact=None, **counts: calls.append((step, counts)))
    assert calls == [("adaptation", {"completed": k, "total": 3}) for k in (1, 2, 3)]
    adapted = result.separator
    assert isinstance(adapted, EmbeddedSeparator) and adapted is not result.details
    description = adapted.describe()
    assert description["source"] == f"adapted:{result.sha256[:16]}" and description["sha256"] == result.sha256
    assert description["recipe"]["steps"] == 3
    scores = description["recipe"]["pass_kind_scores_db"]  # both kinds of passes scored on held-out speech
    assert set(scores) == {"polarity", "delay"} and description["pass_kind"] == max(scores, key=scores.get)
    assert result.validation_after_db == pytest.approx(max(scores.values()), abs=1e-3)
    window = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert adapted(window, 16000).shape == (2, 16000)
    manifest = result.to_manifest()
    assert manifest["used"] and manifest["steps"] == 3 and manifest["weights_sha256"] == result.sha256
    assert set(manifest["validation_si_sdri_db"]) == {"generic", "adapted"}
    assert result.covers(["A", "B"]) and not result.covers(["A", "C"])


def test_never_worse_keeps_the_incoming_model(weights: Path, solo: dict) -> None:
    generic = EmbeddedSeparator(weights).load()
    zero = adapt.adapt_separator(generic, solo, [("A", "B")], 0, seed=5, crop_seconds=1.0, batch=2)
    assert not zero.used and zero.separator is generic and "no training step" in zero.reason
    one_pass = EmbeddedSeparator(weights, passes=1).load()  # unchanged weights, no kind of passes to choose
    frozen = adapt.adapt_separator(one_pass, solo, [("A", "B")], 2, seed=5, crop_seconds=1.0, batch=2,
                                   learning_rate=0.0)
    assert not frozen.used and frozen.separator is one_pass
    assert frozen.validation_after_db == pytest.approx(frozen.validation_before_db, abs=1e-5)
    assert "did not beat" in frozen.reason
    demanding = adapt.adapt_separator(generic, solo, [("A", "B")], 2, seed=5, crop_seconds=1.0, batch=2,
                                      min_gain_db=1000.0)
    assert not demanding.used and demanding.separator is generic and demanding.sha256 is not None


def test_too_little_solo_speech_is_not_used(weights: Path, solo: dict) -> None:
    generic = EmbeddedSeparator(weights).load()
    short = {"A": solo["A"], "B": solo["B"][:2000]}
    result = adapt.adapt_separator(generic, short, [("A", "B")], 2, seed=5, crop_seconds=1.0, batch=2)
    assert not result.used and "too little solo speech for B" in result.reason and result.separator is generic


def test_only_the_chosen_parameters_learn(weights: Path, solo: dict) -> None:
    generic = EmbeddedSeparator(weights).load()
    before = {k: v.clone() for k, v in generic.network.state_dict().items()}
    result = _adapt(weights, solo, trainable="mask")
    after = result.separator.network.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("mask.", "mask_act.")) for k in changed)
    assert torch.equal(generic.network.encoder.weight, before["encoder.weight"])  # the generic copy is untouched


def test_a_profile_keeps_the_adapted_weights_and_voices(weights: Path, solo: dict, tmp_path: Path) -> None:
    result = _adapt(weights, solo)
    rng = np.random.default_rng(0)
    voices = {"Alice": rng.standard_normal(256).astype(np.float32), "Bob": rng.standard_normal(256)}
    save_profile(tmp_path / "show", voices, separator=result.separator, embedder="ge2e",
                 notes={"episode": "ep1"})
    payload = torch.load(tmp_path / "show" / "separator.pt", weights_only=True)
    assert set(payload) == {"config", "state_dict", "recipe"}
    profile = load_profile(tmp_path / "show")
    assert profile is not None and profile.notes == {"episode": "ep1"}
    again = profile.separator()
    assert _state_bytes(again) == _state_bytes(result.separator)
    assert again.recipe["adapted_from"]["sha256"] == EmbeddedSeparator(weights).load().sha256
    assert profile.weights_sha256 == again.sha256
    assert profile.match({"SPEAKER_00": voices["Bob"], "SPEAKER_01": voices["Alice"]}).names == \
        {"SPEAKER_00": "Bob", "SPEAKER_01": "Alice"}
    size = sum(p.stat().st_size for p in (tmp_path / "show").rglob("*") if p.is_file())
    assert size < 200_000  # tiny model here; about 2.4 MB at the shipped size
    # the next episode starts from the profile's weights
    follow = adapt.adapt_separator(again, solo, [("A", "B")], 1, seed=5, crop_seconds=1.0, batch=2,
                                   min_gain_db=-1e9)
    assert follow.used and follow.separator.recipe["adapted_from"]["sha256"] == again.sha256


def test_adaptation_through_a_split_with_reference_turns(weights: Path, shared_dir: Path) -> None:
    """collect -> plan -> adapt -> podsep.split with the adapted separator, as the pipeline will run it."""
    speech = shared_dir / "data" / "librispeech" / "train-clean-100"
    conversation = generate_conversation(speech, ConversationSpec(duration=40.0, overlap_ratio=0.2), 3)
    rate, n = conversation.sample_rate, conversation.num_samples
    turns = conversation.diarization
    activity = SpeakerActivity([(t.start, t.end, t.speaker) for t in turns.turns], turns.speakers, rate, n)
    solo = adapt.collect_solo_speech(lambda a, b: conversation.mixture[a:b], activity)
    regions = find_overlap_regions(turns)
    plan = adapt.plan_adaptation(n / rate, solo, [r.speakers for r in regions], mode="on", min_solo_s=5.0,
                                 budget_s=adapt.FIXED_COST_S + 1.0, seconds_per_step=0.5)
    assert plan.enabled and plan.steps == 2, plan.reason
    generic = EmbeddedSeparator(weights).load()
    result = adapt.adapt_separator(generic, solo, plan.pairs, plan.steps, seed=1, crop_seconds=1.0, batch=2,
                                   min_gain_db=-1e9)
    split = podsep.split(conversation.mixture, sample_rate=rate, diarization=Diarization.from_turns(
        [(t.start, t.end, t.speaker) for t in turns.turns]), separator=result.separator,
        overrides={"diarization.cache": False, "separation.adapt": "off"})
    assert set(split.tracks) == set(turns.speakers)
    assert split.manifest["models"]["separation"]["source"].startswith("adapted:")


def test_generated_overlaps_are_never_heard_alone(shared_dir: Path) -> None:
    """The scoring conversations' guarantee (podsep.lab.synth ``unique_overlaps``)."""
    speech = shared_dir / "data" / "librispeech" / "test-other"
    conversation = generate_conversation(speech, ConversationSpec(duration=90.0, unique_overlaps=True), 11)
    placements = conversation.metadata["placements"]
    solo_files = {p["source"] for p in placements}
    overlap_files = {o["source"] for p in placements for o in p["overlap_sources"]}
    assert overlap_files and not solo_files & overlap_files
    frames = conversation.num_samples // (conversation.sample_rate // 100)
    overlapped = conversation.diarization.activity(100, frames).sum(axis=0) >= 2
    for p in placements:
        a, b = round(p["start"] * 100), round(p["end"] * 100)
        covered = np.zeros(b - a, bool)
        for o in p["overlap_sources"]:
            covered[round(o["start"] * 100) - a: round(o["end"] * 100) - a] = True
        assert np.array_equal(covered, overlapped[a:b])
    total = np.zeros_like(conversation.mixture)
    for speaker in conversation.diarization.speakers:
        total += conversation.references[speaker]
    assert np.array_equal(total, conversation.mixture)
    with pytest.raises(podsep.PodsepError):  # one utterance per speaker cannot hold a reserve
        generate_conversation(shared_dir / "data" / "librispeech" / "train-clean-100",
                              ConversationSpec(duration=20.0, unique_overlaps=True), 0)


@pytest.fixture(scope="module")
def episode(shared_dir: Path):
    """90 s of two held-out voices with reference turns: enough solo speech to adapt."""
    spec = ConversationSpec(num_speakers=2, duration=90.0, overlap_ratio=0.15)
    return generate_conversation(shared_dir / "data" / "librispeech" / "test-other", spec, 21)


def _split_adapting(episode, weights: Path, workers: int, monkeypatch, **overrides):
    # The worker count follows torch's thread count (see adaptation_workers); set it directly here,
    # since two torch threads on a machine another job keeps busy make everything else crawl.
    monkeypatch.setattr("podsep.learn_voices.adaptation_workers", lambda: workers)
    # A library call takes torch's thread count from the cores it finds free (podsep.threads), and the
    # stages other than training are only bit-identical at one thread count: fix it, so that a core
    # still busy with the previous split's threads cannot change the next split's last bits.
    monkeypatch.setattr("podsep.threads.free_cores", lambda *args, **kwargs: 1)
    return podsep.split(episode.mixture, sample_rate=episode.sample_rate, diarization=episode.diarization,
                        separator=EmbeddedSeparator(weights), overrides={
                            "diarization.cache": False, "separation.adapt": "on",
                            "separation.adapt_budget": adapt.FIXED_COST_S + 4 * adapt.SECONDS_PER_STEP,
                            # the shipped top-octave network's own adaptation is
                            # tests/integration/test_top_octave_adaptation.py's subject
                            "separation.adapt_top_octave": False, **overrides})


def test_adaptation_workers_follow_the_threads_podsep_may_use():
    from podsep.learn_voices import adaptation_workers

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert adaptation_workers() == 1
        torch.set_num_threads(4)
        assert adaptation_workers() == adapt.MICRO_BATCHES == 2
    finally:
        torch.set_num_threads(previous)


def test_the_pipeline_adapts_with_two_workers_and_the_tracks_do_not_depend_on_it(episode, weights, monkeypatch):
    """The pipeline's adaptation stage: the budget buys a fixed number of steps, shared by the
    workers (two on two free cores: half the wall time), with byte-identical tracks."""
    two = _split_adapting(episode, weights, 2, monkeypatch)
    one = _split_adapting(episode, weights, 1, monkeypatch)
    for result, workers in ((two, 2), (one, 1)):
        entry = result.manifest["adaptation"]
        assert entry["mode"] == "on" and entry["steps"] == 4 and entry["workers"] == workers
        assert entry["validation_si_sdri_db"]["generic"] is not None
    for speaker in two.tracks:
        assert np.array_equal(two.tracks[speaker], one.tracks[speaker]), speaker
    assert "adaptation" in two.manifest["timings"]


def test_a_split_gives_the_same_bits_whatever_threads_the_free_cores_allow(episode, weights, monkeypatch):
    """A library call takes torch's thread count from the cores it finds free, so a busy machine
    gives it one thread where an idle one gives two; the small CPU models (the separator, the
    speaker encoder) run on one thread either way (podsep.threads.one_torch_thread), so the tracks
    are the same bits (before session 28 the speaker encoder moved them by up to 7e-8)."""
    import podsep.threads

    results = []
    for cores in (2, 1):
        monkeypatch.setattr(podsep.threads, "free_cores", lambda *args, _cores=cores, **kwargs: _cores)
        monkeypatch.setattr(podsep.threads, "_configured", False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        previous = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            results.append(podsep.split(episode.mixture, sample_rate=episode.sample_rate,
                                        diarization=episode.diarization, separator=EmbeddedSeparator(weights),
                                        overrides={"diarization.cache": False, "separation.adapt": "off"}))
        finally:
            torch.set_num_threads(previous)
    assert set(results[0].tracks) == set(results[1].tracks)
    for speaker in results[0].tracks:
        assert np.array_equal(results[0].tracks[speaker], results[1].tracks[speaker]), speaker


def test_adapt_on_without_enough_solo_speech_warns_and_separates_with_the_generic_model(shared_dir, weights,
                                                                                       monkeypatch):
    spec = ConversationSpec(num_speakers=2, duration=20.0, overlap_ratio=0.3)
    short = generate_conversation(shared_dir / "data" / "librispeech" / "test-other", spec, 3)
    result = _split_adapting(short, weights, 1, monkeypatch)
    entry = result.manifest["adaptation"]
    assert entry["used"] is False and "solo speech" in entry["reason"]
    assert any(w.startswith("--adapt:") and "generic model" in w for w in result.manifest["warnings"])
    assert set(result.tracks) == set(short.diarization.speakers)
    assert any(r["windows"] for r in result.manifest["overlaps"])  # still separated
