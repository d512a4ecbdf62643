"""Separation stage: run the separator over the overlap windows and assign its sources.

Each window is read from the original only when the separator needs it; its
sources are assigned to speakers at once (so a long recording never holds all
separated audio), trimmed to what assembly will read, and parked in a
:class:`~podsep.spill.SpillStore` past a memory budget.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .assignment import WindowAssignment, assign_window
from .audio import ANALYSIS_RATE, Audio, FileAudio, resample
from .config import Settings
from .diarization import to_samples
from .intervals import SpeakerActivity
from .models.separation import iter_separated
from .overlaps import Window
from .run import Run
from . import reconstruct
from .reconstruct import VoiceSpectrum, rebuild_window
from .spill import SpillStore

PROFILE_SECONDS = 20.0  # solo speech per speaker used to learn their spectrum above the separator's band
MIN_CORE_VOICE = 0.25  # seconds: shorter cores are not embedded on their own
CERTAIN = 0.95  # assignment confidence from which a window is rendered without blending


def separate_and_assign(
    source: Audio | FileAudio,
    windows: list[Window],
    bounds: list[tuple[int, int]],
    activity: SpeakerActivity,
    diarizer: Any,
    analysis: np.ndarray,
    separator: Any,
    settings: Settings,
    run: Run,
    spill: SpillStore,
    voices: dict[str, np.ndarray] | None = None,
) -> list[WindowAssignment]:
    """Separate each window and assign its sources at once, keeping only what assembly needs.

    A window is final once trimmed for the last time (after its successor
    chunk has read the audio they share); final windows go to ``spill``.
    ``voices``: the speakers' reference embeddings when the run already has
    them (a voice profile run), so they are not computed twice.
    """
    rate = source.sample_rate
    speakers = activity.speakers
    references: dict[str, np.ndarray] = {}
    with run.stage("separation"):
        if settings.assignment.embedding_weight > 0:
            references = dict(voices) if voices else reference_embeddings(
                diarizer, analysis, activity, settings.assignment.reference_speech)
        rendering = settings.assembly.overlap_rendering
        bands = rendering_bands(separator, rate)
        spectra = {band: speaker_spectra(source, activity, band) for band in bands
                   if rendering == "rebuild" and band is not None}
        trust = {**trust_of(separator), "fit_below_hz": gain_fit_band(separator, rate)}
        results: list[WindowAssignment | None] = [None] * len(windows)
        previous_by_region: dict[int, int] = {}
        assign_seconds = 0.0
        stream = iter_separated(
            separator, lambda i: source.read(*bounds[i]).mean(axis=0, dtype=np.float64).astype(np.float32),
            [b - a for a, b in bounds], rate, batch_size=settings.separation.batch_size, warn=run.warn,
        )
        run.report("separation", None, completed=0, total=len(windows))
        for done, (index, sources) in enumerate(stream, start=1):
            started = time.perf_counter()
            window, (start, end) = windows[index], bounds[index]
            window_activity = np.stack([activity[s].mask(start, end) for s in speakers])
            vectors = core_vectors = None
            if references:
                vectors, core_vectors = source_voices(diarizer, sources, window, start, rate)
            previous, span = None, None
            earlier_index = previous_by_region.get(window.region)
            if earlier_index is not None and results[earlier_index] is not None:
                earlier = results[earlier_index]
                earlier_start, earlier_end = bounds[earlier_index]
                shared_start, shared_end = max(start, earlier_start), min(end, earlier_end)
                if shared_end > shared_start:
                    span = (shared_start - start, shared_end - start)
                    previous = {s: earlier.source(s, shared_start - earlier_start, shared_end - earlier_start).mean(axis=0)
                                for s in earlier.speakers}
            audio = source.read(start, end)
            outcome = assign_window(
                audio, sources, window_activity, speakers, window.speakers, rate,
                min_context=settings.assignment.min_context, source_embeddings=vectors, core_embeddings=core_vectors,
                reference_embeddings=references, embedding_weight=settings.assignment.embedding_weight,
                previous=previous, previous_span=span, continuity_weight=settings.assignment.continuity_weight,
            )
            if outcome.unassigned_speakers:
                run.warn(f"{window.core_start:.2f}-{window.core_end:.2f} s: {len(window.speakers)} speakers at once; "
                         f"separated the {len(outcome.source_index)} most active, "
                         f"{', '.join(outcome.unassigned_speakers)} left as the mixture")
            if rendering == "rebuild":
                rebuild(outcome, audio, sources, rate, bands, spectra, trust)
            results[index] = outcome
            if earlier_index is not None and results[earlier_index] is not None:
                trim_to_use(results[earlier_index], windows[earlier_index], bounds[earlier_index], rate,
                             settings, has_successor=False)
                spill.park(results[earlier_index].stored)
            has_successor = window.chunk < window.num_chunks - 1
            trim_to_use(outcome, window, bounds[index], rate, settings, has_successor=has_successor)
            if not has_successor:
                spill.park(outcome.stored)
            previous_by_region[window.region] = index
            assign_seconds += time.perf_counter() - started
            run.report("separation", outcome, completed=done, total=len(windows))
    run.timings["separation"] = round(run.timings["separation"] - assign_seconds, 4)
    run.timings["assignment"] = round(assign_seconds, 4)
    return [r for r in results if r is not None]


def source_voices(diarizer: Any, sources: np.ndarray, window: Window, start: int,
                  rate: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Speaker embeddings of each source over the whole window and over its core, in one call.

    The core is what the tracks keep, and a separator may swap its outputs
    inside a window, so the core's voice is evidence of its own (see
    :mod:`podsep.assignment`). Cores shorter than :data:`MIN_CORE_VOICE` are
    too short to embed; their windows use the whole sources' voices alone.
    """
    core_start = max(0, to_samples(window.core_start, rate) - start)
    core_end = min(sources.shape[1], to_samples(window.core_end, rate) - start)
    clips = [resample(s, rate, ANALYSIS_RATE) for s in sources]
    with_core = core_end - core_start >= MIN_CORE_VOICE * rate
    if with_core:
        clips += [resample(s[core_start:core_end], rate, ANALYSIS_RATE) for s in sources]
    vectors = diarizer.embed(clips, ANALYSIS_RATE)
    if vectors is None:
        return None, None
    count = sources.shape[0]
    return vectors[:count], (vectors[count:] if with_core else None)


