"""The parity fixture of jaxlic's lalic: a PyTorch LALIC built from its published structure.

The official code (sjtu-medialab/RwkvCompress, models/lalic.py) runs BiWKV only as a CUDA
kernel. This script rebuilds the module tree from that structure (module names, shapes, the
order of layers: the same state-dict keys as an official checkpoint) with its own CPU BiWKV, the
formula evaluated term by term in float64, on CompressAI 1.2.8's ELIC latent codecs as the
official model does. Random weights at tiny widths (dims 6, 9, 16, 20, 16, 12, N = 8, groups
1, 1, 2, 4, 12), decays and boosts spread so the attention is far from uniform; g_a's and h_a's
last convs rescaled so y and z span several integers; every parameter rounded to float16 so
the fixture can store them exactly in half the space. OmniShift's `conv5x5_reparam` is left
random, as a training checkpoint holds it (stale): an importer must fold the branches.

Writes tests/models/fixtures/lalic_parity.npz: the state dict (its float tensors, h_a and h_s
once) as `state_keys`, `state_shapes` (JSON) and `state_values` (float16, concatenated);
`pixels` (uint8 NCHW; the model sees pixels / 255); `x_hat`, `likelihoods/y`, `likelihoods/z`
(NCHW, eval-mode forward).

Run in the peer environment:  .peer/bin/python experiments/lalic_parity_fixture.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (ChannelGroupsLatentCodec, CheckerboardLatentCodec,
                                      GaussianConditionalLatentCodec, HyperLatentCodec,
                                      HyperpriorLatentCodec)
from compressai.layers import CheckerboardMaskedConv2d, sequential_channel_ramp
from compressai.models import Elic2022Official
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "tests" / "models" / "fixtures" / "lalic_parity.npz"
DIMS, DEPTHS, N_AGGREGATION = (6, 9, 16, 20, 16, 12), (2, 4, 6, 6), 8
GROUPS = [1, 1, 2, 4, 12]
IMAGE = (1, 3, 64, 128)


def biwkv(w, u, k, v, eps=1e-6):
    """The BiWKV formula on (B, T, C), term by term in float64, one channel at a time."""
    T = k.shape[1]
    t = torch.arange(T, dtype=torch.float64)
    distance = (t[:, None] - t[None, :]).abs()
    out = torch.empty_like(k, dtype=torch.float64)
    for c in range(k.shape[2]):
        kc, vc = k[..., c].double(), v[..., c].double()
        exponents = kc[:, None, :] - (distance - 1) * w[c].double()
        exponents = torch.where(distance == 0, u[c].double() + kc[:, None, :], exponents)
        weights = torch.exp(exponents - exponents.amax(dim=2, keepdim=True))
        out[..., c] = (weights * vc[:, None, :]).sum(2) / (weights.sum(2) + eps)
    return out.to(k.dtype)


def depthwise(dim: int, size: int) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, size, padding=size // 2, groups=dim, bias=False)


class OmniShift(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv1x1, self.conv3x3, self.conv5x5 = depthwise(dim, 1), depthwise(dim, 3), depthwise(dim, 5)
        self.alpha = nn.Parameter(torch.randn(4))
        self.conv5x5_reparam = depthwise(dim, 5)  # stale, as in a training checkpoint

    def forward(self, x):
        a = self.alpha
        return a[0] * x + a[1] * self.conv1x1(x) + a[2] * self.conv3x3(x) + a[3] * self.conv5x5(x)


def tokens_mixed(module, x, fn):
    """Run OmniShift on the (B, C, H, W) map of (B, H*W, C) tokens, then fn on the tokens."""
    b, hw, c = x.shape
    h, w = module.resolution
    shifted = module.omni_shift(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
    return fn(shifted)


class SpatialMix(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.omni_shift = OmniShift(dim)
        self.key, self.value, self.receptance, self.output = (nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.decay = nn.Parameter(torch.randn(dim) * 30)
        self.boost = nn.Parameter(torch.randn(dim) * 30)

    def forward(self, x):
        T = x.shape[1]
        return tokens_mixed(self, x, lambda s: self.output(
            torch.sigmoid(self.receptance(s)) * biwkv(self.decay / T, self.boost / T, self.key(s), self.value(s))))


class ChannelMix(nn.Module):
    def __init__(self, dim, hidden_rate):
        super().__init__()
        self.omni_shift = OmniShift(dim)
        self.key = nn.Linear(dim, hidden_rate * dim, bias=False)
        self.receptance = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(hidden_rate * dim, dim, bias=False)

    def forward(self, x):
        return tokens_mixed(self, x, lambda s: torch.sigmoid(self.receptance(s)) * self.value(torch.relu(self.key(s)) ** 2))


class Block(nn.Module):
    def __init__(self, dim, hidden_rate=4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.att, self.ffn = SpatialMix(dim), ChannelMix(dim, hidden_rate)
        self.gamma1 = nn.Parameter(torch.rand(dim) + 0.5)
        self.gamma2 = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        b, c, h, w = x.shape
        self.att.resolution = self.ffn.resolution = (h, w)
        x = x.flatten(2).transpose(1, 2)
        x = x + self.gamma1 * self.att(self.ln1(x))
        x = x + self.gamma2 * self.ffn(self.ln2(x))
        return x.transpose(1, 2).reshape(b, c, h, w)


class EntropyParametersBlock(nn.Module):
    def __init__(self, dim, out_dim, **_):
        super().__init__()
        self.mix = nn.Conv2d(dim, out_dim, 1)
        self.norm = nn.LayerNorm(out_dim)
        self.key = nn.Linear(out_dim, 2 * out_dim, bias=False)
        self.value = nn.Linear(2 * out_dim, out_dim, bias=False)
        self.receptance = nn.Linear(out_dim, out_dim, bias=False)

    def forward(self, x):
        x = self.mix(x)
        t = self.norm(x.permute(0, 2, 3, 1))
        return x + (torch.sigmoid(self.receptance(t)) * self.value(torch.relu(self.key(t)) ** 2)).permute(0, 3, 1, 2)


def conv(cin, cout, size, stride=2):
    return nn.Conv2d(cin, cout, size, stride, size // 2)


def deconv(cin, cout, size, stride=2):
    return nn.ConvTranspose2d(cin, cout, size, stride, size // 2, output_padding=stride - 1)


def stage(*parts):
    return nn.Sequential(*[m for part in parts for m in (part if isinstance(part, list) else [part])])


class Lalic(Elic2022Official):
    """LALIC's module tree on CompressAI's ELIC (the official model's base class)."""

    def __init__(self):
        n1, n2, n3, M, n5, n6 = DIMS
        l1, l2, l3, l4 = DEPTHS
        super().__init__(N=N_AGGREGATION, M=M, groups=GROUPS)

        def blocks(dim, depth, rate=4):
            return [Block(dim, rate) for _ in range(depth)]

        self.g_a = stage(conv(3, n1, 5), blocks(n1, l1), conv(n1, n2, 3), blocks(n2, l2), conv(n2, n3, 3),
                         blocks(n3, l3), conv(n3, M, 3))
        self.g_s = stage(deconv(M, n3, 3), blocks(n3, l3), deconv(n3, n2, 3), blocks(n2, l2), deconv(n2, n1, 3),
                         blocks(n1, l1), deconv(n1, 3, 5))
        self.h_a = stage(conv(M, n5, 5), blocks(n5, l4), conv(n5, n6, 5))
        self.h_s = stage(deconv(n6, n5, 5), blocks(n5, l4), deconv(n5, M, 5))
        g = GROUPS
        channel_context = {f"y{k}": stage(conv(sum(g[:k]), M, 3, 1), blocks(M, 2, 8), conv(M, 2 * g[k], 1, 1))
                           for k in range(1, len(g))}
        groups = {
            f"y{k}": CheckerboardLatentCodec(
                latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste")},
                context_prediction=CheckerboardMaskedConv2d(g[k], 2 * g[k], kernel_size=5, stride=1, padding=2),
                entropy_parameters=sequential_channel_ramp(
                    2 * g[k] + (k > 0) * 2 * g[k] + M, 2 * g[k], min_ch=2 * N_AGGREGATION, num_layers=3,
                    make_layer=EntropyParametersBlock, make_act=nn.Identity, kernel_size=1))
            for k in range(len(g))
        }
        self.latent_codec = HyperpriorLatentCodec(latent_codec={
            "y": ChannelGroupsLatentCodec(groups=g, channel_context=channel_context, latent_codec=groups),
            "hyper": HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(n6), h_a=self.h_a, h_s=self.h_s,
                                      quantizer="ste"),
        })


