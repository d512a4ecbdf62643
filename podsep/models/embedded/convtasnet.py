"""podsep's compact speech separator: a small Conv-TasNet.

Why this architecture: it separates in the time domain (so it is not capped by
what a magnitude mask allows), it is all 1-D convolutions (fast on a CPU with one
thread, no recurrent state), and it is small enough to train on two CPU cores in
a few hours and to fine-tune on one episode's own voices in about a minute.

The network is the encoder -> mask network -> decoder shape of Luo & Mesgarani
(2019), written here from the paper: a learned filterbank encoder, a temporal
convolutional network (stacks of dilated depthwise-separable convolution blocks
with global layer norm) that predicts one sigmoid mask per source, and a
transposed-convolution decoder. The input is divided by its standard deviation
and the outputs multiplied back, so the model is level independent.

This module holds only the network; loading the shipped weights and running it
on windows is :mod:`podsep.models.embedded.separator`'s job, and training is
``scripts/train_separator.py``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ConvTasNetConfig:
    """Shape of the network (all that is needed to rebuild it around a state dict)."""

    sample_rate: int = 8000
    num_sources: int = 2
    filters: int = 128  # encoder basis size (N)
    kernel: int = 32  # encoder window in samples (L); hop is kernel // 2
    bottleneck: int = 96  # B
    hidden: int = 192  # H
    conv_kernel: int = 3  # P
    blocks: int = 7  # X, dilations 1 .. 2**(X-1)
    repeats: int = 2  # R

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (ints only), storable in a ``weights_only`` checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ConvTasNetConfig":
        """Rebuild from :meth:`to_dict` output, ignoring unknown keys."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: int(v) for k, v in values.items() if k in known})


