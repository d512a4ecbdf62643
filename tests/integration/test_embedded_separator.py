"""podsep's own separator: chosen by the factory, recorded in the manifest, run on every overlap."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import podsep
from podsep.lab.fixture_models import build_embedded_separator
from podsep.models.embedded.separator import EmbeddedSeparator, shipped_weights_path


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    return build_embedded_separator(tmp_path_factory.mktemp("embedded") / "separator.pt")


def _warnings_hook(collected: list[str]):
    class Hook:
        def __call__(self, *args, **kwargs):
            pass

        def warning(self, message):
            collected.append(message)

    return Hook()


def test_auto_falls_back_to_the_embedded_separator_and_says_so(shared_dir, random_weights, tmp_path):
    warnings: list[str] = []
    rttm = shared_dir / "data" / "pyannote-sample" / "sample.rttm"
    result = podsep.split(shared_dir / "data" / "pyannote-sample" / "sample.wav", diarization=rttm,
                          hook=_warnings_hook(warnings),
                          overrides={"separation.model": str(tmp_path / "no-sepformer-here"),
                                     "separation.embedded_model": str(random_weights),
                                     # these weights as they are (learning the voices would describe its own copy)
                                     "separation.adapt": "off",
                                     # the plain model's 4 kHz band (the top-octave network: test_high_band)
                                     "separation.high_band": "off"})
    manifest = result.manifest
    separation = manifest["models"]["separation"]
    assert separation["kind"] == "podsep.embedded-convtasnet"
    assert separation["sha256"] == hashlib.sha256(random_weights.read_bytes()).hexdigest()
    assert separation["sample_rate"] == 8000 and "recipe" in separation
    assert manifest["fallbacks"]["separation_fallback"]["separator"] == "embedded"
    assert sum("embedded separator" in w for w in warnings) == 1
    assert manifest["overlaps"] and all(o["handling"] == "separated" for o in manifest["overlaps"])
    for region in manifest["overlaps"]:
        for window in region["windows"]:
            assert window["rendering"]["method"] == "rebuild"
            assert window["rendering"]["model_band_hz"] == 4000.0
    # the embedded model's estimates leak between voices: above its band the mixture weighs more
    assert manifest["overlap_rendering"]["above_band_fit_prior"] == 0.1
    assert manifest["overlap_rendering"]["above_band_tilt_fit_prior"] == 0.1  # its leaky shares: no looser there
    assert manifest["overlap_rendering"]["above_band_tilt_shrink"] == 2.0  # ... and softened more


def test_backend_choice_and_fallback_policy(shared_dir, random_weights, tmp_path):
    audio, rate = soundfile.read(str(shared_dir / "data" / "pyannote-sample" / "sample.wav"), dtype="float32")
    rttm = shared_dir / "data" / "pyannote-sample" / "sample.rttm"
    embedded = podsep.Splitter(separation__backend="embedded", separation__embedded_model=str(random_weights))
    result = embedded.split(audio, sample_rate=rate, diarization=rttm)
    assert result.manifest["models"]["separation"]["kind"] == "podsep.embedded-convtasnet"
    assert "separation_fallback" not in result.manifest["fallbacks"]
    assert embedded.models()["separation"] == {"requested": "embedded", "loaded": "embedded",
                                               "overlap_policy": "separate"}
    missing = podsep.Splitter(separation__backend="embedded", overlaps__fallback="mute",
                              separation__embedded_model=str(tmp_path / "absent.pt"))
    result = missing.split(audio, sample_rate=rate, diarization=rttm)
    assert all(o["handling"] == "muted" for o in result.manifest["overlaps"])
    with pytest.raises(podsep.PodsepError, match="embedded separator weights not found"):
        podsep.Splitter(separation__backend="embedded", overlaps__fallback="error",
                        separation__embedded_model=str(tmp_path / "absent.pt")).split(audio, sample_rate=rate,
                                                                                      diarization=rttm)


def test_damaged_weights_are_a_one_line_error(tmp_path):
    broken = tmp_path / "separator.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(podsep.PodsepError, match="cannot read embedded separator weights"):
        EmbeddedSeparator(broken).load()


def test_every_source_comes_out_the_recordings_way_up(random_weights):
    """A scale-invariant loss leaves a source's sign free, and the shipped network outputs its voices
    inverted; podsep turns each one so that it points along the mixture (its inner product with the
    window is positive) in every pass and chunk, so the top octave added at 16 kHz (upright shares of
    the mixture) joins it the same way up."""
    from podsep.models.embedded.separator import _upright

    estimate = np.array([[1.0, -2.0, 0.5], [-1.0, 0.0, 1.0]], np.float32)
    mixture = np.array([-1.0, 2.0, 0.0], np.float32)
    assert np.array_equal(_upright(estimate, mixture), [[-1.0, 2.0, -0.5], [-1.0, 0.0, 1.0]])
    rng = np.random.default_rng(5)
    for passes in (1, 2):
        separator = EmbeddedSeparator(random_weights, passes=passes).load()
        window = rng.standard_normal(8000 * 3).astype(np.float32)
        assert np.all(separator(window, 8000) @ window > 0)
        wide = rng.standard_normal(16000 * 3).astype(np.float32)
        assert separator.band_rate == 16000  # the top octave is added from the mixture's own shares
        assert np.all(separator(wide, 16000) @ wide > 0)


def test_long_windows_are_separated_in_consistent_chunks(random_weights):
    separator = EmbeddedSeparator(random_weights).load()
    rng = np.random.default_rng(0)
    window = rng.standard_normal(16000 * 20).astype(np.float32)
    sources = separator(window, 16000)
    assert sources.shape == (2, window.size) and np.all(np.isfinite(sources))


def test_two_passes_average_the_plain_and_the_negated_input(random_weights):
    """passes=2 averages the separation of the window and, negated back, that of the negated window,
    each turned the mixture's way up and put in the first's order; the delay kind (sessions 1-13)
    shifts by half a hop instead."""
    import torch

    from podsep.models.embedded.separator import _stitch_order, _upright, pass_plan

    rng = np.random.default_rng(3)
    window = rng.standard_normal(8000 * 3).astype(np.float32)
    single = EmbeddedSeparator(random_weights, passes=1).load()
    double = EmbeddedSeparator(random_weights, passes=2).load()
    delayed_kind = EmbeddedSeparator(random_weights, passes=2, pass_kind="delay").load()
    network = single.network
    with torch.inference_mode():
        plain = network(torch.from_numpy(window)[None])[0].numpy()
        negated = -network(torch.from_numpy(-window)[None])[0].numpy()
        delayed = network(torch.from_numpy(np.concatenate([np.zeros(network.hop // 2, np.float32), window]))[None])
    plain, negated = _upright(plain, window), _upright(negated, window)
    negated = negated[_stitch_order(plain, negated)]
    delayed = _upright(delayed[0].numpy()[:, network.hop // 2:network.hop // 2 + window.size], window)
    delayed = delayed[_stitch_order(plain, delayed)]
    assert np.allclose(single(window, 8000), plain, atol=1e-5)
    averaged = double(window, 8000)
    assert np.allclose(averaged, (plain + negated) / 2, atol=1e-4)
    assert not np.allclose(averaged, plain, atol=1e-3)  # the negated pass really changed something
    assert np.allclose(delayed_kind(window, 8000), (plain + delayed) / 2, atol=1e-4)
    assert double.describe()["passes"] == 2 and double.describe()["pass_kind"] == "polarity"
    assert pass_plan(4, "polarity", 16) == [(0, 1), (0, -1), (8, 1), (8, -1)]
    assert pass_plan(3, "delay", 16) == [(0, 1), (5, 1), (10, 1)]
    with pytest.raises(ValueError, match="passes"):
        EmbeddedSeparator(random_weights, passes=0)
    with pytest.raises(ValueError, match="pass kind"):
        EmbeddedSeparator(random_weights, pass_kind="sideways")
    with pytest.raises(podsep.PodsepError, match="separation.passes"):
        podsep.Splitter(separation__passes=0)
    with pytest.raises(podsep.PodsepError, match="'separation.shifts' is now separation.passes"):
        podsep.Splitter(separation__shifts=2)  # an old config gets a pointer, not a list of names


def test_an_adapted_model_chooses_its_passes_on_the_episode_speech(random_weights):
    """choose_pass_kind scores both kinds on the validation mixtures and keeps the higher; the adapted
    separator's recipe records the choice, and weights saved with it load with that kind."""
    import torch

    from podsep.adapt import choose_pass_kind, pit_si_sdr

    rng = np.random.default_rng(5)
    sources = torch.from_numpy(rng.standard_normal((4, 2, 8000 * 2)).astype(np.float32))
    mixtures = sources.sum(1)

    separator = EmbeddedSeparator(random_weights, passes=2, pass_kind="delay").load()
    kind, scores = choose_pass_kind(separator, mixtures, sources)
    assert set(scores) == {"polarity", "delay"} and scores["polarity"] != scores["delay"]
    assert kind == max(scores, key=scores.get) and separator.pass_kind == kind  # the separator keeps the choice
    again = EmbeddedSeparator(random_weights, passes=2, pass_kind="delay").load()
    estimates = torch.from_numpy(np.stack(again.separate_batch(list(mixtures.numpy()), 8000)))
    expected = pit_si_sdr(estimates, sources) - pit_si_sdr(torch.stack([mixtures, mixtures], 1), sources)
    assert abs(float(expected.mean()) - scores["delay"]) < 1e-3
    single = choose_pass_kind(EmbeddedSeparator(random_weights, passes=1, pass_kind="delay").load(),
                              mixtures, sources)
    assert single == ("polarity", {})  # one pass: nothing to choose