def _pixels() -> np.ndarray:
    """Blocky colour fields plus noise (photo-like latents), uint8 NCHW."""
    rng = np.random.default_rng(11)
    _, _, h, w = IMAGE
    coarse = np.kron(rng.uniform(size=(1, 3, h // 16, w // 16)), np.ones((16, 16)))
    return np.round(255 * np.clip(coarse + 0.05 * rng.standard_normal(coarse.shape), 0, 1)).astype(np.uint8)


def _rescale(layer: nn.Conv2d, factor: float) -> None:
    with torch.no_grad():
        layer.weight.mul_(factor)
        layer.bias.mul_(factor)


def main() -> None:
    torch.manual_seed(3)
    model = Lalic().eval()
    pixels = _pixels()
    x = torch.from_numpy(pixels.astype(np.float32) / np.float32(255))
    with torch.no_grad():
        _rescale(model.g_a[-1], 4.0 / float(model.g_a(x).std()))
        _rescale(model.h_a[-1], 2.0 / float(model.h_a(model.g_a(x)).std()))
        for p in model.parameters():
            p.copy_(p.half().float())
        out = model(x)
        y = model.g_a(x)
    # h_a and h_s appear twice in the state dict (as themselves and inside the hyper latent
    # codec); one copy keeps the fixture small.
    # codec); one copy keeps the fixture small. Integer buffers (CDF tables) are left out.
    state = {k: v.half().numpy() for k, v in model.state_dict().items()
             if v.is_floating_point() and not k.startswith(("latent_codec.hyper.h_a.", "latent_codec.hyper.h_s."))}
    print(f"y std {float(y.std()):.2f}, max |y| {float(y.abs().max()):.1f}")
    # One array for the whole state dict: an .npz entry per tensor would cost more than the data.
    np.savez_compressed(OUT, state_keys=np.array(list(state)), state_shapes=json.dumps([v.shape for v in state.values()]),
                        state_values=np.concatenate([v.ravel() for v in state.values()]),
                        pixels=pixels, x_hat=out["x_hat"].numpy(),
                        **{f"likelihoods/{k}": v.numpy() for k, v in out["likelihoods"].items()})
    print(f"{OUT}: {OUT.stat().st_size} bytes, {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
