"""Fit how much assignment should trust each kind of evidence, on *training* voices.

podsep scores every (speaker, source) pairing of a window in log-odds: when
every speaker has a reference voice, from voice evidence (GE2E cosine similarity
of the source, whole and inside the window's core, to the speaker's own solo
speech) and context evidence (energy shares where each speaker talks alone);
otherwise from context (plus activity) divided by a temperature
(``podsep/assignment.py``). This script measures those constants instead of guessing them:

1. generates two-speaker conversations of ``librispeech/train-clean-100`` voices
   (never the evaluation sets: calibrating on them would spoil their figures),
2. splits each with the separator and the reference turns, recording the
   separator's outputs,
3. for every overlap window, asks which pairing of the outputs is really the
   better one (SI-SDR against the references over the window's core) and reads
   the per-evidence margins podsep wrote in the manifest,
4. fits logistic regressions of "the pairing is the better one" on the margins
   (no intercept: the problem is symmetric): on context with both voice margins
   (``CONTEXT_WITH_VOICE``, ``VOICE_SCALE``, ``CORE_VOICE_SCALE``: log-odds per
   unit of margin at ``assignment.embedding_weight`` 1), on context alone
   (``CONFIDENCE_TEMPERATURE = 1 / a``), and on the two voices alone (to compare),
   each also cross-validated by conversation (four folds): share of the
   overlapped time picked right, decibels given away in wrong windows, and
   log-loss (how good the confidences are, which matters because podsep blends
   uncertain windows).

    python scripts/calibrate_assignment.py --count 48 --first-seed 2000 --json runs/calibration.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import podsep  # noqa: E402
from podsep.errors import InputError  # noqa: E402
from podsep.lab.oracle import locate_window  # noqa: E402
from podsep.lab.paths import shared_root  # noqa: E402
from podsep.lab.synth import ConversationSpec, generate_conversation  # noqa: E402
from podsep.models.embedded.separator import EmbeddedSeparator  # noqa: E402
from score_separator import Recording, si_sdr  # noqa: E402

CONTEXT_KINDS = ("context", "activity")


def windows_of(separator: EmbeddedSeparator, seed: int, duration: float) -> list[dict]:
    """Per overlap window of one generated conversation: margins, whether podsep chose right, seconds."""
    rate = 16000
    spec = ConversationSpec(num_speakers=2, duration=duration, sample_rate=rate, overlap_ratio=0.2)
    conversation = generate_conversation(shared_root() / "data" / "librispeech" / "train-clean-100", spec, seed)
    recorder = Recording(separator)
    result = podsep.split(conversation.mixture, sample_rate=rate, diarization=conversation.diarization,
                          separator=recorder, overrides={"diarization.cache": False, "separation.adapt": "off"})
    calls = {}
    for window, out in recorder.calls:
        start = locate_window(conversation.mixture, window)
        calls[round(start / rate, 3)] = (start, out)
    rows = []
    for region in result.manifest["overlaps"]:
        for entry in region["windows"]:
            start, out = calls[round(entry["start"], 3)]
            a, b = int(entry["core_start"] * rate) - start, int(entry["core_end"] * rate) - start
            labels = list(entry["assignment"])
            if len(labels) != 2 or not entry.get("margins"):
                continue
            references = [conversation.references[s][start + a:start + b] for s in labels]
            if min(np.sum(r ** 2) for r in references) < 1e-8:
                continue
            chosen = [entry["assignment"][s] for s in labels]
            swapped = chosen[::-1]
            score_chosen = np.mean([si_sdr(references[i], out[chosen[i], a:b]) for i in range(2)])
            score_swapped = np.mean([si_sdr(references[i], out[swapped[i], a:b]) for i in range(2)])
            margins = entry["margins"]
            rows.append({"seed": seed, "seconds": (b - a) / rate, "right": bool(score_chosen >= score_swapped),
                         "cost_db": float(abs(score_chosen - score_swapped)),
                         "context": sum(margins.get(k, 0.0) for k in CONTEXT_KINDS),
                         "voice": margins.get("voice"),
                         # a core too short to embed: its whole output's voice stands in, as in podsep.assignment
                         "voice_core": margins.get("voice_core", margins.get("voice")),
                         "confidence": entry["confidence"]})
    return rows


def logistic(features: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Maximum-likelihood weights of P(outcome) = sigmoid(features @ w), no intercept (Newton steps)."""
    weights = np.zeros(features.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-features @ weights))
        gradient = features.T @ (outcome - p) - 1e-9 * weights
        hessian = -(features.T * (p * (1 - p))) @ features - 1e-9 * np.eye(features.shape[1])
        step = np.linalg.solve(hessian, gradient)
        weights = weights - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return weights