def separator_band(separator: Any, rate: int) -> float | None:
    """The highest frequency the separator's outputs reach (half its rate, or of its ``band_rate`` when its
    outputs reach further than the rate it separates at), or ``None`` when they reach the input's."""
    model_rate = getattr(separator, "band_rate", None) or getattr(separator, "sample_rate", None)
    if not isinstance(model_rate, (int, float)) or model_rate <= 0 or model_rate >= rate:
        return None
    return model_rate / 2.0


def rendering_bands(separator: Any, rate: int) -> list[float | None]:
    """The bands from which overlaps are rendered at ``rate``, one rendering per band, averaged.

    One, :func:`separator_band`, for any separator whose outputs come from one model. A separator
    whose outputs reach above the band it separates in (podsep's embedded model with its
    top-octave network: separated up to 4 kHz, its 3.75-8 kHz shared by the network) gets, at
    input rates above the network's band, a second rendering extended from its own band, and the
    two are averaged. Each rendering adds up to the mixture, so their average does too. Measured
    on the development pairs with the shipped network (session 30, SI-SDR above 4 kHz / above 8
    kHz, 30 pairs of klettres voices; ``docs/benchmarks.md``): at 48 kHz the network's rendering
    alone 2.37 / 3.71 dB, the extension from 4 kHz alone 2.78 / 2.33, their average 3.64 / 3.42;
    at 44.1 kHz 1.17 / 2.28, 1.13 / 2.57 and 2.80 / 3.20. The two err differently: the extension
    from 4 kHz fits the mixture's spectrum from 4 kHz to Nyquist, the network sees the voices up
    to 8 kHz. At 16 kHz the network reaches the input's Nyquist and the extension from 4 kHz has
    only the mixture's 4-8 kHz to fit: the network's rendering alone measured 4.76 / 4.23 dB above
    4 kHz on the 16 kHz pairs of training / unseen voices (the extension from 4 kHz -1.06 / 0.48),
    and an average lost there (with a half-trained network, 1.92 / 1.74 against 3.44 / 2.97 alone).
    """
    band = separator_band(separator, rate)
    own_rate = getattr(separator, "sample_rate", None)
    reach = getattr(separator, "band_rate", None)
    if band is None or not isinstance(own_rate, (int, float)) or not isinstance(reach, (int, float)):
        return [band]
    return [band, own_rate / 2.0] if own_rate < reach else [band]  # (band set: the input is above ``reach``)


