"""Image I/O: mode conversions, EXIF orientation, typed errors, atomic writes, listing."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from jaxlic import images
from jaxlic.errors import DataError, ImageError
from jaxlic.images import (
    default_images,
    image_from_bytes,
    list_images,
    read_image,
    read_image_16bit,
    write_image,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)


def _save(path: Path, image: Image.Image, **options: object) -> Path:
    image.save(path, **options)
    return path


def _png_16bit_rgb(array: np.ndarray) -> bytes:
    """A minimal 16-bit RGB PNG (Pillow cannot write one)."""
    height, width, _ = array.shape
    raw = b"".join(b"\x00" + array[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_rgb_png_round_trip(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png", RGB)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_grayscale_is_replicated(tmp_path: Path, mode: str) -> None:
    gray = Image.fromarray(RGB[:, :, 0]).convert(mode)
    out = read_image(_save(tmp_path / "g.png", gray))
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], RGB[:, :, 0])


def test_16bit_grayscale_rounds_value_over_257(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 257, 32767, 32768, 65535, 65407]], dtype=np.uint16)
    out = read_image(_save(tmp_path / "g16.png", Image.fromarray(values)))
    expected = np.rint(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(out[:, :, 1], expected)
    assert list(expected[0, [0, 1, 2, 6]]) == [0, 0, 1, 255]


def test_mode_I_and_F(tmp_path: Path) -> None:
    as_int = Image.fromarray(np.array([[65535, 70000, -5, 257 * 7]], dtype=np.int32), mode="I")
    np.testing.assert_array_equal(read_image(_save(tmp_path / "i.tif", as_int))[0, :, 0], [255, 255, 0, 7])
    as_float = Image.fromarray(np.array([[-3.0, 12.4, 12.6, 300.0]], dtype=np.float32), mode="F")
    np.testing.assert_array_equal(read_image(_save(tmp_path / "f.tif", as_float))[0, :, 2], [0, 12, 13, 255])


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    alpha = np.zeros((6, 5, 1), dtype=np.uint8)  # fully transparent: compositing would change colours
    rgba = np.concatenate([RGB, alpha], axis=2)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "a.png", Image.fromarray(rgba))), RGB)
    palette = Image.fromarray(RGB).quantize(colors=8)
    expected = np.asarray(palette.convert("RGB"))
    transparent = _save(tmp_path / "p.png", palette, transparency=0)
    assert "transparency" in Image.open(transparent).info
    np.testing.assert_array_equal(read_image(transparent), expected)


def _bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr", "P", "1"])
def test_other_modes_follow_pillow_rgb_conversion(mode: str) -> None:
    image = Image.fromarray(RGB).convert(mode)
    out = image_from_bytes(_bytes(image, "TIFF"))
    np.testing.assert_array_equal(out, np.asarray(image.convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    image = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "o.png", image, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    np.testing.assert_array_equal(read_image(path), expected)
    if orientation >= 5:
        assert read_image(path).shape == (5, 6, 3)


def test_16bit_reader(tmp_path: Path) -> None:
    wide = RNG.integers(0, 65536, size=(4, 3, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", wide, photometric="rgb")
    np.testing.assert_array_equal(read_image_16bit(tmp_path / "c16.tif"), wide)
    np.testing.assert_array_equal(read_image(tmp_path / "c16.tif"), np.rint(wide / 257).astype(np.uint8))
    gray = wide[:, :, 0]
    write_image(tmp_path / "g16.png", gray)
    np.testing.assert_array_equal(read_image_16bit(tmp_path / "g16.png")[:, :, 2], gray)
    write_image(tmp_path / "rgb8.png", RGB)
    assert read_image_16bit(tmp_path / "rgb8.png").dtype == np.uint16
    np.testing.assert_array_equal(read_image_16bit(tmp_path / "rgb8.png"), RGB.astype(np.uint16) * 257)
    (tmp_path / "c16.png").write_bytes(_png_16bit_rgb(wide))
    with pytest.raises(ImageError, match="c16.png"):
        read_image_16bit(tmp_path / "c16.png")
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), (wide >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an image", None],
    ids=["empty", "text", "truncated"],
)
def test_bad_files_raise_image_error_naming_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.png"
    if content is None:
        write_image(path, RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ImageError, match="bad.png"):
        read_image(path)


def test_missing_file_and_empty_bytes() -> None:
    with pytest.raises(ImageError, match="nowhere.png"):
        read_image("/nonexistent/nowhere.png")
    with pytest.raises(ImageError):
        image_from_bytes(b"")


def test_write_formats_from_suffix(tmp_path: Path) -> None:
    for suffix, fmt in [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP"), ("", "PNG")]:
        path = tmp_path / f"x{suffix}"
        write_image(path, RGB)
        assert Image.open(path).format == fmt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x", "x.jpg", "x.png", "x.webp"]


@pytest.mark.parametrize(
    ("name", "array"),
    [
        ("bad.xyz", RGB),
        ("float.png", RGB.astype(np.float32)),
        ("shape.png", np.zeros((4, 4, 2), np.uint8)),
        ("empty.png", np.zeros((0, 4, 3), np.uint8)),
        ("alpha.jpg", np.zeros((4, 4, 4), np.uint8)),
    ],
)
def test_write_rejects_bad_input_without_output(tmp_path: Path, name: str, array: np.ndarray) -> None:
    with pytest.raises(ImageError):
        write_image(tmp_path / name, array)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keep.png"
    write_image(path, RGB)
    before = path.read_bytes()

    def failing_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(ImageError, match="disk full"):
        write_image(path, np.zeros_like(RGB))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_list_images_sorted_recursive_and_errors(tmp_path: Path) -> None:
    for rel in ["b/z.png", "a.JPG", "b/a.webp", "c.txt", ".hidden/x.png", "b/.y.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.JPG", "b/a.webp", "b/z.png"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.JPG"]
    with pytest.raises(DataError, match="not a folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        list_images(tmp_path / "empty")


def test_default_images_offline() -> None:
    named = default_images()
    assert [name for name, _ in named] == list(images.DEFAULT_IMAGE_NAMES)
    assert {"astronaut", "coffee", "chelsea", "rocket"} <= {name for name, _ in named}
    for _, array in named:
        assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
        assert min(array.shape[:2]) >= 256
        assert array.std() > 10  # a real photograph, not a constant placeholder


def test_one_atomic_writer_for_public_and_private_files(tmp_path):
    """Packages, images and results are readable like any file (umask applies); keys are 0600
    from creation. Both go through `atomic_path` (packages used to come out 0600 from mkstemp)."""
    from jaxlic.images import atomic_path
    from jaxlic.secure.keys import PRIVATE_MODE, write_atomic

    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_path(tmp_path / "model.jxlm") as tmp:
        tmp.write_bytes(b"package")
    write_atomic(tmp_path / "owner.key", b"secret", mode=PRIVATE_MODE)
    assert (tmp_path / "model.jxlm").stat().st_mode & 0o777 == 0o644 & ~umask
    assert (tmp_path / "owner.key").stat().st_mode & 0o777 == PRIVATE_MODE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.jxlm", "owner.key"]  # no temp files left


def test_one_rule_names_images_in_every_result(tmp_path):
    """`read_images` (and `jaxlic eval`, which used the file name with its suffix) name an image
    by its path under the folder without the suffix, so nested files keep distinct names."""
    for relative in ("a.png", "set1/a.png", "set2/b.jpg"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 3)).save(tmp_path / relative)
    assert [name for name, _ in images.read_images(tmp_path)] == ["a", "set1/a", "set2/b"]
