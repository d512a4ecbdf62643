"""Randomly initialised stand-ins for podsep's pretrained models.

podsep loads two pretrained models from the Hugging Face Hub:

* ``pyannote/speaker-diarization-community-1`` (a pyannote.audio pipeline
  folder: ``config.yaml``, ``segmentation/``, ``embedding/``, ``plda/``);
* ``speechbrain/sepformer-whamr16k`` (a speechbrain folder:
  ``hyperparams.yaml`` plus ``encoder.ckpt``, ``masknet.ckpt``,
  ``decoder.ckpt``).

The Hub is unreachable in CI, and loading code that is only ever exercised
against hand-made mocks tends to break on the real thing. This module
therefore writes folders in *exactly* the on-disk format of the real models,
filled with random weights, so that tests and benchmarks go through the very
same public loaders (``pyannote.audio.Pipeline.from_pretrained`` and
``speechbrain.inference.separation.SepformerSeparation.from_hparams``) as
production; only the id/path differs.

The checkpoints are produced the way the libraries themselves produce them,
not by writing guessed dictionaries:

* pyannote models are built from their classes, given the
  ``Specifications`` their training task would have attached, and saved with
  ``lightning.Trainer.save_checkpoint`` (which calls pyannote's own
  ``Model.on_save_checkpoint`` to add the ``pyannote.audio`` entry:
  versions, architecture module/class, specifications);
* SepFormer modules are instantiated from the very ``hyperparams.yaml`` that
  is written to the folder, and their ``state_dict()`` saved with
  ``torch.save`` as speechbrain's checkpointer does.

The PLDA (``plda.npz``, ``xvec_transform.npz``) and the pipeline
``config.yaml`` are *real* files, copied from ``plda_dir`` (the
``shared/models/pyannote-community-1-plda`` folder): they are small, and the
PLDA only fits 256-dimensional embeddings, which is why every embedding model
built here keeps that dimension.

Two sizes are offered:

* ``"full"``: the real architectures and sizes (random weights), for speed
  and memory benchmarks;
* ``"small"``: the same classes with fewer/smaller layers, so that a 30 s
  file diarizes and separates in a few seconds on two CPU cores (tests).

Random weights mean the outputs are meaningless; only formats, shapes and
types are realistic.

Command line::

    python -m podsep.lab.fixture_models --pyannote DIR --sepformer DIR \\
        [--size small|full] [--plda-dir DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "EMBEDDING_DIMENSION",
    "SIZES",
    "build_embedded_separator",
    "build_pyannote_pipeline",
    "build_sepformer",
    "default_plda_dir",
    "main",
]

#: Accepted values of the ``size`` argument.
SIZES: tuple[str, ...] = ("small", "full")

#: Dimension of the speaker embeddings; fixed by the real PLDA transform.
EMBEDDING_DIMENSION = 256

# --------------------------------------------------------------------------
# Architecture sizes
# --------------------------------------------------------------------------

# PyanNet hyper-parameters of pyannote/segmentation-3.0 ("full"): SincNet
# front-end, 4-layer bi-LSTM with 128 units, two 128-unit linear layers.
# "small" keeps SincNet (its size is fixed) and shrinks the recurrent and
# feed-forward parts, which dominate the run time.
_SEGMENTATION_HPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "sincnet": {"stride": 10},
        "lstm": {
            "hidden_size": 128,
            "num_layers": 4,
            "bidirectional": True,
            "monolithic": True,
            "dropout": 0.5,
        },
        "linear": {"hidden_size": 128, "num_layers": 2},
    },
    "small": {
        "sincnet": {"stride": 10},
        "lstm": {
            "hidden_size": 16,
            "num_layers": 1,
            "bidirectional": True,
            "monolithic": True,
            "dropout": 0.0,
        },
        "linear": {"hidden_size": 16, "num_layers": 1},
    },
}

# Task specifications of segmentation-3.0: 10 s chunks, at most 3 speakers
# per chunk and 2 per frame, i.e. a 7-class powerset.
_SEGMENTATION_DURATION = 10.0
_MAX_SPEAKERS_PER_CHUNK = 3
_MAX_SPEAKERS_PER_FRAME = 2

# WeSpeakerResNet34 hard-codes its ResNet widths (32 base channels) and its
# 256-d output, so the only size levers its saved hyper-parameters offer are
# the filterbank ones. "small" uses fewer mel bins and a coarser frame shift,
# which cuts the convolution cost about twentyfold; the class, the layer
# structure and the 256-d embedding stay those of the real model.
_EMBEDDING_HPARAMS: dict[str, dict[str, Any]] = {
    "full": {},
    "small": {"num_mel_bins": 16, "frame_shift": 40},
}

# SepFormer sizes. "full" is speechbrain/sepformer-whamr16k. In "small",
# one attention head matters most: on CPU the softmax over the 250-frame
# intra-chunk and ~500-chunk inter-chunk attention maps dominates, and its
# cost grows with the number of heads, not with d_model.
_SEPFORMER_SIZES: dict[str, dict[str, int]] = {
    "full": {
        "channels": 256,
        "kernel_size": 16,
        "kernel_stride": 8,
        "transformer_layers": 8,
        "heads": 8,
        "ffn": 1024,
        "dual_path_layers": 2,
        "chunk_size": 250,
    },
    "small": {
        "channels": 16,
        "kernel_size": 16,
        "kernel_stride": 8,
        "transformer_layers": 1,
        "heads": 1,
        "ffn": 32,
        "dual_path_layers": 1,
        "chunk_size": 250,
    },
}

_SEPFORMER_SAMPLE_RATE = 16000
_SEPFORMER_NUM_SPEAKERS = 2
_SEPFORMER_LOADABLES = ("encoder", "masknet", "decoder")

# Same layout and keys as the Hub's inference hyperparams.yaml of
# speechbrain/sepformer-whamr16k; only the sizes are parameters.
_SEPFORMER_HYPERPARAMS = """\
# ################################
# Model: Inference for source separation with SepFormer
# https://arxiv.org/abs/2010.13154
# Same format as speechbrain/sepformer-whamr16k (WHAMR!, 16 kHz).
# podsep test fixture: RANDOM WEIGHTS, size={size}, seed={seed}.
# ################################

