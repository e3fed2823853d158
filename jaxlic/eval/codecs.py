"""Reference codecs through Pillow: JPEG (libjpeg), WebP (libwebp), AVIF (libavif).

Pillow's defaults are kept, as CompressAI's JPEG curve was made with them: JPEG with 4:2:0
chroma subsampling and standard Huffman tables (no ``optimize``), WebP method 4 (lossy, always
4:2:0), AVIF speed 6 with 4:2:0. Extra keyword options go straight to ``Image.save``.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, features
from tqdm.auto import tqdm

from jaxlic.errors import ConfigError, ImageError
from jaxlic.eval.evaluate import Evaluation, NamedImage, evaluate
from jaxlic.images import image_from_bytes

# codec name -> (Pillow format, Pillow feature that says it is compiled in)
CODECS = {"jpeg": ("JPEG", "jpg"), "webp": ("WEBP", "webp"), "avif": ("AVIF", "avif")}
DEFAULT_QUALITIES = tuple(range(5, 100, 5))


def available_codecs() -> list[str]:
    """Codec names this Pillow build can encode."""
    return [name for name, (_, feature) in CODECS.items() if features.check(feature)]


def _pillow_format(codec: str) -> str:
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    if codec not in available_codecs():
        raise ConfigError(f"codec {codec!r} is not available in this Pillow build (pip install a Pillow with {codec} support)")
    return CODECS[codec][0]


def encode(codec: str, image: np.ndarray, quality: int, **options: object) -> bytes:
    """Encode a uint8 HxWx3 RGB image with `codec` at `quality` (0..100)."""
    fmt = _pillow_format(codec)
    if not 0 <= quality <= 100:
        raise ConfigError(f"quality must be in 0..100, got {quality}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected uint8 HxWx3 RGB, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, quality=quality, **options)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode bytes from any of the codecs to uint8 HxWx3 RGB."""
    return image_from_bytes(data)


def sweep(
    codec: str, images: Sequence[NamedImage], qualities: Sequence[int] = DEFAULT_QUALITIES, progress: bool = True
) -> list[Evaluation]:
    """Evaluate `codec` on every image at every quality; one Evaluation per quality, in order."""
    _pillow_format(codec)
    with tqdm(total=len(qualities) * len(images), desc=codec, unit="img", disable=not progress) as bar:
        return [
            evaluate(functools.partial(encode, codec, quality=q), lambda data, size: decode(data), images,
                     on_image=lambda _: bar.update())
            for q in qualities
        ]


def usable_codecs(requested: Sequence[str]) -> list[str]:
    """The requested codecs this Pillow can run; unknown ones raise, unavailable ones warn and drop."""
    for codec in requested:
        if codec not in CODECS:
            raise ConfigError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    usable = [codec for codec in requested if codec in available_codecs()]
    for codec in sorted(set(requested) - set(usable)):
        warnings.warn(f"skipping codec {codec!r}: not available in this Pillow build", stacklevel=2)
    return usable
