"""podsep's own separator behind the :class:`~podsep.models.separation.Separator` interface.

The Hugging Face Hub is not always there (air-gapped studios, CI, a laptop on a
train), and SepFormer costs about 20 s of CPU per second of window. This
separator ships inside the package (``podsep/data/separator.pt``, a few MB),
loads with ``torch.load(weights_only=True)`` and runs at a small fraction of
real time on one CPU thread, so every podsep run can separate overlaps.

The network works at its own rate (8 kHz): windows are resampled to it and the
sources back to the caller's rate. Full-band rendering above the model's band is
the assembly stage's job, not this one's.

Each chunk is separated ``passes`` times and the estimates (put in one order)
are averaged: a test-time ensemble for the price of a second forward pass. The
second pass sees the input *negated*: the same sound to the ear, a different
waveform to the network, whose encoder (learned filters, then a ReLU) responds
to the two polarities differently, so its errors on them are partly independent.
On 120 development mixtures of voices it never trained on (``python
scripts/score_separator.py --heldout 120 --speech-set unseen``) that gained 0.81
dB SI-SDRi over session 13's second pass (the input delayed by half the
encoder's hop, demucs's "shift trick" at sub-frame scale): 7.42 -> 8.23 dB, one
pass 7.29. Further passes repeat the pair at sub-hop delays (four: +0.05 dB
more). A network that has *learnt* its voices in their recorded polarity loses
on the negated pass instead (on its training voices the same swap cost 1.0 dB:
9.96 -> 8.95), so a model adapted to an episode's voices asks its own held-out
speech which kind of second pass to use (:func:`podsep.adapt.choose_pass_kind`).
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
from ...threads import one_torch_thread

SHIPPED_WEIGHTS = "separator.pt"
SHIPPED_HIGH_BAND = "high_band.pt"  # the top-octave network (podsep.models.embedded.high_band)

#: Separations averaged per chunk (see :func:`pass_plan`). 2 doubles a cost that is small (about
#: 0.016 x real time per pass on one thread) and gains 0.9 dB on new voices; 1 = a single pass.
DEFAULT_PASSES = 2

#: The kinds of passes: ``polarity`` alternates the plain and the negated input (then sub-hop
#: delays), ``delay`` only delays (session 13's passes). Generic weights use ``polarity``.
PASS_KINDS = ("polarity", "delay")


def pass_plan(passes: int, kind: str, hop: int) -> list[tuple[int, int]]:
    """The ``(delay in samples, sign)`` of each pass.

    ``polarity``: plain, negated, then the same two at delays of a fraction of
    the encoder's hop (four passes: delays 0, 0, hop/2, hop/2); ``delay``: pass
    ``i`` delayed by ``i * hop / passes`` samples, never negated.
    """
    if kind not in PASS_KINDS:
        raise ValueError(f"pass kind must be one of {', '.join(PASS_KINDS)}")
    if kind == "delay":
        plan = [(i * hop // passes, 1) for i in range(passes)]
    else:
        pairs = (passes + 1) // 2
        plan = [((i // 2) * hop // pairs, -1 if i % 2 else 1) for i in range(passes)]
    return list(dict.fromkeys(plan))  # a hop too short to divide would repeat a pass


def recorded_pass_kind(recipe: dict[str, Any]) -> str:
    """The kind of passes weights were chosen with: what their recipe names (adapted weights saved
    in a voice profile record their adaptation's choice); ``delay`` for adapted weights saved
    before session 14, which were checked with it; else ``polarity``."""
    recorded = recipe.get("pass_kind")
    if recorded in PASS_KINDS:
        return recorded
    return "delay" if "adapted_from" in recipe else PASS_KINDS[0]


def shipped_weights_path(name: str = SHIPPED_WEIGHTS) -> Path:
    """Where the packaged weights live (whether or not the file is there)."""
    return Path(str(importlib.resources.files("podsep") / "data" / name))


def high_band_setting(value: str | None) -> Path | bool | None:
    """``separation.high_band`` as :class:`EmbeddedSeparator` takes it: ``auto`` -> ``None`` (the shipped
    network when the package has it), ``on`` -> ``True`` (the shipped one, required), ``off`` ->
    ``False``, anything else -> that file."""
    text = "auto" if value is None else str(value).strip()
    if text.lower() == "auto":
        return None
    if text.lower() in ("on", "true"):
        return True
    if text.lower() in ("off", "false", "none"):
        return False
    return Path(text).expanduser()


def high_band_file(choice: str | Path | bool | None) -> Path | None:
    """The top-octave network's file a separator made with ``high_band=choice`` uses (``None``: none):
    ``None`` the shipped one when the package has it, ``True`` the shipped one (required), ``False``
    none, a path that file. The batch runner's model identity asks the same question."""
    if choice is False:
        return None
    if choice is None or choice is True:
        shipped = shipped_weights_path(SHIPPED_HIGH_BAND)
        return shipped if choice is True or shipped.is_file() else None
    return Path(choice)


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class EmbeddedSeparator:
    """The packaged Conv-TasNet: mono window in, ``(2, n)`` sources out at the same rate.

    ``weights`` is a file written by ``scripts/train_separator.py --export`` (the
    shipped one by default). A model adapted to one episode is the same class
    with other weights (``state_dict=``). ``passes`` separations are averaged
    (:func:`pass_plan`, of ``pass_kind``; ``None``: :func:`recorded_pass_kind` of
    the weights' recipe, for a voice profile's adapted weights).

    ``high_band``: the top-octave network's file (``scripts/train_high_band.py
    --export``; ``None``: the shipped one, if the package has it; ``False``: none).
    With it, a window at 16 kHz or more gets voices up to 8 kHz: the network
    shares the mixture's 3.75-8 kHz cells between the separated voices
    (:mod:`podsep.models.embedded.high_band`), and :attr:`band_rate` says so.
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
    #: The same where the tilt rule predicts (a voice under 4 s alone). Other separators get 10 there
    #: (podsep.reconstruct.TILT_FIT_PRIOR), but this model's top-of-band shares leak: ten times its
    #: prior (1) lost on both 16 kHz development sets with the tilt rule forced (training / unseen
    #: voices 2.3 / 2.4 -> -0.2 / 0.6 dB above the band, session 27), so it keeps 0.1.
    above_band_tilt_fit_prior = 0.1
    #: How much the tilt rule's shares are softened (levels' differences divided by this). A leaky
    #: estimate's share of the top of the band is a weak clue, and pushing a dull voice's share the wrong
    #: way costs it far more than an even share would: 2 instead of the 1.5 good estimates get gained on
    #: all four sets of short development pairs (session 28, SI-SDR above the band: klettres pairs at 48
    #: / 44.1 kHz +0.23 / +0.39 dB, 16 kHz pairs of VCTK training / unseen voices +0.43 / +0.28; 3 gained
    #: more on three of them but lost voices' energy accuracy and, with the tilt rule forced on the long
    #: 16 kHz development conversations, 0.4 dB on training voices). See podsep.reconstruct.
    above_band_tilt_shrink = 2.0

    def __init__(self, weights: str | Path | None = None, *, device: str = "cpu", batch_size: int = 1,
                 state_dict: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                 label: str | None = None, passes: int = DEFAULT_PASSES, pass_kind: str | None = "polarity",
                 high_band: str | Path | bool | None = None) -> None:
        if int(passes) < 1:
            raise ValueError("passes must be at least 1")
        if pass_kind is not None and pass_kind not in PASS_KINDS:
            raise ValueError(f"pass kind must be one of {', '.join(PASS_KINDS)}")
        self.passes = int(passes)
        self.pass_kind = pass_kind
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
        self.high_band = high_band_file(high_band)
        self._high_band_net: Any = None
        self.high_band_sha256: str | None = None
        self.high_band_adapted = False  # True for a copy whose network learnt an episode's voices

    @property
    def band_rate(self) -> int:
        """The rate whose band the outputs fill: 16 kHz with the top-octave network (inputs at 16 kHz
        or more; below that, their own rate), else the network's own rate."""
        if self.high_band is None:
            return self.sample_rate
        from .high_band import RATE

        return RATE

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
                                 f"{_first_line(error)}") from error
        else:
            config = ConvTasNetConfig.from_dict(self._config or {})
            state_dict = self._state_dict
        model = ConvTasNet(config)
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ModelError(f"embedded separator weights do not fit the network: {self.weights}") from error
        model.eval().to(self.device)
        if self.pass_kind is None:  # a file's recipe (in-memory weights have none: polarity)
            self.pass_kind = recorded_pass_kind(self.recipe)
        self._model = model
        self.sample_rate = config.sample_rate
        self.num_sources = config.num_sources
        if self.high_band is not None:
            self._high_band_net = self._load_high_band(self.high_band)
        return self

    def _load_high_band(self, path: Path) -> Any:
        import torch

        from .high_band import HighBandConfig, HighBandNet

        if not path.is_file():
            raise ModelError(f"top-octave network weights not found: {path}")
        data = path.read_bytes()
        self.high_band_sha256 = hashlib.sha256(data).hexdigest()
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            net = HighBandNet(HighBandConfig.from_dict(payload["config"]))
            net.load_state_dict(payload["state_dict"])
        except Exception as error:  # damaged or foreign file
            raise ModelError(f"cannot read top-octave network weights {path}: "
                             f"{_first_line(error)}") from error
        return net.eval().to(self.device)

    @property
    def network(self) -> Any:
        """The loaded torch module (for adaptation, which fine-tunes a copy)."""
        return self.load()._model

    def move_to(self, device: str) -> None:
        """Continue on another device (used after a GPU out-of-memory error)."""
        self.device = device
        if self._model is not None:
            self._model.to(device)
        if self._high_band_net is not None:
            self._high_band_net.to(device)

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
            estimate = self._averaged_passes(model, mixture[start:end])
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

    def _averaged_passes(self, model: Any, piece: np.ndarray) -> np.ndarray:
        """The mean of the separations of ``piece`` in :func:`pass_plan`, each put in the first's order.

        Each pass is its own forward pass, with zeros only in front: a batch
        would pad the shorter copies at the end, and the network's global
        normalisation would see the padding. A negated pass's outputs are negated
        back; each estimate is cut back into place, turned the mixture's way up
        (:func:`_upright`) and put in the order of the first before averaging (the
        network's output order is arbitrary and may differ between passes).
        """
        import torch

        plan = pass_plan(self.passes, self.pass_kind, int(getattr(model, "hop", 1)))
        piece = np.asarray(piece, np.float32)
        n = piece.size
        first: np.ndarray | None = None
        total = np.zeros((self.num_sources, n))
        for delay, sign in plan:
            shown = np.concatenate([np.zeros(delay, np.float32), sign * piece])
            estimate = sign * model(torch.from_numpy(shown).to(self.device)[None])[0].float().cpu().numpy()
            estimate = _upright(estimate[:, delay:delay + n], piece)
            if first is None:
                first = estimate
            else:
                estimate = estimate[_stitch_order(first, estimate)]
            total += estimate
        return (total / len(plan)).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        self.load()
        description = {
            "kind": "podsep.embedded-convtasnet",
            "source": self._label or str(self.weights),
            "sha256": self.sha256,
            "sample_rate": self.sample_rate,
            "num_sources": self.num_sources,
            "device": self.device,
            "passes": self.passes,
            "pass_kind": self.pass_kind,
        }
        if self.recipe:
            description["recipe"] = self.recipe
        if self.high_band is not None:
            description["high_band"] = {"source": str(self.high_band), "sha256": self.high_band_sha256,
                                        "band_hz": self.band_rate / 2}
            if self.high_band_adapted:
                description["high_band"]["adapted_to_episode"] = True
        return description

    def __call__(self, mixture: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.separate_batch([mixture], sample_rate)[0]

    def separate_batch(self, mixtures: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Separate windows (one forward pass each: the network is cheap and lengths differ)."""
        model = self.load()._model
        outputs: list[np.ndarray] = []
        # Measured on a 10-minute conversation: 4.7 s of separation with one thread, 45.7 s with
        # two (the convolutions are too small to share); the caller's setting comes back.
        with one_torch_thread(self.device):
            return self._separate_all(model, mixtures, sample_rate, outputs)

    def _separate_all(self, model: Any, mixtures: Sequence[np.ndarray], sample_rate: int,
                      outputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            for mixture in mixtures:
                outputs.append(self._separate_one(model, mixture, sample_rate))
        return outputs

    def _separate_one(self, model: Any, mixture: np.ndarray, sample_rate: int, top_octave: bool = True) -> np.ndarray:
        """One window's voices at ``sample_rate`` (the top octave shared by the network where there is
        one and ``top_octave`` asks for it); silence in, silence out."""
        mixture = np.asarray(mixture, dtype=np.float32)
        low = resample(mixture, sample_rate, self.sample_rate)
        if low.size == 0 or not np.any(low):
            return np.zeros((self.num_sources, mixture.size), np.float32)
        estimate = self._separate_long(model, low)
        if top_octave and self._high_band_net is not None and sample_rate > self.sample_rate:
            sources = self._with_top_octave(mixture, estimate, sample_rate)
        else:
            sources = resample(estimate, self.sample_rate, sample_rate)
        return _fit(sources, mixture.size)

    @property
    def top_octave_network(self) -> Any:
        """The loaded top-octave network (:mod:`.high_band`), or ``None`` without one."""
        return self.load()._high_band_net

    def voices_below_top_octave(self, mixtures: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The separated voices of 16 kHz mixtures, at 16 kHz and empty above the model's band.

        What the top-octave network takes in next to the mixture: adapting it to
        an episode (:mod:`podsep.adapt_top_octave`) trains it on exactly these.
        """
        import torch

        from .high_band import RATE

        model = self.load()._model
        with one_torch_thread(self.device), torch.inference_mode():
            return [self._separate_one(model, mixture, RATE, top_octave=False) for mixture in mixtures]

    def with_top_octave_network(self, net: Any, sha256: str) -> "EmbeddedSeparator":
        """A copy that separates as this one does, with ``net`` sharing the top octave (an episode's
        adapted network; ``sha256`` names its weights in the manifest)."""
        import copy

        twin = copy.copy(self.load())
        twin._high_band_net = net.eval().to(self.device)
        twin.high_band_sha256 = sha256
        twin.high_band_adapted = True
        return twin

    def _with_top_octave(self, mixture: np.ndarray, estimate: np.ndarray, sample_rate: int) -> np.ndarray:
        """The voices at ``sample_rate``, their 3.75-8 kHz shared by the top-octave network (at 16 kHz)."""
        import torch

        from .high_band import RATE, complete

        wide = resample(mixture, sample_rate, RATE)
        voices = _fit(resample(estimate, self.sample_rate, RATE), wide.size)
        completed = complete(self._high_band_net, torch.from_numpy(wide).to(self.device)[None],
                             torch.from_numpy(voices).to(self.device)[None])[0].float().cpu().numpy()
        return resample(completed, RATE, sample_rate)


CHUNK_SECONDS = 6.0  # the network was trained on 2-4 s crops; long windows are cut into chunks like these
CHUNK_OVERLAP_SECONDS = 1.0


def _upright(estimate: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """``estimate`` with every source that points against ``mixture`` negated.

    The network was trained with a scale-invariant loss, which is blind to a
    source's sign, and it has learnt to output its voices upside down (the
    shipped weights do so on every held-out mixture tried). Inverted voices
    sound the same alone, but not next to anything the recording's way up: the
    top-octave network's shares of the mixture (the voice's 3.75-8 kHz), the
    previous chunk's crossfade, the other pass's average, or a track's solo
    audio around the window. Each voice is part of the mixture, so its inner
    product with the mixture is positive when it is the right way up.
    """
    signs = np.where(estimate @ np.asarray(mixture, estimate.dtype) < 0, -1.0, 1.0).astype(estimate.dtype)
    return estimate * signs[:, None]


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