# Parameters
sample_rate: {sample_rate}
num_spks: {num_spks}

# Specifying the network
Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
  kernel_size: {kernel_size}
  out_channels: {channels}

SBtfintra: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
  num_layers: {transformer_layers}
  d_model: {channels}
  nhead: {heads}
  d_ffn: {ffn}
  dropout: 0
  use_positional_encoding: true
  norm_before: true

SBtfinter: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
  num_layers: {transformer_layers}
  d_model: {channels}
  nhead: {heads}
  d_ffn: {ffn}
  dropout: 0
  use_positional_encoding: true
  norm_before: true

MaskNet: !new:speechbrain.lobes.models.dual_path.Dual_Path_Model
  num_spks: !ref <num_spks>
  in_channels: {channels}
  out_channels: {channels}
  num_layers: {dual_path_layers}
  K: {chunk_size}
  intra_model: !ref <SBtfintra>
  inter_model: !ref <SBtfinter>
  norm: ln
  linear_layer_after_inter_intra: false
  skip_around_intra: true

Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
  in_channels: {channels}
  out_channels: 1
  kernel_size: {kernel_size}
  stride: {kernel_stride}
  bias: false

modules:
  encoder: !ref <Encoder>
  decoder: !ref <Decoder>
  masknet: !ref <MaskNet>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
  loadables:
    encoder: !ref <Encoder>
    masknet: !ref <MaskNet>
    decoder: !ref <Decoder>
"""

_README = """\
# podsep test fixture: {what}

Randomly initialised weights (size={size}, seed={seed}) in the exact on-disk
format of `{real}`, written by `podsep.lab.fixture_models`.
Its outputs are meaningless; it exists so that tests exercise the real loaders
without the Hugging Face Hub. Do not use it for anything else.
"""

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def default_plda_dir() -> Path | None:
    """``$PODSEP_SHARED/models/pyannote-community-1-plda`` when ``PODSEP_SHARED`` is set, else ``None``.

    The fixture builder never guesses where a checkout sits: callers pass the
    folder (``plda_dir=``, ``--plda-dir``) or set ``PODSEP_SHARED``.
    """
    shared = os.environ.get("PODSEP_SHARED")
    return Path(shared) / "models" / "pyannote-community-1-plda" if shared else None


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch for weight initialisation without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's "GPU available: ..." banner while saving checkpoints."""
    names = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _save_pyannote_checkpoint(model: Any, path: Path) -> None:
    """Save ``model`` as a Lightning checkpoint, as pyannote training would.

    Going through ``Trainer.save_checkpoint`` (rather than writing a dict by
    hand) yields the same keys as the Hub checkpoints (``state_dict``,
    ``hyper_parameters``, ``pytorch-lightning_version``, ...) and lets
    pyannote's ``Model.on_save_checkpoint`` write its own ``pyannote.audio``
    entry, which ``Model.from_pretrained`` reads back.
    """
    import lightning

    path.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_lightning():
        trainer = lightning.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(path.parent),
        )
        trainer.strategy.connect(model)
        trainer.save_checkpoint(str(path), weights_only=False)


