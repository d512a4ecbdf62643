#!/usr/bin/env python
"""Choose adaptation's recipe on development voices (never on the reporting set).

Development voices: pairs of ``librispeech/train-clean-100`` speakers (one long
utterance each). The first part of each utterance is the "episode's solo
speech" given to :func:`podsep.adapt.adapt_separator`; mixtures made from the
rest (never seen by adaptation) measure the gain. The generic model was trained
on these voices, so gains here are conservative; the figures to report come
from ``scripts/score_adaptation.py`` on held-out test-other voices.

    OMP_NUM_THREADS=1 python scripts/tune_adaptation.py --weights /tmp/sep_dev.pt \
        --configs all:5e-4 late:5e-4 all:1e-3 --budgets 30 60 --json runs/tune_adaptation.json

``--speech-set unseen`` pairs voices the generic model never trained on instead
(``train_separator.unseen_corpus``: meeting-sim's dry test-clean sources and AMI
solo speech, another recording chain, neither training nor evaluation data), so
that the never-worse check can be judged where adaptation has something to learn:
each voice's pieces joined, the last 5 s its test part. There the generic and the
adapted models are also scored as podsep runs them (every pass averaged:
``generic_test_passes``, ``adapted_test_passes``).

``--holdouts end interleaved`` runs each pair once per way of holding out the validation
speech (:func:`podsep.adapt.hold_out`), on the same test mixtures; session 18 decided
podsep's default with it (``docs/training/adaptation-holdout-session18.json``).

``--voices`` instead measures the voice-matching threshold of :mod:`podsep.voices`:
cosine similarity of the embedded diarizer's GE2E embeddings between two clips
of one speaker (the two halves of a train-clean-100 utterance; the two
utterances of a VCTK speaker) and between clips of different speakers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # train_separator's corpora (--speech-set unseen)

from podsep.lab.paths import shared_root  # noqa: E402
from podsep import adapt  # noqa: E402
from podsep.audio import resample  # noqa: E402
from podsep.models.embedded.separator import EmbeddedSeparator  # noqa: E402

DEV_PAIRS = [("198", "8770"), ("7178", "8465"), ("229", "3374"), ("441", "8609")]  # F-M, F-F, M-M, F-M
TEST_SECONDS = 5.0
#: Further pairs (beyond DEV_PAIRS) come from train-clean-100 speakers whose utterance is at least
#: this long, so that each keeps 9+ s of "solo speech" after the test part is cut off.
MIN_EXTRA_SECONDS = 14.0


def development_pairs(count: int, seed: int = 5) -> list[tuple[str, str]]:
    """``DEV_PAIRS`` then, when more are asked for, seeded random pairs of other long-utterance speakers.

    Four pairs are a noisy vote (one pair can swing a mean by 0.5 dB); the extra pairs are drawn
    from the training voices too (never test-other), each speaker used once.
    """
    pairs = list(DEV_PAIRS[:count])
    if count <= len(DEV_PAIRS):
        return pairs
    used = {speaker for pair in DEV_PAIRS for speaker in pair}
    candidates = []
    for path in sorted((shared_root() / "data" / "librispeech" / "train-clean-100").glob("*.flac")):
        speaker = path.name.split("-")[0]
        if speaker not in used and sf.info(str(path)).duration >= MIN_EXTRA_SECONDS:
            candidates.append(speaker)
    order = np.random.default_rng(seed).permutation(len(candidates))
    shuffled = [candidates[i] for i in order]
    extra = list(zip(shuffled[0::2], shuffled[1::2]))
    return pairs + extra[:count - len(DEV_PAIRS)]


#: ``--speech-set unseen`` uses voices with at least this much solo speech (6 s to adapt on, the
#: shortest podsep adapts with, plus the test part).
MIN_UNSEEN_SECONDS = 11.0


def unseen_voices(rate: int) -> dict[str, np.ndarray]:
    """Each development voice never trained on (with enough speech) as one signal at ``rate``."""
    from train_separator import unseen_corpus

    joined: dict[str, list[np.ndarray]] = {}
    for voice, audio in unseen_corpus(rate):
        joined.setdefault(voice, []).append(audio)
    voices = {voice: np.concatenate(pieces) for voice, pieces in joined.items()}
    return {voice: audio for voice, audio in sorted(voices.items()) if audio.size >= MIN_UNSEEN_SECONDS * rate}


def unseen_pairs(voices: dict[str, np.ndarray], count: int, seed: int = 5) -> list[tuple[str, str]]:
    """``count`` seeded pairs of distinct unseen voices, each voice in as few pairs as the count allows."""
    rng = np.random.default_rng(seed)
    names = sorted(voices)
    if count > len(names) * (len(names) - 1) // 2:
        raise SystemExit(f"only {len(names)} unseen voices are long enough: at most "
                         f"{len(names) * (len(names) - 1) // 2} pairs")
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        order = [names[i] for i in rng.permutation(len(names))]
        for a, b in zip(order[0::2], order[1::2]):
            if (a, b) not in pairs and (b, a) not in pairs:
                pairs.append((a, b))
    return pairs[:count]


def split_voice(audio: np.ndarray, rate: int, solo_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(adaptation part, test part): the last ``TEST_SECONDS`` are the test part."""
    cut = audio.size - int(TEST_SECONDS * rate)
    adaptation = audio[:cut] if solo_seconds is None else audio[:min(cut, int(solo_seconds * rate))]
    return adaptation, audio[cut:]


