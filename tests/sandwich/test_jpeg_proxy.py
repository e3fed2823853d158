"""The JPEG proxy against Pillow's libjpeg: tables, reconstructions, rate features, gradients."""

import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxlic.errors import BitstreamError, ConfigError, ImageError
from jaxlic.eval.metrics import psnr
from jaxlic.images import default_images
from jaxlic.sandwich.codecs import make_codec
from jaxlic.sandwich.jpeg import DCT, JpegCodec, quant_tables, scan_start


@pytest.fixture(scope="module")
def photo():
    return dict(default_images())["astronaut"][160:288, 192:320]  # 128x128 of natural content


@functools.cache
def _jitted(codec):
    return jax.jit(codec.proxy)


def run(codec, params, code, quality):
    """The proxy, jitted (eager dispatch of its many small ops is slow), on (N, H, W, C) codes."""
    return _jitted(codec)(params, jnp.asarray(code, jnp.float32), jnp.asarray(quality))


@pytest.mark.parametrize("channels", [1, 3])
def test_tables_equal_pillows_at_every_quality(channels):
    codec = JpegCodec(channels=channels)
    code = np.zeros((8, 8, channels), np.uint8)
    ours = np.asarray(quant_tables(jnp.arange(1, 101), channels))
    for quality in range(1, 101):
        written = Image.open(io.BytesIO(codec.encode({}, code, quality))).quantization
        assert len(written) == (1 if channels == 1 else 2)
        for index, table in written.items():
            np.testing.assert_array_equal(np.reshape(table, (8, 8)), ours[quality - 1, index])


def test_dct_is_orthonormal():
    np.testing.assert_allclose(DCT @ DCT.T, np.eye(8), atol=1e-6)


@pytest.mark.parametrize("channels,subsampling", [(1, "4:2:0"), (3, "4:4:4"), (3, "4:2:0")])
@pytest.mark.parametrize("quality", [10, 50, 90])
def test_proxy_matches_real_jpeg(photo, channels, subsampling, quality):
    codec = JpegCodec(channels=channels, subsampling=subsampling)
    code = photo[:, :, :1] if channels == 1 else photo
    real, _ = codec.decode(codec.encode({}, code, quality))
    proxy = np.asarray(run(codec, {}, code[None], [quality]).decoded[0])
    assert psnr(real, proxy) > 40.0  # measured 42-52 dB; real JPEG vs original is 25-38 dB here
    assert psnr(code, proxy) == pytest.approx(psnr(code, real), abs=0.1)


def test_proxy_pads_sizes_that_are_not_whole_blocks():
    codec = JpegCodec(channels=3, subsampling="4:2:0")
    code = np.random.default_rng(0).integers(0, 256, (2, 13, 7, 3)).astype(np.float32)
    out = run(codec, {}, code, [50, 90])
    assert out.decoded.shape == code.shape and out.rate.shape == (2, 3)
    assert float(out.rate[1, 0]) > float(out.rate[0, 0])  # higher quality, more bits


def test_rate_features_are_linear_in_real_payload(photo):
    codec = JpegCodec(channels=3)
    features, payload = [], []
    crops = np.stack([photo[:64, :64], photo[64:, 64:], photo[:64, 64:], photo[64:, :64]])
    for quality in (10, 30, 50, 70, 90):
        features.extend(np.asarray(run(codec, {}, crops, [quality] * len(crops)).rate))
        payload.extend(codec.payload_bits(codec.encode({}, crop, quality)) for crop in crops)
    features, payload = np.array(features), np.array(payload, float)
    weights = np.linalg.lstsq(features, payload, rcond=None)[0]
    assert np.mean(np.abs(features @ weights / payload - 1)) < 0.08


def test_gradients_flow_through_the_proxy(photo):
    codec = JpegCodec(channels=1)
    code = jnp.asarray(photo[None, :32, :32, :1], jnp.float32)
    grad_d = jax.grad(lambda c: jnp.sum(codec.proxy({}, c, jnp.array([50])).decoded))(code)
    grad_r = jax.grad(lambda c: jnp.sum(codec.proxy({}, c, jnp.array([50])).rate[:, 0]))(code)
    assert float(jnp.abs(grad_d).mean()) > 0.1 and float(jnp.abs(grad_r).sum()) > 0.0


def test_learned_tables_are_written_into_the_file_and_followed_by_the_proxy(photo):
    codec = JpegCodec(channels=3, learn_tables=True)
    params = {"log_scale": jnp.asarray(np.random.default_rng(1).normal(0, 0.3, (2, 8, 8)), jnp.float32)}
    data = codec.encode(params, photo, 60)
    written = Image.open(io.BytesIO(data)).quantization
    tables = np.asarray(codec.tables(params, jnp.array([60])))[0]
    for index, table in written.items():
        np.testing.assert_array_equal(np.reshape(table, (8, 8)), tables[index])
    assert not np.array_equal(tables, np.asarray(quant_tables(jnp.array([60]), 3))[0])
    real, _ = codec.decode(data)
    proxy = np.asarray(run(codec, params, photo[None], [60]).decoded[0])
    assert psnr(real, proxy) > 40.0
    code = jnp.asarray(photo[None, :32, :32], jnp.float32)
    grads = jax.grad(lambda p: codec.proxy(p, code, jnp.array([60])).rate[0, 0])(params)
    assert float(jnp.abs(grads["log_scale"]).sum()) > 0


def test_payload_bits_exclude_the_headers(photo):
    codec = JpegCodec(channels=1)
    small, large = codec.encode({}, photo[:8, :8, :1], 50), codec.encode({}, photo[:, :, :1], 50)
    assert len(large) > len(small)
    assert scan_start(small) == scan_start(large)  # same headers, different scans
    assert codec.payload_bits(large) == 8 * (len(large) - scan_start(large) - 2)


def test_bad_inputs_raise_typed_errors(photo):
    codec = JpegCodec(channels=1)
    with pytest.raises(ImageError):
        codec.encode({}, photo, 50)  # 3 channels into a grayscale codec
    with pytest.raises(ImageError):
        codec.proxy({}, jnp.zeros((1, 8, 8, 3)), jnp.array([50]))
    with pytest.raises(ConfigError):
        codec.encode({}, photo[:, :, :1], 0)
    with pytest.raises(BitstreamError):
        codec.decode(b"not a jpeg")
    with pytest.raises(BitstreamError):
        codec.decode(JpegCodec(channels=3).encode({}, photo, 50))  # colour file, grayscale codec
    with pytest.raises(BitstreamError):
        scan_start(b"\xff\xd8\x00\x00\xff\xd9")
    with pytest.raises(ConfigError):
        make_codec("webp")
    with pytest.raises(ConfigError):
        JpegCodec(channels=2)