def _build_segmentation(size: str) -> Any:
    """PyanNet powerset segmentation model, as in pyannote/segmentation-3.0."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(sample_rate=16000, num_channels=1, **_SEGMENTATION_HPARAMS[size])
    # The specifications pyannote.audio.tasks.SpeakerDiarization attaches
    # with duration=10, max_speakers_per_chunk=3, max_speakers_per_frame=2.
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=_SEGMENTATION_DURATION,
        min_duration=None,
        warm_up=(0.0, 0.0),
        classes=[f"speaker#{i + 1}" for i in range(_MAX_SPEAKERS_PER_CHUNK)],
        powerset_max_classes=_MAX_SPEAKERS_PER_FRAME,
        permutation_invariant=True,
    )
    # Adds the task-dependent classifier (7 powerset classes) and activation.
    model.build()
    return model.eval()


def _build_embedding(size: str) -> Any:
    """WeSpeaker ResNet34 speaker embedding (256-d), as in community-1."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding.wespeaker import WeSpeakerResNet34

    model = WeSpeakerResNet34(sample_rate=16000, num_channels=1, **_EMBEDDING_HPARAMS[size])
    # Model.on_load_checkpoint requires specifications; these are the ones a
    # speaker-embedding task (pyannote.audio.tasks.embedding) attaches.
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION,
        resolution=Resolution.CHUNK,
        duration=_SEGMENTATION_DURATION,
        min_duration=None,
    )
    if model.dimension != EMBEDDING_DIMENSION:  # pragma: no cover - guards library changes
        raise RuntimeError(
            f"WeSpeakerResNet34 gives {model.dimension}-d embeddings; "
            f"the real PLDA needs {EMBEDDING_DIMENSION}"
        )
    return model.eval()


# --------------------------------------------------------------------------
# Public builders
# --------------------------------------------------------------------------


def build_pyannote_pipeline(
    folder: Path, *, plda_dir: Path, size: str = "small", seed: int = 0
) -> Path:
    """Write a ``pyannote/speaker-diarization-community-1``-like folder.

    Layout (same as the Hub repository)::

        folder/config.yaml                    real file, copied from plda_dir
        folder/README.md                      says this is a fixture
        folder/segmentation/pytorch_model.bin PyanNet (random weights)
        folder/embedding/pytorch_model.bin    WeSpeakerResNet34 (random weights)
        folder/plda/plda.npz                  real file, copied
        folder/plda/xvec_transform.npz        real file, copied

    Load it with ``pyannote.audio.Pipeline.from_pretrained(str(folder))``.

    Args:
        folder: destination (created if missing; files are overwritten).
        plda_dir: folder holding the real ``config.yaml`` and
            ``plda/{plda,xvec_transform}.npz`` of community-1.
        size: ``"small"`` (fast, for tests) or ``"full"`` (real sizes).
        seed: seed of the random weights, so fixtures are reproducible.

    Returns:
        ``folder``, as a ``Path``.
    """
    _check_size(size)
    folder = Path(folder)
    plda_dir = Path(plda_dir)
    config = plda_dir / "config.yaml"
    plda_files = [plda_dir / "plda" / name for name in ("plda.npz", "xvec_transform.npz")]
    missing = [str(p) for p in [config, *plda_files] if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"real community-1 files not found: {', '.join(missing)}")

    (folder / "plda").mkdir(parents=True, exist_ok=True)
    # copyfile, not copy: the shared originals are read-only, and copying
    # their mode would make the fixture impossible to rebuild in place.
    shutil.copyfile(config, folder / "config.yaml")
    for source in plda_files:
        shutil.copyfile(source, folder / "plda" / source.name)

    with _seeded(seed):
        segmentation = _build_segmentation(size)
        embedding = _build_embedding(size)
    _save_pyannote_checkpoint(segmentation, folder / "segmentation" / "pytorch_model.bin")
    _save_pyannote_checkpoint(embedding, folder / "embedding" / "pytorch_model.bin")

    (folder / "README.md").write_text(
        _README.format(
            what="speaker diarization pipeline",
            size=size,
            seed=seed,
            real="pyannote/speaker-diarization-community-1",
        )
    )
    return folder


def build_embedded_separator(path: Path, *, seed: int = 0, small: bool = True) -> Path:
    """A random-weight podsep separator in the exact format ``scripts/train_separator.py --export`` writes.

    ``small`` shrinks the network (fast tests); the file layout, keys and
    ``weights_only`` loading are those of the shipped ``podsep/data/separator.pt``.
    """
    from ..models.embedded.convtasnet import ConvTasNet, ConvTasNetConfig
    from ..models.embedded.separator import shipped_weights_path

    if small:
        config = ConvTasNetConfig(filters=32, bottleneck=16, hidden=32, blocks=3, repeats=1)
    else:  # full size is the shipped file's own shape, whatever the recipe has grown it to
        config = ConvTasNetConfig.from_dict(torch.load(shipped_weights_path(), weights_only=True)["config"])
    torch.manual_seed(seed)
    return _save_random_export(path, config, ConvTasNet(config))


