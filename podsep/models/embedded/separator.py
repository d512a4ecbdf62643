"""podsep's own separator behind the :class:`~podsep.models.separation.Separator` interface.

The Hugging Face Hub is not always there (air-gapped studios, CI, a laptop on a
train), and SepFormer costs about 20 s of CPU per second of window. This
separator ships inside the package (``podsep/data/separator.pt``, a few MB),
loads with ``torch.load(weights_only=True)`` and runs at a small fraction of
real time on one CPU thread, so every podsep run can separate overlaps.

The network works at its own rate (8 kHz): windows are resampled to it and the
sources back to the caller's rate. Full-band rendering above the model's band is
the assembly stage's job, not this one's.

Each chunk is separated ``shifts`` times, the input delayed by a fraction of the
encoder's hop each time, and the estimates (put in one order) are averaged: a
strided encoder sees the waveform on a grid, and averaging over grid offsets
removes part of the error that depends on where the grid falls (demucs's "shift
trick", at sub-frame scale). Chosen on development mixtures of training voices
(``train-clean-100``): see :data:`DEFAULT_SHIFTS`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...audio import resample
from ...errors import ModelError

SHIPPED_WEIGHTS = "separator.pt"

#: Separations averaged per chunk, each on the input delayed by ``i * hop / shifts`` samples.
#: On development mixtures of training voices (4 s), SI-SDRi with 2 (delays 0 and 1 ms) against
#: 1: +0.13 dB on 120 mixtures (``python scripts/score_separator.py --heldout 120 --speech-set
#: train-clean-100 --shifts 1``, then ``--shifts 2``: 8.24 -> 8.37 dB), +0.20 and +0.23 dB on two
#: other draws of 80-120; 4 gave +0.30 dB on the same draw as +0.23. 2 doubles a cost that is
#: small (about 0.016 x real time on one thread); 1 = a single pass.
DEFAULT_SHIFTS = 2


def shipped_weights_path() -> Path:
    """Where the packaged weights live (whether or not the file is there)."""
    return Path(str(importlib.resources.files("podsep") / "data" / SHIPPED_WEIGHTS))


class EmbeddedSeparator:
    """The packaged Conv-TasNet: mono window in, ``(2, n)`` sources out at the same rate.

    ``weights`` is a file written by ``scripts/train_separator.py --export`` (the
    shipped one by default). A model adapted to one episode is the same class
    with other weights (``state_dict=``).
    """

    #: How far the rendering above the model's band trusts its estimates
    #: (``podsep.reconstruct``): they leak between the voices, so the mixture's own
    #: spectrum up there weighs more than for a strong separator. On the
    #: development set (8 conversations of training voices, 16 kHz under this 8 kHz
    #: model), SI-SDR above the band: 0.1 -> 3.2 dB, 0.03 -> 3.3, 0.3 -> 2.0,
    #: 1 (the default for other separators) -> 0.4, no fit -> -0.1. Session 12 found 0.03 better
    #: on both 16 kHz development sets (``python scripts/score_fullband.py --dev [--dev-unseen]``,
    #: training / unseen voices: 3.79 / 1.30 -> 3.88 / 1.83 dB) but worse at 48 and 44.1 kHz in
    #: the evaluation (2.9 -> 2.4, 7.1 -> 6.5 dB; 16 kHz test-other 0.9 -> 1.2), where full-band
    #: podcasts are, so 0.1 stays (see the README, *Full band*).
    above_band_fit_prior = 0.1

    def __init__(self, weights: str | Path | None = None, *, device: str = "cpu", batch_size: int = 1,
                 state_dict: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                 label: str | None = None, shifts: int = DEFAULT_SHIFTS) -> None:
        if int(shifts) < 1:
            raise ValueError("shifts must be at least 1")
        self.shifts = int(shifts)
        self.weights = Path(weights).expanduser() if weights else shipped_weights_path()
        self.device = "cpu" if str(device).startswith("mps") else device
        self.batch_size = batch_size
        self._state_dict = state_dict
        self._config = config
        self._label = label
        self._model: Any = None
        self.sha256: str | None = None
        self.recipe: dict[str, Any] = {}
        self.sample_rate = 8000
        self.num_sources = 2

    def load(self) -> "EmbeddedSeparator":
        """Read the weights now, mapping every failure to a one-line :class:`ModelError`."""
        if self._model is not None:
            return self
        import torch

        from .convtasnet import ConvTasNet, ConvTasNetConfig

        if self._state_dict is None:
            if not self.weights.is_file():
                raise ModelError(f"embedded separator weights not found: {self.weights}")
            data = self.weights.read_bytes()
            self.sha256 = hashlib.sha256(data).hexdigest()
            try:
                payload = torch.load(self.weights, map_location="cpu", weights_only=True)
                config = ConvTasNetConfig.from_dict(payload["config"])
                state_dict = payload["state_dict"]
                self.recipe = dict(payload.get("recipe") or {})
            except Exception as error:  # damaged or foreign file
                raise ModelError(f"cannot read embedded separator weights {self.weights}: "
                                 f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from error
        else:
            config = ConvTasNetConfig.from_dict(self._config or {})
            state_dict = self._state_dict
        model = ConvTasNet(config)
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ModelError(f"embedded separator weights do not fit the network: {self.weights}") from error
        model.eval().to(self.device)
        self._model = model
        self.sample_rate = config.sample_rate
        self.num_sources = config.num_sources
        return self

    @property
    def network(self) -> Any:
        """The loaded torch module (for adaptation, which fine-tunes a copy)."""
        return self.load()._model

    def move_to(self, device: str) -> None:
        """Continue on another device (used after a GPU out-of-memory error)."""
        self.device = device
        if self._model is not None:
            self._model.to(device)

    def _separate_long(self, model: Any, mixture: np.ndarray) -> np.ndarray:
        """Separate at the model's rate; long windows in overlapping chunks kept in a consistent order.

        A network trained on seconds-long crops may swap its outputs over a
        30 s window; chunks of the length it knows, each put in the order that
        continues the previous one over their shared second, avoid that.
        """
        import torch

        size = int(CHUNK_SECONDS * self.sample_rate)
        overlap = int(CHUNK_OVERLAP_SECONDS * self.sample_rate)
        bounds = _chunks(mixture.size, size, overlap)
        out = np.zeros((self.num_sources, mixture.size), np.float32)
        previous_end = 0
        for number, (start, end) in enumerate(bounds):
            estimate = self._shifted_estimate(model, mixture[start:end])
            if number == 0:
                out[:, start:end] = estimate
            else:
                shared = previous_end - start
                estimate = estimate[_stitch_order(out[:, start:previous_end], estimate[:, :shared])]
                ramp = np.linspace(0.0, 1.0, shared, dtype=np.float32)
                out[:, start:previous_end] = out[:, start:previous_end] * (1 - ramp) + estimate[:, :shared] * ramp
                out[:, previous_end:end] = estimate[:, shared:]
            previous_end = end
        return out

    def _shifted_estimate(self, model: Any, piece: np.ndarray) -> np.ndarray:
        """The mean of ``shifts`` separations of ``piece``, each delayed by a fraction of the hop.

        Each delayed copy is its own forward pass, with zeros only in front: a
        batch would pad the shorter copies at the end, and the network's global
        normalisation would see the padding. Each estimate is cut back into place
        and put in the order of the first before averaging (the network's output
        order is arbitrary and may differ between copies).
        """
        import torch

        hop = int(getattr(model, "hop", 1))
        offsets = sorted({i * hop // self.shifts for i in range(self.shifts)})
        piece = np.asarray(piece, np.float32)
        n = piece.size
        first: np.ndarray | None = None
        total = np.zeros((self.num_sources, n))
        for offset in offsets:
            delayed = np.concatenate([np.zeros(offset, np.float32), piece])
            estimate = model(torch.from_numpy(delayed).to(self.device)[None])[0].float().cpu().numpy()
            estimate = estimate[:, offset:offset + n]
            if first is None:
                first = estimate
            else:
                estimate = estimate[_stitch_order(first, estimate)]
            total += estimate
        return (total / len(offsets)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        self.load()
        description = {
            "kind": "podsep.embedded-convtasnet",
            "source": self._label or str(self.weights),
            "sha256": self.sha256,
            "sample_rate": self.sample_rate,
            "num_sources": self.num_sources,
            "device": self.device,
            "shifts": self.shifts,
        }
        if self.recipe:
            description["recipe"] = self.recipe
        return description

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.separate_batch([mixture], sample_rate)[0]

    def separate_batch(self, mixtures: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Separate windows (one forward pass each: the network is cheap and lengths differ)."""
        import torch

        model = self.load()._model
        outputs = []
        threads = torch.get_num_threads()
        if self.device == "cpu":
            # Measured on a 10-minute conversation: 4.7 s of separation with one thread, 45.7 s
            # with two (the convolutions are too small to share); the caller's setting comes back.
            torch.set_num_threads(1)
        try:
            return self._separate_all(model, mixtures, sample_rate, outputs)
        finally:
            torch.set_num_threads(threads)

    def _separate_all(self, model: Any, mixtures: Sequence[np.ndarray], sample_rate: int,
                      outputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            for mixture in mixtures:
                mixture = np.asarray(mixture, dtype=np.float32)
                low = resample(mixture, sample_rate, self.sample_rate)
                if low.size == 0 or not np.any(low):
                    outputs.append(np.zeros((self.num_sources, mixture.size), np.float32))
                    continue
                estimate = self._separate_long(model, low)
                sources = resample(estimate, self.sample_rate, sample_rate)
                outputs.append(_fit(sources, mixture.size))
        return outputs


CHUNK_SECONDS = 6.0  # the network was trained on 2-4 s crops; long windows are cut into chunks like these
CHUNK_OVERLAP_SECONDS = 1.0


def _stitch_order(previous: np.ndarray, current: np.ndarray) -> list[int]:
    """Order of ``current``'s sources that best continues ``previous`` over their shared samples."""
    import itertools

    best, order = -np.inf, list(range(current.shape[0]))
    for permutation in itertools.permutations(range(current.shape[0])):
        score = sum(abs(float(np.dot(previous[i], current[j]))) /
                    (np.linalg.norm(previous[i]) * np.linalg.norm(current[j]) + 1e-12)
                    for i, j in enumerate(permutation))
        if score > best:
            best, order = score, list(permutation)
    return order


def _chunks(length: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Chunk bounds covering ``[0, length)``, consecutive chunks sharing ``overlap`` samples."""
    if length <= size + size // 3:
        return [(0, length)]
    bounds, start = [], 0
    while True:
        end = min(length, start + size)
        bounds.append((start, end))
        if end == length:
            return bounds
        start = end - overlap


def _fit(sources: np.ndarray, length: int) -> np.ndarray:
    if sources.shape[-1] >= length:
        return np.ascontiguousarray(sources[..., :length])
    return np.pad(sources, ((0, 0), (0, length - sources.shape[-1])))
