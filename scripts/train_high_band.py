"""Train the top-octave network (podsep/models/embedded/high_band.py) on two CPU cores.

Two phases, both resumable and both in ``--run-dir``:

1. ``--prepare N``: N training mixtures (4 s, 16 kHz, two voices, the training
   sets only: LibriSpeech train-clean-100, vctk16k without the six speakers of
   ``fullband/``, arctic-sisec; overlap shapes, level differences, rooms and
   noise as the separator's training draws them) are separated by the shipped
   embedded separator exactly as podsep runs it, and stored with their
   references; so the network learns from the separator's real, leaky voices.
   Also 96 development mixtures of voices never trained on (meeting-sim's
   test-clean sources and AMI solo speech, ``train_separator.unseen_corpus``).
2. training: Adam, batches of 3 s crops, cosine learning rate; the loss is each
   voice's negative SNR in the top octave (3.75-8 kHz) of the STFT; a checkpoint
   every few minutes; the development SI-SDR of the top octave is logged against
   even shares. ``--export`` writes ``podsep/data/high_band.pt`` with the recipe.

The shipped ``podsep/data/high_band.pt`` (session 30): ``python scripts/train_high_band.py --run-dir
runs/high_band --prepare 6000 --workers 2 --worker W`` for W in 0 and 1 at once (14 minutes), then
``python scripts/train_high_band.py --run-dir runs/high_band --steps 5000 --threads 2``; its recipe
records the rest.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from podsep.models.embedded.high_band import (  # noqa: E402
    RATE,
    SPLIT_BIN,
    HighBandConfig,
    HighBandNet,
    istft,
    stft,
    top_octave_loss,
)

EXAMPLE_SECONDS = 4.0
CROP_SECONDS = 3.0
EVALUATION_SPEAKERS = {"p238", "p255", "p301", "p314", "p317", "p360"}  # fullband/'s speakers: never trained on


def _best_order(estimates: np.ndarray, references: np.ndarray) -> np.ndarray:
    """The separator's outputs in the references' order (by correlation, as an oracle assignment)."""
    straight = abs(np.dot(estimates[0], references[0])) + abs(np.dot(estimates[1], references[1]))
    crossed = abs(np.dot(estimates[0], references[1])) + abs(np.dot(estimates[1], references[0]))
    return estimates if straight >= crossed else estimates[::-1]


def _separate(separator, mixture: np.ndarray, references: np.ndarray) -> np.ndarray:
    estimates = separator(mixture, RATE)
    return _best_order(estimates, references).astype(np.float32)


def prepare(run_dir: Path, count: int, seed: int, worker: int, workers: int) -> None:
    """Write this worker's share of the training examples and (worker 0) the development ones."""
    import train_separator as ts

    from podsep.models.embedded.separator import EmbeddedSeparator

    torch.set_num_threads(1)
    path = run_dir / f"train-{worker}.npz"
    if path.exists():
        print(f"{path} exists", flush=True)
        return
    corpus = [(s, a) for s, a in ts.training_corpus(RATE) if s.removeprefix("vctk") not in EVALUATION_SPEAKERS]
    by_speaker = ts.group_by_speaker(corpus)
    # The voices as the network receives them in use: the separator's, below the top octave (without
    # high_band=False a shipped network would fill the octave it is to learn).
    separator = EmbeddedSeparator(high_band=False).load()
    rng = np.random.default_rng([seed, worker])
    n = int(EXAMPLE_SECONDS * RATE)
    mixes, refs, ests = [], [], []
    started = time.time()
    mine = count // workers + (1 if worker < count % workers else 0)
    for index in range(mine):
        mix, sources = ts.make_example(rng, corpus, by_speaker, n, RATE, augment=True, eq_probability=0.25,
                                       polarity_probability=0.5)
        mixes.append(mix)
        refs.append(sources)
        ests.append(_separate(separator, mix, sources))
        if index % 200 == 0:
            print(f"worker {worker}: {index}/{mine} {time.time() - started:.0f} s", flush=True)
    np.savez(path.with_suffix(".tmp.npz"), mix=np.stack(mixes).astype(np.float16),
             refs=np.stack(refs).astype(np.float16), ests=np.stack(ests).astype(np.float16))
    path.with_suffix(".tmp.npz").rename(path)
    if worker == 0:
        dev_path = run_dir / "dev.npz"
        unseen = ts.unseen_corpus(RATE)
        by_unseen = ts.group_by_speaker(unseen)
        rng = np.random.default_rng([seed, 999])
        mixes, refs, ests = [], [], []
        for _ in range(96):
            mix, sources = ts.make_example(rng, unseen, by_unseen, n, RATE, augment=False)
            mixes.append(mix)
            refs.append(sources)
            ests.append(_separate(separator, mix, sources))
        np.savez(dev_path, mix=np.stack(mixes), refs=np.stack(refs), ests=np.stack(ests))
    print(f"worker {worker}: done in {time.time() - started:.0f} s", flush=True)


def load_examples(run_dir: Path, pattern: str, dtype=np.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The run's examples as tensors; the training set stays float16 as stored (12000 examples
    are 7.7 GB so, twice that in float32) and each batch is cast when drawn."""
    parts = [np.load(p) for p in sorted(run_dir.glob(pattern))]
    if not parts:
        raise SystemExit(f"no {pattern} in {run_dir}: run --prepare first")
    return tuple(torch.from_numpy(np.concatenate([p[key] for p in parts]).astype(dtype, copy=False))
                 for key in ("mix", "refs", "ests"))


def top_octave(spectrum: torch.Tensor, length: int) -> torch.Tensor:
    """The signal of a spectrum's cells from SPLIT_BIN up."""
    spectrum = spectrum.clone()
    spectrum[..., :SPLIT_BIN, :] = 0
    return istft(spectrum, length)


