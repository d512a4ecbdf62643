#!/usr/bin/env python
"""Score podsep's embedded separator on held-out speech (never used for training).

Three measurements, each a table:

* ``--heldout N``: SI-SDR improvement on N two-speaker mixtures of LibriSpeech
  test-other speakers (4 s, +-5 dB, half fully overlapped, the rest hand-overs and
  interjections as in training, dry), mixed by the training script's own
  generator with a seed the training never uses;
* ``--librimix``: the ten Libri2Mix test mixtures of ``librimix/``, side by side
  with the peer Conv-TasNet's stored estimates;
* ``--assignment N``: N generated conversations (test-other voices, reference
  turns) split by podsep with the separator: for every window, whether podsep's
  assignment agrees with the permutation that best matches the references
  (weighted by overlapped time), how often a wrong window had high confidence,
  and the overlap SI-SDR of the tracks against duplicate.

    python scripts/score_separator.py --weights podsep/data/separator.pt --heldout 200 --librimix --assignment 6
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from podsep.lab.paths import shared_root  # noqa: E402
from podsep.lab.oracle import locate_window  # noqa: E402
from podsep.models.embedded.separator import DEFAULT_PASSES, PASS_KINDS, EmbeddedSeparator  # noqa: E402

HELDOUT_SEED = 777  # the training script validates with its own seed; this set is separate


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference = reference - reference.mean()
    estimate = estimate - estimate.mean()
    scale = np.dot(estimate, reference) / max(np.dot(reference, reference), 1e-20)
    target = scale * reference
    return float(10 * np.log10(max(np.dot(target, target), 1e-20) / max(np.sum((estimate - target) ** 2), 1e-20)))


def best_pair(references: np.ndarray, estimates: np.ndarray) -> tuple[float, float]:
    """Mean SI-SDR of the better of the two pairings; and that of the mixture."""
    direct = (si_sdr(references[0], estimates[0]) + si_sdr(references[1], estimates[1])) / 2
    swapped = (si_sdr(references[0], estimates[1]) + si_sdr(references[1], estimates[0])) / 2
    return max(direct, swapped), min(direct, swapped)


def heldout(separator: EmbeddedSeparator, count: int, speech_set: str = "test-other") -> dict:
    """SI-SDRi on ``count`` 4 s mixtures of test-other voices (or, to develop, of the training voices)."""
    from train_separator import group_by_speaker, heldout_corpus, make_example, training_corpus, unseen_corpus

    rate = separator.sample_rate
    corpora = {"test-other": heldout_corpus, "train-clean-100": training_corpus, "unseen": unseen_corpus}
    corpus = corpora[speech_set](rate)
    groups = group_by_speaker(corpus)
    rng = np.random.default_rng([HELDOUT_SEED])
    rows = {"full": [], "partial": []}
    in_order = []  # per mixture, in the order drawn: two weights compared on the same mixtures pair up
    started = time.perf_counter()
    seconds = 0.0
    for _ in range(count):
        mix, sources = make_example(rng, corpus, groups, int(4.0 * rate), rate, augment=False)
        full = bool(np.all(np.abs(sources) > 0, axis=0).mean() > 0.9)
        estimate = separator(mix, rate)
        seconds += mix.size / rate
        improvement = best_pair(sources, estimate)[0] - best_pair(sources, np.stack([mix, mix]))[0]
        rows["full" if full else "partial"].append(improvement)
        in_order.append(round(float(improvement), 3))
    elapsed = time.perf_counter() - started
    every = rows["full"] + rows["partial"]
    return {"mixtures": count, "si_sdri_mean": float(np.mean(every)), "si_sdri_median": float(np.median(every)),
            "full_overlap": float(np.mean(rows["full"])) if rows["full"] else None, "full_count": len(rows["full"]),
            "partial_overlap": float(np.mean(rows["partial"])) if rows["partial"] else None,
            "partial_count": len(rows["partial"]), "rtf_one_thread": elapsed / seconds,
            "per_mixture": in_order}


def librimix(separator: EmbeddedSeparator) -> list[dict]:
    rows = []
    for folder in sorted((shared_root() / "data" / "librimix").glob("ex_*")):
        s0, rate = sf.read(str(folder / "s0.wav"), dtype="float32")
        s1, _ = sf.read(str(folder / "s1.wav"), dtype="float32")
        mix = s0 + s1
        refs = np.stack([s0, s1])
        ours = best_pair(refs, separator(mix, rate))[0]
        base = best_pair(refs, np.stack([mix, mix]))[0]
        peer = None
        if (folder / "s0_estimate.wav").is_file():
            e0, _ = sf.read(str(folder / "s0_estimate.wav"), dtype="float32")
            e1, _ = sf.read(str(folder / "s1_estimate.wav"), dtype="float32")
            n = min(len(e0), len(s0))
            peer = best_pair(refs[:, :n], np.stack([e0[:n], e1[:n]]))[0]
        rows.append({"example": folder.name, "mixture": base, "podsep": ours, "podsep_sdri": ours - base,
                     "peer_convtasnet": peer, "peer_sdri": None if peer is None else peer - base})
    return rows


class Recording:
    """Wraps a separator and keeps each window's outputs (to score assignments afterwards)."""

    def __init__(self, inner: EmbeddedSeparator) -> None:
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def describe(self) -> dict:
        return self.inner.describe()

    def __call__(self, window: np.ndarray, rate: int) -> np.ndarray:
        out = self.inner(window, rate)
        self.calls.append((np.asarray(window, np.float32), out))
        return out


