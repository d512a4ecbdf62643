"""Invariants under random input (hypothesis): lengths, finiteness, solo regions, bounded crossfades."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import podsep
from podsep.assembly import ORIGINAL, SEPARATED, SILENCE, SeparatedSpan, plan_track, render
from podsep.intervals import Intervals

RATE = 1000


@st.composite
def random_tracks(draw):
    """Random turns for 1-3 speakers, random separation spans, random assignment, random fade."""
    length = draw(st.integers(200, 3000))
    speakers = draw(st.integers(1, 3))

    def intervals():
        points = sorted(draw(st.lists(st.integers(0, length), min_size=0, max_size=10)))
        return Intervals.of(zip(points[::2], points[1::2]))

    active = [intervals() for _ in range(speakers)]
    spans = []
    for index in range(draw(st.integers(0, 4))):
        a, b = sorted(draw(st.lists(st.integers(0, length), min_size=2, max_size=2)))
        if b - a < 2:
            continue
        core_a, core_b = sorted(draw(st.lists(st.integers(a, b), min_size=2, max_size=2)))
        spans.append(SeparatedSpan(len(spans), a, b, core_a, core_b))
    # cores must not overlap each other (the planner guarantees it); keep the first of any overlapping pair
    kept: list[SeparatedSpan] = []
    for span in spans:
        if all(span.core_end <= k.core_start or span.core_start >= k.core_end for k in kept):
            kept.append(SeparatedSpan(len(kept), span.start, span.end, span.core_start, span.core_end))
    assigned = {i for i in range(len(kept)) if draw(st.booleans())}
    fade = draw(st.integers(0, 60))
    policy = draw(st.sampled_from(["separate", "duplicate", "mute"]))
    seed = draw(st.integers(0, 2**31 - 1))
    return length, active, kept, assigned, fade, policy, seed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tracks())
def test_assembly_invariants(case):
    length, active, spans, assigned, fade, policy, seed = case
    rng = np.random.default_rng(seed)
    original = rng.uniform(-1, 1, (2, length)).astype(np.float32)
    separated = {span.window: rng.uniform(-1, 1, (2, span.end - span.start)).astype(np.float32) for span in spans}
    own = active[0]
    others = Intervals.of([p for s in active[1:] for p in s.pairs()])
    plan = plan_track(own, others, spans, assigned, length, overlap_policy=policy, fade=fade)

    # segments tile the file; joints are disjoint and inside it
    assert plan.segments[0].start == 0 and plan.segments[-1].end == length
    assert all(a.end == b.start for a, b in zip(plan.segments, plan.segments[1:]))
    joints = sorted((j.start, j.end) for j in plan.joints)
    assert all(0 <= a < b <= length for a, b in joints)
    assert all(x[1] <= y[0] for x, y in zip(joints, joints[1:]))

    def read(segment, a, b):
        if segment.kind == ORIGINAL:
            return original[:, a:b]
        span = spans[segment.window]
        assert span.start <= a and b <= span.end, "read outside the separated window"
        return separated[segment.window][:, a - span.start:b - span.start]

    out = render(plan, 0, length, read, 2)
    assert out.shape == (2, length) and np.all(np.isfinite(out))
    in_joint = np.zeros(length, bool)
    for a, b in joints:
        in_joint[a:b] = True
    for segment in plan.segments:
        body = np.arange(segment.start, segment.end)
        body = body[~in_joint[body]]
        if segment.kind == ORIGINAL:
            assert np.array_equal(out[:, body], original[:, body])  # solo regions are the input, bit for bit
            assert own.contains(body).all()
        elif segment.kind == SILENCE:
            assert not np.any(out[:, body])
        else:
            assert segment.kind == SEPARATED and segment.window in assigned
    for joint in plan.joints:  # crossfades never exceed √2 x the louder side
        a, b = joint.start, joint.end
        sides = [read(s, a, b) if s.kind != SILENCE else np.zeros((2, b - a), np.float32)
                 for s in (joint.left, joint.right)]
        bound = np.sqrt(2.0) * np.maximum(np.abs(sides[0]), np.abs(sides[1])) + 1e-6
        assert np.all(np.abs(out[:, a:b]) <= bound)
    # nobody else's speech from the mixture leaks in: outside our turns the original is never used
    outside = ~own.contains(np.arange(length))
    for joint in plan.joints:
        if ORIGINAL in (joint.left.kind, joint.right.kind) and SILENCE in (joint.left.kind, joint.right.kind):
            assert not others.touches(joint.start, joint.end) or own.contains(np.arange(joint.start, joint.end)).all()
    assert not np.any(out[:, outside & ~in_joint & ~_separated_mask(plan, length)])


def _separated_mask(plan, length):
    mask = np.zeros(length, bool)
    for segment in plan.segments:
        if segment.kind == SEPARATED:
            mask[segment.start:segment.end] = True
    return mask


class NoisySeparator:
    """A stand-in model: two arbitrary mixtures of the window and noise."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, window, rate):
        noise = self.rng.standard_normal(len(window)).astype(np.float32) * 0.1
        return np.stack([0.7 * window + noise, 0.3 * window - noise])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 3),
    st.lists(st.tuples(st.floats(0, 9.5), st.floats(0.05, 4.0), st.integers(0, 2)), min_size=1, max_size=12),
    st.sampled_from([8000, 16000, 44100]),
    st.integers(1, 2),
    st.integers(0, 10_000),
)
def test_split_invariants(num_speakers, turns, rate, channels, seed):
    rng = np.random.default_rng(seed)
    length = int(10.0 * rate)
    signal = (rng.standard_normal((channels, length)) * 0.1).astype(np.float32)
    diarization = podsep.Diarization.from_turns(
        [(start, min(start + duration, 10.0), f"S{speaker % num_speakers}") for start, duration, speaker in turns])
    result = podsep.split(signal, sample_rate=rate, diarization=diarization, separator=NoisySeparator(seed))
    used = result.diarization  # the turns podsep worked with (millisecond resolution, as in its RTTM)
    assert set(used.speakers) == set(diarization.speakers)
    by_speaker = lambda d: sorted(d.turns, key=lambda t: (t.speaker, t.start))  # noqa: E731
    assert all(abs(a.start - b.start) <= 5.01e-4 and abs(a.end - b.end) <= 5.01e-4
               for a, b in zip(by_speaker(used), by_speaker(diarization)))
    diarization = used
    speakers = diarization.speakers
    activity = diarization.activity(rate, length, speakers)
    alone = activity & (activity.sum(axis=0) == 1)
    margin = int(0.03 * rate) + 2
    boundary = np.zeros(length, bool)
    for turn in diarization.turns:
        for t in (turn.start, turn.end):
            i = int(round(t * rate))
            boundary[max(0, i - margin):i + margin] = True
    for region in result.manifest["overlaps"]:
        for window in region["windows"]:
            for t in (window["core_start"], window["core_end"]):
                i = int(round(t * rate))
                boundary[max(0, i - margin):i + margin] = True
    assert sorted(result.tracks) == sorted(speakers)
    for row, speaker in enumerate(speakers):
        track = result.tracks[speaker]
        assert track.shape == (channels, length)
        assert np.all(np.isfinite(track))
        solo = alone[row] & ~boundary
        assert np.array_equal(track[:, solo], signal[:, solo])
        silent = ~activity[row] & ~boundary
        assert not np.any(track[:, silent])
