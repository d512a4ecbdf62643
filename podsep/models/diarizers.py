"""Diarization backends: anything that turns a 16 kHz mono waveform into a Diarization.

A diarizer may also embed arbitrary clips (``embed``): the assignment stage uses
that to compare separated sources with each speaker's voice. The default backend
is a pyannote.audio 4 pipeline loaded with ``Pipeline.from_pretrained`` from a Hub
id (``pyannote/speaker-diarization-community-1``) or a local folder; it receives
the in-memory waveform, so no file decoding happens inside pyannote.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..diarization import Diarization
from ..errors import ModelError
from .hub import (
    describe_hub_error,
    forget_unimportable_lazy_modules,
    looks_like_local_path,
    offline_snapshot,
    resolve_revision,
)

# pyannote.audio 4 sends usage metrics unless told not to; podsep never phones home.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

ProgressHook = Callable[..., Any]


class Diarizer(Protocol):
    """Finds who speaks when in a mono waveform."""

    def __call__(
        self,
        waveform: np.ndarray,
        sample_rate: int,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: ProgressHook | None = None,
    ) -> Diarization: ...

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray | None: ...

    def describe(self) -> dict[str, Any]: ...


class PyannoteDiarizer:
    """A pyannote.audio speaker-diarization pipeline (Hub id or local folder)."""

    def __init__(
        self,
        source: str = "pyannote/speaker-diarization-community-1",
        *,
        revision: str | None = None,
        token: str | None = None,
        cache_dir: str | None = None,
        device: str = "cpu",
    ) -> None:
        self.source = source
        self.revision = revision
        self.device = device
        self._token = token
        self._cache_dir = cache_dir
        self._pipeline: Any = None

    def load(self) -> "PyannoteDiarizer":
        """Load the pipeline now, mapping every failure to a one-line :class:`ModelError`."""
        if self._pipeline is not None:
            return self
        import torch
        from pyannote.audio import Pipeline

        path = Path(self.source).expanduser()
        is_local = path.exists()
        if not is_local and looks_like_local_path(self.source):
            raise ModelError(f"diarization model folder not found: {self.source}")
        snapshot = None if is_local else offline_snapshot("diarization", self.source, self.revision,
                                                          self._cache_dir, self._token)
        if snapshot is not None:  # offline: straight from the cache, no retries
            path, is_local = snapshot, True
            self.revision = self.revision or resolve_revision(snapshot)
        if is_local and path.is_dir() and not (path / "config.yaml").is_file():
            raise ModelError(f"diarization model folder {self.source} has no config.yaml")
        try:
            with _silenced():
                pipeline = Pipeline.from_pretrained(
                    str(path) if is_local else self.source,
                    revision=None if is_local else self.revision,
                    token=self._token,
                    cache_dir=self._cache_dir,
                )
        except Exception as error:
            raise ModelError(describe_hub_error("diarization", self.source, error)) from error
        if pipeline is None:
            raise ModelError(f"cannot load diarization model '{self.source}'")
        if not hasattr(pipeline, "apply") or not hasattr(pipeline, "_segmentation"):
            raise ModelError(f"'{self.source}' is not a speaker-diarization pipeline")
        pipeline.to(torch.device(self.device))
        forget_unimportable_lazy_modules()
        self._pipeline = pipeline
        if not is_local and self.revision is None:
            self.revision = _pipeline_revision(pipeline)
        self._loaded_from = str(path) if is_local else self.source
        return self

    @property
    def voice_space(self) -> str:
        """Which embedding space :meth:`embed` returns (voice profiles refuse to mix spaces)."""
        return f"pyannote:{self.source}"

    def describe(self) -> dict[str, Any]:
        description = {
            "kind": "pyannote.audio.Pipeline",
            "source": self.source,
            "revision": self.revision,
            "device": self.device,
        }
        folder = Path(self.source).expanduser()
        if folder.is_dir() and not folder.is_relative_to(Path.home() / ".cache" / "huggingface"):
            description["fingerprint"] = folder_fingerprint(folder)
        return description

    def __call__(
        self,
        waveform: np.ndarray,
        sample_rate: int,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: ProgressHook | None = None,
    ) -> Diarization:
        import torch

        self.load()

        def forward(step_name: str, step_artifact: Any, file: Any = None, total: int | None = None,
                    completed: int | None = None) -> None:
            if hook is not None:
                hook(step_name, None, completed=completed, total=total)

        tensor = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None, :]
        with _silenced():
            output = self._pipeline(
                {"waveform": tensor, "sample_rate": sample_rate},
                num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
                hook=forward,
            )
        annotation = getattr(output, "speaker_diarization", output)
        return Diarization.from_annotation(annotation)

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray | None:
        """Speaker embeddings of clips with the pipeline's own embedding model (L2-normalised)."""
        import torch

        from ..audio import resample

        self.load()
        model = getattr(self._pipeline, "_embedding", None)
        if model is None or not waveforms:
            return None
        rate = int(getattr(model, "sample_rate", 16000))
        clips = [resample(np.asarray(w, dtype=np.float32), sample_rate, rate) for w in waveforms]
        minimum = int(getattr(model, "min_num_samples", 0)) + 1
        longest = max(max(len(c) for c in clips), minimum)
        batch = np.zeros((len(clips), 1, longest), dtype=np.float32)
        masks = np.zeros((len(clips), longest), dtype=np.float32)
        for row, clip in enumerate(clips):
            batch[row, 0, : len(clip)] = clip
            masks[row, : max(len(clip), minimum)] = 1.0
        with torch.inference_mode(), _silenced():
            vectors = model(torch.from_numpy(batch), masks=torch.from_numpy(masks))
        vectors = np.asarray(vectors, dtype=np.float64)
        vectors = np.nan_to_num(vectors)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