def assignment(separator: EmbeddedSeparator, count: int, duration: float, high: float = 0.8,
               speech_set: str = "test-other", overrides: dict | None = None) -> dict:
    import podsep
    from podsep.lab.metrics import si_sdr as metric_si_sdr
    from podsep.lab.synth import ConversationSpec, generate_conversation

    speech = shared_root() / "data" / "librispeech" / speech_set
    agree_time = total_time = 0.0
    windows = wrong = wrong_confident = 0
    confidences: list[tuple[float, bool]] = []
    wrong_cost: list[float] = []  # dB of (mean) SI-SDR the wrong windows gave away
    overlap_scores: dict[str, list[float]] = {"podsep": [], "duplicate": []}
    for seed in range(count):
        rate = 16000
        spec = ConversationSpec(num_speakers=2, duration=duration, sample_rate=rate, overlap_ratio=0.2)
        conversation = generate_conversation(speech, spec, 1000 + seed)
        recorder = Recording(separator)
        result = podsep.split(conversation.mixture, sample_rate=rate, diarization=conversation.diarization,
                              separator=recorder, overrides={"diarization.cache": False, **(overrides or {})})
        duplicate = podsep.split(conversation.mixture, sample_rate=rate, diarization=conversation.diarization,
                                 overrides={"overlaps.policy": "duplicate"})
        call_at = {}
        for window, out in recorder.calls:
            start = locate_window(conversation.mixture, window)
            call_at[round(start / rate, 3)] = (start, out)
        for region in result.manifest["overlaps"]:
            for entry in region["windows"]:
                start, out = call_at[round(entry["start"], 3)]
                a, b = int(entry["core_start"] * rate) - start, int(entry["core_end"] * rate) - start
                labels = list(entry["assignment"])
                refs = [conversation.references[s][start + a:start + b] for s in labels]
                if len(labels) != 2 or min(np.sum(r ** 2) for r in refs) < 1e-8:
                    continue
                chosen = [entry["assignment"][s] for s in labels]
                other = [chosen[1], chosen[0]]
                score_chosen = np.mean([si_sdr(refs[i], out[chosen[i], a:b]) for i in range(2)])
                score_other = np.mean([si_sdr(refs[i], out[other[i], a:b]) for i in range(2)])
                right = score_chosen >= score_other
                seconds = (b - a) / rate
                windows += 1
                total_time += seconds
                agree_time += seconds if right else 0.0
                confidences.append((entry["confidence"], right))
                if not right:
                    wrong += 1
                    wrong_confident += entry["confidence"] >= high
                    wrong_cost.append(float(score_other - score_chosen))
        overlap = np.zeros(conversation.num_samples, bool)
        for region in result.manifest["overlaps"]:
            overlap[int(region["start"] * rate):int(region["end"] * rate)] = True
        for label, reference in conversation.references.items():
            if np.sum(reference[overlap] ** 2) < 1e-8:
                continue
            overlap_scores["podsep"].append(metric_si_sdr(reference[overlap], result.tracks[label][0][overlap]))
            overlap_scores["duplicate"].append(metric_si_sdr(reference[overlap], duplicate.tracks[label][0][overlap]))
    bins = [(0.5, 0.7), (0.7, 0.9), (0.9, 1.01)]
    calibration = []
    for low, up in bins:
        inside = [right for c, right in confidences if low <= c < up]
        calibration.append({"confidence": f"{low:.1f}-{min(up, 1.0):.1f}", "windows": len(inside),
                            "accuracy": float(np.mean(inside)) if inside else None})
    return {"conversations": count, "windows": windows, "agreement_by_time": agree_time / max(total_time, 1e-9),
            "wrong_windows": wrong, "wrong_with_confidence_ge_%.1f" % high: wrong_confident,
            "wrong_window_cost_db": sorted(round(c, 2) for c in wrong_cost),
            "overlap_si_sdr_podsep": float(np.mean(overlap_scores["podsep"])),
            "overlap_si_sdr_duplicate": float(np.mean(overlap_scores["duplicate"])),
            "per_conversation_gap_min": float(np.min(np.array(overlap_scores["podsep"]) - np.array(overlap_scores["duplicate"]))),
            "calibration": calibration}


