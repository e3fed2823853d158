"""Evaluate any codec given as two functions: real byte counts, PSNR, MS-SSIM, timings.

Used by the reference-codec sweep, ``jaxlic eval --model`` and the sandwich sweeps: pass
``encode_fn(image) -> bytes`` and ``decode_fn(bytes, (height, width)) -> image`` (uint8 or
uint16, HxW or HxWxC, the same both ways; PSNR and MS-SSIM are relative to the bit depth's peak). Means follow CompressAI:
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
    if image.dtype not in (np.uint8, np.uint16) or image.ndim not in (2, 3):
        raise ImageError(f"{name}: expected a uint8 or uint16 HxW or HxWxC image, got {image.dtype} {image.shape}")


def peak_of(image: np.ndarray) -> float:
    """The largest value of the image's bit depth (255 or 65535): what PSNR is relative to."""
    return float(np.iinfo(image.dtype).max)


def measure(name: str, image: np.ndarray, num_bytes: int, decoded: np.ndarray,
            encode_time: float, decode_time: float) -> ImageResult:
    """The result of one image coded to `num_bytes` and decoded to `decoded` (same shape and dtype)."""
    _check_image(name, image)
    if decoded.shape != image.shape or decoded.dtype != image.dtype:
        raise ImageError(f"{name}: decoded {decoded.dtype} {decoded.shape} differs from the original "
                         f"{image.dtype} {image.shape}")
    height, width = image.shape[:2]
    peak = peak_of(image)
    return ImageResult(
        name=name,
        num_bytes=num_bytes,
        bpp=8.0 * num_bytes / (height * width),
        psnr=psnr(image, decoded, peak),
        ms_ssim=ms_ssim(image, decoded, peak),
        encode_time=encode_time,
        decode_time=decode_time,
    )


Decoder = Callable[[bytes, tuple[int, int]], np.ndarray]


def evaluate_image(name: str, image: np.ndarray, encode_fn: Callable[[np.ndarray], bytes], decode_fn: Decoder
                   ) -> ImageResult:
    """Encode, decode (given the bytes and the original's height and width) and measure one image."""
    _check_image(name, image)
    start = time.perf_counter()
    data = encode_fn(image)
    encoded = time.perf_counter()
    decoded = np.asarray(decode_fn(data, image.shape[:2]))
    finished = time.perf_counter()
    return measure(name, image, len(data), decoded, encoded - start, finished - encoded)


def evaluate(
    encode_fn: Callable[[np.ndarray], bytes],
    decode_fn: Decoder,
    images: Sequence[NamedImage],
    on_image: Callable[[ImageResult], None] | None = None,
) -> Evaluation:
    """Run every (name, image) through encode_fn/decode_fn; `on_image` sees each result. The one
    evaluation loop of jaxlic: learned models, reference codecs and sandwiches all use it."""
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

    return evaluate(lambda x: compress(package, x), lambda b, size: decompress(package, b), images, on_image)
