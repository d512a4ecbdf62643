"""Can the embedded separator's own outputs tell, frame by frame, that only one voice is talking?

Inside a labelled overlap a speaker often pauses (about 30 % of real overlaps' 50 ms frames), and
the embedded separator then tends to split the remaining voice between its outputs, so the pausing
speaker's track carries the partner (``score_fullband.py``'s ``silent_leak_db``). A gate at
inference would need a cue that says "one voice here" without references. This probe measures two
candidate cues on development mixtures of voices the separator never trained on
(``train_separator.unseen_corpus``: no evaluation material), each voice's utterances strung together
with random pauses of 0.05-0.7 s and the two streams overlapped in full, at 8 kHz:

* how alike the two outputs' magnitude spectra are (cosine, 100-3800 Hz), and
* how far apart their levels are (|dB|),

scored by the area under the ROC curve for "one voice alone" (the other 20 dB or more under its
level) against "both talking" (both within 10 dB of their level), 32 ms frames. It prints the AUCs,
each cue's medians per kind of frame, and how much of a lone voice's energy the separator put in the
wrong output. Session 36: AUC 0.67 (spectral likeness) and 0.82 (level gap); see docs/benchmarks.md.

    OMP_NUM_THREADS=1 python scripts/probe_lone_voice_cue.py [--mixtures 24] [--seed 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

RATE = 8000
N_FFT, HOP = 256, 128
ALONE_DB, TALKING_DB = -20.0, -10.0


def stream(clips: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One voice's utterances one after another, each at unit RMS, with pauses of 0.05-0.7 s."""
    parts, length = [], 0
    while length < seconds * RATE:
        clip = clips[rng.integers(len(clips))]
        clip = clip / (np.sqrt(np.mean(clip ** 2)) + 1e-9)
        pause = np.zeros(int(rng.uniform(0.05, 0.7) * RATE), np.float32)
        parts += [clip, pause]
        length += clip.size + pause.size
    return np.concatenate(parts)[: int(seconds * RATE)]


def magnitudes(signal: np.ndarray) -> np.ndarray:
    window = np.hanning(N_FFT)
    count = (signal.size - N_FFT) // HOP + 1
    index = np.arange(N_FFT)[None] + HOP * np.arange(count)[:, None]
    return np.abs(np.fft.rfft(signal[index] * window, axis=1))  # (frames, bins)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive frame scores above a negative one (ties count half)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(scores.size)
    ranks[order] = np.arange(1, scores.size + 1)
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixtures", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from podsep.models.embedded.separator import EmbeddedSeparator
    from train_separator import unseen_corpus

    rng = np.random.default_rng(args.seed)
    voices: dict[str, list[np.ndarray]] = {}
    for speaker, audio in unseen_corpus(RATE):
        voices.setdefault(speaker, []).append(np.asarray(audio, np.float32))
    speakers = sorted(s for s, clips in voices.items() if sum(c.size for c in clips) > 6 * RATE)
    separator = EmbeddedSeparator().load()
    band = (np.fft.rfftfreq(N_FFT, 1 / RATE) > 100) & (np.fft.rfftfreq(N_FFT, 1 / RATE) < 3800)
    kinds, likeness, gap, wrong_share = [], [], [], []
    for _ in range(args.mixtures):
        a, b = rng.choice(speakers, 2, replace=False)
        first = stream(voices[a], args.seconds, rng)
        second = stream(voices[b], args.seconds, rng) * 10 ** (rng.uniform(-5, 5) / 20)
        outputs = separator(first + second, RATE)[:, : first.size]
        match = [[abs(np.dot(o, r)) / (np.linalg.norm(o) * np.linalg.norm(r) + 1e-9) for r in (first, second)]
                 for o in outputs]
        if match[0][1] + match[1][0] > match[0][0] + match[1][1]:
            outputs = outputs[::-1]
        refs = [(magnitudes(x)[:, band] ** 2).sum(axis=1) for x in (first, second)]
        levels = [10 * np.log10(e / np.mean(e[e > e.max() * 1e-4]) + 1e-20) for e in refs]
        out = [magnitudes(o)[:, band] for o in outputs]
        energy = [(o ** 2).sum(axis=1) for o in out]
        cosine = (out[0] * out[1]).sum(axis=1) / (np.linalg.norm(out[0], axis=1) * np.linalg.norm(out[1], axis=1)
                                                  + 1e-12)
        ratio = 10 * np.log10((energy[0] + 1e-12) / (energy[1] + 1e-12))
        for f in range(cosine.size):
            alone = [levels[i][f] > TALKING_DB and levels[1 - i][f] < ALONE_DB for i in (0, 1)]
            both = levels[0][f] > TALKING_DB and levels[1][f] > TALKING_DB
            if any(alone) or both:
                kinds.append(0 if alone[0] else 1 if alone[1] else 2)
                likeness.append(cosine[f])
                gap.append(abs(ratio[f]))
                if any(alone):
                    lone = 0 if alone[0] else 1
                    wrong_share.append(energy[1 - lone][f] / (energy[0][f] + energy[1][f] + 1e-12))
    kinds_arr = np.array(kinds)
    one = kinds_arr < 2
    print(f"{args.mixtures} mixtures of unseen voices, {one.sum()} one-voice frames, {(~one).sum()} two-voice frames")
    print(f"AUC, one voice alone against both: spectral likeness {auc(np.array(likeness), one):.2f}, "
          f"level gap {auc(np.array(gap), one):.2f}")
    for kind, name in ((0, "first voice alone"), (1, "second voice alone"), (2, "both talking")):
        chosen = kinds_arr == kind
        print(f"  {name:<18} likeness median {np.median(np.array(likeness)[chosen]):.2f}, "
              f"level gap median {np.median(np.array(gap)[chosen]):.1f} dB")
    share = np.array(wrong_share)
    print(f"a lone voice's energy in the wrong output: median {np.median(share):.2f}, mean {share.mean():.2f}, "
          f"above half in {np.mean(share > 0.5):.0%} of its frames")


if __name__ == "__main__":
    main()
