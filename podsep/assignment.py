"""Which separated source is which speaker, and how loud it should be.

A separator returns its sources in arbitrary order and at arbitrary scale. For
each window podsep scores every (speaker, source) pair with up to three kinds of
evidence, all scale-invariant:

* **context**: where the speaker talks alone inside the window (the padding
  around the overlap), their source must correlate with the mixture and carry
  its energy there rather than in the other speakers' solo parts;
* **activity**: a source's energy must lie where the speaker is active at all
  (this needs no solo context, and rejects sources of speakers heard only in
  the padding);
* **voice**: the source's speaker embedding against the speaker's reference
  embedding (from their solo speech elsewhere in the file): the diarizer's
  embeddings, or with given turns (an RTTM) the embedded GE2E encoder's; once
  for the whole source and once for its part inside the overlap (the core),
  because a separator can swap its outputs inside a window and the core is
  what the tracks keep;
* **continuity**: for chunks of a long overlap, the source must continue the
  previous chunk's source for that speaker in the audio both chunks share.

When every assigned speaker has a reference voice, the scores are the log-odds
of a logistic regression on the whole-source voice, the core's voice and the
context, fitted on windows of training voices with podsep's own separator
(``scripts/calibrate_assignment.py``); voice carries most of the weight.
Otherwise context and activity decide, divided by a fitted temperature. The
scores are solved as an assignment problem (Hungarian), and the confidence is
the probability of the chosen assignment under a softmax over all possible
assignments. Each chosen source is then rescaled (per output channel) by least
squares against the mixture where its speaker is alone, so the voice is
as loud inside the overlap as around it; with no solo context, the sources are
jointly fitted to the mixture instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

#: Context log-odds are divided by this before the softmax over assignments, when some speaker
#: lacks a reference voice. Calibrated so that confidences match how often assignments are right,
#: on windows of generated conversations of *training* voices
#: (``python scripts/calibrate_assignment.py``: 1 / the context-only fit).
CONFIDENCE_TEMPERATURE = 41.0  # refitted for the session-9 separator (39.6 for session 8, 45.9 for 7, 40.9 for 6)
FRAME_SECONDS = 0.02       # energy shares are measured per 20 ms frame
SHARE_FLOOR = 1e-6         # a frame's log-odds are bounded (about +-13.8)
EVIDENCE_CAP_FRAMES = 50   # evidence grows with the square root of the solo frames, up to 1 s of them
#: Log-odds per unit of cosine similarity (-1..1) between a speaker's reference voice and a
#: source's embedding, over the whole source and over its core, at
#: ``assignment.embedding_weight`` 1, and per unit of context, when every speaker has a
#: reference voice. Fitted by logistic regression of "this pairing is the better one over
#: the core" on the three margins (``scripts/calibrate_assignment.py``). With a weak
#: separator both outputs carry both voices and the margins between the right and the wrong
#: pairing are small (0.01-0.2), yet their sign is right more often than the context's.
#: Measured on 445 windows of 47 conversations of training voices, cross-validated by
#: conversation (``--count 48 --first-seed 2000``). With the separator shipped in session 5:
#: the three together give the best probabilities (log-loss 0.153 against 0.165 for the two
#: voices alone and 0.215 for context alone), which matters because uncertain windows are
#: blended; the two voices alone picked the better pairing for slightly more of the time
#: (96.0 against 95.1 %), and inside podsep (12 other conversations of training voices) both
#: rules gave the same overlap SI-SDR (2.99 and 3.01 dB). Refitted for the session-6
#: separator: log-loss 0.158 / 0.174 / 0.213, and the three together also picked right more
#: often (95.2 against 94.2 % of the time). Refitted for the session-7 separator:
#: log-loss 0.171 / 0.180 / 0.226; the voices alone pick right slightly more often
#: (94.6 against 94.1 %), the three together keep the better probabilities. Refitted for the
#: session-8 separator: log-loss 0.148 / 0.169 / 0.198 and the three together pick right as
#: often as the voices alone (95.1 against 95.0 %). The whole output's voice got a small negative
#: weight from then on: once its core's voice and the context are counted it adds nothing (the two
#: voice margins move together), and the fit is used as it comes out. Refitted for the session-9
#: separator (these values; -0.28, 14.25 and 0.0160 for session 8): log-loss 0.139 / 0.158 / 0.195,
#: and the three together pick right slightly more often (96.1 against 95.8 % of the time).
#: Checked again for the session-16 separator (session 17, the same 48 conversations, 445
#: windows): these constants give log-loss 0.094 and pick right for 97.6 % of the time; a refit
#: for those weights, cross-validated, gives 0.099 and 97.4 % (context 0.0139, whole voice 7.06,
#: core voice 21.2), so these stay. (Context alone, for speakers without a reference voice: the
#: refit's temperature 31.7 gives cross-validated log-loss 0.155 against 41's 0.160; a confidence
#: change that small on the rare windows it applies to was left alone.)
VOICE_SCALE = -0.40
CORE_VOICE_SCALE = 17.22
CONTEXT_WITH_VOICE = 0.0154
#: Windows whose core is too short to embed (``podsep.separate.MIN_CORE_VOICE``) have only the
#: whole output's voice. The fit above sees both margins move together, so the whole margin takes
#: the weight of both; never below zero, so that a fit which splits their shared weight with a
#: negative part can never turn the voice evidence around.
WHOLE_VOICE_WITHOUT_CORE_SCALE = max(0.0, VOICE_SCALE + CORE_VOICE_SCALE)
#: Log-odds per unit of cosine similarity between a chunk's source and the previous chunk's
#: source for the same speaker, over the audio both chunks share (100 context units before
#: context was brought to log-odds by CONFIDENCE_TEMPERATURE).
CONTINUITY_SCALE = 2.4
ACTIVITY_SCALE = 4.0       # log-odds of a source's energy lying where a speaker talks, for speakers without solo context


@dataclass
class WindowAssignment:
    """The outcome for one window.

    Each assigned speaker keeps one mono separator output plus a gain per output
    channel (half the memory of storing the rescaled multichannel signal).
    """

    mono_sources: dict[str, np.ndarray]     # speaker -> separator output used, (window length,)
    channel_gains: dict[str, np.ndarray]    # speaker -> (channels,) level-restoring gains
    source_index: dict[str, int]            # speaker -> index of the separator output used
    confidence: float
    evidence: list[str]
    gains_db: dict[str, float] = field(default_factory=dict)
    #: per kind of evidence: its score for the chosen assignment minus its score for the
    #: runner-up (positive: that evidence agreed); what calibration is fitted on
    margins: dict[str, float] = field(default_factory=dict)
    unassigned_speakers: tuple[str, ...] = ()
    kept_from: int = 0                      # window sample where the kept sources begin (see trim)
    rendered: dict[str, np.ndarray] | None = None  # speaker -> (channels, n) share of the original window
    rendering: dict[str, Any] | None = None        # how the window was rendered (for the manifest)

    def render_with(self, rendered: dict[str, np.ndarray], description: dict[str, Any]) -> None:
        """Use ``rendered`` (per speaker, ``(channels, window length)``) instead of the rescaled outputs."""
        self.rendered = rendered
        self.rendering = description
        self.mono_sources = {s: np.zeros(0, np.float32) for s in rendered}  # the outputs are no longer needed

    @property
    def stored(self) -> dict[str, Any]:
        """What this window holds for assembly (the dict a spill store may move to disk)."""
        return self.rendered if self.rendered is not None else self.mono_sources

    def source(self, speaker: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The speaker's audio for window samples ``[start, stop)``, ``(channels, n)``."""
        first = start - self.kept_from
        last = None if stop is None else stop - self.kept_from
        if first < 0:
            raise ValueError("requested samples before the kept part of the source")
        if self.rendered is not None:
            signal = self.rendered[speaker]
            return np.asarray(signal[:, first:last], dtype=np.float32)
        mono = self.mono_sources[speaker][first:last]
        return (self.channel_gains[speaker][:, None] * mono[None, :]).astype(np.float32)

    def trim(self, start: int, stop: int) -> None:
        """Keep only window samples ``[start, stop)``: what assembly and the next chunk will read.

        Long recordings have thousands of windows; dropping the context padding
        roughly halves the memory they hold until the tracks are written.
        """
        start = max(start, self.kept_from)
        first, last = start - self.kept_from, max(stop - self.kept_from, 0)
        if self.rendered is not None:
            for speaker, signal in self.rendered.items():
                self.rendered[speaker] = np.ascontiguousarray(signal[:, first:last])
        else:
            for speaker, mono in self.mono_sources.items():
                self.mono_sources[speaker] = np.ascontiguousarray(mono[first:last])
        self.kept_from = start

    @property
    def speakers(self) -> list[str]:
        """The speakers this window gives a separated voice to."""
        return list(self.source_index)

    @property
    def sources(self) -> dict[str, np.ndarray]:
        """Every assigned speaker's audio over the whole window."""
        return {speaker: self.source(speaker) for speaker in self.source_index}


