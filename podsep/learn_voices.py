"""The adaptation stage: learn this episode's voices before separating its overlaps.

A podcast is the best training set for separating itself: the same people talk
alone for most of it. This stage decides whether to adapt (``separation.adapt``:
``off``, ``on`` or ``auto``), collects each speaker's solo speech from the
diarization in use, fine-tunes a copy of podsep's embedded separator on
mixtures of it (:mod:`podsep.adapt`), and keeps the copy only when it beats the
generic model on held-out speech. With a voice profile folder
(``separation.voices``), a show's recurring voices are named from the profile
and its adapted weights (the separator's, and the top-octave network's once an
episode has adapted it) are the starting point; the profile is updated after
the run (:mod:`podsep.voices`).

Adaptation is deterministic: its seed comes from the input's fingerprint and
its budget is a number of steps fixed before training, so the same input and
settings give the same tracks on any machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .audio import ANALYSIS_RATE, Audio, FileAudio
from .config import Settings
from .diarization import Diarization
from .errors import ModelError
from .intervals import SpeakerActivity
from .overlaps import OverlapRegion, Window
from .run import Run


def is_embedded(separator: Any) -> bool:
    """Whether ``separator`` is podsep's own (the only kind that can be adapted)."""
    from .models.embedded.separator import EmbeddedSeparator

    return isinstance(separator, EmbeddedSeparator)


def seed_of(fingerprint: str) -> int:
    """A training seed from the input's SHA-256: the same episode always trains the same way."""
    return int(fingerprint[:8], 16) if fingerprint else 0


def learn_episode_voices(separator: Any, source: Audio | FileAudio, activity: SpeakerActivity,
                         regions: list[OverlapRegion], windows: list[Window], settings: Settings, run: Run,
                         fingerprint: str) -> tuple[Any, dict[str, Any]]:
    """The separator to use for this episode, and the manifest's ``adaptation`` entry."""
    from .adapt import adapt_separator, collect_solo_speech, overlap_statistics, plan_adaptation

    mode = settings.separation.adapt
    if mode == "off":
        return separator, {"mode": "off", "used": False, "reason": "adaptation is off"}
    if not is_embedded(separator):
        reason = "only podsep's embedded separator can be adapted (the separator in use is another model)"
        if mode == "on":
            run.warn(f"--adapt: {reason}; separating with it as it is")
        return separator, {"mode": mode, "used": False, "reason": reason}
    with run.stage("adaptation") as stage:
        solo = collect_solo_speech(lambda a, b: source.read(a, b).mean(axis=0), activity,
                                   model_rate=separator.sample_rate)
        plan = plan_adaptation(source.duration, solo, [w.speakers for w in windows], mode=mode,
                               budget_cap_s=settings.separation.adapt_budget, model_rate=separator.sample_rate,
                               overlapped_s=sum(region.duration for region in regions))
        entry: dict[str, Any] = plan.to_manifest()
        if not plan.enabled:
            if plan.warn:
                run.warn(f"--adapt: {plan.reason}; separating with the generic model")
            entry["used"] = False
            stage.artifact = entry
            return separator, entry
        result = adapt_separator(separator, solo, list(plan.pairs), plan.steps, seed=seed_of(fingerprint),
                                 hook=run.hook, overlap_seconds=overlap_statistics(regions), budget_s=plan.budget_s,
                                 workers=adaptation_workers())
        entry.update(result.to_manifest())
        if mode == "on" and not result.used:
            run.warn(f"--adapt: {result.reason}")
        stage.artifact = entry
    return (result.separator if result.used else separator), entry


