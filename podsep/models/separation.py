"""Source separation inside overlap windows.

A separator is anything with ``__call__(mixture, sample_rate) -> sources``: it
takes a mono window and returns ``(num_sources, len(window))`` at the same rate.
Sources come in arbitrary order and at arbitrary scale; the assignment stage
sorts that out. This keeps real models, other architectures and test doubles
interchangeable (``podsep.split(..., separator=...)``).

The default is speechbrain's SepFormer (``speechbrain/sepformer-whamr16k``),
loaded through ``SepformerSeparation.from_hparams`` from a Hub id or a local
folder. Windows are resampled to the model's rate and back, batched by similar
length, and run under ``torch.inference_mode``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..audio import resample
from ..errors import ModelError
from .hub import (
    describe_hub_error,
    forget_unimportable_lazy_modules,
    hub_offline_requested,
    looks_like_local_path,
    offline_snapshot,
    podsep_cache_root,
    resolve_revision,
)

ProgressHook = Callable[..., Any]


@runtime_checkable
class Separator(Protocol):
    """Separates one mono window into sources (order and scale arbitrary)."""

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        """``mixture``: float32 ``(n,)``; returns float32 ``(num_sources, n)`` at ``sample_rate``."""
        ...


class SepformerSeparator:
    """speechbrain SepFormer behind the :class:`Separator` interface.

    ``source`` is a Hub id (``speechbrain/sepformer-whamr16k``) or a local folder
    holding ``hyperparams.yaml`` and the ``encoder/masknet/decoder.ckpt`` files.
    """

    def __init__(
        self,
        source: str = "speechbrain/sepformer-whamr16k",
        *,
        revision: str | None = None,
        device: str = "cpu",
        token: str | None = None,
        cache_dir: str | None = None,
        batch_size: int = 1,
    ) -> None:
        self.source = source
        self.revision = revision
        self.device = device
        self.batch_size = batch_size
        self._token = token
        self._cache_dir = cache_dir
        self._model: Any = None
        self.sample_rate = 16000
        self.num_sources = 2

    def load(self) -> "SepformerSeparator":
        """Load the model now (instead of at the first window), mapping failures to one-line errors."""
        if self._model is not None:
            return self
        from speechbrain.inference.separation import SepformerSeparation
        from speechbrain.utils.fetching import FetchConfig, LocalStrategy

        is_local = Path(self.source).expanduser().is_dir()
        if not is_local and Path(self.source).expanduser().exists():
            raise ModelError(f"separation model path is not a folder: {self.source}")
        if not is_local and looks_like_local_path(self.source):
            raise ModelError(f"separation model folder not found: {self.source}")
        if is_local and not (Path(self.source).expanduser() / "hyperparams.yaml").is_file():
            raise ModelError(f"separation model folder {self.source} has no hyperparams.yaml")
        snapshot = None if is_local else offline_snapshot("separation", self.source, self.revision,
                                                          self._cache_dir, self._token)
        if snapshot is not None:  # offline: straight from the cache, no retries
            self.revision = self.revision or resolve_revision(snapshot)
            source = str(snapshot)
        else:
            source = str(Path(self.source).expanduser().resolve()) if is_local else self.source
        savedir = _savedir(source, self._cache_dir)
        fetch_config = FetchConfig(
            token=bool(self._token) or bool(os.environ.get("HF_TOKEN")),
            revision=self.revision,
            huggingface_cache_dir=self._cache_dir,
            allow_network=not hub_offline_requested(),
        )
        try:
            with _token_in_environment(self._token), _quiet_speechbrain():
                model = SepformerSeparation.from_hparams(
                    source=source,
                    savedir=str(savedir),
                    run_opts={"device": self.device},
                    fetch_config=fetch_config,
                    local_strategy=LocalStrategy.SYMLINK,
                )
        except Exception as error:  # speechbrain raises many kinds; all mean "cannot load"
            raise ModelError(describe_hub_error("separation", self.source, error)) from error
        if model is None:
            raise ModelError(f"cannot load separation model '{self.source}'")
        model.mods.eval()
        forget_unimportable_lazy_modules()
        self._model = model
        self.sample_rate = int(getattr(model.hparams, "sample_rate", 16000))
        self.num_sources = int(getattr(model.hparams, "num_spks", 2))
        if not is_local:
            self.revision = self.revision or resolve_revision(savedir)
        return self

    def move_to(self, device: str) -> None:
        """Continue on another device (used after a GPU out-of-memory error)."""
        self.device = device
        if self._model is not None:
            self._model.mods.to(device)
            self._model.device = device

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "speechbrain.SepformerSeparation",
            "source": self.source,
            "revision": self.revision,
            "sample_rate": self.sample_rate,
            "num_sources": self.num_sources,
            "device": self.device,
        }

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.separate_batch([mixture], sample_rate)[0]

    def separate_batch(self, mixtures: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Separate several windows in one forward pass (zero-padded to the longest)."""
        import torch

        self.load()
        resampled = [resample(np.asarray(m, dtype=np.float32), sample_rate, self.sample_rate) for m in mixtures]
        longest = max(len(m) for m in resampled)
        batch = np.zeros((len(resampled), longest), dtype=np.float32)
        for row, m in enumerate(resampled):
            batch[row, : len(m)] = m
        with torch.inference_mode():
            estimates = self._model.separate_batch(torch.from_numpy(batch).to(self.device))
        estimates = estimates.float().cpu().numpy()  # (batch, time, sources)
        outputs = []
        for row, (original, m) in enumerate(zip(mixtures, resampled)):
            sources = estimates[row, : len(m), :].T
            sources = resample(sources, self.sample_rate, sample_rate)
            outputs.append(_fit_length(sources, len(original)))
        return outputs


