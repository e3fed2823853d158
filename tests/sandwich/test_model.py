"""Sandwich networks, packages and real-JPEG encode/decode: shapes, validity, errors."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxlic.errors import BitstreamError, ConfigError, ImageError, ModelMismatchError, PackageError
from jaxlic.eval.metrics import psnr
from jaxlic.images import default_images
from jaxlic.sandwich.jpeg import scan_start
from jaxlic.sandwich.model import Sandwich, SandwichConfig, SandwichPackage, load_package, to_uint8
from jaxlic.nn.conv import depth_to_space, space_to_depth
from jaxlic.sandwich.networks import UNet
from jaxlic.sandwich.scenarios import baseline_decode, baseline_encode, get_scenario, synthesize_high_bit_depth


@pytest.fixture(scope="module")
def photo():
    return dict(default_images())["coffee"][100:196, 200:328]  # 96x128


def test_space_to_depth_round_trips():
    x = jnp.arange(2 * 6 * 4 * 3, dtype=jnp.float32).reshape(2, 6, 4, 3)
    assert space_to_depth(x, 2).shape == (2, 3, 2, 12)
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x, 2), 2), x)
    np.testing.assert_array_equal(space_to_depth(x, 2)[0, 0, 0, :3], x[0, 0, 0])


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (17, 9)])
def test_unet_takes_any_size(size):
    import jax

    unet = UNet((4, 8, 8), 2)
    x = jnp.ones((1, *size, 3))
    params = unet.init(jax.random.PRNGKey(0), x)
    assert unet.apply(params, x).shape == (1, *size, 2)


def test_untrained_sandwich_is_the_natural_pipeline(untrained, photo):
    rgb, gray, half = untrained["rgb"], untrained["gray"], untrained["half-res"]
    np.testing.assert_array_equal(rgb.code_image(photo, 50), photo)  # identity
    luma = photo.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray.code_image(photo, 50)[:, :, 0] - luma).max() <= 0.51
    box = photo.astype(np.float64).reshape(48, 2, 64, 2, 3).mean(axis=(1, 3))
    assert np.abs(half.code_image(photo, 50).astype(np.float64) - box).max() <= 0.51


@pytest.mark.parametrize("scenario,size", [
    ("gray", (96, 128)), ("half-res", (96, 128)), ("high-bit-depth", (96, 128)), ("rgb", (96, 128)),
    ("gray", (9, 17)), ("half-res", (5, 3)), ("high-bit-depth", (17, 9)), ("rgb", (1, 1)),  # odd, below a block
])
def test_encode_writes_a_valid_jpeg_and_decode_restores_the_size(untrained, photo, scenario, size):
    package = untrained[scenario]
    image = photo[: size[0], : size[1]]
    if scenario == "high-bit-depth":
        image = image.astype(np.uint16) * 257
    data = package.encode(image, 75)
    opened = Image.open(io.BytesIO(data))
    opened.load()
    s = get_scenario(scenario).scale
    assert opened.format == "JPEG"
    assert opened.mode == ("L" if scenario == "gray" else "RGB")
    assert opened.size == (-(-size[1] // s), -(-size[0] // s))
    out = package.decode(data)
    assert out.shape == (*size, 3) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


def test_untrained_rgb_sandwich_equals_plain_jpeg(untrained, photo):
    data = untrained["rgb"].encode(photo, 60)
    plain = baseline_encode(get_scenario("rgb"), photo, 60)
    # Same code image and settings: the scans are identical, only the metadata comment differs.
    assert data[scan_start(data):] == plain[scan_start(plain):] and len(data) > len(plain)
    recon = to_uint8(untrained["rgb"].decode(data))
    assert psnr(recon, baseline_decode(get_scenario("rgb"), plain, photo.shape[:2])) > 55


def test_package_round_trip_and_fingerprint(tmp_path, untrained, photo):
    package = untrained["half-res"]
    package.save(tmp_path / "m.jxls")
    loaded = load_package(tmp_path / "m.jxls")
    assert loaded.config == package.config and loaded.fingerprint == package.fingerprint
    np.testing.assert_array_equal(loaded.decode(package.encode(photo, 40)), package.decode(package.encode(photo, 40)))
    blob = bytearray((tmp_path / "m.jxls").read_bytes())
    blob[40] ^= 1
    (tmp_path / "bad.jxls").write_bytes(bytes(blob))
    with pytest.raises(PackageError):
        load_package(tmp_path / "bad.jxls")
    with pytest.raises(PackageError):
        load_package(tmp_path / "missing.jxls")
    (tmp_path / "short.jxls").write_bytes(b"JXLSAND")
    with pytest.raises(PackageError):
        load_package(tmp_path / "short.jxls")


def test_decode_refuses_other_models_and_plain_files(untrained, photo):
    rgb = untrained["rgb"]
    other = SandwichPackage(rgb.config, Sandwich(rgb.config).init(1))
    with pytest.raises(ModelMismatchError):
        other.decode(rgb.encode(photo, 50))
    with pytest.raises(BitstreamError):
        rgb.decode(baseline_encode(get_scenario("rgb"), photo, 50))  # a plain JPEG, no metadata
    with pytest.raises(BitstreamError):
        untrained["gray"].decode(rgb.encode(photo, 50))  # colour file for a grayscale model
    with pytest.raises(BitstreamError):
        rgb.decode(rgb.encode(photo, 50)[:200])


def test_bad_images_raise_clear_errors(untrained, photo):
    rgb = untrained["rgb"]
    with pytest.raises(ImageError, match="HxWx3"):
        rgb.encode(photo[:, :, 0], 50)
    with pytest.raises(ImageError, match="HxWx3"):
        rgb.encode(np.dstack([photo, photo[:, :, :1]]), 50)
    with pytest.raises(ImageError, match="uint8 or uint16"):
        rgb.encode(photo.astype(np.float32), 50)
    with pytest.raises(ImageError, match="empty"):
        rgb.encode(photo[:0], 50)
    with pytest.raises(ConfigError):
        rgb.encode(photo, 101)


def test_config_validation_and_json(tiny_config):
    config = tiny_config("gray", learn_tables=True, qualities=(20, 80))
    assert SandwichConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError):
        tiny_config("gray", qualities=(80, 20))
    with pytest.raises(ConfigError):
        tiny_config("sepia")
    with pytest.raises(ConfigError):
        tiny_config("rgb", code_channels=2)
    assert float(config.lambda_at(jnp.float32(90))) == pytest.approx(10 * config.lmbda)


def test_synthetic_high_bit_depth_has_more_than_8_bits(photo):
    wide = np.asarray(synthesize_high_bit_depth(jnp.asarray(photo[None], jnp.float32) / 255.0))[0]
    assert wide.shape == (48, 64, 3)
    samples = np.round(wide * 65535).astype(np.int64)
    assert np.mean(samples % 257 != 0) > 0.9  # almost no sample is an 8-bit value
    assert psnr(np.round(wide * 255) / 255, wide, 1.0) < 60  # rounding to 8 bits loses something


@pytest.mark.parametrize("scenario", ["gray", "half-res", "high-bit-depth", "rgb"])
def test_baselines_return_the_original_shape_and_dtype(photo, scenario):
    image = photo[:45, :67]
    if scenario == "high-bit-depth":
        image = image.astype(np.uint16) * 257
    recon = baseline_decode(get_scenario(scenario), baseline_encode(get_scenario(scenario), image, 80), image.shape[:2])
    assert recon.shape == image.shape and recon.dtype == image.dtype
    # Gray drops all colour (about 12 dB on this orange crop); the others keep it.
    assert psnr(image, recon, 65535.0 if scenario == "high-bit-depth" else 255.0) > (10 if scenario == "gray" else 25)
