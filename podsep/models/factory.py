"""Settings in, models out: the one place that decides which diarizer and separator run.

``podsep split``, ``podsep eval`` and ``podsep bench`` all build their models
here, so what one measures is what the other runs. Fallbacks are returned as
values (:class:`Loaded`: what was asked, what loaded, why not the first choice)
and never written back into the settings: a run's settings stay what the user
gave, and the manifest reports the fallback beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..errors import ModelError
from .chunked import ChunkedDiarizer
from .diarizers import PyannoteDiarizer
from .hub import hub_token, pick_device


@dataclass(frozen=True)
class Loaded:
    """The outcome of loading one model role.

    ``model`` is ``None`` only for a separator that could not be loaded under a
    ``duplicate`` or ``mute`` fallback; ``overlap_policy`` then says what the
    overlaps become instead. ``warnings`` are said once, to the user.
    """

    role: str
    requested: str
    model: Any
    kind: str
    overlap_policy: str = "separate"
    fallback_reason: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict[str, Any]:
        """What was asked and what was loaded, for the manifest and for users of :class:`Splitter`."""
        out: dict[str, Any] = {"requested": self.requested, "loaded": self.kind}
        if self.fallback_reason:
            out["fallback_reason"] = self.fallback_reason
        if self.role == "separation":
            out["overlap_policy"] = self.overlap_policy
        return out


def build_diarizer(settings: Settings, *, hf_token: str | None = None) -> Loaded:
    """The configured diarizer (pyannote, or the embedded one under ``auto``), chunked for long inputs."""
    backend = settings.diarization.backend
    device = pick_device(settings.device)
    warnings: list[str] = []
    reason = None
    model: Any = None
    kind = "embedded"
    if backend in ("pyannote", "auto"):
        pyannote = PyannoteDiarizer(settings.diarization.model, revision=settings.diarization.revision,
                                    token=hub_token(hf_token), cache_dir=settings.cache_dir, device=device)
        try:
            model, kind = pyannote.load(), "pyannote"
        except ModelError as error:
            if backend == "pyannote":
                raise
            reason = str(error)
            warnings.append(f"{error}; falling back to the embedded diarizer (no download, lower accuracy)")
    if model is None:
        model = embedded_diarizer(device)
    if settings.diarization.chunk_minutes > 0:
        model = ChunkedDiarizer(model, settings.diarization.chunk_minutes * 60.0,
                                link_threshold=settings.diarization.link_threshold)
    return Loaded("diarization", backend, model, kind, fallback_reason=reason, warnings=tuple(warnings))


def embedded_diarizer(device: str) -> Any:
    """podsep's offline diarizer (weights from PyPI wheels)."""
    try:
        from .embedded import EmbeddedDiarizer
    except ImportError as error:  # pragma: no cover - packaging problem
        raise ModelError(f"the embedded diarizer is not installed: {error}") from error
    return EmbeddedDiarizer(device="cpu" if device.startswith("mps") else device)


def build_separator(settings: Settings, *, hf_token: str | None = None) -> Loaded:
    """The configured separator, or the fallback the settings choose, as a value.

    ``auto`` tries SepFormer, then podsep's embedded separator (one warning);
    ``sepformer`` and ``embedded`` try only that model. When nothing loads,
    ``overlaps.fallback`` decides: ``error`` raises, ``duplicate``/``mute`` return
    a :class:`Loaded` without a model whose ``overlap_policy`` says so.
    """
    backend = settings.separation.backend
    device = pick_device(settings.device)
    failures: list[str] = []
    warnings: list[str] = []
    if backend in ("auto", "sepformer"):
        from .separation import SepformerSeparator

        sepformer = SepformerSeparator(settings.separation.model, revision=settings.separation.revision,
                                       device=device, token=hub_token(hf_token), cache_dir=settings.cache_dir,
                                       batch_size=settings.separation.batch_size)
        try:
            return Loaded("separation", backend, sepformer.load(), "sepformer")
        except ModelError as error:
            failures.append(str(error))
    if backend in ("auto", "embedded"):
        from .embedded.separator import EmbeddedSeparator, high_band_setting

        embedded = EmbeddedSeparator(settings.separation.embedded_model, device=device,
                                     batch_size=settings.separation.batch_size, passes=settings.separation.passes,
                                     high_band=high_band_setting(settings.separation.high_band))
        try:
            model = embedded.load()
            if failures:
                warnings.append(f"{failures[0]}; separating overlaps with podsep's embedded separator instead "
                                "(no download, lower quality than SepFormer)")
            return Loaded("separation", backend, model, "embedded", fallback_reason=failures[0] if failures else None,
                          warnings=tuple(warnings))
        except ModelError as error:
            failures.append(str(error))
    fallback = settings.overlaps.fallback
    reason = "; ".join(failures)
    if fallback == "error":
        raise ModelError(reason)
    what = "copied into every active track" if fallback == "duplicate" else "muted"
    warnings.append(f"{reason}; overlaps are {what} instead (overlaps.fallback: {fallback})")
    return Loaded("separation", backend, None, "none", overlap_policy=fallback, fallback_reason=reason,
                  warnings=tuple(warnings))