class ReferenceDiarizer:
    """A ready-made diarization (an RTTM the user already has) posing as a diarizer.

    ``embedder`` optionally supplies speaker embeddings for assignment.
    """

    def __init__(self, diarization: Diarization, source: str = "rttm", embedder: Any = None) -> None:
        self.diarization = diarization
        self.source = source
        self.embedder = embedder

    def __call__(self, waveform: np.ndarray, sample_rate: int, **_: Any) -> Diarization:
        return self.diarization.crop(len(waveform) / sample_rate)

    def embed(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray | None:
        return None if self.embedder is None else self.embedder.embed(waveforms, sample_rate)

    @property
    def voice_space(self) -> str | None:
        """The embedding space of the embedder that stands in for a diarizer, if any."""
        return voice_space(self.embedder)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"kind": "reference", "source": self.source}
        if self.embedder is not None and hasattr(self.embedder, "describe"):
            described["voice_embeddings"] = self.embedder.describe()
        return described


def voice_space(model: Any) -> str | None:
    """Name of the embedding space a diarizer's (or embedder's) ``embed`` returns, or None.

    Voice profiles record it: cosine similarities between embeddings of two
    different models mean nothing, so a profile only matches its own space.
    """
    return None if model is None else getattr(model, "voice_space", None)


def folder_fingerprint(folder: Path) -> str:
    """Identity of a local model folder (names, sizes, modification times), for cache keys."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _pipeline_revision(pipeline: Any) -> str | None:
    """Best effort: the Hub commit of the loaded segmentation checkpoint."""
    for attribute in ("segmentation", "_segmentation"):
        candidate = getattr(pipeline, attribute, None)
        model = getattr(candidate, "model", candidate)
        path = getattr(model, "_checkpoint_path", None)
        revision = resolve_revision(path)
        if revision:
            return revision
    return None


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """pyannote prints hints and warnings itself; the library must stay silent."""
    import warnings

    loggers = [logging.getLogger(name) for name in ("pyannote", "lightning", "pytorch_lightning", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