def assign_window(
    mixture: np.ndarray,
    sources: np.ndarray,
    activity: np.ndarray,
    speakers: Sequence[str],
    candidates: Sequence[str],
    sample_rate: int,
    *,
    min_context: float = 0.2,
    source_embeddings: np.ndarray | None = None,
    core_embeddings: np.ndarray | None = None,
    reference_embeddings: dict[str, np.ndarray] | None = None,
    embedding_weight: float = 1.0,
    previous: dict[str, np.ndarray] | None = None,
    previous_span: tuple[int, int] | None = None,
    continuity_weight: float = 1.0,
) -> WindowAssignment:
    """Assign ``sources`` to ``candidates`` inside one window.

    ``mixture``: ``(channels, n)`` original audio of the window; ``sources``:
    ``(num_sources, n)``; ``activity``: boolean ``(len(speakers), n)`` for *all*
    speakers of the file over the window; ``candidates``: the speakers to assign,
    most dominant first (at most ``num_sources`` are assigned, the rest are
    returned in ``unassigned_speakers``). ``previous`` maps speakers to the
    previous chunk's final source over ``previous_span`` (window-relative sample
    range) for continuity evidence. ``source_embeddings`` and ``core_embeddings``:
    one speaker embedding per source, of the whole source and of its part inside
    the window's core.
    """
    num_sources = sources.shape[0]
    chosen = list(candidates[:num_sources])
    leftover = tuple(candidates[num_sources:])
    mono = mixture.mean(axis=0)
    row_of = {label: row for row, label in enumerate(speakers)}
    solo = _solo_masks(activity, [row_of[label] for label in chosen], int(min_context * sample_rate))

    scores = np.zeros((len(chosen), num_sources))
    evidence: list[str] = []
    parts: dict[str, np.ndarray] = {}
    voice = _voice_scores(chosen, source_embeddings, core_embeddings, reference_embeddings)
    context = _context_scores(mono, sources, solo, [row_of[label] for label in chosen], sample_rate)
    if context is not None:
        parts["context"] = context
    if voice is not None and embedding_weight > 0:
        for name, part in voice.items():
            parts[name] = part  # margins in cosine units, before weighting
            evidence.append(name)
        if "voice_core" in voice:
            scores += embedding_weight * (VOICE_SCALE * voice["voice"] + CORE_VOICE_SCALE * voice["voice_core"])
        else:  # a core too short to embed: the whole output's voice stands in for both margins
            scores += embedding_weight * (WHOLE_VOICE_WITHOUT_CORE_SCALE * voice["voice"])
        if context is not None and CONTEXT_WITH_VOICE > 0:
            scores += CONTEXT_WITH_VOICE * context
            evidence.append("context")
    else:
        raw = _without_voice(scores.shape, context, sources, activity, solo, chosen, row_of, parts, evidence)
        scores += raw / CONFIDENCE_TEMPERATURE
    if previous and previous_span is not None and all(s in previous for s in chosen):
        start, end = previous_span
        continuity = np.array([[abs(_cosine(previous[s], sources[j, start:end])) for j in range(num_sources)] for s in chosen])
        scores += continuity_weight * CONTINUITY_SCALE * continuity
        parts["continuity"] = continuity
        evidence.append("continuity")

    rows, columns = linear_sum_assignment(-scores)
    mapping = {chosen[r]: int(c) for r, c in zip(rows, columns)}
    confidence = (_confidence(scores, rows, columns) if evidence
                  else 1.0 / _count_assignments(len(chosen), num_sources))
    margins = _margins(parts, scores, columns)

    channel_gains, gains_db = _restore_levels(mixture, sources, mapping, solo, activity, [row_of[s] for s in chosen])
    mono = {label: np.ascontiguousarray(sources[index], dtype=np.float32) for label, index in mapping.items()}
    return WindowAssignment(mono, channel_gains, mapping, confidence, evidence or ["none"], gains_db, margins,
                            leftover)