class GlobalLayerNorm(nn.Module):
    """Normalise over channels and time together (gLN), with a per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # gLN is group normalisation with a single group: torch's fused kernel computes the
        # same (x - mean) / sqrt(var + eps) * weight + bias about six times faster than the
        # seven elementwise passes written out, which made up almost half of a forward pass
        # on a CPU (measured: inference 1.4-2x, a training step 1.7-2.3x faster).
        return torch.nn.functional.group_norm(x, 1, self.weight.view(-1), self.bias.view(-1), self.eps)


class TemporalBlock(nn.Module):
    """1x1 expand -> PReLU/gLN -> dilated depthwise conv -> PReLU/gLN -> 1x1 back, residual."""

    def __init__(self, bottleneck: int, hidden: int, kernel: int, dilation: int) -> None:
        super().__init__()
        padding = dilation * (kernel - 1) // 2
        self.expand = nn.Conv1d(bottleneck, hidden, 1)
        self.act1 = nn.PReLU()
        self.norm1 = GlobalLayerNorm(hidden)
        self.depthwise = nn.Conv1d(
            hidden, hidden, kernel, dilation=dilation, padding=padding, groups=hidden
        )
        self.act2 = nn.PReLU()
        self.norm2 = GlobalLayerNorm(hidden)
        self.project = nn.Conv1d(hidden, bottleneck, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(self.act1(self.expand(x)))
        y = self.norm2(self.act2(self.depthwise(y)))
        return x + self.project(y)


class ConvTasNet(nn.Module):
    """Mono waveform ``(batch, samples)`` -> sources ``(batch, num_sources, samples)``."""

    def __init__(self, config: ConvTasNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or ConvTasNetConfig()
        c = self.config
        self.hop = c.kernel // 2
        self.encoder = nn.Conv1d(1, c.filters, c.kernel, stride=self.hop, bias=False)
        self.input_norm = GlobalLayerNorm(c.filters)
        self.bottleneck = nn.Conv1d(c.filters, c.bottleneck, 1)
        self.tcn = nn.Sequential(
            *[
                TemporalBlock(c.bottleneck, c.hidden, c.conv_kernel, 2**b)
                for _ in range(c.repeats)
                for b in range(c.blocks)
            ]
        )
        self.mask_act = nn.PReLU()
        self.mask = nn.Conv1d(c.bottleneck, c.num_sources * c.filters, 1)
        self.decoder = nn.ConvTranspose1d(c.filters, 1, c.kernel, stride=self.hop, bias=False)

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        c = self.config
        batch, length = mixture.shape
        scale = mixture.std(dim=1, keepdim=True).clamp_min(1e-6)
        x = mixture / scale
        # Pad so the frames cover every sample, then trim back to the input length.
        frames = max(1, -(-(length - c.kernel) // self.hop) + 1) if length > c.kernel else 1
        padded = (frames - 1) * self.hop + c.kernel
        x = torch.nn.functional.pad(x, (0, padded - length)).unsqueeze(1)
        basis = torch.relu(self.encoder(x))  # (batch, N, frames)
        y = self.tcn(self.bottleneck(self.input_norm(basis)))
        masks = torch.sigmoid(self.mask(self.mask_act(y)))
        masks = masks.view(batch, c.num_sources, c.filters, -1)
        masked = (basis.unsqueeze(1) * masks).view(batch * c.num_sources, c.filters, -1)
        out = self.decoder(masked).view(batch, c.num_sources, -1)[..., :length]
        return out * scale.unsqueeze(1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (reported beside the shipped weights)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class SpeechbrainMaskNet(nn.Module):
    """The mask network of :class:`ConvTasNet` behind speechbrain's separation interface.

    speechbrain's ``SepformerSeparation`` runs ``encoder -> masknet -> decoder``
    with its own ``dual_path.Encoder`` (a strided convolution and a ReLU) and
    ``dual_path.Decoder`` (a transposed convolution): exactly podsep's encoder
    and decoder. This module holds the rest under the same parameter names, so a
    podsep separator can be saved as a speechbrain model folder and loaded with
    ``SepformerSeparation.from_hparams`` (see :func:`export_speechbrain_folder`).
    The network needs no input scaling there: every layer before the masks is
    scale-equivariant and the masks are scale-invariant.
    """

    def __init__(self, filters: int = 128, bottleneck: int = 96, hidden: int = 192, conv_kernel: int = 3,
                 blocks: int = 7, repeats: int = 2, num_sources: int = 2) -> None:
        super().__init__()
        self.num_sources, self.filters = num_sources, filters
        self.input_norm = GlobalLayerNorm(filters)
        self.bottleneck = nn.Conv1d(filters, bottleneck, 1)
        self.tcn = nn.Sequential(*[TemporalBlock(bottleneck, hidden, conv_kernel, 2**b)
                                   for _ in range(repeats) for b in range(blocks)])
        self.mask_act = nn.PReLU()
        self.mask = nn.Conv1d(bottleneck, num_sources * filters, 1)

    def forward(self, basis: torch.Tensor) -> torch.Tensor:
        """``(batch, N, frames)`` encoder output -> ``(num_sources, batch, N, frames)`` masks."""
        batch = basis.shape[0]
        y = self.tcn(self.bottleneck(self.input_norm(basis)))
        masks = torch.sigmoid(self.mask(self.mask_act(y)))
        return masks.view(batch, self.num_sources, self.filters, -1).transpose(0, 1)


SPEECHBRAIN_HYPERPARAMS = """\
# podsep's embedded separator (a compact Conv-TasNet) in speechbrain's separation format.
# Load with speechbrain.inference.separation.SepformerSeparation.from_hparams(source=<this folder>)
# or `podsep split --separator sepformer --separation-model <this folder>`.
# Written by podsep.models.embedded.convtasnet.export_speechbrain_folder.

sample_rate: {sample_rate}
num_spks: {num_sources}

Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
  kernel_size: {kernel}
  out_channels: {filters}

MaskNet: !new:podsep.models.embedded.convtasnet.SpeechbrainMaskNet
  filters: {filters}
  bottleneck: {bottleneck}
  hidden: {hidden}
  conv_kernel: {conv_kernel}
  blocks: {blocks}
  repeats: {repeats}
  num_sources: {num_sources}

Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
  in_channels: {filters}
  out_channels: 1
  kernel_size: {kernel}
  stride: {stride}
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


def export_speechbrain_folder(config: ConvTasNetConfig, state_dict: dict[str, torch.Tensor], folder: Any) -> Any:
    """Write ``hyperparams.yaml`` and ``encoder/masknet/decoder.ckpt`` for speechbrain's loader."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    values = config.to_dict()
    (folder / "hyperparams.yaml").write_text(SPEECHBRAIN_HYPERPARAMS.format(stride=config.kernel // 2, **values))
    encoder = {"conv1d.weight": state_dict["encoder.weight"]}
    decoder = {"weight": state_dict["decoder.weight"]}
    masknet = {k: v for k, v in state_dict.items() if not k.startswith(("encoder.", "decoder."))}
    torch.save(encoder, folder / "encoder.ckpt")
    torch.save(masknet, folder / "masknet.ckpt")
    torch.save(decoder, folder / "decoder.ckpt")
    return folder
