"""The embedded separator's network: the fused normalisation is the gLN the weights were trained with."""

from __future__ import annotations

import torch

from podsep.models.embedded.convtasnet import ConvTasNet, ConvTasNetConfig, GlobalLayerNorm


def _written_out_gln(norm: GlobalLayerNorm, x: torch.Tensor) -> torch.Tensor:
    """gLN as defined (Luo & Mesgarani): one mean and variance over channels and time per example."""
    mean = x.mean(dim=(1, 2), keepdim=True)
    var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
    return norm.weight * (x - mean) / torch.sqrt(var + norm.eps) + norm.bias


def test_fused_gln_is_the_written_out_one_values_and_gradients():
    generator = torch.Generator().manual_seed(0)
    norm = GlobalLayerNorm(6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(1, 6, 1, generator=generator))
        norm.bias.copy_(torch.randn(1, 6, 1, generator=generator))
    x = (torch.randn(3, 6, 50, generator=generator) * 4 + 2).requires_grad_(True)  # offset: mean matters
    fused = norm(x)
    written = _written_out_gln(norm, x)
    assert torch.allclose(fused, written, atol=1e-5)
    weights = torch.randn(fused.shape, generator=generator)
    grads_fused = torch.autograd.grad((fused * weights).sum(), [x, norm.weight, norm.bias])
    grads_written = torch.autograd.grad((written * weights).sum(), [x, norm.weight, norm.bias])
    for a, b in zip(grads_fused, grads_written):
        assert torch.allclose(a, b, atol=1e-4)
    # Each example is normalised on its own: changing one leaves the other's output alone.
    other = x.detach().clone()
    other[0] *= 10
    assert torch.allclose(norm(other)[1:], fused[1:], atol=1e-6)


def test_the_network_keeps_length_and_scale():
    model = ConvTasNet(ConvTasNetConfig(filters=16, bottleneck=8, hidden=16, blocks=2, repeats=1)).eval()
    mixture = torch.randn(2, 8001, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = model(mixture)
        louder = model(mixture * 100)
    assert out.shape == (2, 2, 8001)
    assert torch.allclose(louder, out * 100, rtol=1e-3, atol=1e-4)  # input scaled by its std, output scaled back