def dialogue(separator: EmbeddedSeparator) -> dict:
    """The real phone dialogue: channels summed to mono, each channel one speaker's reference."""
    import podsep
    from podsep.audio import load_audio
    from podsep.lab.evaluate import turns_from_tracks
    from podsep.lab.metrics import si_sdr as metric_si_sdr

    audio = load_audio(shared_root() / "data" / "dialogues" / "MUL1011.opus")
    rate = audio.sample_rate
    references = {"agent": audio.samples[0].astype(np.float32), "user": audio.samples[1].astype(np.float32)}
    mixture = (references["agent"] + references["user"]).astype(np.float32)
    turns = turns_from_tracks(references, rate)
    rows = {}
    for name, overrides, chosen in (("podsep", {"separation.adapt": "off"}, separator),
                                    ("podsep, adapted", {"separation.adapt": "on"}, separator),
                                    ("duplicate", {"overlaps.policy": "duplicate"}, None)):
        result = podsep.split(mixture, sample_rate=rate, diarization=turns, separator=chosen, overrides=overrides)
        overlap = np.zeros(mixture.size, bool)
        for region in result.manifest["overlaps"]:
            overlap[int(region["start"] * rate):int(region["end"] * rate)] = True
        rows[name] = {s: metric_si_sdr(ref[overlap], result.tracks[s][0][overlap]) for s, ref in references.items()}
        rows[name]["overlap_seconds"] = float(overlap.sum() / rate)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped one)")
    parser.add_argument("--heldout", type=int, default=0, help="number of test-other mixtures")
    parser.add_argument("--librimix", action="store_true")
    parser.add_argument("--assignment", type=int, default=0, help="number of generated conversations")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per generated conversation")
    parser.add_argument("--speech-set", default="test-other", choices=["test-other", "train-clean-100", "unseen"],
                        help="voices of the mixtures and generated conversations: test-other to report, "
                             "train-clean-100 or unseen to develop (tuning on test-other would spoil it; with "
                             "--heldout, train-clean-100 means every training voice and unseen the development "
                             "voices the separator never trained on, see train_separator.unseen_corpus)")
    parser.add_argument("--passes", type=int, default=DEFAULT_PASSES,
                        help=f"separations averaged per window (default {DEFAULT_PASSES}, the product's)")
    parser.add_argument("--pass-kind", default=PASS_KINDS[0], choices=PASS_KINDS,
                        help="polarity: plain and negated input (the product's, from session 14); "
                             "delay: sub-hop delays only (sessions 1-13)")
    parser.add_argument("--dialogue", action="store_true", help="the real phone dialogue dialogues/MUL1011.opus")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for the assignment runs (repeatable), e.g. assignment.embedding_weight=0")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    separator = EmbeddedSeparator(args.weights, passes=args.passes, pass_kind=args.pass_kind).load()
    report: dict = {"weights": str(separator.weights), "sha256": separator.sha256, "recipe": separator.recipe,
                    "passes": separator.passes, "pass_kind": separator.pass_kind}
    print(f"passes: {separator.passes} ({separator.pass_kind})")
    if args.heldout:
        report["heldout"] = heldout(separator, args.heldout, args.speech_set)
        h = report["heldout"]
        label = {"test-other": "held-out test-other", "train-clean-100": "development (training voices)",
                 "unseen": "development (voices never trained on)"}[args.speech_set]
        print(f"{label}: {h['mixtures']} mixtures, SI-SDRi mean {h['si_sdri_mean']:.2f} dB "
              f"(median {h['si_sdri_median']:.2f}); full overlap {h['full_overlap']:.2f} dB ({h['full_count']}), "
              f"partial {h['partial_overlap']:.2f} dB ({h['partial_count']}); {h['rtf_one_thread']:.4f} x real time")
    if args.librimix:
        report["librimix"] = rows = librimix(separator)
        print(f"{'example':<8} {'mixture':>8} {'podsep':>8} {'SI-SDRi':>8} {'peer':>8} {'peer SI-SDRi':>12}")
        for r in rows:
            print(f"{r['example']:<8} {r['mixture']:>8.2f} {r['podsep']:>8.2f} {r['podsep_sdri']:>8.2f} "
                  f"{r['peer_convtasnet']:>8.2f} {r['peer_sdri']:>12.2f}")
        print(f"{'mean':<8} {np.mean([r['mixture'] for r in rows]):>8.2f} {np.mean([r['podsep'] for r in rows]):>8.2f} "
              f"{np.mean([r['podsep_sdri'] for r in rows]):>8.2f} {np.mean([r['peer_convtasnet'] for r in rows]):>8.2f} "
              f"{np.mean([r['peer_sdri'] for r in rows]):>12.2f}")
    if args.assignment and args.speech_set == "unseen":
        raise SystemExit("--assignment needs a LibriSpeech folder of voices: test-other or train-clean-100")
    if args.assignment:
        overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
        report["assignment"] = a = assignment(separator, args.assignment, args.duration,
                                              speech_set=args.speech_set, overrides=overrides)
        print(json.dumps(a, indent=1))
    if args.dialogue:
        report["dialogue"] = d = dialogue(separator)
        print(f"MUL1011 ({d['podsep']['overlap_seconds']:.1f} s overlapped): overlap SI-SDR agent/user (dB):")
        for name, row in d.items():
            print(f"  {name:<16} {row['agent']:6.2f} {row['user']:6.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
