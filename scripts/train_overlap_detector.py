#!/usr/bin/env python
"""Train podsep's small overlapped-speech detector (seeded, re-runnable, CPU).

No shipped model detects overlapped speech offline, so we simulate it:
conversations are built from LibriSpeech utterances (one speaker talks, others
join for 0.3-3 s, back-channels, pauses, +-6 dB level differences), each talker
is convolved with a room response (the measured-style RIRs from meeting-sim or
a random synthetic exponential decay), noise is added at a random SNR and the
whole clip gets a random gain.  Frame labels are 1 where >= 2 talkers are active
according to an energy VAD on the dry utterances.

Stage 1 trains on the simulated clips only; stage 2 briefly fine-tunes on a
mix of simulated clips and the AMI *train* excerpts (real far-field meetings),
because real meeting rooms differ from the simulation.  The decision threshold
is then chosen on the AMI train excerpts only (highest recall with precision >=
``--min-precision``); development and test are only reported.

Usage::

    .venv/bin/python scripts/train_overlap_detector.py            # defaults, ~20 min on 1 core
    .venv/bin/python scripts/train_overlap_detector.py --steps 100 --ft-steps 20 --clips 300  # smoke run
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import fftconvolve

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from podsep.lab.paths import shared_root  # noqa: E402
from podsep.models.embedded.overlap import (  # noqa: E402
    DEFAULT_CONFIG, OverlapDetector, build_model, log_mel, save_overlap_detector)
from score_overlap_detector import (  # noqa: E402
    Counts, load_ami_split, overlap_frames, score_regions, score_table)

SR = 16000
LAB_HOP = 160  # 10 ms label frames
CROP_FRAMES = 600  # 6 s training crops (10 ms feature frames)


# ----------------------------------------------------------------------------- sources
def energy_vad(wav: np.ndarray) -> np.ndarray:
    """10 ms speech-activity mask of a clean utterance.

    LibriSpeech is close-talk and clean, so an energy threshold 30 dB below the
    loud frames is reliable; pauses under 200 ms are bridged because annotators
    (and the AMI references) count them as part of the same turn.
    """
    n = len(wav) // LAB_HOP
    energy = 10 * np.log10(np.mean(wav[:n * LAB_HOP].reshape(n, LAB_HOP) ** 2, axis=1) + 1e-12)
    active = energy > np.percentile(energy, 95) - 30
    idx = np.flatnonzero(active)
    if len(idx):
        gaps = np.flatnonzero(np.diff(idx) > 1)
        for g in gaps:
            if idx[g + 1] - idx[g] - 1 < 20:
                active[idx[g]:idx[g + 1]] = True
    return active


def load_sources(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """All utterances below ``folder`` as (waveform, 10 ms VAD), sorted by path for determinism."""
    sources = []
    for path in sorted(folder.rglob("*.flac")) + sorted(folder.rglob("*.wav")):
        wav, sr = sf.read(path, dtype="float32", always_2d=True)
        if sr != SR:
            continue
        wav = wav.mean(axis=1)
        sources.append((wav, energy_vad(wav)))
    if not sources:
        raise FileNotFoundError(f"no 16 kHz speech found under {folder}")
    return sources


def load_rirs(folder: Path) -> list[np.ndarray]:
    """Measured-style room responses, trimmed to start at the direct path and energy-normalised."""
    rirs = []
    for path in sorted(folder.glob("000_rir*__0.wav")):
        h, _ = sf.read(path, dtype="float32", always_2d=True)
        h = h.mean(axis=1)
        h = h[max(0, int(np.argmax(np.abs(h))) - 16):]
        rirs.append(h / (np.sqrt(np.sum(h ** 2)) + 1e-9))
    return rirs


def synthetic_rir(rng: np.random.Generator) -> np.ndarray:
    """Random exponentially decaying noise RIR; widens the room variety beyond 7 measured ones."""
    rt60 = rng.uniform(0.15, 0.9)
    n = int(min(rt60, 0.6) * SR)
    t = np.arange(n) / SR
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    h[0] = rng.uniform(1.0, 8.0) * np.max(np.abs(h))  # direct path, random direct-to-reverberant ratio
    return (h / np.sqrt(np.sum(h ** 2))).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White-to-brown Gaussian noise, for backgrounds other than the one noise recording."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spec /= freqs ** (rng.uniform(0.0, 1.0))
    return np.fft.irfft(spec, n).astype(np.float32)


# ----------------------------------------------------------------------------- simulation
def simulate_clip(rng: np.random.Generator, sources: list[tuple[np.ndarray, np.ndarray]],
                  rirs: list[np.ndarray], noise: np.ndarray | None, seconds: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One simulated conversation clip and its 10 ms overlap labels (1 = >= 2 talkers)."""
    n = int(seconds * SR)
    n_lab = n // LAB_HOP
    n_spk = int(rng.choice([1, 2, 3, 4], p=[0.1, 0.5, 0.3, 0.1]))
    who = rng.choice(len(sources), n_spk, replace=False)
    dry = np.zeros((n_spk, n), dtype=np.float32)
    active = np.zeros((n_spk, n_lab), dtype=bool)

    def place(k: int, start: float, length: float) -> None:
        wav, vad = sources[who[k]]
        seg = min(int(length * SR), len(wav))
        off = int(rng.integers(0, len(wav) - seg + 1)) // LAB_HOP * LAB_HOP
        pos = int(start * SR) // LAB_HOP * LAB_HOP
        lo, hi = max(pos, 0), min(pos + seg, n)
        if hi <= lo:
            return
        dry[k, lo:hi] += wav[off + lo - pos: off + hi - pos]
        lab_lo, lab_hi = lo // LAB_HOP, min(hi // LAB_HOP, n_lab)
        src = vad[(off + lo - pos) // LAB_HOP:]
        m = min(lab_hi - lab_lo, len(src))
        active[k, lab_lo:lab_lo + m] |= src[:m]

    p_overlap = rng.uniform(0.2, 0.7)
    t, cur = rng.uniform(-2.0, 0.5), int(rng.integers(n_spk))
    while t < seconds:
        seg = rng.uniform(0.6, 6.0)
        place(cur, t, seg)
        if n_spk > 1 and rng.random() < 0.25:  # back-channel inside the turn
            other = int(rng.choice([k for k in range(n_spk) if k != cur]))
            length = rng.uniform(0.3, 1.2)
            place(other, t + rng.uniform(0, max(0.0, seg - length)), length)
        nxt = int(rng.choice([k for k in range(n_spk) if k != cur])) if n_spk > 1 else cur
        if n_spk > 1 and rng.random() < p_overlap:
            gap = -rng.uniform(0.3, max(0.31, min(3.0, 0.9 * seg)))
        else:
            gap = min(rng.exponential(0.5), 3.0)
        t, cur = t + seg + gap, nxt

    mix = np.zeros(n, dtype=np.float32)
    measured = list(rng.permutation(len(rirs))) if rirs else []
    reverb = rng.random() < 0.85
    for k in range(n_spk):
        x = dry[k]
        if not np.any(x):
            continue
        if reverb:
            h = rirs[measured.pop()] if measured and rng.random() < 0.5 else synthetic_rir(rng)
            x = fftconvolve(x, h)[:n].astype(np.float32)
        speech = active[k].repeat(LAB_HOP)[:n]
        level = np.sqrt(np.mean(x[:len(speech)][speech] ** 2)) if speech.any() else np.sqrt(np.mean(x ** 2))
        mix += x / (level + 1e-9) * 10 ** (rng.uniform(-6, 6) / 20)
    speech_power = np.mean(mix ** 2) + 1e-9
    if noise is not None and rng.random() < 0.6 and len(noise) > n:
        off = int(rng.integers(0, len(noise) - n))
        bg = noise[off:off + n].copy()
    else:
        bg = coloured_noise(rng, n)
    snr = rng.uniform(0.0, 35.0)
    mix += bg * np.sqrt(speech_power / (np.mean(bg ** 2) + 1e-12) / 10 ** (snr / 10))
    mix *= 10 ** (rng.uniform(-45, -15) / 20) / np.sqrt(np.mean(mix ** 2) + 1e-12)
    mix = np.clip(mix, -1.0, 1.0)
    return mix, (active.sum(axis=0) >= 2).astype(np.uint8)


def make_dataset(rng: np.random.Generator, sources: list[tuple[np.ndarray, np.ndarray]],
                 rirs: list[np.ndarray], noise: np.ndarray | None, count: int, seconds: float,
                 config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-compute raw log-mels (float16) and 10 ms labels of ``count`` simulated clips."""
    feats, labels = [], []
    batch: list[np.ndarray] = []
    for i in range(count):
        wav, lab = simulate_clip(rng, sources, rirs, noise, seconds)
        batch.append(wav)
        labels.append(torch.from_numpy(lab))
        if len(batch) == 64 or i == count - 1:
            with torch.no_grad():
                f = log_mel(torch.from_numpy(np.stack(batch)), config, normalize=False)
            feats.append(f.half())
            batch = []
    return torch.cat(feats), torch.stack(labels)


def ami_tensors(excerpts: list, config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw log-mels and 10 ms overlap labels of the AMI train excerpts, for fine-tuning."""
    n = min(len(ex.waveform) for ex in excerpts) // LAB_HOP * LAB_HOP
    wavs = torch.from_numpy(np.stack([ex.waveform[:n] for ex in excerpts]))
    with torch.no_grad():
        feats = log_mel(wavs, config, normalize=False).half()
    labels = torch.stack([torch.from_numpy(overlap_frames(ex.turns, n // LAB_HOP).astype(np.uint8))
                          for ex in excerpts])
    return feats, labels


def sample_batch(gen: torch.Generator, feats: torch.Tensor, labels: torch.Tensor, size: int,
                 stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 6 s crops (at stride-aligned offsets), mean-normalised per crop like at inference."""
    idx = torch.randint(0, feats.shape[0], (size,), generator=gen)
    max_off = (min(feats.shape[2], labels.shape[1]) - CROP_FRAMES) // stride
    offs = torch.randint(0, max_off + 1, (size,), generator=gen) * stride
    x = torch.stack([feats[i, :, o:o + CROP_FRAMES] for i, o in zip(idx.tolist(), offs.tolist())]).float()
    x = x - x.mean(dim=-1, keepdim=True)
    y = torch.stack([labels[i, o:o + CROP_FRAMES] for i, o in zip(idx.tolist(), offs.tolist())]).float()
    y = y.view(size, CROP_FRAMES // stride, stride).mean(dim=-1)  # soft target per output frame
    return x, y


def train_steps(model: torch.nn.Module, sets: list[tuple[torch.Tensor, torch.Tensor, float]], steps: int,
                lr: float, batch: int, gen: torch.Generator, stride: int, label: str) -> None:
    """AdamW with linear warm-up then cosine decay; each batch mixes the given sets by their weights."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    weights = torch.tensor([w for _, _, w in sets])
    t0, running = time.time(), 0.0
    model.train()
    for step in range(1, steps + 1):
        counts = torch.distributions.Multinomial(batch, weights).sample().long() if len(sets) > 1 else [batch]
        xs, ys = [], []
        for (feats, labels, _), c in zip(sets, counts):
            if int(c):
                x, y = sample_batch(gen, feats, labels, int(c), stride)
                xs.append(x)
                ys.append(y)
        x, y = torch.cat(xs), torch.cat(ys)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 50 == 0 or step == steps:
            print(f"[{label}] step {step}/{steps} loss {running:.4f} {time.time() - t0:.0f}s", flush=True)


# ----------------------------------------------------------------------------- evaluation
def evaluate(detector: OverlapDetector, splits: dict[str, list], threshold: float
             ) -> dict[str, list[tuple[str, Counts]]]:
    """Per-excerpt counts of the post-processed regions at ``threshold``."""
    return {name: [(ex.uri, score_regions(ex, detector.regions(ex.waveform, threshold))) for ex in exs]
            for name, exs in splits.items()}


def choose_threshold(detector: OverlapDetector, excerpts: list, min_precision: float) -> tuple[float, Counts]:
    """Highest pooled recall with precision >= ``min_precision`` on the given (train) excerpts.

    Falls back to the best F1 if no threshold reaches the precision.
    """
    cache = [(ex, detector.probabilities(ex.waveform)) for ex in excerpts]
    from podsep.models.embedded.overlap import probabilities_to_regions

    best: tuple[float, float, Counts] | None = None
    best_f1: tuple[float, float, Counts] | None = None
    for thr in np.arange(0.1, 0.951, 0.025):
        pooled = Counts()
        for ex, (probs, hop) in cache:
            regions = probabilities_to_regions(
                probs, hop, ex.duration, float(thr), float(detector.config["hysteresis"]),
                int(detector.config["median_frames"]), float(detector.config["min_gap"]), 0.1)
            pooled = pooled + score_regions(ex, regions)
        f1 = 2 * pooled.precision * pooled.recall / (pooled.precision + pooled.recall + 1e-9)
        if pooled.precision >= min_precision and pooled.tp and (best is None or pooled.recall > best[1]):
            best = (float(thr), pooled.recall, pooled)
        if best_f1 is None or f1 > best_f1[1]:
            best_f1 = (float(thr), f1, pooled)
    chosen = best or best_f1
    assert chosen is not None
    return round(chosen[0], 3), chosen[2]


def synthetic_scores(detector: OverlapDetector, clips: list[tuple[np.ndarray, np.ndarray]],
                     threshold: float) -> Counts:
    """Frame precision/recall on held-out simulated clips (unseen test-other speakers)."""
    total = Counts()
    for wav, lab in clips:
        probs, hop = detector.probabilities(wav)
        hyp = (probs >= threshold).repeat(int(round(hop * 100)))[:len(lab)].astype(bool)
        ref = lab[:len(hyp)].astype(bool)
        total = total + Counts(int(np.sum(ref & hyp)), int(np.sum(~ref & hyp)), int(np.sum(ref & ~hyp)),
                               int(ref.sum()), len(ref))
    return total


def main(argv: list[str] | None = None) -> int:
    """Simulate data, train, fine-tune, pick the threshold on AMI train, save, and report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=shared_root(), help="shared data folder ($PODSEP_SHARED or ../shared)")
    p.add_argument("--librispeech", type=Path, default=None, help="training speech (default <shared>/data/librispeech/train-clean-100)")
    p.add_argument("--heldout-speech", type=Path, default=None, help="validation speech (default <shared>/data/librispeech/test-other)")
    p.add_argument("--meeting-sim", type=Path, default=None, help="RIRs and noise (default <shared>/data/meeting-sim)")
    p.add_argument("--ami", type=Path, default=None, help="AMI excerpts (default <shared>/data/ami)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "podsep" / "data" / "overlap_detector.pt")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--clips", type=int, default=6000, help="simulated training clips")
    p.add_argument("--clip-seconds", type=float, default=8.0)
    p.add_argument("--steps", type=int, default=1300, help="stage-1 steps (simulated data only)")
    p.add_argument("--ft-steps", type=int, default=200, help="stage-2 steps (simulated + AMI train)")
    p.add_argument("--ft-ami-share", type=float, default=0.3, help="share of AMI train crops in stage-2 batches")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-precision", type=float, default=0.75, help="precision the threshold must reach on AMI train")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data = args.shared / "data"
    libri = args.librispeech or data / "librispeech" / "train-clean-100"
    heldout = args.heldout_speech or data / "librispeech" / "test-other"
    sim_dir = args.meeting_sim or data / "meeting-sim"
    ami_dir = args.ami or data / "ami"
    config = dict(DEFAULT_CONFIG)
    stride = config["stride"]
    t_start = time.time()

    sources = load_sources(libri)
    rirs = load_rirs(sim_dir)
    noise_path = sim_dir / "000_noise__0.wav"
    noise = sf.read(noise_path, dtype="float32", always_2d=True)[0].mean(axis=1) if noise_path.exists() else None
    print(f"{len(sources)} training utterances, {len(rirs)} measured RIRs, noise: {noise is not None}", flush=True)
    feats, labels = make_dataset(rng, sources, rirs, noise, args.clips, args.clip_seconds, config)
    print(f"simulated {args.clips} x {args.clip_seconds:.0f} s clips, overlap share "
          f"{labels.float().mean():.3f}, {time.time() - t_start:.0f}s", flush=True)
    val_rng = np.random.default_rng(args.seed + 1)
    val_sources = load_sources(heldout)
    val_clips = [simulate_clip(val_rng, val_sources, rirs, noise, 10.0) for _ in range(100)]

    splits = {name: load_ami_split(ami_dir, name) for name in ("train", "development", "test")}
    ami_feats, ami_labels = ami_tensors(splits["train"], config)

    model = build_model(config)
    train_steps(model, [(feats, labels, 1.0)], args.steps, args.lr, args.batch, gen, stride, "sim")
    detector = OverlapDetector(model=model, config=config)
    for stage in ("stage 1 (simulated only)", "stage 2 (+ AMI train fine-tuning)"):
        if stage.startswith("stage 2"):
            if args.ft_steps <= 0:
                break
            sets = [(feats, labels, 1.0 - args.ft_ami_share), (ami_feats, ami_labels, args.ft_ami_share)]
            train_steps(model, sets, args.ft_steps, args.lr / 5, args.batch, gen, stride, "ft")
        model.eval()
        thr, train_pooled = choose_threshold(detector, splits["train"], args.min_precision)
        config["threshold"] = thr
        syn = synthetic_scores(detector, val_clips, 0.5)
        print(f"\n== {stage}: threshold {thr:.3f} (AMI train P {train_pooled.precision:.3f} "
              f"R {train_pooled.recall:.3f}); held-out simulated @0.5: P {syn.precision:.3f} R {syn.recall:.3f}")
        print(score_table(evaluate(detector, splits, thr)), flush=True)

    save_overlap_detector(model, config, args.out)
    print(f"\nsaved {args.out} ({args.out.stat().st_size} bytes, "
          f"{sum(p.numel() for p in model.parameters())} parameters), total {time.time() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
