"""Image I/O for the codec, training and evaluation: read any file as uint8 RGB, write atomically.

Conversions applied by `read_image` (all documented choices, applied the same way everywhere):

- EXIF orientation is applied, so the array is the image as a viewer shows it.
- Grayscale (``1``, ``L``, ``I;16*``, ``I``, ``F``) is replicated into three equal channels.
- 16-bit samples become 8-bit by rounding ``value / 257`` (65535 -> 255 exactly). ``I`` (32-bit
  integer) is read as 16-bit data clipped to [0, 65535], the way Pillow opens 16-bit files.
  ``F`` (float) is on the 8-bit scale, rounded and clipped to [0, 255], as Pillow's own
  ``convert("L")`` does. 16-bit colour TIFFs are read at full depth (tifffile) and rounded the
  same way; for 16-bit colour PNGs Pillow's decoder already keeps only the high byte
  (``value // 256``, at most 1 below the rounded value), which jaxlic cannot undo.
- Alpha (RGBA, LA, PA, P with transparency) is dropped, never composited: the colour samples are
  kept as stored, so a round trip through RGB formats is lossless on the colour channels.
- Palette (P), CMYK, YCbCr, LAB and HSV are converted to RGB by Pillow.

Images above `max_pixels` (default `MAX_PIXELS`) are refused from their header, before any
pixel is decoded, so a small file cannot make the reader (or the codec after it) allocate
gigabytes.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from jaxlic.errors import DataError, ImageError

PathLike = str | os.PathLike[str]

# Like Pillow's Image.MAX_IMAGE_PIXELS, but lower: the codec needs about a hundred bytes per
# pixel where Pillow holds three or four (docs/codec.md). 2^25 admits 8K UHD (7680 x 4320).
MAX_PIXELS = 1 << 25

_GRAY_16BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_EXIF_ORIENTATION_TAG = 274
# Errors Pillow raises on unreadable, truncated or hostile input.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _source_name(source: PathLike | bytes) -> str:
    return "<bytes>" if isinstance(source, bytes) else str(source)


def check_pixels(height: int, width: int, max_pixels: int, name: str) -> None:
    """ImageError when an image of height x width exceeds the `max_pixels` limit."""
    if height * width > max_pixels:
        raise ImageError(f"{name}: {width}x{height} is {height * width:,} pixels, above the limit of "
                         f"{max_pixels:,} (a decompression bomb?); raise max_pixels (--max-pixels) "
                         "if you trust it and have the memory")


def _open_loaded(source: PathLike | bytes, name: str, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, bool]:
    """Open and fully decode an image; also say whether it stores 16-bit colour samples."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        check_pixels(image.height, image.width, max_pixels, name)
        # The raw mode is only known before decoding: Pillow stores 16-bit colour as 8-bit RGB.
        wide_colour = image.mode in ("RGB", "RGBA") and any(";16" in str(tile.args) for tile in image.tile)
        image.load()
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"{name}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file (or an unsupported format)") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name}: cannot decode image ({exc}); the file may be truncated or corrupt") from exc
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name}: image has zero size")
    return image, wide_colour


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except _DECODE_ERRORS:
        return 1  # a corrupt EXIF block does not make the pixels unreadable


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an HxW[xC] array stored with EXIF `orientation` (1..8) into display orientation."""
    transforms = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, k=-1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, k=1),
    }
    return np.ascontiguousarray(transforms.get(orientation, transforms[1])(array))


def _read_tiff_16bit(source: PathLike | bytes, name: str) -> np.ndarray:
    import tifffile  # a scikit-image dependency; only 16-bit colour TIFFs need it

    try:
        array = tifffile.imread(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:  # tifffile raises many unrelated types on corrupt input
        raise ImageError(f"{name}: cannot decode 16-bit TIFF ({exc})") from exc
    if array.dtype != np.uint16 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"{name}: expected a 16-bit RGB(A) TIFF, got {array.dtype} {array.shape}")
    return array[:, :, :3]


def _to_uint16_rgb(image: Image.Image, wide_colour: bool, source: PathLike | bytes, name: str) -> np.ndarray | None:
    """Full-depth 16-bit RGB samples, or None when the image is 8-bit."""
    if image.mode in _GRAY_16BIT_MODES:
        gray = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint16)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if wide_colour:
        if image.format == "TIFF":
            return _read_tiff_16bit(source, name)
        return None  # Pillow has already reduced it to its high byte
    return None


def _to_uint8_rgb(image: Image.Image) -> np.ndarray:
    if image.mode == "F":
        gray = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "PA":
        image = image.convert("RGBA")  # Pillow has no direct PA -> RGB conversion
    # Pillow's RGBA/LA/P -> RGB conversion drops alpha without compositing.
    return np.asarray(image.convert("RGB")).copy()


def _decode(source: PathLike | bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    name = _source_name(source)
    image, wide_colour = _open_loaded(source, name, max_pixels)
    wide = _to_uint16_rgb(image, wide_colour, source, name)
    rgb = _to_uint8_rgb(image) if wide is None else np.rint(wide / 257.0).astype(np.uint8)
    return apply_orientation(rgb, _orientation(image))


def read_image(path: PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as a uint8 HxWx3 RGB array (conversions in the module docstring);
    ImageError above `max_pixels`."""
    return _decode(path, max_pixels)


