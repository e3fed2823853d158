"""The four sandwich scenarios, their plain-codec baselines, and those baselines' pixel paths in JAX.

- ``gray``: RGB images through a grayscale JPEG. Baseline: Pillow's ``convert("L")`` (ITU-R 601
  luma), grayscale JPEG, gray replicated to RGB.
- ``half-res``: images through a JPEG at half the resolution (4:2:0). Baseline: Pillow bicubic
  downscale by 2, JPEG, bicubic upscale.
- ``high-bit-depth``: 16-bit RGB through an 8-bit JPEG (4:4:4, where the 8-bit limit shows:
  4:2:0 chroma loss would hide it). Baseline: rounded to 8 bits, JPEG, scaled back (x 257).
- ``rgb``: ordinary RGB JPEG (4:2:0, Pillow's default), improved. Baseline: plain JPEG.

`plain_code` and `plain_reconstruction` are those baselines' pixel paths in JAX, equal to Pillow's
pixel for pixel (`jaxlic.sandwich.resample`); a sandwich adds its learned residuals to them.

High-bit-depth data: the training and evaluation images are 8-bit, so 16-bit images are
synthesized by `synthesize_high_bit_depth`: an antialiased Lanczos-3 downscale by 2 computed in
float and stored with 16 bits. Each output sample is a weighted mean of many 8-bit samples, so it
carries real sub-8-bit detail (smooth gradients, averaged noise) of natural photographs, like a
camera's downscaled output. The same function makes training targets (from 8-bit crops) and the
"synthetic 16-bit Kodak" evaluation set (384x256 or 256x384 from each Kodak image).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxlic.errors import ConfigError, ImageError
from jaxlic.sandwich.resample import luma, resize_bicubic


@dataclass(frozen=True)
class Scenario:
    """What goes in, what the standard codec carries, and the training/evaluation qualities."""

    name: str
    summary: str
    code_channels: int  # default; configurable per model
    scale: int  # code image = input downscaled by this factor
    subsampling: str  # JPEG chroma subsampling of colour code images
    train_qualities: tuple[int, int]  # qualities drawn uniformly per training image
    eval_qualities: tuple[int, ...]
    high_bit_depth: bool = False


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("gray", "RGB through a grayscale JPEG", 1, 1, "4:2:0", (5, 95), (5, 10, 20, 30, 50, 70, 90)),
        Scenario("half-res", "full resolution through a half-resolution JPEG", 3, 2, "4:2:0", (5, 95),
                 (5, 10, 20, 30, 50, 70, 90)),
        Scenario("high-bit-depth", "16-bit RGB through an 8-bit JPEG (4:4:4)", 3, 1, "4:4:4", (60, 100),
                 (60, 70, 80, 90, 95, 98, 100), high_bit_depth=True),
        Scenario("rgb", "ordinary RGB JPEG (4:2:0), improved", 3, 1, "4:2:0", (5, 95), (5, 10, 20, 30, 50, 70, 90)),
    )
}


def get_scenario(name: str) -> Scenario:
    """The scenario called `name`."""
    if name not in SCENARIOS:
        raise ConfigError(f"unknown sandwich scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def plain_code(x: jax.Array, scale: int, code_channels: int) -> jax.Array:
    """The plain pipeline's code images (N, ceil(H/s), ceil(W/s), C) on the 0..255 scale from
    images in [0, 1]: Pillow's convert("L") for one channel, its bicubic downscale for scale 2,
    else the image itself (the codec rounds it to 8 bits)."""
    if code_channels not in (1, 3):
        raise ConfigError(f"code images have 1 (grayscale) or 3 (colour) channels, got {code_channels}")
    code = 255.0 * x
    if code_channels == 1:
        code = luma(jnp.round(code))
    if scale > 1:
        h, w = x.shape[1:3]
        code = resize_bicubic(jnp.round(code), (-(-h // scale), -(-w // scale)))
    return code


def plain_reconstruction(decoded: jax.Array, size: tuple[int, int]) -> jax.Array:
    """The natural inverse of `plain_code` on decoded code images (0..255): Pillow's bicubic
    upscale to `size` (h, w), gray copied to R, G and B; (N, h, w, 3) in [0, 1]."""
    image = resize_bicubic(decoded, size) if decoded.shape[1:3] != tuple(size) else decoded
    return jnp.broadcast_to(image, (*image.shape[:3], 3)) / 255.0


def synthesize_high_bit_depth(batch: jax.Array) -> jax.Array:
    """16-bit-precision (N, H/2, W/2, 3) images in [0, 1] from 8-bit (N, H, W, 3) ones (module docstring)."""
    n, h, w, c = batch.shape
    if h < 2 or w < 2:
        raise ImageError(f"need at least 2x2 pixels to synthesize a high-bit-depth image, got {w}x{h}")
    small = jax.image.resize(batch, (n, h // 2, w // 2, c), method="lanczos3", antialias=True)
    return jnp.round(jnp.clip(small, 0.0, 1.0) * 65535.0) / 65535.0


def target_from_batch(scenario: Scenario, batch: jax.Array) -> jax.Array:
    """The training target the sandwich reconstructs, from an 8-bit batch in [0, 1]."""
    return synthesize_high_bit_depth(batch) if scenario.high_bit_depth else batch


def _jpeg_bytes(image: Image.Image, quality: int, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, **options)
    return buffer.getvalue()


def baseline_encode(scenario: Scenario, image: np.ndarray, quality: int) -> bytes:
    """The plain codec's file of `image` (uint8 HxWx3; uint16 for high-bit-depth)."""
    h, w = image.shape[:2]
    if scenario.name == "gray":
        return _jpeg_bytes(Image.fromarray(image).convert("L"), quality)
    if scenario.name == "half-res":
        small = Image.fromarray(image).resize((-(-w // 2), -(-h // 2)), Image.Resampling.BICUBIC)
        return _jpeg_bytes(small, quality, subsampling=scenario.subsampling)
    if scenario.high_bit_depth:
        image = np.round(image.astype(np.float64) / 257.0).astype(np.uint8)
    return _jpeg_bytes(Image.fromarray(image), quality, subsampling=scenario.subsampling)


def baseline_decode(scenario: Scenario, data: bytes, size: tuple[int, int]) -> np.ndarray:
    """The natural inverse: the plain codec's file back to an HxWx3 image of the original dtype."""
    image = Image.open(io.BytesIO(data))
    image.load()
    if scenario.name == "gray":
        return np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
    if scenario.name == "half-res":
        return np.asarray(image.resize((size[1], size[0]), Image.Resampling.BICUBIC))
    if scenario.high_bit_depth:
        return np.asarray(image).astype(np.uint16) * 257
    return np.asarray(image)