def test_the_never_worse_check_separates_on_two_workers_with_the_same_numbers(random_weights):
    """The check's separations are shared between the adaptation's two workers to save wall time
    (podsep.adapt.separate_side_by_side); every estimate, and so every score, is bit-identical."""
    import torch

    from podsep.adapt import score_separation, separate_side_by_side

    rng = np.random.default_rng(11)
    sources = torch.from_numpy(rng.standard_normal((5, 2, 8000 * 2)).astype(np.float32))  # odd: unequal parts
    mixtures = sources.sum(1)
    separator = EmbeddedSeparator(random_weights, passes=2).load()
    alone = separator.separate_batch(list(mixtures.numpy()), 8000)
    shared = separate_side_by_side(separator, list(mixtures.numpy()), workers=2)
    assert len(shared) == len(alone) == 5
    assert all(np.array_equal(a, b) for a, b in zip(alone, shared))  # same order, same bits
    assert score_separation(separator, mixtures, sources, workers=2) == score_separation(separator, mixtures, sources)
    threads = torch.get_num_threads()
    separate_side_by_side(separator, list(mixtures.numpy()), workers=2)
    assert torch.get_num_threads() == threads  # the caller's thread setting is left as it was


def test_weights_that_name_their_pass_kind_load_with_it(random_weights, tmp_path):
    import torch

    payload = torch.load(random_weights, weights_only=True)
    payload["recipe"] = {**dict(payload.get("recipe") or {}), "pass_kind": "delay"}
    named = tmp_path / "adapted.pt"
    torch.save(payload, named)
    assert EmbeddedSeparator(named, pass_kind=None).load().pass_kind == "delay"
    assert EmbeddedSeparator(random_weights, pass_kind=None).load().pass_kind == "polarity"
    assert EmbeddedSeparator(named).load().pass_kind == "polarity"  # an explicit kind wins
    payload["recipe"] = {"adapted_from": {"sha256": "0" * 64}, "steps": 3}  # a profile saved before session 14
    older = tmp_path / "older.pt"
    torch.save(payload, older)
    assert EmbeddedSeparator(older, pass_kind=None).load().pass_kind == "delay"  # the kind it was checked with