@torch.no_grad()
def development_scores(net: HighBandNet, dev) -> dict[str, float]:
    """Top-octave SI-SDR of the development voices: the network's shares, even shares, the ideal ratio mask."""
    from train_separator import si_sdr

    mix, refs, ests = dev
    n = mix.shape[-1]
    net.eval()
    mixture = stft(mix)
    shares = net.shares(mixture, stft(ests))
    net.train()
    references = stft(refs)
    target = top_octave(references, n)
    ref_power = references.abs().pow(2)
    ideal_shares = ref_power / (ref_power.sum(dim=1, keepdim=True) + 1e-12)
    renderings = {"learned": shares * mixture[:, None, SPLIT_BIN:],
                  "even": mixture[:, None, SPLIT_BIN:].expand_as(shares) / 2,
                  "ideal_ratio_mask": ideal_shares[:, :, SPLIT_BIN:] * mixture[:, None, SPLIT_BIN:]}
    scores = {}
    for name, cells in renderings.items():
        spectrum = torch.zeros_like(references)
        spectrum[:, :, SPLIT_BIN:] = cells
        scores[name] = float(si_sdr(top_octave(spectrum, n), target, eps=1e-12).mean())
    return scores


def learning_rate(step: int, total: int, peak: float) -> float:
    warm = 100
    if step < warm:
        return peak * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run_dir = args.run_dir
    train_set = load_examples(run_dir, "train-*.npz", dtype=np.float16)
    dev = load_examples(run_dir, "dev.npz")
    net = HighBandNet(HighBandConfig())
    if args.init is not None:  # fine-tune a network (e.g. the shipped one) instead of starting afresh
        net.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True)["state_dict"])
    optimiser = torch.optim.Adam(net.parameters(), lr=args.lr)
    step = 0
    checkpoint = run_dir / "checkpoint.pt"
    log = run_dir / "log.jsonl"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(state["net"])
        optimiser.load_state_dict(state["optimiser"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    else:
        scores = development_scores(net, dev)
        with log.open("a") as handle:
            handle.write(json.dumps({"step": 0, **scores}) + "\n")
        print(f"step 0 dev {scores}", flush=True)
    count = train_set[0].shape[0]
    crop = int(CROP_SECONDS * RATE)
    last_save = time.time()
    started = time.time()
    running = []
    while step < args.steps:
        rng = np.random.default_rng([args.seed, step])
        index = torch.from_numpy(rng.choice(count, args.batch, replace=False))
        start = int(rng.integers(0, train_set[0].shape[-1] - crop + 1))
        gain = torch.from_numpy(10 ** (rng.uniform(-1, 1, (args.batch, 1)) )).float()
        mix = train_set[0][index, start:start + crop].float() * gain
        refs = train_set[1][index, :, start:start + crop].float() * gain[:, None]
        ests = train_set[2][index, :, start:start + crop].float() * gain[:, None]
        if rng.uniform() < 0.5:
            refs, ests = refs.flip(1), ests.flip(1)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr)
        loss = top_octave_loss(net, mix, refs, ests)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimiser.step()
        step += 1
        running.append(loss.item())
        if step % args.dev_every == 0 or step == args.steps:
            scores = development_scores(net, dev)
            entry = {"step": step, "loss": float(np.mean(running)), "seconds": round(time.time() - started), **scores}
            running = []
            with log.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")
            print(json.dumps(entry), flush=True)
        if time.time() - last_save > args.checkpoint_seconds or step == args.steps:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"net": net.state_dict(), "optimiser": optimiser.state_dict(), "step": step}, tmp)
            tmp.rename(checkpoint)
            last_save = time.time()


def example_count(run_dir: Path, pattern: str = "train-*.npz") -> int:
    """How many training mixtures the run holds (read from the arrays' headers, not the arrays)."""
    import zipfile

    total = 0
    for path in sorted(run_dir.glob(pattern)):
        with zipfile.ZipFile(path) as archive, archive.open("mix.npy") as member:
            major, _ = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(member)
            total += shape[0]
    return total


def export(args) -> None:
    state = torch.load(args.run_dir / "checkpoint.pt", weights_only=False)
    log = [json.loads(line) for line in (args.run_dir / "log.jsonl").read_text().splitlines()]
    recipe = {"script": "scripts/train_high_band.py", "steps": state["step"], "seed": args.seed,
              "command": args.recorded_command, "data": "train-clean-100 + vctk16k (without fullband/'s six speakers) "
              "+ arctic-sisec, 4 s mixtures separated by the shipped embedded separator",
              "examples": example_count(args.run_dir), "initialised_from": str(args.init) if args.init else None,
              "development": log[-1], "wall_seconds": args.wall_seconds}
    payload = {"config": HighBandConfig().to_dict(), "state_dict": state["net"], "recipe": recipe}
    args.export.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, args.export)
    print(f"wrote {args.export}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--prepare", type=int, default=0, help="write this many training examples, then stop")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--dev-every", type=int, default=250)
    parser.add_argument("--checkpoint-seconds", type=float, default=180.0)
    parser.add_argument("--export", type=Path, default=None)
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this exported network (podsep/data/high_band.pt to fine-tune the shipped one "
                             "on the current separator's voices)")
    parser.add_argument("--recorded-command", default="")
    parser.add_argument("--wall-seconds", type=float, default=None)
    args = parser.parse_args()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if args.prepare:
        prepare(args.run_dir, args.prepare, args.seed, args.worker, args.workers)
    elif args.export:
        export(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
