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
from jaxlic.codec.context import decode_latent, encode_latent
from jaxlic.codec.decoders import Backend, decoder_for
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


def _channel_index(shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)


def compress(package: ModelPackage, image: ImageLike, max_pixels: int = MAX_PIXELS) -> bytes:
    """Encode one image (array or path) into a bitstream; ImageError above `max_pixels`."""
    pixels = as_rgb_uint8(image, max_pixels)
    model, fns, coders = package.model, package.transforms, package.coders
    y = np.asarray(fns.analysis(_to_model_input(pixels, model.downsampling)))
    if not model.hyper:
        streams = (coders["bottleneck"].encode(np.round(y - fns.medians), _channel_index(y.shape)),)
    else:
        z = np.asarray(fns.hyper_analysis(y))
        z_symbols = np.round(z - fns.medians)
        z_stream = coders["bottleneck"].encode(z_symbols, _channel_index(z.shape))
        if package.is_context_model:
            streams = (z_stream, encode_latent(package, y, z_symbols))
        else:
            indexes, means = decoder_for(package).hyper(z_symbols)
            y_symbols = np.round(y - means) if means is not None else np.round(y)
            streams = (z_stream, coders["gaussian"].encode(y_symbols, indexes))
    return Bitstream(package.fingerprint, pixels.shape[0], pixels.shape[1], streams).to_bytes()


@dataclass(frozen=True)
class Latents:
    """What a bitstream decodes to before the synthesis: identical on every machine."""

    y_symbols: np.ndarray  # (1, h/16, w/16, M) int64, h and w padded to the model's multiple
    means: np.ndarray | None  # float32 means of mean-scale models
    height: int
    width: int


def decode_latents(package: ModelPackage, data: bytes, backend: Backend = "jax", max_pixels: int = MAX_PIXELS
                   ) -> Latents:
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
        z_symbols = coders["bottleneck"].decode(bitstream.streams[0], _channel_index(z_shape)).reshape(z_shape)
        if package.is_context_model:
            y_symbols, means = decode_latent(package, bitstream.streams[1], z_symbols, backend)
        else:
            indexes, means = decoder_for(package, backend).hyper(z_symbols)
            y_symbols = coders["gaussian"].decode(bitstream.streams[1], indexes).reshape(y_shape)
    return Latents(y_symbols, means, bitstream.height, bitstream.width)


def decompress(package: ModelPackage, data: bytes, backend: Backend = "jax", max_pixels: int = MAX_PIXELS
               ) -> np.ndarray:
    """Decode a bitstream made with this package into a uint8 H x W x 3 image.

    `backend` runs the integer graphs (the table indexes of hyperprior packages, and everything
    in integer-mode ones): "jax" (jitted), "jax-eager", "numpy" (the integer reference) or a
    GraphRunner; all give the same symbols, and integer-mode packages the same pixels.
    A declared size above `max_pixels` is an ImageError before anything is decoded.
    """
    latents = decode_latents(package, data, backend, max_pixels)
    pixels = decoder_for(package, backend).synthesis(latents.y_symbols, latents.means)
    return pixels[0, :latents.height, :latents.width]