def gain_fit_band(separator: Any, rate: int) -> float | None:
    """Below which frequency a window's estimates are fitted to it (``None``: the whole band).

    The separator's own band where a second network fills its outputs above it (podsep's
    embedded model with its top-octave network, at input rates above the model's own): the gains
    then come from what the separator itself separated, and an episode's adapted top octave cannot
    move them (``reconstruct.FIT_GAINS_IN_OWN_BAND``; session 34: an adapted octave moved a hard
    window's fit from -14.0 to -2.7 dB; on the development conversations the own-band fit lost
    nothing, 7.376 against 7.372 dB, and it gained 0.01-0.03 dB on the evaluation sets).
    """
    own_rate = getattr(separator, "sample_rate", None)
    reach = getattr(separator, "band_rate", None)
    if (not reconstruct.FIT_GAINS_IN_OWN_BAND or not isinstance(own_rate, (int, float))
            or not isinstance(reach, (int, float)) or own_rate >= reach or rate <= own_rate):
        return None
    return own_rate / 2.0 * reconstruct.BAND_MARGIN


def speaker_spectra(source: Audio | FileAudio, activity: SpeakerActivity, band_hz: float,
                    seconds: float = PROFILE_SECONDS) -> dict[str, VoiceSpectrum]:
    """Each speaker's :class:`VoiceSpectrum`, learnt from their longest solo stretches at the input's rate."""
    spectra = {}
    for speaker in activity.speakers:
        runs = activity.longest_solo_runs(speaker, seconds, min_seconds=0.2)
        if runs:
            voice = np.concatenate([source.read(a, b).mean(axis=0) for a, b in runs])
            spectra[speaker] = VoiceSpectrum.measure(voice, source.sample_rate, band_hz)
    return spectra


def certainty_of(confidence: float) -> float:
    """How far to trust an assignment when sharing: 0 at a coin toss, 1 from :data:`CERTAIN` up.

    Below that, blending a speaker's share with the other's in proportion to the
    chance of being right minimises the expected error; above it (assignments
    that are right about 97 % of the time, measured on training voices) the
    residual risk costs less than the blend would.
    """
    return float(np.clip((confidence - 0.5) / (CERTAIN - 0.5), 0.0, 1.0))


def rebuild(outcome: WindowAssignment, audio: np.ndarray, sources: np.ndarray, rate: int,
            bands: list[float | None], spectra: dict[float, dict[str, VoiceSpectrum]] | None,
            trust: dict[str, float] | None = None) -> None:
    """Replace the window's pasted outputs by shares of the original (see :mod:`podsep.reconstruct`),
    the average of one rendering per band of :func:`rendering_bands` (``spectra``: the speakers'
    :func:`speaker_spectra` per band); ``trust``: :func:`trust_of` the separator (``None``: the
    defaults for good estimates)."""
    assigned = outcome.speakers
    order = [outcome.source_index[s] for s in assigned]
    order += [j for j in range(sources.shape[0]) if j not in order]  # unassigned outputs stay in the sum
    certainty = certainty_of(outcome.confidence)
    renderings, rules = [], []
    for band_hz in bands:
        voices = None
        known_spectra = (spectra or {}).get(band_hz) if band_hz is not None else None
        if known_spectra and all(s in known_spectra for s in assigned):
            known = [known_spectra[s] for s in assigned]
            voices = known + [VoiceSpectrum.average(known)] * (len(order) - len(assigned))
            rules.append("voice regression" if all(v.extension is not None for v in voices) else "solo tilt")
        elif band_hz is not None:
            rules.append("even tilt")
        renderings.append((band_hz, voices))
    (band_hz, voices), *also = renderings
    shares = rebuild_window(audio, sources[order], rate, band_hz=band_hz, voices=voices, certainty=certainty,
                            also=also, **(trust or {}))
    description: dict[str, Any] = {"method": "rebuild", "certainty": round(certainty, 4), "model_band_hz": bands[0]}
    if len(bands) > 1:
        description["averaged_with_band_hz"] = bands[1:]
    if rules:
        description["above_band"] = rules[0]
    outcome.render_with({s: shares[i] for i, s in enumerate(assigned)}, description)


