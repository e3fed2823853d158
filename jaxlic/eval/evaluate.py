"""Evaluate any codec given as two functions: real byte counts, 8-bit PSNR, MS-SSIM, timings.

Used by the reference-codec sweep and by ``jaxlic eval --model``: pass ``encode_fn(image) ->
bytes`` and ``decode_fn(bytes) -> image`` (uint8 HxWx3 both ways). Means follow CompressAI:
bpp and PSNR are averaged over images (PSNR per image first, then the mean).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from jaxlic.errors import ImageError
from jaxlic.eval.metrics import ms_ssim, psnr

NamedImage = tuple[str, np.ndarray]


@dataclass(frozen=True)
class ImageResult:
    """One image through one codec setting."""

    name: str
    num_bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    encode_time: float
    decode_time: float


@dataclass(frozen=True)
class Evaluation:
    """Per-image results of one codec setting and their means."""

    images: tuple[ImageResult, ...]

    def mean(self, field: str) -> float:
        """Mean of one ImageResult field over the images."""
        return float(np.mean([getattr(result, field) for result in self.images]))

    @property
    def bpp(self) -> float:
        return self.mean("bpp")

    @property
    def psnr(self) -> float:
        return self.mean("psnr")

    @property
    def ms_ssim(self) -> float:
        return self.mean("ms_ssim")


def _check_image(name: str, image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"{name}: expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}")


def measure(name: str, image: np.ndarray, num_bytes: int, decoded: np.ndarray,
            encode_time: float, decode_time: float) -> ImageResult:
    """The result of one image coded to `num_bytes` and decoded to `decoded` (uint8 HxWx3)."""
    _check_image(name, image)
    if decoded.shape != image.shape:
        raise ImageError(f"{name}: decoded shape {decoded.shape} differs from the original {image.shape}")
    _check_image(f"{name} (decoded)", decoded)
    height, width = image.shape[:2]
    return ImageResult(
        name=name,
        num_bytes=num_bytes,
        bpp=8.0 * num_bytes / (height * width),
        psnr=psnr(image, decoded),
        ms_ssim=ms_ssim(image, decoded),
        encode_time=encode_time,
        decode_time=decode_time,
    )


def evaluate_image(
    name: str, image: np.ndarray, encode_fn: Callable[[np.ndarray], bytes], decode_fn: Callable[[bytes], np.ndarray]
) -> ImageResult:
    """Encode, decode and measure one image."""
    _check_image(name, image)
    start = time.perf_counter()
    data = encode_fn(image)
    encoded = time.perf_counter()
    decoded = np.asarray(decode_fn(data))
    finished = time.perf_counter()
    return measure(name, image, len(data), decoded, encoded - start, finished - encoded)


def evaluate(
    encode_fn: Callable[[np.ndarray], bytes],
    decode_fn: Callable[[bytes], np.ndarray],
    images: Sequence[NamedImage],
    on_image: Callable[[ImageResult], None] | None = None,
) -> Evaluation:
    """Run every (name, uint8 HxWx3) image through encode_fn/decode_fn; `on_image` sees each result."""
    if not images:
        raise ImageError("no images to evaluate")
    results = []
    for name, image in images:
        result = evaluate_image(name, np.asarray(image), encode_fn, decode_fn)
        if on_image is not None:
            on_image(result)
        results.append(result)
    return Evaluation(tuple(results))


def evaluate_model(package, images: Sequence[NamedImage],
                   on_image: Callable[[ImageResult], None] | None = None) -> Evaluation:
    """`evaluate` of a learned model package: real bitstreams through `jaxlic.codec`."""
    from jaxlic.codec import compress, decompress

    return evaluate(lambda x: compress(package, x), lambda b: decompress(package, b), images, on_image)
