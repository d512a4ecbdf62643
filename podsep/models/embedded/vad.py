"""Voice activity detection with Silero VAD, loaded straight from its wheel.

The weights (``silero_vad/data/silero_vad.jit``, MIT licence) ship inside the
``silero-vad`` wheel, so this works offline and without a token. We load the
TorchScript file ourselves instead of importing ``silero_vad``: importing that
package calls ``torch.set_num_threads(1)`` for the whole process, a side effect
a library must not have.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ModelError

SAMPLE_RATE = 16000
#: Silero scores one 512-sample chunk (32 ms at 16 kHz) at a time.
FRAME_SAMPLES = 512
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE


def package_file(package: str, relative: str) -> Path:
    """Path of a data file inside an installed package, without importing the package.

    Raises :class:`ModelError` naming the package to install when it is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded diarizer needs the '{package}' package; install it with pip install {package}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise ModelError(f"'{package}' is installed but its model file {relative} is missing; reinstall {package}")


@dataclass(frozen=True)
class VadSettings:
    """Hysteresis thresholds and duration rules applied to Silero's frame probabilities.

    ``onset``/``offset``: a region starts when the probability rises above
    ``onset`` and ends when it falls below ``offset`` (hysteresis avoids
    chattering). Gaps shorter than ``min_gap`` are bridged (a breath is not a turn
    change), regions shorter than ``min_speech`` are dropped (clicks), and each
    region is padded by ``pad`` on both sides because Silero reacts a little late.
    """

    onset: float = 0.5
    offset: float = 0.35
    min_speech: float = 0.2
    min_gap: float = 0.25
    pad: float = 0.05


class SileroVad:
    """Speech probability per 32 ms frame and speech regions in seconds."""

    def __init__(self, device: str = "cpu", settings: VadSettings | None = None) -> None:
        self.device = device
        self.settings = settings or VadSettings()
        self._model = None

    @property
    def model_path(self) -> Path:
        return package_file("silero_vad", "data/silero_vad.jit")

    def _load(self):
        if self._model is None:
            import torch

            import warnings

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load still works
                    model = torch.jit.load(str(self.model_path), map_location="cpu")
            except (RuntimeError, OSError) as error:
                raise ModelError(f"cannot load the Silero VAD model: {error}") from error
            model.eval()
            self._model = model
        return self._model

    def probabilities(self, waveform16k: np.ndarray) -> np.ndarray:
        """Speech probability of each consecutive 512-sample frame (last frame zero-padded)."""
        import torch

        if waveform16k.size == 0:
            return np.zeros(0, dtype=np.float32)
        model = self._load()
        model.reset_states()
        if waveform16k.size < FRAME_SAMPLES:  # Silero refuses chunks shorter than one frame
            waveform16k = np.pad(waveform16k, (0, FRAME_SAMPLES - waveform16k.size))
        audio = torch.from_numpy(np.ascontiguousarray(waveform16k, dtype=np.float32))[None]
        with torch.inference_mode():
            probs = model.audio_forward(audio, SAMPLE_RATE)
        model.reset_states()
        return probs[0].numpy().astype(np.float32)

    def regions(self, waveform16k: np.ndarray) -> list[tuple[float, float]]:
        """Speech regions ``(start, end)`` in seconds, clipped to the waveform."""
        duration = waveform16k.size / SAMPLE_RATE
        return probabilities_to_regions(self.probabilities(waveform16k), self.settings, duration)


def probabilities_to_regions(
    probs: np.ndarray, settings: VadSettings, duration: float, frame_seconds: float = FRAME_SECONDS
) -> list[tuple[float, float]]:
    """Hysteresis thresholding plus gap bridging, minimum length and padding."""
    regions: list[list[float]] = []
    active = False
    start = 0
    for index, prob in enumerate(probs):
        if not active and prob >= settings.onset:
            active, start = True, index
        elif active and prob < settings.offset:
            active = False
            regions.append([start * frame_seconds, index * frame_seconds])
    if active:
        regions.append([start * frame_seconds, len(probs) * frame_seconds])
    bridged: list[list[float]] = []
    for region in regions:
        if bridged and region[0] - bridged[-1][1] < settings.min_gap:
            bridged[-1][1] = region[1]
        else:
            bridged.append(region)
    out: list[tuple[float, float]] = []
    for begin, end in bridged:
        if end - begin < settings.min_speech:
            continue
        begin, end = max(0.0, begin - settings.pad), min(duration, end + settings.pad)
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], end)
        else:
            out.append((begin, end))
    return out