def build_high_band(path: Path, *, seed: int = 0) -> Path:
    """A random-weight top-octave network in the exact format ``scripts/train_high_band.py --export`` writes
    (the shipped ``podsep/data/high_band.pt``'s layout, keys and ``weights_only`` loading; a small shape)."""
    from ..models.embedded.high_band import HighBandConfig, HighBandNet

    config = HighBandConfig(channels=16, dilations=(1, 2))
    torch.manual_seed(seed)
    return _save_random_export(path, config, HighBandNet(config))


def _save_random_export(path: Path, config: Any, module: torch.nn.Module) -> Path:
    """``{"config", "state_dict", "recipe"}``, the layout both training scripts' ``--export`` write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config.to_dict(), "state_dict": module.state_dict(),
                "recipe": {"script": "podsep.lab.fixture_models", "note": "random weights: meaningless output"}}, path)
    return path


def build_sepformer(folder: Path, *, size: str = "small", seed: int = 0) -> Path:
    """Write a ``speechbrain/sepformer-whamr16k``-like folder.

    Layout (same as the Hub repository)::

        folder/hyperparams.yaml   inference hyper-parameters with a pretrainer
        folder/encoder.ckpt       state dict of the dual_path.Encoder
        folder/masknet.ckpt       state dict of the Dual_Path_Model
        folder/decoder.ckpt       state dict of the dual_path.Decoder
        folder/README.md          says this is a fixture

    Load it with ``SepformerSeparation.from_hparams(source=str(folder),
    savedir=...)``; ``separate_batch`` of a ``(batch, samples)`` 16 kHz
    mixture returns ``(batch, samples, 2)``.

    Args:
        folder: destination (created if missing; files are overwritten).
        size: ``"small"`` (fast, for tests) or ``"full"`` (real sizes).
        seed: seed of the random weights, so fixtures are reproducible.

    Returns:
        ``folder``, as a ``Path``.
    """
    _check_size(size)
    from hyperpyyaml import load_hyperpyyaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = _SEPFORMER_HYPERPARAMS.format(
        size=size,
        seed=seed,
        sample_rate=_SEPFORMER_SAMPLE_RATE,
        num_spks=_SEPFORMER_NUM_SPEAKERS,
        **_SEPFORMER_SIZES[size],
    )
    (folder / "hyperparams.yaml").write_text(text)

    # Build the modules from the file just written, so the checkpoints fit
    # what the loader will instantiate from it, key for key.
    with _seeded(seed):
        hparams = load_hyperpyyaml(text)
    for name in _SEPFORMER_LOADABLES:
        module = hparams["modules"][name]
        torch.save(module.state_dict(), folder / f"{name}.ckpt")

    (folder / "README.md").write_text(
        _README.format(
            what="SepFormer separation model",
            size=size,
            seed=seed,
            real="speechbrain/sepformer-whamr16k",
        )
    )
    return folder


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m podsep.lab.fixture_models",
        description="Write random-weight stand-ins for podsep's pretrained models.",
    )
    parser.add_argument("--pyannote", type=Path, help="destination of the diarization pipeline folder")
    parser.add_argument("--sepformer", type=Path, help="destination of the SepFormer folder")
    parser.add_argument("--size", choices=SIZES, default="small", help="small (tests) or full (real sizes)")
    parser.add_argument(
        "--plda-dir",
        type=Path,
        default=None,
        help="folder with the real community-1 config.yaml and plda/ "
        "(default: $PODSEP_SHARED/models/pyannote-community-1-plda)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)

    if args.pyannote is None and args.sepformer is None:
        parser.error("nothing to do: give --pyannote and/or --sepformer")

    if args.pyannote is not None:
        plda_dir = args.plda_dir if args.plda_dir is not None else default_plda_dir()
        if plda_dir is None:
            print("error: give --plda-dir (or set PODSEP_SHARED)", file=sys.stderr)
            return 1
        try:
            path = build_pyannote_pipeline(args.pyannote, plda_dir=plda_dir, size=args.size, seed=args.seed)
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"pyannote pipeline ({args.size}) written to {path}")
    if args.sepformer is not None:
        path = build_sepformer(args.sepformer, size=args.size, seed=args.seed)
        print(f"SepFormer ({args.size}) written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
