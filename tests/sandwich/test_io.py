"""16-bit PNG reading/writing and the sandwich's input/output files."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxlic.errors import ImageError
from jaxlic.sandwich.io import PNG_SIGNATURE, _chunk, read_input, read_png16, write_output, write_png16


def _filtered_png(image: np.ndarray, kinds: list[int]) -> bytes:
    """A 16-bit RGB PNG whose row y uses filter kinds[y % len(kinds)] (reference encoder from the spec)."""
    h, w, _ = image.shape
    raw = image.astype(">u2").view(np.uint8).reshape(h, -1).astype(np.int64)
    bpp, rows = 6, []
    for y in range(h):
        kind, line = kinds[y % len(kinds)], raw[y]
        prior = raw[y - 1] if y else np.zeros_like(line)
        left = np.concatenate([np.zeros(bpp, np.int64), line[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int64), prior[:-bpp]])
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prior
        elif kind == 3:
            pred = (left + prior) // 2
        else:
            p = left + prior - upper_left
            pa, pb, pc = np.abs(p - left), np.abs(p - prior), np.abs(p - upper_left)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prior, upper_left))
        rows.append(bytes([kind]) + ((line - pred) % 256).astype(np.uint8).tobytes())
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b"")


@pytest.fixture
def wide():
    return np.random.default_rng(0).integers(0, 65536, (7, 5, 3)).astype(np.uint16)


def test_png16_round_trip(tmp_path, wide):
    write_png16(tmp_path / "a.png", wide)
    np.testing.assert_array_equal(read_png16(tmp_path / "a.png"), wide)
    np.testing.assert_array_equal(read_input(tmp_path / "a.png", high_bit_depth=True), wide)


def test_every_png_filter_is_undone(tmp_path, wide):
    (tmp_path / "f.png").write_bytes(_filtered_png(wide, [0, 1, 2, 3, 4]))
    np.testing.assert_array_equal(read_png16(tmp_path / "f.png"), wide)


def test_reads_pillows_16bit_gray_png(tmp_path):
    yy, xx = np.mgrid[0:40, 0:60]
    gray = ((yy * 900 + xx * 300) % 65536).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")  # Pillow's adaptive filters
    np.testing.assert_array_equal(read_png16(tmp_path / "g.png"), np.repeat(gray[:, :, None], 3, axis=2))


def test_other_inputs_go_through_jaxlic_images(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 4, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_input(tmp_path / "c.png", high_bit_depth=False), rgb)
    np.testing.assert_array_equal(read_input(tmp_path / "c.png", high_bit_depth=True), rgb.astype(np.uint16) * 257)


def test_corrupt_or_unsupported_files_raise_image_errors(tmp_path, wide):
    data = bytearray(_filtered_png(wide, [0]))
    data[40] ^= 0xFF
    (tmp_path / "crc.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match="CRC"):
        read_png16(tmp_path / "crc.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(ImageError, match="16-bit"):
        read_png16(tmp_path / "eight.png")
    (tmp_path / "cut.png").write_bytes(_filtered_png(wide, [0])[:50])
    with pytest.raises(ImageError):
        read_png16(tmp_path / "cut.png")
    with pytest.raises(ImageError):
        read_input(tmp_path / "missing.png", high_bit_depth=True)


def test_write_output(tmp_path):
    image = np.linspace(0, 1, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    write_output(tmp_path / "o16.png", image, 16)
    np.testing.assert_array_equal(read_png16(tmp_path / "o16.png"), np.round(image * 65535).astype(np.uint16))
    write_output(tmp_path / "o8.png", image, 8)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o8.png")), np.round(image * 255).astype(np.uint8))
    with pytest.raises(ImageError):
        write_output(tmp_path / "o16.jpg", image, 16)
    with pytest.raises(ImageError):
        write_png16(tmp_path / "x.png", np.zeros((4, 4), np.uint16))
