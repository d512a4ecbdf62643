#!/usr/bin/env python
"""Score adaptation (podsep.adapt): overlap SI-SDR of the generic and the adapted separator.

Conversations are generated from held-out voices (``librispeech/test-other`` by
default) with ``unique_overlaps``: the words heard in an overlap are never heard
alone anywhere in the conversation, so the adapted model never trained on its
test words. Each conversation is split by ``podsep.split`` with the diarization
given (reference turns, and with ``--embedded-diarizer`` also the embedded
diarizer's turns) and

* the generic separator (the weights given, or the shipped ones),
* the separator adapted at each budget in ``--budgets`` (seconds of compute,
  turned into steps with :data:`podsep.adapt.SECONDS_PER_STEP`; ``default`` is
  :func:`podsep.adapt.adaptation_budget` of the conversation's length),
* the ``duplicate`` policy (the mixture copied into both tracks) for scale.

The score is the mean over speakers of the SI-SDR of each track against its
reference inside the overlapped regions of the reference turns (as in
``scripts/score_separator.py``). Adaptation's wall time (solo speech
collection, training and validation) and the growth of resident memory while
it runs are reported beside it.

    OMP_NUM_THREADS=1 python scripts/score_adaptation.py --weights podsep/data/separator.pt \\
        --durations 90 600 --count 3 --budgets 60 default 224 --embedded-diarizer --reuse 2 \
        --json runs/adaptation.json

``--reuse N`` adds N pairs of 90 s episodes of the same two voices (the second episode's overlapped
words unheard in either): a voice profile saved from the first episode (adapted weights and GE2E
voice embeddings) is loaded for the second, whose overlaps are scored with the profile's model
before any new adaptation, and whose speakers are matched to the profile's names by voice.

Development on training voices: ``--speech-set train-clean-100`` is not
possible (one utterance per speaker there; the overlap reserve needs two), so
the recipe was chosen with ``scripts/tune_adaptation.py`` instead; test-other
is for reporting only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from podsep.lab.paths import shared_root  # noqa: E402
import podsep  # noqa: E402
from podsep import adapt  # noqa: E402
from podsep.diarization import Diarization  # noqa: E402
from podsep.intervals import SpeakerActivity  # noqa: E402
from podsep.lab.evaluate import PeakMemory, _optimal_mapping  # noqa: E402
from podsep.lab.metrics import si_sdr  # noqa: E402
from podsep.lab.synth import ConversationSpec, conversation_seed, generate_conversation  # noqa: E402
from podsep.models.embedded.separator import EmbeddedSeparator  # noqa: E402
from podsep.overlaps import find_overlap_regions  # noqa: E402

SET_SEED = 20261201


def overlap_score(conversation: Any, tracks: dict[str, np.ndarray], mapping: dict[str, str] | None = None) -> float:
    """Mean over reference speakers of SI-SDR inside the reference overlaps (tracks by reference label)."""
    rate, n = conversation.sample_rate, conversation.num_samples
    activity = conversation.diarization.activity(rate, n)
    overlap = activity.sum(axis=0) >= 2
    by_reference = {}
    for label, track in tracks.items():
        reference_label = (mapping or {}).get(label, label)
        by_reference[reference_label] = np.asarray(track, np.float32).reshape(-1, n).mean(axis=0)
    scores = []
    for speaker, reference in conversation.references.items():
        estimate = by_reference.get(speaker, np.zeros(n, np.float32))
        value = si_sdr(reference, estimate, overlap)
        scores.append(min(max(value, -30.0), 60.0))  # a missing track (-inf) counts as -30 dB
    return float(np.mean(scores))


def run_split(conversation: Any, diarization: Diarization, separator: Any = None, *, policy: str = "separate"):
    # The pipeline's own adaptation is off: the separator given is scored as it is.
    overrides = {"diarization.cache": False, "overlaps.policy": policy, "separation.adapt": "off"}
    return podsep.split(conversation.mixture, sample_rate=conversation.sample_rate, diarization=diarization,
                        separator=separator, overrides=overrides)


def adapt_for(conversation: Any, diarization: Diarization, generic: EmbeddedSeparator, budget: float,
              seed: int, workers: int = 1) -> tuple[adapt.AdaptationResult, adapt.AdaptationPlan, float, float, float]:
    """Adaptation exactly as the pipeline runs it: result, plan, wall and CPU seconds, memory growth (MiB)."""
    rate, n = conversation.sample_rate, conversation.num_samples
    with PeakMemory() as memory:
        started, cpu_started = time.perf_counter(), time.process_time()
        activity = SpeakerActivity([(t.start, t.end, t.speaker) for t in diarization.turns], diarization.speakers,
                                   rate, n)
        solo = adapt.collect_solo_speech(lambda a, b: conversation.mixture[a:b], activity,
                                         model_rate=generic.sample_rate)
        regions = find_overlap_regions(diarization)
        plan = adapt.plan_adaptation(n / rate, solo, [r.speakers for r in regions], mode="on", budget_s=budget)
        if plan.enabled:
            result = adapt.adapt_separator(generic, solo, plan.pairs, plan.steps, seed=seed, budget_s=plan.budget_s,
                                           workers=workers, overlap_seconds=adapt.overlap_statistics(regions))
        else:
            result = adapt.AdaptationResult(False, plan.reason, 0, plan.budget_s, None, None, 0.0, generic)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return result, plan, seconds, cpu, memory.peak_rss_mb - memory.start_rss_mb


def score_conversation(index: int, duration: float, args: argparse.Namespace, generic: EmbeddedSeparator,
                       diarizer: Any) -> dict[str, Any]:
    speech = shared_root() / "data" / "librispeech" / args.speech_set
    spec = ConversationSpec(num_speakers=2, duration=duration, sample_rate=16000, overlap_ratio=args.overlap_ratio,
                            unique_overlaps=True)
    seed = conversation_seed(SET_SEED + int(duration), index)
    conversation = generate_conversation(speech, spec, seed, uri=f"conv{int(duration)}_{index}")
    row: dict[str, Any] = {"duration_s": round(conversation.num_samples / conversation.sample_rate, 1),
                           "seed": seed, "overlap_ratio": round(conversation.overlap_ratio(), 3),
                           "speakers": conversation.diarization.speakers}
    sources: list[tuple[str, Diarization, dict[str, str] | None]] = [("reference", conversation.diarization, None)]
    if diarizer is not None:
        started = time.perf_counter()
        found = diarizer(conversation.mixture, conversation.sample_rate, num_speakers=2)
        found = Diarization.from_turns([(round(t.start, 3), round(t.end, 3), t.speaker) for t in found.turns])
        row["embedded_diarizer_seconds"] = round(time.perf_counter() - started, 1)
        sources.append(("embedded", found, _optimal_mapping(conversation.diarization, found)))
    for name, diarization, mapping in sources:
        out: dict[str, Any] = {}
        out["duplicate"] = overlap_score(conversation, run_split(conversation, diarization, policy="duplicate").tracks,
                                         mapping)
        started = time.perf_counter()
        out["generic"] = overlap_score(conversation, run_split(conversation, diarization, generic).tracks, mapping)
        out["split_seconds"] = round(time.perf_counter() - started, 1)
        budgets = args.budgets if name == "reference" else [args.embedded_budget]
        for budget_text in budgets:
            budget = (adapt.adaptation_budget(duration) if budget_text == "default" else float(budget_text))
            result, plan, seconds, cpu, memory = adapt_for(conversation, diarization, generic, budget, args.seed,
                                                           args.workers)
            score = overlap_score(conversation, run_split(conversation, diarization, result.separator).tracks, mapping)
            out[f"budget_{budget_text}"] = {
                "budget_s": round(budget, 1), "steps": result.steps, "used": result.used,
                "reason": result.reason if not result.used else None,
                "overlap_si_sdr": round(score, 2), "gain_db": round(score - out["generic"], 2),
                "validation_before": _round(result.validation_before_db),
                "validation_after": _round(result.validation_after_db),
                "extra_wall_s": round(seconds, 1), "extra_cpu_s": round(cpu, 1), "extra_rss_mib": round(memory, 1),
                "solo_seconds": {k: round(v, 1) for k, v in plan.solo_seconds.items()}}
        out["duplicate"], out["generic"] = round(out["duplicate"], 2), round(out["generic"], 2)
        row[name] = out
    return row


def profile_reuse(index: int, duration: float, args: argparse.Namespace, generic: EmbeddedSeparator,
                  embedder: Any) -> dict[str, Any]:
    """Two episodes of the same two voices: adapt on the first, keep a voice profile, split the second
    with the profile's model before any new adaptation (and after adapting again from it).

    Both episodes split each voice's utterances the same way (``reserve_seed``), so the second
    episode's overlapped words were not heard alone in the first one either.
    """
    import tempfile

    from podsep.voices import load_profile, save_profile

    speech = shared_root() / "data" / "librispeech" / args.speech_set
    first_seed = conversation_seed(SET_SEED + int(duration), index)
    voices = generate_conversation(speech, ConversationSpec(duration=duration, unique_overlaps=True),
                                   first_seed).diarization.speakers
    with tempfile.TemporaryDirectory() as folder:
        pool = Path(folder) / "speech"
        pool.mkdir()
        for voice in voices:  # the two voices' files only (linked: rglob does not follow linked folders)
            (pool / voice).mkdir()
            for file in sorted((speech / voice).iterdir()):
                (pool / voice / file.name).symlink_to(file)
        spec = ConversationSpec(duration=duration, overlap_ratio=args.overlap_ratio, unique_overlaps=True,
                                reserve_seed=SET_SEED + index)
        episodes = [generate_conversation(pool, spec, conversation_seed(SET_SEED + 7, 2 * index + k),
                                          uri=f"episode{k + 1}") for k in range(2)]
        budget = adapt.adaptation_budget(duration) if args.reuse_budget == "default" else float(args.reuse_budget)
        first, _, _, _, _ = adapt_for(episodes[0], episodes[0].diarization, generic, budget, args.seed, args.workers)
        embeddings = {s: voice_embedding(embedder, episodes[0], s) for s in voices}
        save_profile(Path(folder) / "profile", embeddings, separator=first.separator, embedder="ge2e")
        profile = load_profile(Path(folder) / "profile")
        reused = profile.separator()
        second = episodes[1]
        match = profile.match({f"SPEAKER_{k}": voice_embedding(embedder, second, s) for k, s in enumerate(voices)})
        again, _, seconds, _, _ = adapt_for(second, second.diarization, reused, budget, args.seed, args.workers)
        scores = {name: overlap_score(second, run_split(second, second.diarization, model).tracks)
                  for name, model in (("generic", generic), ("profile", reused), ("profile+adapted", again.separator))}
    row = {"voices": voices, "first_episode_adaptation_used": first.used,
           "matched": {label: match.names.get(label) for label in sorted(match.scores)},
           "match_scores": {label: {n: round(v, 3) for n, v in row.items()} for label, row in match.scores.items()},
           "second_episode": {k: round(v, 2) for k, v in scores.items()},
           "second_adaptation": {"used": again.used, "steps": again.steps, "validation_before": _round(again.validation_before_db),
                                 "validation_after": _round(again.validation_after_db), "extra_wall_s": round(seconds, 1)}}
    return row


def voice_embedding(embedder: Any, conversation: Any, speaker: str) -> np.ndarray:
    """A speaker's embedding from their solo speech in the conversation (as the pipeline's references)."""
    rate, n = conversation.sample_rate, conversation.num_samples
    turns = conversation.diarization
    activity = SpeakerActivity([(t.start, t.end, t.speaker) for t in turns.turns], turns.speakers, rate, n)
    runs = activity.longest_solo_runs(speaker, 30.0, min_seconds=0.5)
    vectors = embedder.embed([conversation.mixture[a:b] for a, b in runs], rate)
    mean = vectors.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summary(rows: list[dict[str, Any]], budgets: list[str], embedded_budget: str = "default") -> list[str]:
    lines = []
    for source in ("reference", "embedded"):
        chosen = [r for r in rows if source in r]
        if not chosen:
            continue
        lines.append(f"\n{source} turns: overlap SI-SDR (dB), mean over conversations")
        lines.append("| length | conversations | duplicate | generic | " +
                     " | ".join(f"adapted @ {b} (steps, gain, extra wall s, extra CPU s, extra MiB)" for b in
                                (budgets if source == "reference" else [embedded_budget])) + " |")
        for duration in sorted({r["duration_s"] for r in chosen}):
            group = [r[source] for r in chosen if r["duration_s"] == duration]
            cells = [f"{duration:.0f} s", str(len(group)), f"{np.mean([g['duplicate'] for g in group]):.2f}",
                     f"{np.mean([g['generic'] for g in group]):.2f}"]
            for budget in (budgets if source == "reference" else [embedded_budget]):
                entries = [g[f"budget_{budget}"] for g in group]
                cells.append(f"{np.mean([e['overlap_si_sdr'] for e in entries]):.2f} "
                             f"({np.mean([e['steps'] for e in entries]):.0f}, "
                             f"{np.mean([e['gain_db'] for e in entries]):+.2f}, "
                             f"{np.mean([e['extra_wall_s'] for e in entries]):.0f}, "
                             f"{np.mean([e['extra_cpu_s'] for e in entries]):.0f}, "
                             f"{np.mean([e['extra_rss_mib'] for e in entries]):.0f}; "
                             f"used {sum(e['used'] for e in entries)}/{len(entries)})")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="generic separator (default: the shipped one)")
    parser.add_argument("--durations", nargs="+", type=float, default=[90.0, 600.0])
    parser.add_argument("--count", type=int, default=3, help="conversations per duration")
    parser.add_argument("--first-index", type=int, default=0, help="start at this conversation of each set")
    parser.add_argument("--budgets", nargs="+", default=["60", "default", "224"],
                        help="adaptation budgets in seconds, or 'default'")
    parser.add_argument("--overlap-ratio", type=float, default=0.15)
    parser.add_argument("--speech-set", default="test-other")
    parser.add_argument("--embedded-diarizer", action="store_true", help="also with the embedded diarizer's turns")
    parser.add_argument("--embedded-budget", default="default", help="the budget used with the embedded diarizer")
    parser.add_argument("--seed", type=int, default=0, help="adaptation seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2,
                        help="adaptation workers (the weights do not depend on it; podsep uses 2 on 2 free cores)")
    parser.add_argument("--reuse", type=int, default=0,
                        help="also N pairs of episodes of the same two voices: a voice profile from the first, "
                             "reused on the second (90 s episodes)")
    parser.add_argument("--reuse-budget", default="default", help="adaptation budget of the reuse episodes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generic = EmbeddedSeparator(args.weights).load()
    diarizer = None
    if args.embedded_diarizer:
        from podsep.models.embedded import EmbeddedDiarizer

        diarizer = EmbeddedDiarizer()
    report: dict[str, Any] = {"weights": str(generic.weights), "sha256": generic.sha256, "recipe": generic.recipe,
                              "seconds_per_step": adapt.SECONDS_PER_STEP, "command": " ".join(sys.argv),
                              "conversations": []}
    for duration in args.durations:
        for index in range(args.first_index, args.first_index + args.count):
            row = score_conversation(index, duration, args, generic, diarizer)
            report["conversations"].append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=1) + "\n")
    for line in summary(report["conversations"], args.budgets, args.embedded_budget):
        print(line)
    if args.reuse:
        from podsep.models.embedded import EmbeddedDiarizer

        embedder = diarizer or EmbeddedDiarizer()
        report["profile_reuse"] = []
        for index in range(args.reuse):
            row = profile_reuse(index, 90.0, args, generic, embedder)
            report["profile_reuse"].append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                args.json.write_text(json.dumps(report, indent=1) + "\n")
        rows = report["profile_reuse"]
        print("\nprofile reuse, second episode (90 s, reference turns): overlap SI-SDR (dB)")
        print("| pairs | generic | profile, no new adaptation | profile + adaptation | voices matched |")
        print(f"| {len(rows)} | {np.mean([r['second_episode']['generic'] for r in rows]):.2f} | "
              f"{np.mean([r['second_episode']['profile'] for r in rows]):.2f} | "
              f"{np.mean([r['second_episode']['profile+adapted'] for r in rows]):.2f} | "
              f"{sum(sum(1 for k, v in r['matched'].items() if v == r['voices'][int(k.split('_')[1])]) for r in rows)}"
              f"/{sum(len(r['voices']) for r in rows)} |")


if __name__ == "__main__":
    main()