def trim_to_use(outcome: WindowAssignment, window: Window, bounds: tuple[int, int], rate: int, settings: Settings,
                 *, has_successor: bool) -> None:
    """Drop the parts of a window's sources that neither assembly nor the next chunk will read.

    Assembly reads a source inside its core and at most one crossfade beyond
    each core edge; the next chunk of a long region also compares the audio both
    windows share, so a chunk with a successor keeps its tail until then.
    """
    start, end = bounds
    margin = 2 * int(round(settings.assembly.crossfade * rate)) + 1
    keep_start = max(0, to_samples(window.core_start, rate) - start - margin)
    keep_end = end - start if has_successor else min(end - start, to_samples(window.core_end, rate) - start + margin)
    outcome.trim(keep_start, keep_end)


def reference_embeddings(diarizer: Any, analysis: np.ndarray, activity: SpeakerActivity,
                         seconds: float) -> dict[str, np.ndarray]:
    """Each speaker's voice from their longest solo stretches (up to ``seconds``)."""
    if not hasattr(diarizer, "embed"):
        return {}
    at_analysis = activity.at_rate(ANALYSIS_RATE, len(analysis))
    clips, owners = [], []
    for speaker in activity.speakers:
        for start, end in at_analysis.longest_solo_runs(speaker, seconds, min_seconds=0.5):
            clips.append(analysis[start:end])
            owners.append(speaker)
    if not clips:
        return {}
    vectors = diarizer.embed(clips, ANALYSIS_RATE)
    if vectors is None:
        return {}
    references = {}
    for speaker in activity.speakers:
        rows = [i for i, owner in enumerate(owners) if owner == speaker]
        if rows:
            mean = np.mean(vectors[rows], axis=0)
            references[speaker] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return references


def rendering_note(settings: Settings, separator: Any, rate: int) -> dict[str, Any] | None:
    """How separated overlaps were rendered (method and the separator's band)."""
    if separator is None:
        return None
    band, *also = rendering_bands(separator, rate)
    extended = settings.assembly.overlap_rendering == "rebuild" and band is not None
    fitted = extended and reconstruct.FIT_TO_MIXTURE  # read at run time: the lab switches it off to compare
    trust = trust_of(separator)
    return {"method": settings.assembly.overlap_rendering, "input_rate": rate,
            "model_band_hz": band if band is not None else rate / 2.0,
            "averaged_with_band_hz": also if extended and also else None,
            "extended_above_band": extended,
            "above_band_fitted_to_mixture": fitted,
            "above_band_fit_prior": trust["fit_prior"] if fitted else None,
            "above_band_tilt_fit_prior": trust["tilt_fit_prior"] if fitted else None,
            "above_band_tilt_shrink": trust["tilt_shrink"] if extended else None,
            "above_band_fit_smoothing_seconds": reconstruct.EXTENSION_FIT_SMOOTH_SECONDS if fitted else None,
            "estimates_fitted_below_hz": gain_fit_band(separator, rate)
            if settings.assembly.overlap_rendering == "rebuild" else None}


def trust_of(separator: Any) -> dict[str, float]:
    """How far the rendering above the band trusts this separator's estimates, as the keywords of
    :func:`podsep.reconstruct.rebuild_window` (see that module for what each does and how it was chosen).

    A separator may declare each itself: ``above_band_fit_prior`` (where the per-voice regression
    predicts), ``above_band_tilt_fit_prior`` (where the tilt rule does, voices with under 4 s alone)
    and ``above_band_tilt_shrink`` (how much the tilt rule's shares are softened). podsep's embedded
    model, whose outputs leak between voices, declares all three (0.1, 0.1, 2); any other separator
    gets the defaults for estimates as good as ideal ones (``reconstruct.EXTENSION_FIT_PRIOR``,
    ``TILT_FIT_PRIOR``, ``EXTENSION_SHRINK``), read when called so that the lab can vary them.
    """
    return {"fit_prior": _declared(separator, "above_band_fit_prior", reconstruct.EXTENSION_FIT_PRIOR),
            "tilt_fit_prior": _declared(separator, "above_band_tilt_fit_prior", reconstruct.TILT_FIT_PRIOR),
            "tilt_shrink": _declared(separator, "above_band_tilt_shrink", reconstruct.EXTENSION_SHRINK)}


def _declared(separator: Any, attribute: str, default: float) -> float:
    value = getattr(separator, attribute, None)
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    return default
