"""Standard codecs seen two ways: a differentiable proxy for training, the real codec for inference.

A sandwich trains its pre/post networks through `proxy` (under jit) and, at inference, writes and
reads real files with `encode`/`decode`, so the bitstream stays a standard file. The proxy's `rate`
is a few features per image that the payload bits are linear in (for JPEG: sum of log2(1 + |q|)
over quantized coefficients, the count of nonzero ones, the count of blocks); weights refit
against `payload_bits` of real files, outside jit, turn them into bits.

Only JPEG is implemented (`jaxlic.sandwich.jpeg`); WebP, AVIF or an HEVC-like intra proxy plug in
by implementing `StandardCodec` and adding a factory to `CODECS`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import jax
import numpy as np

from jaxlic.errors import ConfigError

PyTree = Any


class ProxyOutput(NamedTuple):
    """What the proxy returns: the decoded code image and uncalibrated rate features per image."""

    decoded: jax.Array  # (N, H, W, C), float on the 0..255 scale (integer-valued in the forward pass)
    rate: jax.Array  # (N, F) rate features; bits ~ rate @ weights, the weights fitted to real files


class StandardCodec(Protocol):
    """A standard image codec the sandwich wraps; `channels` is 1 (grayscale) or 3 (colour)."""

    name: str
    channels: int
    rate_prior: tuple[float, ...]  # weights for the rate features until the first calibration

    def init_params(self) -> PyTree:
        """The proxy's trainable parameters (e.g. quantization tables), {} when it has none."""
        ...

    def proxy(self, params: PyTree, code: jax.Array, quality: jax.Array) -> ProxyOutput:
        """Differentiable stand-in for encode+decode of (N, H, W, C) code images at per-image qualities."""
        ...

    def encode(self, params: PyTree, code: np.ndarray, quality: int, comment: bytes = b"") -> bytes:
        """A real file from a uint8 (H, W, C) code image."""
        ...

    def decode(self, data: bytes) -> tuple[np.ndarray, bytes]:
        """The uint8 (H, W, C) code image of a real file, and the file's comment (b"" if none)."""
        ...

    def payload_bits(self, data: bytes) -> int:
        """Bits of a real file that depend on the image (the entropy-coded data, not the headers)."""
        ...


def _jpeg(**options: Any) -> StandardCodec:
    from jaxlic.sandwich.jpeg import JpegCodec

    return JpegCodec(**options)


CODECS: dict[str, Callable[..., StandardCodec]] = {"jpeg": _jpeg}


def make_codec(name: str, **options: Any) -> StandardCodec:
    """The codec called `name` with its options (e.g. channels, subsampling)."""
    if name not in CODECS:
        raise ConfigError(f"unknown sandwich codec {name!r}; implemented: {', '.join(CODECS)}")
    return CODECS[name](**options)
