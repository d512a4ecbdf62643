"""GE2E speaker embeddings from the weights shipped in the ``resemblyzer`` wheel.

``resemblyzer`` (Apache-2.0) carries ``resemblyzer/pretrained.pt``, a 3-layer
LSTM speaker encoder trained with the GE2E loss. We only read that weight file;
the network and its mel front end are rebuilt here with torch/torchaudio, for
three reasons: ``import resemblyzer`` needs ``librosa`` and ``webrtcvad`` (the
latter a C extension without wheels for recent Pythons) and
``scipy.ndimage.morphology`` (gone from recent SciPy); we need batched,
fixed-length window embeddings, which its API does not offer; and we must not
touch global state.

The encoder reads *linear* (not log) mel power, so its input depends on the
recording level: every signal is brought to the level the model was trained at
(-30 dBFS over its voiced part) before the mel transform.
"""

from __future__ import annotations

import numpy as np

from ...threads import one_torch_thread
from .vad import SAMPLE_RATE, package_file

MEL_CHANNELS = 40
HOP_SAMPLES = 160  # 10 ms
WIN_SAMPLES = 400  # 25 ms
FRAME_SECONDS = HOP_SAMPLES / SAMPLE_RATE
#: The encoder was trained on 160-frame (1.6 s) partial utterances.
TRAINED_FRAMES = 160
TARGET_DBFS = -30.0
EMBEDDING_DIM = 256


def normalise_level(waveform: np.ndarray, target_dbfs: float = TARGET_DBFS, active: np.ndarray | None = None) -> np.ndarray:
    """Scale ``waveform`` so its RMS over ``active`` samples (default: all) is ``target_dbfs``.

    Silent input is returned unchanged (there is nothing to scale).
    """
    part = waveform if active is None or not active.any() else waveform[active]
    rms = float(np.sqrt(np.mean(np.square(part, dtype=np.float64)))) if part.size else 0.0
    if rms < 1e-6:
        return waveform
    gain = 10 ** (target_dbfs / 20) / rms
    return (waveform * gain).astype(np.float32)


#: Windows per forward pass of the speaker encoder on the CPU (see GE2EEncoder.embed_mels): a fixed
#: grouping, so that each window's embedding does not depend on how many threads run the groups.
CPU_GROUP = 16