def test_the_cli_separator_flag(shared_dir, random_weights, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"separation:\n  embedded_model: {random_weights}\n")
    out = subprocess.run([sys.executable, "-m", "podsep", "split", str(shared_dir / "data" / "pyannote-sample" / "sample.wav"),
                          "-o", str(tmp_path / "out"), "--separator", "embedded", "--config", str(config),
                          "--diarization", str(shared_dir / "data" / "pyannote-sample" / "sample.rttm"), "-q",
                          "--no-extras"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "out" / "sample" / "sample.json").read_text())
    assert manifest["models"]["separation"]["kind"] == "podsep.embedded-convtasnet"
    assert manifest["parameters"]["separation"]["backend"] == "embedded"


def test_speechbrain_format_runs_through_the_sepformer_path(shared_dir, random_weights, tmp_path):
    """The same weights saved as a speechbrain folder load with SepformerSeparation.from_hparams
    (the --separation-model FOLDER path) and separate exactly like the embedded runner's single pass."""
    import torch

    from podsep.models.embedded.convtasnet import ConvTasNetConfig, export_speechbrain_folder

    payload = torch.load(random_weights, weights_only=True)
    folder = export_speechbrain_folder(ConvTasNetConfig.from_dict(payload["config"]), payload["state_dict"],
                                       tmp_path / "speechbrain-format")
    audio, rate = soundfile.read(str(shared_dir / "data" / "pyannote-sample" / "sample.wav"), dtype="float32")
    rttm = shared_dir / "data" / "pyannote-sample" / "sample.rttm"
    through_speechbrain = podsep.split(audio, sample_rate=rate, diarization=rttm, overrides={
        "separation.backend": "sepformer", "separation.model": str(folder)})
    direct = podsep.split(audio, sample_rate=rate, diarization=rttm, overrides={  # one pass, like speechbrain's
        "separation.backend": "embedded", "separation.embedded_model": str(random_weights), "separation.passes": 1,
        "separation.adapt": "off",  # SepFormer is never adapted; the embedded path would learn the voices first
        "separation.high_band": "off"})  # the speechbrain folder holds the separator, not the top-octave network
    assert through_speechbrain.manifest["models"]["separation"]["kind"] == "speechbrain.SepformerSeparation"
    assert through_speechbrain.manifest["models"]["separation"]["sample_rate"] == 8000
    for speaker in direct.tracks:
        assert np.allclose(through_speechbrain.tracks[speaker], direct.tracks[speaker], atol=2e-4)