def learn_episode_top_octave(separator: Any, source: Audio | FileAudio, activity: SpeakerActivity,
                             regions: list[OverlapRegion], settings: Settings, run: Run, fingerprint: str,
                             adaptation: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """The separator with its top-octave network adapted to the episode's voices, and what the
    manifest's ``adaptation.top_octave`` says (``None`` where the stage does not apply).

    It follows the separator's adaptation plan (the same pairs, only when that plan ran, whether
    or not the adapted separator was kept: the network learns from the separator in use) and
    applies where the network does: podsep's embedded separator with its top-octave network, on
    input at 16 kHz or more (``separation.adapt_top_octave: false`` skips it).
    """
    from .adapt import collect_solo_speech, overlap_statistics
    from .adapt_top_octave import adapt_top_octave
    from .models.embedded.high_band import RATE

    if (not settings.separation.adapt_top_octave or not adaptation.get("enabled") or not is_embedded(separator)
            or separator.top_octave_network is None or source.sample_rate < RATE):
        return separator, None
    with run.stage("adaptation") as stage:  # the stage's second part: its time adds to the first's
        solo = collect_solo_speech(lambda a, b: source.read(a, b).mean(axis=0), activity, model_rate=RATE)
        result = adapt_top_octave(separator, solo, adaptation.get("pairs") or [], seed=seed_of(fingerprint),
                                  overlap_seconds=overlap_statistics(regions), hook=run.substep_hook("adaptation"),
                                  workers=adaptation_workers())
        stage.artifact = {**adaptation, "top_octave": result.to_manifest()}
    return (result.separator if result.used else separator), result.to_manifest()


def adaptation_workers() -> int:
    """How many workers share each adaptation step: the torch threads this process may use
    (podsep's CLI sets them from the free cores; a batch worker gets its share), at most
    the step's micro-batches. The weights do not depend on it, only the wall time does:
    the budget is counted in 2-core compute, so one worker takes twice as long."""
    import torch

    from .adapt import MICRO_BATCHES

    return max(1, min(MICRO_BATCHES, torch.get_num_threads()))


def speaker_voices(diarizer: Any, analysis: np.ndarray, activity: SpeakerActivity,
                   seconds: float) -> dict[str, np.ndarray]:
    """Each speaker's reference embedding (their solo speech), when the diarizer can embed."""
    from .separate import reference_embeddings

    return reference_embeddings(diarizer, analysis, activity, seconds)


def voice_profile(settings: Settings, diarizer: Any, analysis: np.ndarray,
                   found: Diarization) -> tuple[Any, dict[str, np.ndarray]]:
    """The show's voice profile (``separation.voices``) and this episode's voices by diarizer label."""
    if not settings.separation.voices:
        return None, {}
    from .models.diarizers import voice_space
    from .voices import load_profile

    profile = load_profile(settings.separation.voices)
    space = voice_space(diarizer)
    if profile is not None and profile.embedder and space and profile.embedder != space:
        raise ModelError(f"voice profile {settings.separation.voices} holds {profile.embedder} voices; this run "
                         f"embeds voices with {space} (use the diarizer the profile was made with, or a new folder)")
    activity = SpeakerActivity([(t.start, t.end, t.speaker) for t in found.turns], found.speakers, ANALYSIS_RATE,
                               len(analysis))
    voices = speaker_voices(diarizer, analysis, activity, settings.assignment.reference_speech)
    return profile, voices


def profile_names(profile: Any, voices: dict[str, np.ndarray], labels: list[str]) -> list[str] | None:
    """Speaker names (in order of first speech) from the profile's matching voices; unmatched keep their label."""
    if profile is None or not voices:
        return None
    matched = profile.match(voices).names
    return [matched.get(label, label) for label in labels] if matched else None


def save_voice_profile(settings: Settings, profile: Any, voices: dict[str, np.ndarray], separator: Any,
                        run: Run, space: str | None) -> dict[str, Any]:
    """Update the show's profile with this episode's voices and separator; what the manifest says of it.

    ``space`` names the embedding space of ``voices`` (see ``models.diarizers.voice_space``).
    """
    from .voices import save_profile

    if not voices:
        reason = "no voices to save: no speaker had solo speech the voice embedder could use"
        run.warn(f"--voices: {reason}")
        return {"folder": settings.separation.voices, "saved": False, "reason": reason}
    saved = save_profile(settings.separation.voices, voices, separator=separator if is_embedded(separator) else None,
                         previous=profile, embedder=space)
    return {"folder": settings.separation.voices, "saved": True, "voices": sorted(saved.voices),
            "started_from_profile": profile is not None,
            "top_octave_saved": bool(is_embedded(separator) and separator.high_band_adapted),
            "top_octave_sha256": saved.top_octave_sha256}