def load_speaker(speaker: str, rate: int, solo_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(adaptation part, test part) of the speaker's train-clean-100 utterance at ``rate``; the
    adaptation part cut to its first ``solo_seconds`` when given (an episode with little solo speech)."""
    path = sorted((shared_root() / "data" / "librispeech" / "train-clean-100").glob(f"{speaker}-*.flac"))[0]
    audio, file_rate = sf.read(str(path), dtype="float32")
    return split_voice(resample(audio, file_rate, rate), rate, solo_seconds)


def voices() -> None:
    """Same-speaker and different-speaker cosine distributions of the diarizer's embeddings."""
    from podsep.models.embedded import EmbeddedDiarizer

    diarizer = EmbeddedDiarizer()
    base = shared_root() / "data"
    sets: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"train-clean-100 halves": [], "vctk16k utterances": []}
    for path in sorted((base / "librispeech" / "train-clean-100").glob("*.flac")):
        audio, rate = sf.read(str(path), dtype="float32")
        audio = resample(audio, rate, 16000)
        half = audio.size // 2
        sets["train-clean-100 halves"].append((audio[:half], audio[half:]))
    by_speaker: dict[str, list[Path]] = {}
    for path in sorted((base / "vctk16k").glob("*.wav")):
        by_speaker.setdefault(path.name.split("_")[0], []).append(path)
    for paths in by_speaker.values():
        if len(paths) >= 2:
            clips = []
            for path in paths[:2]:
                audio, rate = sf.read(str(path), dtype="float32")
                clips.append(resample(audio if audio.ndim == 1 else audio.mean(axis=1), rate, 16000))
            sets["vctk16k utterances"].append((clips[0], clips[1]))
    from podsep.models.embedded.clustering import population_mean

    mean = population_mean()
    embedded = {name: (diarizer.embed([a for a, _ in pairs], 16000), diarizer.embed([b for _, b in pairs], 16000))
                for name, pairs in sets.items()}
    for (name, pairs), centred in [(item, c) for c in (False, True) for item in sets.items()]:
        first, second = embedded[name]
        if centred:
            name += ", centred on the population mean"
            first, second = (x - mean for x in (first, second))
            first, second = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (first, second))
        same = np.sum(first * second, axis=1)
        cross = first @ second.T
        different = cross[~np.eye(len(pairs), dtype=bool)]
        print(f"{name}: {len(pairs)} speakers")
        print(f"  same speaker      cosine: min {same.min():.3f}, 1% {np.percentile(same, 1):.3f}, "
              f"5% {np.percentile(same, 5):.3f}, median {np.median(same):.3f}")
        print(f"  different speaker cosine: median {np.median(different):.3f}, 99% {np.percentile(different, 99):.3f}, "
              f"99.9% {np.percentile(different, 99.9):.3f}, max {different.max():.3f}")
        for threshold in (0.70, 0.75, 0.80, 0.85):
            print(f"  threshold {threshold:.2f}: same-speaker misses {np.mean(same < threshold):.1%}, "
                  f"different-speaker false matches {np.mean(different >= threshold):.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--configs", nargs="+", default=["all:5e-4"], help="trainable:learning_rate")
    parser.add_argument("--budgets", nargs="+", type=float, default=[30.0, 60.0], help="seconds")
    parser.add_argument("--pairs", type=int, default=len(DEV_PAIRS))
    parser.add_argument("--first-pair", type=int, default=0)
    parser.add_argument("--seconds-per-step", type=str, default="all:0.9,late:0.55,mask:0.25",
                        help="per-step cost per trainable choice, to compare at equal compute")
    parser.add_argument("--crop", type=float, default=adapt.CROP_SECONDS)
    parser.add_argument("--solo-seconds", type=float, nargs="+", default=[None],
                        help="cut each voice's adaptation speech to this many seconds (several: one run each)")
    parser.add_argument("--speech-set", choices=["train-clean-100", "unseen"], default="train-clean-100",
                        help="development pairs: training voices, or voices never trained on")
    parser.add_argument("--holdouts", nargs="+", choices=adapt.HOLDOUTS, default=[adapt.HOLDOUT],
                        help="which part of each voice's adaptation speech validates (several: one run each, "
                             "on the same test mixtures)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--voices", action="store_true", help="measure the voice-matching threshold instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.voices:
        voices()
        return
    cost = {k: float(v) for k, v in (item.split(":") for item in args.seconds_per_step.split(","))}
    separator = EmbeddedSeparator(args.weights).load()
    rate = separator.sample_rate
    rows = []
    unseen = args.speech_set == "unseen"
    unseen_audio = unseen_voices(rate) if unseen else {}
    pairs = unseen_pairs(unseen_audio, args.first_pair + args.pairs) if unseen else development_pairs(
        args.first_pair + args.pairs)
    for (a, b), solo_seconds in itertools.product(pairs[args.first_pair:], args.solo_seconds):
        if unseen:
            (train_a, test_a), (train_b, test_b) = (split_voice(unseen_audio[v], rate, solo_seconds) for v in (a, b))
        else:
            train_a, test_a = load_speaker(a, rate, solo_seconds)
            train_b, test_b = load_speaker(b, rate, solo_seconds)
        test_mix, test_src = adapt.validation_mixtures({a: test_a, b: test_b}, [(a, b)], rate, seed=99,
                                                       count=16, seconds=3.0)
        generic = adapt.score_network(separator.network, test_mix, test_src)
        generic_passes = adapt.score_separation(separator, test_mix, test_src) if unseen else None
        for config in args.configs:
            trainable, lr = config.split(":")
            for budget, holdout in itertools.product(args.budgets, args.holdouts):
                steps = adapt.steps_for_budget(budget, cost[trainable])
                started = time.perf_counter()
                result = adapt.adapt_separator(separator, {a: train_a, b: train_b}, [(a, b)], steps, seed=1,
                                               trainable=trainable, learning_rate=float(lr),
                                               crop_seconds=args.crop, min_gain_db=-99.0, holdout=holdout)
                seconds = time.perf_counter() - started
                network = result.separator.network
                test = adapt.score_network(network, test_mix, test_src)
                kept = adapt.keeps_adapted(result.validation_before_db, result.validation_after_db)
                row = {"pair": f"{a}-{b}", "solo_s": solo_seconds, "trainable": trainable, "lr": float(lr),
                       "budget_s": budget, "holdout": holdout,
                       "steps": steps, "seconds": round(seconds, 1), "s_per_step": round(seconds / max(1, steps), 3),
                       "generic_test": round(generic, 2), "adapted_test": round(test, 2),
                       "gain_test": round(test - generic, 2),
                       "valid_before": round(result.validation_before_db, 2),
                       "valid_after": round(result.validation_after_db, 2),
                       "kept_by_check": bool(kept), "gain_if_checked": round(test - generic, 2) if kept else 0.0}
                if unseen:  # as podsep separates: every pass, the adapted model with the pass kind it chose
                    adapted_passes = adapt.score_separation(result.separator, test_mix, test_src)
                    row.update({"generic_test_passes": round(generic_passes, 2),
                                "adapted_test_passes": round(adapted_passes, 2),
                                "gain_test_passes": round(adapted_passes - generic_passes, 2)})
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\nmean gain on test mixtures (dB), by solo speech, config and budget:")
    for solo_seconds, config, budget, holdout in itertools.product(args.solo_seconds, args.configs, args.budgets,
                                                                   args.holdouts):
        trainable, lr = config.split(":")
        chosen = [r for r in rows if r["trainable"] == trainable and r["lr"] == float(lr) and r["budget_s"] == budget
                  and r["solo_s"] == solo_seconds and r["holdout"] == holdout]
        solo = "all" if solo_seconds is None else f"{solo_seconds:g} s"
        gains = "gain_test_passes" if unseen else "gain_test"
        checked = [r[gains] if r["kept_by_check"] else 0.0 for r in chosen]
        print(f"  solo {solo:<6} {trainable:<5} lr {lr:<6} budget {budget:>5.0f} s, validation {holdout:<11}: "
              f"{'as podsep separates' if unseen else 'one pass'}, with the check {np.mean(checked):+.2f} dB, "
              f"worst pair {min(checked):+.2f}; gain "
              f"{np.mean([r['gain_test'] for r in chosen]):+.2f} dB (validation "
              f"{np.mean([r['valid_after'] - r['valid_before'] for r in chosen]):+.2f}; with the never-worse check "
              f"{np.mean([r['gain_if_checked'] for r in chosen]):+.2f}, worst pair "
              f"{min(r['gain_if_checked'] for r in chosen):+.2f}), {np.mean([r['s_per_step'] for r in chosen]):.3f} s/step")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
