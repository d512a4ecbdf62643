"""Offline overlapped-speech detection with a small packaged model.

podsep has to know *where two people talk at once* so that overlapped stretches
can be given to every speaker involved instead of just one.  The pretrained
pyannote segmentation model lives on the Hugging Face Hub, which is not
reachable in the environments podsep runs in, so this module ships its own
small detector: log-mel features -> a few 1-D convolutions -> a bidirectional
GRU -> one logit per 20 ms frame.  The weights (``podsep/data/overlap_detector.pt``)
are trained by ``scripts/train_overlap_detector.py`` on simulated conversations
built from LibriSpeech, and are stored as a plain state dict plus a small config
dict so they load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000

#: Settings used when a weights file carries no config (and as the training defaults).
DEFAULT_CONFIG: dict[str, Any] = {
    "sample_rate": SAMPLE_RATE,
    "n_fft": 512,
    "win_length": 400,
    "hop_length": 160,  # 10 ms feature hop
    "n_mels": 64,
    "f_min": 50.0,
    "f_max": 7600.0,
    "stride": 2,  # output hop = hop_length * stride = 20 ms
    "channels": 128,
    "hidden": 96,
    "gru_layers": 2,
    # Post-processing defaults; "threshold" is overwritten by the threshold
    # chosen on the AMI train excerpts when the weights are saved.
    "threshold": 0.5,
    "hysteresis": 0.1,
    "median_frames": 5,
    "min_gap": 0.1,
    "silence_dbfs": -65.0,
}


def log_mel(waveform: torch.Tensor, config: dict[str, Any], normalize: bool = True) -> torch.Tensor:
    """Log-mel features (batch, n_mels, frames), mean-normalised per band.

    The per-band mean subtraction over the analysed stretch removes the
    recording's overall gain and channel colouring, which differ wildly between
    podcasts, meetings and the simulated training data.  ``normalize=False``
    returns the raw log-mel so training can normalise each random crop itself.
    """
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    window = torch.hann_window(config["win_length"], device=waveform.device)
    spec = torch.stft(
        waveform,
        n_fft=config["n_fft"],
        hop_length=config["hop_length"],
        win_length=config["win_length"],
        window=window,
        center=True,
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()
    fbank = _mel_filters(config, waveform.device)
    mel = torch.matmul(fbank.T, power)  # (batch, n_mels, frames)
    feats = torch.log(mel + 1e-6)
    return feats - feats.mean(dim=-1, keepdim=True) if normalize else feats


_FBANK_CACHE: dict[tuple[Any, ...], torch.Tensor] = {}


def _mel_filters(config: dict[str, Any], device: torch.device) -> torch.Tensor:
    """Mel filter bank (n_freqs, n_mels), cached because it never changes."""
    key = (config["n_fft"], config["n_mels"], config["f_min"], config["f_max"], str(device))
    if key not in _FBANK_CACHE:
        import torchaudio.functional as AF

        _FBANK_CACHE[key] = AF.melscale_fbanks(
            n_freqs=config["n_fft"] // 2 + 1,
            f_min=config["f_min"],
            f_max=config["f_max"],
            n_mels=config["n_mels"],
            sample_rate=config["sample_rate"],
            norm="slaney",
            mel_scale="slaney",
        ).to(device)
    return _FBANK_CACHE[key]


class OverlapNet(nn.Module):
    """Conv front-end + BiGRU; one overlap logit per ``stride`` feature frames.

    1-D convolutions over the mel axis are much cheaper than 2-D ones, which
    keeps training feasible on a couple of CPU cores, and the BiGRU supplies the
    ~second-scale context needed to tell a turn change from a true overlap.
    """

    def __init__(self, n_mels: int = 64, channels: int = 128, hidden: int = 96,
                 gru_layers: int = 2, stride: int = 2) -> None:
        super().__init__()
        self.front = nn.Sequential(
            nn.Conv1d(n_mels, channels, kernel_size=5, padding=2),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, stride=stride, padding=1),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, padding=2, dilation=2),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.gru = nn.GRU(channels, hidden, num_layers=gru_layers, batch_first=True,
                          bidirectional=True)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Map features (batch, n_mels, frames) to logits (batch, ceil(frames / stride))."""
        x = self.front(feats).transpose(1, 2)
        x, _ = self.gru(x)
        return self.head(x).squeeze(-1)


def build_model(config: dict[str, Any]) -> OverlapNet:
    """Instantiate the network described by a (saved) config dict."""
    return OverlapNet(
        n_mels=config["n_mels"],
        channels=config["channels"],
        hidden=config["hidden"],
        gru_layers=config["gru_layers"],
        stride=config["stride"],
    )