#: Mean SI-SDR improvement the shipped model must keep on the mixtures below (a regression
#: guard a few dB under the measured figure, see README "Separating offline").
SHIPPED_SI_SDRI_FLOOR_DB = 6.0  # measured 8.76 dB with two passes (plain + negated) and the top octave at
# 16 kHz (sha256 e92ac640..., session 32's GPU continuation; 6.65 with the 8 kHz voices alone). Until session 32
# the network's voices came out inverted under the top octave's upright shares, which cut the figure to
# 3.57 (session-26 weights; 3.78 with session 32's) unnoticed under the old 3.5 floor: this floor catches that.
# Before the top-octave network (session 30), at 8 kHz band: 6.28 with two passes, 5.42 with one (24 mixtures;
# sha256 8a35fcd5..., session 26's flat-rate continuation of the session-23 weights; those: 6.22 and 5.35;
# the session-21 weights: 6.02 and 5.22,
# the session-20 weights: 6.00 and 5.17,
# the session-19 weights: 6.05 and 5.12;
# the session-17 weights 5.96 and 5.23; 24 mixtures swing, the 200 of scripts/score_separator.py decide)


def _heldout_mixtures(shared_dir: Path, count: int = 24, seconds: float = 4.0, rate: int = 16000):
    """Two test-other speakers at once (never used in training), +-5 dB, fully or partly overlapped."""
    from podsep.audio import resample

    root = shared_dir / "data" / "librispeech" / "test-other"
    speakers = sorted(p for p in root.iterdir() if p.is_dir())
    rng = np.random.default_rng(2026)
    n = int(seconds * rate)
    for k in range(count):
        first, second = rng.choice(len(speakers), 2, replace=False)
        voices = []
        for index in (first, second):
            files = sorted(speakers[index].glob("*.flac"))
            audio, file_rate = soundfile.read(str(files[rng.integers(len(files))]), dtype="float32")
            audio = resample(audio, file_rate, rate)
            start = rng.integers(0, max(1, audio.size - n))
            voice = np.zeros(n, np.float32)
            piece = audio[start:start + n]
            voice[:piece.size] = piece / (np.std(piece) + 1e-8)
            voices.append(voice)
        if k % 2:  # a hand-over: the second voice starts half-way through the first
            voices[0][n // 2 + n // 4:] = 0
            voices[1][: n // 4] = 0
        voices[1] *= 10 ** (rng.uniform(-5, 5) / 20)
        yield np.stack(voices)


def test_the_shipped_model_separates_held_out_speech(shared_dir):
    from podsep.lab.metrics import si_sdr

    assert shipped_weights_path().is_file(), "podsep/data/separator.pt is missing"
    separator = EmbeddedSeparator().load()
    assert separator.recipe["script"] == "scripts/train_separator.py"
    improvements = []
    for references in _heldout_mixtures(shared_dir):
        mixture = references.sum(axis=0)
        estimate = separator(mixture, 16000)
        best = max(np.mean([si_sdr(references[0], estimate[a]), si_sdr(references[1], estimate[1 - a])]) for a in (0, 1))
        base = np.mean([si_sdr(references[0], mixture), si_sdr(references[1], mixture)])
        improvements.append(best - base)
    assert float(np.mean(improvements)) >= SHIPPED_SI_SDRI_FLOOR_DB


def test_auto_does_not_spend_minutes_learning_the_voices_for_a_fraction_of_a_second(random_weights):
    """The bundled sample overlaps for well under two seconds: ``auto`` separates it with the
    generic model and says why (``--adapt`` would still learn the voices)."""
    sample = Path(__file__).resolve().parents[2] / "samples"
    result = podsep.split(str(sample / "interview.wav"), diarization=str(sample / "interview.rttm"),
                          overrides={"separation.backend": "embedded",
                                     "separation.embedded_model": str(random_weights),
                                     "diarization.cache": False})
    overlapped = sum(region["end"] - region["start"] for region in result.manifest["overlaps"])
    assert 0 < overlapped < 2.0
    entry = result.manifest["adaptation"]
    assert entry["mode"] == "auto" and entry["used"] is False and entry["steps"] == 0
    assert "of overlapped speech" in entry["reason"]
    assert not any(w.startswith("--adapt") for w in result.manifest["warnings"])