def _voice_scores(chosen: list[str], whole: np.ndarray | None, core: np.ndarray | None,
                  references: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """Cosine similarities of each speaker's reference voice to each source (whole, and core when given)."""
    if whole is None or not references or not all(s in references for s in chosen):
        return None
    voices = np.stack([references[s] for s in chosen])
    parts = {"voice": voices @ np.asarray(whole).T}
    if core is not None:
        parts["voice_core"] = voices @ np.asarray(core).T
    return parts


def _without_voice(shape: tuple[int, int], context: np.ndarray | None, sources: np.ndarray, activity: np.ndarray,
                   solo: dict[int, np.ndarray], chosen: list[str], row_of: dict[str, int],
                   parts: dict[str, np.ndarray], evidence: list[str]) -> np.ndarray:
    """Context and activity log-odds, for windows whose speakers lack a reference voice."""
    scores = np.zeros(shape)
    if context is not None:
        scores += context
        evidence.append("context")
    placement = _activity_scores(sources, activity, [row_of[label] for label in chosen])
    if placement is None:
        return scores
    if context is None:  # no solo context at all: a weak hint, far below the log-odds above
        parts["activity"] = placement
        evidence.append("activity")
        return scores + placement
    lacking = [i for i, label in enumerate(chosen) if row_of[label] not in solo]
    if lacking:  # speakers heard only inside the overlap: whose output lies where they talk
        odds = np.clip(placement[lacking], SHARE_FLOOR, 1 - SHARE_FLOOR)
        part = np.zeros(shape)
        part[lacking] = ACTIVITY_SCALE * np.log(odds / (1 - odds))
        parts["activity"] = part
        evidence.append("activity")
        scores += part
    return scores


def _solo_masks(activity: np.ndarray, chosen_rows: list[int], min_samples: int) -> dict[int, np.ndarray]:
    """Per chosen speaker row, where that speaker is the only one active (if long enough)."""
    count = activity.sum(axis=0)
    masks = {}
    for row in chosen_rows:
        mask = activity[row] & (count == 1)
        if mask.sum() >= max(min_samples, 1):
            masks[row] = mask
    return masks


def _context_scores(
    mixture: np.ndarray, sources: np.ndarray, solo: dict[int, np.ndarray], chosen_rows: list[int], sample_rate: int
) -> np.ndarray | None:
    """Log-odds ``(len(chosen_rows), num_sources)`` that each source holds each speaker's solo speech.

    The sources are first scaled to add up to the mixture (least squares), so
    their energies are comparable; then, frame by frame where a speaker talks
    alone, the share of the energy each source carries there is turned into
    log-odds, averaged with the frames' energies as weights, and multiplied by
    the square root of the number of solo frames (capped at one second's worth):
    more solo speech is more evidence, as for a sum of independent votes. A weak separator that leaks
    a faint copy of a voice into the wrong output still puts most of that
    voice's energy in the right one, which is what this measures (a
    scale-invariant correlation would not see the difference).
    """
    if not solo:
        return None
    num_sources = sources.shape[0]
    gains = _mixture_gains(mixture, sources)
    scaled = sources.astype(np.float64) * gains[:, None]
    frame = max(1, int(FRAME_SECONDS * sample_rate))
    scores = np.zeros((len(chosen_rows), num_sources))
    for i, row in enumerate(chosen_rows):
        mask = solo.get(row)
        if mask is None:
            continue
        index = np.flatnonzero(mask)
        count = index.size // frame * frame
        if count == 0:
            continue
        energy = (scaled[:, index[:count]].reshape(num_sources, -1, frame) ** 2).sum(axis=-1) + 1e-20
        share = np.clip(energy / energy.sum(axis=0, keepdims=True), SHARE_FLOOR, 1 - SHARE_FLOOR)
        weight = energy.sum(axis=0) / energy.sum()
        frames = min(count // frame, EVIDENCE_CAP_FRAMES)
        scores[i] = np.sqrt(frames) * np.sum(weight * np.log(share / (1 - share)), axis=1)
    return scores


def _mixture_gains(mixture: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Least-squares gains making the sources add up to the mixture (ones when degenerate)."""
    basis = sources.astype(np.float64).T
    if not np.any(basis):
        return np.ones(sources.shape[0])
    gains, *_ = np.linalg.lstsq(basis, mixture.astype(np.float64), rcond=None)
    return np.where(np.abs(gains) > 1e-12, np.abs(gains), 1.0)


def _activity_scores(sources: np.ndarray, activity: np.ndarray, chosen_rows: list[int]) -> np.ndarray | None:
    """Share of each source's energy lying where each candidate speaks (scale-invariant).

    Works without any solo context: a source that is loud where a speaker is
    silent is not that speaker.
    """
    energy = np.square(sources.astype(np.float64))
    total = energy.sum(axis=1)
    if not np.any(total > 0):
        return None
    inside = np.stack([energy[:, activity[row]].sum(axis=1) for row in chosen_rows])
    return inside / np.maximum(total[None, :], 1e-20)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denominator = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / denominator) if denominator > 1e-20 else 0.0


def _count_assignments(num_speakers: int, num_sources: int) -> int:
    count = 1
    for k in range(num_speakers):
        count *= num_sources - k
    return max(count, 1)


def _margins(parts: dict[str, np.ndarray], scores: np.ndarray, columns: np.ndarray) -> dict[str, float]:
    """Each evidence's score for the chosen assignment minus its score for the runner-up."""
    num_speakers, num_sources = scores.shape
    chosen = tuple(int(c) for c in columns)
    alternatives = [p for p in itertools.permutations(range(num_sources), num_speakers) if p != chosen]
    if not alternatives or not parts:
        return {}
    runner_up = max(alternatives, key=lambda p: sum(scores[r, c] for r, c in enumerate(p)))
    return {name: round(float(sum(part[r, chosen[r]] - part[r, runner_up[r]] for r in range(num_speakers))), 4)
            for name, part in parts.items()}


def _confidence(scores: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> float:
    """Softmax probability of the chosen assignment among all injective assignments (scores in log-odds)."""
    num_speakers, num_sources = scores.shape
    best = float(scores[rows, columns].sum())
    totals = [
        sum(scores[r, c] for r, c in enumerate(permutation))
        for permutation in itertools.permutations(range(num_sources), num_speakers)
    ]
    return float(1.0 / np.exp(np.array(totals) - best).sum())


def _restore_levels(
    mixture: np.ndarray,
    sources: np.ndarray,
    mapping: dict[str, int],
    solo: dict[int, np.ndarray],
    activity: np.ndarray,
    rows: list[int],
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-channel least-squares gains: from each speaker's solo context, else jointly."""
    channels = mixture.shape[0]
    labels = list(mapping)
    gains = np.zeros((len(labels), channels))
    fitted = np.zeros(len(labels), dtype=bool)
    for i, (label, row) in enumerate(zip(labels, rows)):
        mask = solo.get(row)
        if mask is None:
            continue
        source = sources[mapping[label], mask].astype(np.float64)
        energy = float(np.dot(source, source))
        if energy <= 1e-12 * max(mask.sum(), 1):
            continue
        for c in range(channels):
            gains[i, c] = float(np.dot(mixture[c, mask].astype(np.float64), source)) / energy
        fitted[i] = True
    if not fitted.all():
        # Joint fit where any assigned speaker talks: mixture ≈ Σ gain_i · source_i.
        mask = activity[rows].any(axis=0)
        if mask.sum() > 0:
            basis = np.stack([sources[mapping[label], mask] for label in labels], axis=1).astype(np.float64)
            for c in range(channels):
                solution, *_ = np.linalg.lstsq(basis, mixture[c, mask].astype(np.float64), rcond=None)
                for i in np.flatnonzero(~fitted):
                    gains[i, c] = solution[i]
    channel_gains = {}
    gains_db = {}
    for i, label in enumerate(labels):
        channel_gains[label] = gains[i].astype(np.float32)
        magnitude = float(np.sqrt(np.mean(np.square(gains[i]))))
        gains_db[label] = float(20 * np.log10(magnitude)) if magnitude > 0 else float("-inf")
    return channel_gains, gains_db