class GE2EEncoder:
    """LSTM speaker encoder: (batch, frames, 40) linear mel power -> (batch, 256) unit vectors."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._net = None
        self._mel = None

    @property
    def weights_path(self):
        return package_file("resemblyzer", "pretrained.pt")

    def _load(self):
        if self._net is None:
            import torch
            import torchaudio

            from ...errors import ModelError

            class _Net(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.lstm = torch.nn.LSTM(MEL_CHANNELS, 256, 3, batch_first=True)
                    self.linear = torch.nn.Linear(256, EMBEDDING_DIM)

                def forward(self, mels: torch.Tensor) -> torch.Tensor:
                    _, (hidden, _) = self.lstm(mels)
                    raw = torch.relu(self.linear(hidden[-1]))
                    return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)

            try:
                checkpoint = torch.load(self.weights_path, map_location="cpu", weights_only=True)
                state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
                net = _Net()
                net.load_state_dict(state, strict=True)
            except (RuntimeError, OSError, KeyError) as error:
                raise ModelError(f"cannot load the resemblyzer speaker encoder weights: {error}") from error
            self._net = net.eval().to(self.device)
            # librosa.feature.melspectrogram defaults, which the weights were trained with.
            self._mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=SAMPLE_RATE,
                n_fft=WIN_SAMPLES,
                hop_length=HOP_SAMPLES,
                n_mels=MEL_CHANNELS,
                power=2.0,
                norm="slaney",
                mel_scale="slaney",
                center=True,
                pad_mode="reflect",
            )
        return self._net

    def mel(self, waveform16k: np.ndarray) -> np.ndarray:
        """(frames, 40) linear mel power; frame ``i`` is centred on ``i * 10 ms``."""
        import torch

        self._load()
        if waveform16k.size < WIN_SAMPLES:
            waveform16k = np.pad(waveform16k, (0, WIN_SAMPLES - waveform16k.size))
        with torch.inference_mode(), one_torch_thread():  # the transform runs on the CPU
            spec = self._mel(torch.from_numpy(np.ascontiguousarray(waveform16k, dtype=np.float32)))
        return spec.T.numpy()

    def embed_mels(self, mels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Embed a batch of equal-length mel windows ``(n, frames, 40)``.

        On the CPU the windows go through the network in fixed groups of CPU_GROUP, each on one
        torch thread, the groups side by side in as many threads as torch may use: a window's
        embedding is then the same bits whatever that count (a library call takes it from the
        cores it finds free, so it changes with the machine's load), where one batch on torch's
        own threads gave other bits at one thread than at two.
        """
        import torch

        net = self._load()
        if len(mels) == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        if not str(self.device).startswith("cpu"):
            out = []
            with torch.inference_mode():
                for begin in range(0, len(mels), batch_size):
                    chunk = torch.from_numpy(np.ascontiguousarray(mels[begin : begin + batch_size], dtype=np.float32))
                    out.append(net(chunk.to(self.device)).cpu().numpy())
            return np.concatenate(out).astype(np.float32)

        def embed_group(group: np.ndarray) -> np.ndarray:
            with torch.inference_mode(), one_torch_thread():  # both are per thread: said in each worker
                return net(torch.from_numpy(np.ascontiguousarray(group, dtype=np.float32))).numpy()

        groups = [mels[begin : begin + CPU_GROUP] for begin in range(0, len(mels), CPU_GROUP)]
        workers = max(1, min(torch.get_num_threads(), len(groups)))
        if workers == 1:
            embedded = [embed_group(group) for group in groups]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="podsep-embed") as pool:
                embedded = list(pool.map(embed_group, groups))
        return np.concatenate(embedded).astype(np.float32)

    def embed_clip(self, waveform16k: np.ndarray, hop_frames: int = 80, floor_db: float = 30.0) -> np.ndarray:
        """One L2-normalised embedding for a clip of any length.

        The clip is cut into trained-length (1.6 s) partials every ``hop_frames``;
        partials more than ``floor_db`` below the loudest one are ignored, so a
        mostly silent track (a separated source) is judged on its speech only.
        The mean of the kept partial embeddings is returned; a silent or empty
        clip gives a zero vector.
        """
        if waveform16k.size == 0 or float(np.max(np.abs(waveform16k))) < 1e-6:
            return np.zeros(EMBEDDING_DIM, dtype=np.float32)
        frame_energy = _frame_energy(waveform16k)
        voiced = np.repeat(frame_energy > frame_energy.max() * 10 ** (-floor_db / 10), HOP_SAMPLES)[: waveform16k.size]
        voiced = np.pad(voiced, (0, waveform16k.size - voiced.size))
        mels = self.mel(normalise_level(waveform16k, active=voiced))
        n = mels.shape[0]
        if n <= TRAINED_FRAMES:
            windows = mels[None]
        else:
            starts = list(range(0, n - TRAINED_FRAMES + 1, hop_frames))
            if starts[-1] + TRAINED_FRAMES < n:
                starts.append(n - TRAINED_FRAMES)
            windows = np.stack([mels[s : s + TRAINED_FRAMES] for s in starts])
        energy = windows.sum(axis=(1, 2))
        keep = energy >= energy.max() * 10 ** (-floor_db / 10)
        vectors = self.embed_mels(windows[keep])
        mean = vectors.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-8)).astype(np.float32)


def _frame_energy(waveform: np.ndarray) -> np.ndarray:
    """Mean power per 10 ms frame (the last partial frame included)."""
    n = int(np.ceil(waveform.size / HOP_SAMPLES))
    padded = np.pad(waveform.astype(np.float64), (0, n * HOP_SAMPLES - waveform.size))
    return np.mean(padded.reshape(n, HOP_SAMPLES) ** 2, axis=1)