def iter_separated(
    separator: Separator,
    read_window: Callable[[int], np.ndarray],
    lengths: Sequence[int],
    sample_rate: int,
    *,
    batch_size: int = 1,
    warn: Callable[[str], None] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(window index, sources)`` in window order, reading each window only when needed.

    Consecutive windows of similar length share a forward pass when the
    separator has ``separate_batch``. A GPU out-of-memory error retries the batch
    one window at a time, then moves the separator to the CPU, saying so through
    ``warn``; only then does it give up.
    """
    can_batch = batch_size > 1 and hasattr(separator, "separate_batch")
    order = list(range(len(lengths)))
    for group in _length_groups(order, lengths, batch_size if can_batch else 1):
        mixtures = [read_window(i) for i in group]
        for index, sources in zip(group, _separate_group(separator, mixtures, sample_rate, warn)):
            yield index, _validate_sources(np.asarray(sources, dtype=np.float32), lengths[index])


def _separate_group(separator: Any, mixtures: list[np.ndarray], sample_rate: int,
                    warn: Callable[[str], None] | None) -> list[np.ndarray]:
    try:
        if len(mixtures) > 1:
            return list(separator.separate_batch(mixtures, sample_rate))
        return [separator(mixtures[0], sample_rate)]
    except Exception as error:
        if not _is_out_of_memory(error):
            raise
    _release_gpu_memory()
    if len(mixtures) > 1:
        if warn:
            warn(f"GPU out of memory separating {len(mixtures)} windows at once; retrying one at a time")
        return [item for mixture in mixtures for item in _separate_group(separator, [mixture], sample_rate, warn)]
    if hasattr(separator, "move_to") and getattr(separator, "device", "cpu") != "cpu":
        if warn:
            warn("GPU out of memory on a single window; continuing separation on the CPU (slower)")
        separator.move_to("cpu")
        return [separator(mixtures[0], sample_rate)]
    raise ModelError("out of memory during separation (lower overlaps.max_window or use a machine with more memory)")


def _is_out_of_memory(error: BaseException) -> bool:
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower()


def _release_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def _length_groups(order: list[int], lengths: Sequence[int], size: int) -> Iterator[list[int]]:
    """Consecutive groups of at most ``size`` windows whose lengths differ by at most 25 %."""
    group: list[int] = []
    for index in order:
        first = lengths[group[0]] if group else 0
        if group and (len(group) >= size or not (0.8 * first <= lengths[index] <= 1.25 * first)):
            yield group
            group = []
        group.append(index)
    if group:
        yield group


def _validate_sources(sources: np.ndarray, length: int) -> np.ndarray:
    if sources.ndim != 2 or sources.shape[0] < 1:
        raise ModelError(f"separator returned shape {sources.shape}, expected (num_sources, {length})")
    sources = _fit_length(sources, length)
    if not np.all(np.isfinite(sources)):
        raise ModelError("separator returned NaN or infinite samples")
    return sources


def _fit_length(sources: np.ndarray, length: int) -> np.ndarray:
    if sources.shape[-1] > length:
        return np.ascontiguousarray(sources[..., :length])
    if sources.shape[-1] < length:
        return np.pad(sources, ((0, 0), (0, length - sources.shape[-1])))
    return sources


def _savedir(source: str, cache_dir: str | None) -> Path:
    """Where speechbrain links the model files (inside podsep's cache)."""
    root = Path(cache_dir).expanduser() if cache_dir else podsep_cache_root()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source.strip("/"))[-120:]
    path = root / "speechbrain" / safe
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _token_in_environment(token: str | None) -> Iterator[None]:
    """speechbrain reads the Hub token from the environment; set it only while loading."""
    if not token:
        yield
        return
    previous = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = token
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_TOKEN", None)
        else:
            os.environ["HF_TOKEN"] = previous


@contextlib.contextmanager
def _quiet_speechbrain() -> Iterator[None]:
    import logging

    logger = logging.getLogger("speechbrain")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