def image_from_bytes(data: bytes) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, WebP, AVIF, ...) held in memory as uint8 HxWx3 RGB."""
    if not data:
        raise ImageError("<bytes>: empty image data")
    return _decode(bytes(data))


def read_image_16bit(path: PathLike) -> np.ndarray:
    """Read an image as uint16 HxWx3 RGB at full depth; 8-bit files are scaled by 257 (exact).

    16-bit grayscale (any format Pillow reads) and 16-bit colour TIFF keep all 16 bits. A 16-bit
    colour PNG raises ImageError: Pillow decodes it to 8 bits, so its depth would be lost silently.
    """
    name = str(path)
    image, wide_colour = _open_loaded(path, name)
    wide = _to_uint16_rgb(image, wide_colour, path, name)
    if wide is None:
        if wide_colour:
            raise ImageError(f"{name}: 16-bit colour PNG cannot be read at full depth; save it as 16-bit TIFF")
        wide = _to_uint8_rgb(image).astype(np.uint16) * 257
    return apply_orientation(wide, _orientation(image))


def _format_for(path: Path) -> str:
    if not path.suffix:
        return "PNG"
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"{path}: no image writer for suffix {path.suffix!r}; use .png, .jpg, .webp, ...")
    return fmt


@contextlib.contextmanager
def atomic_path(path: PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path next to `path`, created with `mode` (minus the umask) so a private
    file is never readable by others; on success it is synced and replaces `path` (never a
    partial file), on failure it is removed. Every file jaxlic writes goes through here."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode))
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _validated_for_writing(array: np.ndarray, path: Path) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == np.uint16 and array.ndim == 2:
        return array
    if array.dtype != np.uint8:
        raise ImageError(f"{path}: can write uint8 images (or uint16 grayscale), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageError(f"{path}: expected HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{path}: cannot write an empty image of shape {array.shape}")
    return np.ascontiguousarray(array)


def write_image(path: PathLike, array: np.ndarray, **save_options: object) -> None:
    """Write an image atomically; the format comes from the suffix (PNG when there is none)."""
    target = Path(path)
    fmt = _format_for(target)
    pixels = _validated_for_writing(array, target)
    image = Image.fromarray(pixels)
    if fmt == "JPEG" and image.mode == "RGBA":
        raise ImageError(f"{target}: JPEG cannot store alpha; drop the 4th channel or use PNG")
    try:
        with atomic_path(target) as tmp:
            image.save(tmp, format=fmt, **save_options)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ImageError(f"{target}: cannot write image ({exc})") from exc


def _readable_suffixes() -> frozenset[str]:
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def list_images(folder: PathLike, recursive: bool = True) -> list[Path]:
    """Image files (by suffix) under `folder`, sorted by relative path; hidden files are skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; pass a folder of images")
    suffixes = _readable_suffixes()
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = [
        p
        for p in candidates
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not found:
        where = "or its sub-folders " if recursive else ""
        raise DataError(f"{root}: no image files in this folder {where}(looked for {', '.join(sorted(suffixes)[:8])}, ...)")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def image_name(path: PathLike, folder: PathLike) -> str:
    """An image's name in every result: its path under `folder` without the suffix (`kodim01`,
    `set/a`), unique among `list_images(folder)` unless two files differ only in suffix."""
    return Path(path).relative_to(folder).with_suffix("").as_posix()


def read_images(folder: PathLike, limit: int | None = None, progress: bool = False) -> list[tuple[str, np.ndarray]]:
    """The images under `folder` (the first `limit` of them) as (`image_name`, uint8 HxWx3), in
    `list_images` order."""
    paths = list_images(folder)[:limit]
    return [(image_name(p, folder), read_image(p))
            for p in tqdm(paths, desc="reading images", unit="img", disable=not progress)]


# scikit-image's bundled colour photographs of natural scenes that load without network.
# Left out: cat (the same picture as chelsea), stereo_motorcycle's right view (nearly the left),
# microscopy/medical (immunohistochemistry, retina), synthetic (colorwheel, logo), grayscale ones.
DEFAULT_IMAGE_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "motorcycle")


def default_images() -> list[tuple[str, np.ndarray]]:
    """The built-in data set: (name, uint8 HxWx3) pairs from scikit-image, no network needed."""
    import skimage.data

    images = []
    for name in DEFAULT_IMAGE_NAMES:
        array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
        images.append((name, np.ascontiguousarray(array[:, :, :3], dtype=np.uint8)))
    return images
