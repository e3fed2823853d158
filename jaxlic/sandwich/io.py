"""Sandwich input and output files, including 16-bit RGB PNG, which Pillow cannot keep at full depth.

Pillow decodes 16-bit colour PNGs to 8 bits and cannot write them, and no installed library does
both, so this module reads and writes them with zlib and NumPy: non-interlaced PNGs of 16-bit
gray, gray+alpha, RGB or RGBA samples with any of the five row filters (alpha is dropped, gray is
replicated to RGB). Everything else goes through `jaxlic.images`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from jaxlic.errors import ImageError
from jaxlic.images import PathLike, atomic_path, read_image, read_image_16bit, write_image
from jaxlic.sandwich.model import to_uint8, to_uint16

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def _chunks(data: bytes, name: str):
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or len(data) < pos + 12 + length:
            raise ImageError(f"{name}: truncated PNG chunk {kind!r}")
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]:
            raise ImageError(f"{name}: PNG chunk {kind!r} fails its CRC; the file is corrupt")
        yield kind, body
        pos += 12 + length


def _header(data: bytes, name: str) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) of PNG bytes."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ImageError(f"{name}: not a PNG file")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def is_16bit_colour_png(path: PathLike) -> bool:
    """Whether `path` is a PNG with 16-bit colour samples (what Pillow would cut to 8 bits)."""
    with open(path, "rb") as f:
        head = f.read(29)
    return head.startswith(PNG_SIGNATURE) and head[24] == 16 and head[25] in (2, 6)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int, name: str) -> np.ndarray:
    """Undo PNG's per-row filters; rows of `stride` bytes, `bpp` bytes per pixel."""
    rows = raw.reshape(height, stride + 1).astype(np.int64)
    out = np.zeros((height, stride), np.int64)
    prior = np.zeros(stride, np.int64)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            recon = line
        elif kind == 1:
            recon = line.reshape(-1, bpp).cumsum(axis=0).reshape(-1) % 256
        elif kind == 2:
            recon = (line + prior) % 256
        elif kind in (3, 4):
            recon = line.copy()
            left, upper_left = np.zeros(bpp, np.int64), np.zeros(bpp, np.int64)
            for x in range(0, stride, bpp):
                up = prior[x:x + bpp]
                pred = (left + up) // 2 if kind == 3 else _paeth(left, up, upper_left)
                left = recon[x:x + bpp] = (line[x:x + bpp] + pred) % 256
                upper_left = up
        else:
            raise ImageError(f"{name}: unknown PNG filter type {kind} in row {y}")
        out[y] = prior = recon
    return out.astype(np.uint8)


def read_png16(path: PathLike) -> np.ndarray:
    """A 16-bit PNG as uint16 HxWx3 RGB (gray replicated, alpha dropped)."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc})") from exc
    width, height, depth, colour, interlace = _header(data, name)
    if depth != 16 or colour not in _CHANNELS or interlace:
        raise ImageError(f"{name}: expected a non-interlaced 16-bit PNG, got depth {depth}, colour type {colour}, "
                         f"interlace {interlace}")
    idat = b"".join(body for kind, body in _chunks(data, name) if kind == b"IDAT")
    channels = _CHANNELS[colour]
    stride = width * channels * 2
    try:
        raw = np.frombuffer(zlib.decompress(idat), np.uint8)
    except zlib.error as exc:
        raise ImageError(f"{name}: corrupt PNG image data ({exc})") from exc
    if raw.size != height * (stride + 1):
        raise ImageError(f"{name}: PNG image data has {raw.size} bytes, expected {height * (stride + 1)}")
    pixels = _unfilter(raw, height, stride, channels * 2, name).view(">u2").reshape(height, width, channels)
    rgb = np.repeat(pixels[:, :, :1], 3, axis=2) if channels < 3 else pixels[:, :, :3]
    return rgb.astype(np.uint16)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_png16(path: PathLike, image: np.ndarray) -> None:
    """Write a uint16 HxWx3 image as a 16-bit RGB PNG, atomically."""
    image = np.asarray(image)
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ImageError(f"{path}: write_png16 needs a non-empty uint16 HxWx3 image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.astype(">u2").view(np.uint8).reshape(height, -1)], 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b"")
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)


def read_input(path: PathLike, high_bit_depth: bool) -> np.ndarray:
    """An image file to encode: uint16 HxWx3 at full depth for high-bit-depth models, else uint8."""
    if not high_bit_depth:
        return read_image(path)
    try:
        if is_16bit_colour_png(path):
            return read_png16(path)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc})") from exc
    return read_image_16bit(path)


def write_output(path: PathLike, image: np.ndarray, bits: int) -> None:
    """Write a [0, 1] float HxWx3 image with 8 bits (any format) or 16 bits (PNG)."""
    if bits == 8:
        write_image(path, to_uint8(image))
    elif bits == 16:
        if Path(path).suffix.lower() != ".png":
            raise ImageError(f"{path}: 16-bit output is written as PNG; use a .png file name")
        write_png16(path, to_uint16(image))
    else:
        raise ImageError(f"output bit depth must be 8 or 16, got {bits}")
