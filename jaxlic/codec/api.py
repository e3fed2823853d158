"""compress(package, image) -> bytes and decompress(package, bytes) -> image, for any H x W.

Networks run jitted; entropy coding runs outside jit on the package's integer tables. Images
are padded (edge replication) to a multiple of the model's downsampling and cropped back.
Both directions refuse images above `max_pixels` (default `jaxlic.images.MAX_PIXELS`) before
allocating anything for them: memory grows with the pixel count (docs/codec.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from jaxlic.codec.bitstream import MAX_SIDE, Bitstream
from jaxlic.codec.package import ModelPackage
from jaxlic.errors import BitstreamError, ImageError
from jaxlic.images import MAX_PIXELS, check_pixels, read_image

ImageLike = np.ndarray | str | os.PathLike


def as_rgb_uint8(image: ImageLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A uint8 H x W x 3 array from an array of that form or an image file path."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(
            f"expected a uint8 H x W x 3 RGB array, got {array.dtype} {array.shape}; "
            "read files with jaxlic.images.read_image, which converts other modes"
        )
    if not (1 <= array.shape[0] <= MAX_SIDE and 1 <= array.shape[1] <= MAX_SIDE):
        raise ImageError(f"image sides must be 1..{MAX_SIDE}, got {array.shape[:2]}")
    check_pixels(array.shape[0], array.shape[1], max_pixels, "image")
    return array


def _padded_size(side: int, multiple: int) -> int:
    return -(-side // multiple) * multiple


def _to_model_input(pixels: np.ndarray, multiple: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    pad = ((0, _padded_size(h, multiple) - h), (0, _padded_size(w, multiple) - w), (0, 0))
    return np.pad(pixels, pad, mode="edge")[None].astype(np.float32) / 255.0


def _to_pixels(x_hat: np.ndarray, height: int, width: int) -> np.ndarray:
    x = np.asarray(x_hat)[0, :height, :width]
    if not np.all(np.isfinite(x)):
        raise BitstreamError("the bitstream decodes to non-finite pixels (crafted escapes or a diverged model)")
    x = np.clip(x, 0.0, 1.0)
    return np.round(x * 255.0).astype(np.uint8)


def _channel_index(shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)


def compress(package: ModelPackage, image: ImageLike, max_pixels: int = MAX_PIXELS) -> bytes:
    """Encode one image (array or path) into a bitstream; ImageError above `max_pixels`."""
    pixels = as_rgb_uint8(image, max_pixels)
    model, fns, coders = package.model, package.transforms, package.coders
    x = _to_model_input(pixels, model.downsampling)
    y = np.asarray(fns.analysis(x))
    if not model.hyper:
        symbols = np.round(y - fns.medians)
        streams = (coders["bottleneck"].encode(symbols, _channel_index(y.shape)),)
    else:
        z = np.asarray(fns.hyper_analysis(y))
        z_symbols = np.round(z - fns.medians)
        z_stream = coders["bottleneck"].encode(z_symbols, _channel_index(z.shape))
        indexes, means, _ = _hyper(package, z_symbols, "jax")
        y_symbols = np.round(y - means) if means is not None else np.round(y)
        streams = (z_stream, coders["gaussian"].encode(y_symbols, indexes))
    bitstream = Bitstream(package.fingerprint, pixels.shape[0], pixels.shape[1], streams)
    return bitstream.to_bytes()


def _hyper(package: ModelPackage, z_symbols: np.ndarray, backend):
    """(table index of every y element, means for the encoder, means for the synthesis). The
    indexes come from the package's integer hyper graph, so encoder and decoder agree on every
    machine; a float package's means come from its float hyper-synthesis (they pick no table)."""
    from jaxlic.quant.codec import integer_hyper

    indexes, means, integer_means = integer_hyper(package.hyper_graph, z_symbols, backend)
    if package.integer is not None:
        return indexes, means, integer_means
    if package.model.predicts_means:
        fns = package.transforms
        means = np.asarray(fns.hyper_synthesis(z_symbols.astype(np.float32) + fns.medians)[1])
    return indexes, means, means


def _reconstruct(package: ModelPackage, y_symbols: np.ndarray, means, height: int, width: int,
                 backend: str) -> np.ndarray:
    """The cropped uint8 image from the decoded y symbols (and means)."""
    if package.integer is not None:
        from jaxlic.quant.codec import integer_synthesis

        return integer_synthesis(package, y_symbols, means, backend)[0, :height, :width]
    fns = package.transforms
    offset = means if means is not None else (0.0 if package.model.hyper else fns.medians)
    return _to_pixels(fns.synthesis(y_symbols.astype(np.float32) + offset), height, width)


@dataclass(frozen=True)
class Latents:
    """What a bitstream decodes to before the synthesis: identical on every machine."""

    y_symbols: np.ndarray  # (1, h/16, w/16, M) int64, h and w padded to the model's multiple
    means: np.ndarray | None  # the synthesis' means (int32 in integer mode, float32 otherwise)
    height: int
    width: int


def decode_latents(package: ModelPackage, data: bytes, backend="jax", max_pixels: int = MAX_PIXELS) -> Latents:
    """Entropy-decode a bitstream made with this package (see `decompress` for the arguments)."""
    bitstream = Bitstream.from_bytes(bytes(data), package.fingerprint)
    check_pixels(bitstream.height, bitstream.width, max_pixels, "bitstream image")
    model, coders = package.model, package.coders
    expected_streams = 2 if model.hyper else 1
    if len(bitstream.streams) != expected_streams:
        raise BitstreamError(f"bitstream has {len(bitstream.streams)} streams, this model writes {expected_streams}")
    h = _padded_size(bitstream.height, model.downsampling)
    w = _padded_size(bitstream.width, model.downsampling)
    y_shape = (1, h // 16, w // 16, package.config.M)
    means = None
    if not model.hyper:
        y_symbols = coders["bottleneck"].decode(bitstream.streams[0], _channel_index(y_shape)).reshape(y_shape)
    else:
        z_shape = (1, h // 64, w // 64, package.config.N)
        z_symbols = coders["bottleneck"].decode(bitstream.streams[0], _channel_index(z_shape))
        indexes, _, means = _hyper(package, z_symbols.reshape(z_shape), backend)
        y_symbols = coders["gaussian"].decode(bitstream.streams[1], indexes).reshape(y_shape)
    return Latents(y_symbols, means, bitstream.height, bitstream.width)


def decompress(package: ModelPackage, data: bytes, backend="jax", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a bitstream made with this package into a uint8 H x W x 3 image.

    `backend` runs the integer graphs (the entropy parameters of hyperprior packages, and the
    synthesis of integer-mode ones): "jax" (jitted), "jax-eager" or "numpy" (the integer
    reference); all three give the same latents, and integer-mode packages the same pixels.
    A declared size above `max_pixels` is an ImageError before anything is decoded.
    """
    latents = decode_latents(package, data, backend, max_pixels)
    return _reconstruct(package, latents.y_symbols, latents.means, latents.height, latents.width, backend)