def by_time(rows: list[dict], right: list[bool]) -> float:
    total = sum(r["seconds"] for r in rows)
    return sum(r["seconds"] for r, ok in zip(rows, right) if ok) / max(total, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="separator weights (default: the shipped ones)")
    parser.add_argument("--count", type=int, default=12, help="generated conversations")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    separator = EmbeddedSeparator(args.weights).load()
    rows, skipped = [], []
    for seed in range(args.first_seed, args.first_seed + args.count):
        try:
            rows += windows_of(separator, seed, args.duration)
        except InputError:  # a voice with too little speech for this layout (train-clean-100 has 1.7 s ones)
            skipped.append(seed)
    voiced = [r for r in rows if r["voice"] is not None]
    outcome = np.array([1.0 if r["right"] else 0.0 for r in voiced])
    folds = np.array([r["seed"] % 4 for r in voiced])
    # Margins are relative to podsep's choice, so "the choice is right" is symmetric in them.
    fits = {}
    for name, kinds in (("context", ["context"]), ("voice", ["voice", "voice_core"]),
                        ("context_and_voice", ["context", "voice", "voice_core"])):
        features = np.array([[r[k] for k in kinds] for r in voiced])
        weights = logistic(features, outcome)
        probability = np.full(len(voiced), 0.5)
        for fold in range(4):
            test = folds == fold
            if test.any() and (~test).any():
                probability[test] = 1.0 / (1.0 + np.exp(-(features[test] @ logistic(features[~test], outcome[~test]))))
        predicted_right = (probability > 0.5) == outcome.astype(bool)
        probability = np.clip(probability, 1e-6, 1 - 1e-6)
        log_loss = -np.mean(outcome * np.log(probability) + (1 - outcome) * np.log(1 - probability))
        fits[name] = {"weights": dict(zip(kinds, np.round(weights, 5).tolist())),
                      "cross_validated_log_loss": round(float(log_loss), 4),
                      "cross_validated_agreement_by_time": by_time(voiced, list(predicted_right)),
                      "cross_validated_db_lost": round(sum(r["cost_db"] for r, ok in zip(voiced, predicted_right)
                                                           if not ok), 2)}
    context_weight = fits["context"]["weights"]["context"]
    report = {
        "weights": str(separator.weights), "sha256": separator.sha256, "windows": len(rows),
        "windows_with_voice": len(voiced), "seeds_skipped": skipped,
        "agreement_by_time": {
            "podsep": by_time(rows, [r["right"] for r in rows]),
            "context_alone": by_time(voiced, [(r["context"] > 0) == r["right"] for r in voiced]),
            "voice_alone": by_time(voiced, [(r["voice"] > 0) == r["right"] for r in voiced]),
            "core_voice_alone": by_time(voiced, [(r["voice_core"] > 0) == r["right"] for r in voiced]),
        },
        "db_lost_by_podsep": round(sum(r["cost_db"] for r in rows if not r["right"]), 2),
        "fits": fits,
        "constants": {"CONFIDENCE_TEMPERATURE": 1.0 / context_weight if context_weight > 0 else None,
                      "VOICE_SCALE": fits["context_and_voice"]["weights"]["voice"],
                      "CORE_VOICE_SCALE": fits["context_and_voice"]["weights"]["voice_core"],
                      "CONTEXT_WITH_VOICE": fits["context_and_voice"]["weights"]["context"]},
        "calibration_of_podsep": [],
    }
    for low, high in ((0.5, 0.7), (0.7, 0.9), (0.9, 1.01)):
        inside = [r["right"] for r in rows if low <= r["confidence"] < high]
        report["calibration_of_podsep"].append({"confidence": f"{low:.1f}-{min(high, 1.0):.1f}",
                                                "windows": len(inside),
                                                "right": float(np.mean(inside)) if inside else None})
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**report, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
