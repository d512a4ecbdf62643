"""The episode's voices learnt above the separator's band too: the top-octave network adapted.

At 16 kHz and above, the embedded separator's voices stop at 4 kHz and a second
network (:mod:`podsep.models.embedded.high_band`) shares the mixture's 3.75-8
kHz between them. It was trained on other people's voices, and an episode's
speakers differ most up there: one speaker's sibilants sit at 5 kHz, another's
at 7, one breathes loudly, another not at all. The episode's solo speech at 16
kHz holds each voice's own octave, so after the separator has learnt the voices
(:mod:`podsep.adapt`), this stage fine-tunes a copy of the top-octave network on
mixtures of that speech, as the separator (adapted or not) separates them, and
keeps the copy only when it shares held-out mixtures' octave better than the
incoming network (the never-worse rule of :mod:`podsep.adapt`).

The cost is small next to the separator's adaptation: one separation of a few
minutes of mixtures and a hundred steps of a 0.6 M-parameter network, shared by
the adaptation's workers. Deterministic as :mod:`podsep.adapt` is: mixtures and
batches come from generators seeded by the episode, the step count is fixed, and
each batch is computed in fixed halves on one torch thread each, whatever the
number of workers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .adapt import (MicroBatchTrainer, MixtureShapes, cpu_workers, hold_out, keeps_adapted, make_mixture,
                    overlapping_pairs, side_by_side, state_digest, validation_mixtures)
from .threads import one_torch_thread

#: Training mixtures, each separated once before training (4 s: batches take 3 s crops of them).
TRAINING_MIXTURES = 48
EXAMPLE_SECONDS = 4.0
CROP_SECONDS = 3.0
#: Steps, batch and rate: chosen on three pairs of voices no podsep model trained on (AMI and
#: meeting-sim speakers, ``train_separator.unseen_corpus``), held-out top-octave SNR: 200 steps of 8
#: at 2e-4 gained +0.85, -0.78, +0.90 dB; 100 steps of 8 at 5e-5 +0.68, -0.15, +0.91; 100 of 4 at
#: 1e-4 +0.30, -0.05 and less. A loss is never kept (the never-worse rule), so the gentler rate wins.
STEPS = 100
BATCH = 8
LEARNING_RATE = 5e-5
CLIP_NORM = 5.0
#: Held-out mixtures that decide whether the adapted network is kept (from the speech
#: :func:`podsep.adapt.hold_out` keeps aside, as the separator's check does).
VALIDATION_MIXTURES = 24
#: A voice needs at least this much solo speech at 16 kHz for its octave to be learnt.
MIN_SOLO_S = 6.0
#: How far the network kept lies from the incoming one towards the fine-tuned one, weight by
#: weight (1: the fine-tuned network itself). Mixtures of held-out solo speech cannot show every
#: overlap an episode holds: in one room conversation (session 34) a fine-tuned network that passed
#: its check by 2.4 dB lost 8.5 dB on the long overlap carrying most of the overlapped energy. Half
#: way was tried as a hedge (session 35, rule in docs/benchmarks.md): on the development
#: conversations of unseen voices it gave up 0.26 dB above 4 kHz, about half of what learning the
#: octave gains there, so the fine-tuned network is kept whole.
MOVE_FRACTION = 1.0


@dataclass
class TopOctaveResult:
    """What the stage did, and the separator to use from here on."""

    used: bool
    reason: str
    steps: int
    validation_before_db: float | None
    validation_after_db: float | None
    seconds: float
    separator: Any  # with the adapted network when used, else the one that came in
    sha256: str | None = None  # of the adapted network's weights, used or not
    fine_tuned_db: float | None = None  # the fine-tuned network's own held-out score, before MOVE_FRACTION
    move_fraction: float = 1.0

    def to_manifest(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(float(value), 3)

        return {"used": self.used, "reason": self.reason, "steps": self.steps,
                "validation_top_octave_snr_db": {"incoming": rounded(self.validation_before_db),
                                                 "adapted": rounded(self.validation_after_db),
                                                 "fine_tuned": rounded(self.fine_tuned_db)},
                "move_fraction": self.move_fraction,
                "weights_sha256": self.sha256, "seconds": round(self.seconds, 2)}


def adapt_top_octave(separator: Any, solo: Mapping[str, np.ndarray], pairs: Sequence[Sequence[str]], seed: int = 0,
                     *, steps: int | None = None,
                     overlap_seconds: Mapping[tuple[str, str], Sequence[float]] | None = None,
                     hook: Callable[..., Any] | None = None, workers: int = 1) -> TopOctaveResult:
    """Fine-tune a copy of ``separator``'s top-octave network on this recording's voices.

    ``separator``: an :class:`~podsep.models.embedded.separator.EmbeddedSeparator`
    with a top-octave network (the episode's adapted one or the generic one: the
    network learns from the voices this separator outputs); ``solo``: each
    speaker's solo speech at 16 kHz (:func:`podsep.adapt.collect_solo_speech` with
    ``model_rate=16000``); ``pairs``: the speakers who overlap. ``hook("top-octave",
    None, completed=k, total=steps)`` is called after each step. ``workers`` threads
    share the separations and each step (:class:`podsep.adapt.MicroBatchTrainer`):
    the network learnt is the same bits with one or two, only the wall time changes.
    """
    import torch

    from .models.embedded.high_band import RATE, top_octave_loss

    started = time.perf_counter()
    steps = STEPS if steps is None else int(steps)
    net = getattr(separator, "top_octave_network", None)
    if net is None:
        return TopOctaveResult(False, "the separator has no top-octave network", 0, None, None, 0.0, separator)
    pairs = [tuple(sorted(p)) for p in overlapping_pairs(pairs)]
    train_audio, valid_audio = {}, {}
    for speaker in {s for p in pairs for s in p}:
        audio = np.asarray(solo.get(speaker, np.zeros(0, np.float32)), dtype=np.float32)
        train_audio[speaker], valid_audio[speaker] = hold_out(audio, RATE)
    short = sorted(s for s in train_audio if train_audio[s].size + valid_audio[s].size < MIN_SOLO_S * RATE)
    if not pairs or short:
        reason = "no overlapping pair" if not pairs else f"too little solo speech for {', '.join(short)}"
        return TopOctaveResult(False, reason, 0, None, None, time.perf_counter() - started, separator)

    shapes = MixtureShapes(overlap_seconds, None)
    n = int(round(EXAMPLE_SECONDS * RATE))
    examples = []
    for index in range(TRAINING_MIXTURES):
        rng = np.random.default_rng([int(seed), 7, index])
        examples.append(make_mixture(rng, train_audio, pairs[int(rng.integers(len(pairs)))], n, RATE, shapes))
    valid_mix, valid_refs = validation_mixtures(valid_audio, pairs, RATE, int(seed) + 1, shapes,
                                                count=VALIDATION_MIXTURES, seconds=EXAMPLE_SECONDS)
    mixtures = [e[0] for e in examples] + list(valid_mix.numpy())
    references = [e[1] for e in examples] + list(valid_refs.numpy())
    separated = side_by_side(separator.voices_below_top_octave, mixtures, cpu_workers(separator, workers))
    voices = [_in_order(v, r) for v, r in zip(separated, references)]
    train_mix = torch.from_numpy(np.stack(mixtures[:TRAINING_MIXTURES]))
    train_refs = torch.from_numpy(np.stack(references[:TRAINING_MIXTURES]))
    train_ests = torch.from_numpy(np.stack(voices[:TRAINING_MIXTURES]))
    valid_ests = torch.from_numpy(np.stack(voices[TRAINING_MIXTURES:]))

    with one_torch_thread():
        incoming = copy.deepcopy(net).cpu().float().eval()  # trained and scored on the CPU, wherever it runs
        before = _snr(incoming, valid_mix, valid_refs, valid_ests)
        model = copy.deepcopy(incoming)
        trainer = MicroBatchTrainer(model, list(model.parameters()), LEARNING_RATE, workers, top_octave_loss,
                                    clip_norm=CLIP_NORM)
        crop = int(round(CROP_SECONDS * RATE))
        try:
            for step in range(int(steps)):
                rng = np.random.default_rng([int(seed), 8, step])
                index = torch.from_numpy(rng.choice(TRAINING_MIXTURES, BATCH, replace=False))
                start = int(rng.integers(0, n - crop + 1))
                learning_rate = LEARNING_RATE * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / max(1, steps))))
                trainer.step((train_mix[index, start:start + crop], train_refs[index, :, start:start + crop],
                              train_ests[index, :, start:start + crop]), learning_rate)
                if hook is not None:
                    hook("top-octave", None, completed=step + 1, total=int(steps))
        finally:
            trainer.close()
        tuned = _snr(model, valid_mix, valid_refs, valid_ests)
        if MOVE_FRACTION != 1.0:
            model.load_state_dict(between(incoming.state_dict(), model.state_dict(), MOVE_FRACTION))
            after = _snr(model, valid_mix, valid_refs, valid_ests)
        else:
            after = tuned
    digest = state_digest(model.state_dict())
    seconds = time.perf_counter() - started
    if steps <= 0 or not keeps_adapted(before, after):
        reason = (f"the adapted top-octave network did not beat the incoming one on held-out solo speech "
                  f"({after:.2f} dB against {before:.2f} dB): kept the incoming one")
        return TopOctaveResult(False, reason, int(steps), before, after, seconds, separator, digest,
                               tuned, MOVE_FRACTION)
    reason = f"top octave adapted: {before:.2f} -> {after:.2f} dB SNR on held-out speech"
    return TopOctaveResult(True, reason, int(steps), before, after, seconds,
                           separator.with_top_octave_network(model, digest), digest, tuned, MOVE_FRACTION)


def between(incoming: Mapping[str, Any], tuned: Mapping[str, Any], fraction: float) -> dict[str, Any]:
    """Weights ``fraction`` of the way from ``incoming`` to ``tuned`` (floating-point tensors;
    any other entry is taken from ``tuned``). Both come from the same network, a hundred small
    steps apart, so the weights in between share the octave as a blend of the two networks would."""
    out = {}
    for name, value in tuned.items():
        start = incoming[name]
        out[name] = (start + fraction * (value - start)).clone() if value.is_floating_point() else value.clone()
    return out


def _snr(net: Any, mixtures: Any, references: Any, estimates: Any) -> float:
    """Mean top-octave SNR (dB) of the network's shares of held-out mixtures."""
    import torch

    from .models.embedded.high_band import top_octave_loss

    with torch.inference_mode():
        return -float(top_octave_loss(net, mixtures, references, estimates))


def _in_order(estimates: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The separator's voices in the references' order (by correlation: training knows the truth)."""
    straight = np.dot(estimates[0], references[0]) + np.dot(estimates[1], references[1])
    crossed = np.dot(estimates[0], references[1]) + np.dot(estimates[1], references[0])
    return estimates if straight >= crossed else estimates[::-1].copy()