@dataclass
class OverlapDetector:
    """Finds stretches where two or more people speak at once.

    Works on mono 16 kHz float audio of any length: long files are processed in
    fixed-size chunks with a little context on both sides, so memory stays
    bounded even for multi-hour recordings.
    """

    model: OverlapNet
    config: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CONFIG))
    device: str = "cpu"
    chunk_seconds: float = 30.0
    context_seconds: float = 3.0

    @property
    def frame_hop(self) -> float:
        """Seconds between consecutive output frames (20 ms with default settings)."""
        return self.config["hop_length"] * self.config["stride"] / self.config["sample_rate"]

    @property
    def threshold(self) -> float:
        """Default decision threshold (chosen on the AMI train excerpts at training time)."""
        return float(self.config["threshold"])

    def probabilities(self, waveform16k: np.ndarray) -> tuple[np.ndarray, float]:
        """Per-frame probability of overlapped speech, and the frame hop in seconds.

        Frame ``j`` describes the stretch starting at ``j * hop`` seconds; there
        are ``ceil(len(waveform) / (hop * 16000))`` frames.  Frames quieter than
        ``silence_dbfs`` get probability 0, because nobody can be talking there
        and the mean-normalised features would otherwise magnify the noise floor.
        """
        wav = _as_mono_float(waveform16k)
        step = self.config["hop_length"] * self.config["stride"]
        n_frames = int(np.ceil(len(wav) / step))
        probs = np.zeros(n_frames, dtype=np.float32)
        if n_frames == 0:
            return probs, self.frame_hop
        chunk = max(1, int(round(self.chunk_seconds * SAMPLE_RATE / step))) * step
        context = int(round(self.context_seconds * SAMPLE_RATE / step)) * step
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(wav), chunk):
                seg_start = max(0, start - context)
                seg_end = min(len(wav), start + chunk + context)
                segment = torch.from_numpy(wav[seg_start:seg_end]).to(self.device)
                logits = self.model(log_mel(segment, self.config))[0]
                seg_probs = torch.sigmoid(logits).float().cpu().numpy()
                first = (start - seg_start) // step
                n_keep = min(chunk // step, n_frames - start // step)
                probs[start // step:start // step + n_keep] = seg_probs[first:first + n_keep]
        probs[_quiet_frames(wav, step, n_frames, self.config["silence_dbfs"])] = 0.0
        return probs, self.frame_hop

    def regions(self, waveform16k: np.ndarray, threshold: float | None = None,
                min_duration: float = 0.1) -> list[tuple[float, float]]:
        """Overlapped regions ``(start, end)`` in seconds, sorted and inside the file.

        The frame probabilities are median-smoothed and binarised with
        hysteresis (switch on at ``threshold``, off below ``max(threshold -
        hysteresis, threshold / 2)``) so a region does not flicker on and off; gaps shorter
        than ``min_gap`` are bridged and regions shorter than ``min_duration``
        dropped, since such fragments are mostly false alarms.
        """
        probs, hop = self.probabilities(waveform16k)
        duration = len(np.asarray(waveform16k).reshape(-1)) / SAMPLE_RATE
        return probabilities_to_regions(
            probs, hop, duration,
            threshold=self.threshold if threshold is None else threshold,
            hysteresis=float(self.config["hysteresis"]),
            median_frames=int(self.config["median_frames"]),
            min_gap=float(self.config["min_gap"]),
            min_duration=min_duration,
        )


def probabilities_to_regions(probs: np.ndarray, hop: float, duration: float, threshold: float,
                             hysteresis: float = 0.1, median_frames: int = 5,
                             min_gap: float = 0.1, min_duration: float = 0.1
                             ) -> list[tuple[float, float]]:
    """Turn frame probabilities into clean (start, end) regions; see ``OverlapDetector.regions``."""
    if len(probs) == 0:
        return []
    if median_frames > 1:
        from scipy.ndimage import median_filter

        probs = median_filter(probs, size=median_frames, mode="nearest")
    # Never let the off-threshold reach 0, or a region could never end.
    onset, offset = threshold, max(threshold - hysteresis, threshold / 2)
    active = np.zeros(len(probs), dtype=bool)
    on = False
    for i, p in enumerate(probs):
        on = p >= onset if not on else p >= offset
        active[i] = on
    regions: list[list[float]] = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    for begin, end in zip(edges[::2], edges[1::2]):
        start_t, end_t = begin * hop, min(end * hop, duration)
        if regions and start_t - regions[-1][1] < min_gap:
            regions[-1][1] = end_t
        else:
            regions.append([start_t, end_t])
    return [(float(s), float(e)) for s, e in regions if e - s >= min_duration and s < duration]


def _as_mono_float(waveform: np.ndarray) -> np.ndarray:
    """Float32 mono view of the input (channels averaged if given (n, ch) or (ch, n))."""
    wav = np.asarray(waveform, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=0 if wav.shape[0] < wav.shape[1] else 1)
    return np.ascontiguousarray(wav.reshape(-1))


def _quiet_frames(wav: np.ndarray, step: int, n_frames: int, silence_dbfs: float) -> np.ndarray:
    """Boolean mask of output frames whose RMS is below ``silence_dbfs``."""
    padded = np.zeros(n_frames * step, dtype=np.float32)
    padded[:len(wav)] = wav
    rms = np.sqrt(np.mean(padded.reshape(n_frames, step) ** 2, axis=1) + 1e-20)
    return 20 * np.log10(rms + 1e-12) < silence_dbfs


def save_overlap_detector(model: OverlapNet, config: dict[str, Any], path: Path) -> None:
    """Store weights as a plain dict (state dict + config) loadable with ``weights_only=True``."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "podsep-overlap-v1", "config": dict(config), "state_dict": state}, path)


def default_weights_path() -> Path:
    """Location of the weights shipped inside the package."""
    return Path(str(importlib.resources.files("podsep") / "data" / "overlap_detector.pt"))


def load_overlap_detector(path: Path | None = None, device: str = "cpu") -> OverlapDetector:
    """Load the packaged (or a given) overlap detector; never touches the network."""
    weights = Path(path) if path is not None else default_weights_path()
    blob = torch.load(weights, map_location="cpu", weights_only=True)
    config = dict(DEFAULT_CONFIG)
    config.update(blob.get("config", {}))
    model = build_model(config)
    model.load_state_dict(blob["state_dict"])
    model.to(device).eval()
    return OverlapDetector(model=model, config=config, device=device)
