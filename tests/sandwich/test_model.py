"""Sandwich networks, packages and real-JPEG encode/decode: shapes, validity, errors."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxlic.errors import BitstreamError, ConfigError, ImageError, ModelMismatchError, PackageError
from jaxlic.eval.metrics import psnr
from jaxlic.images import default_images
from jaxlic.sandwich.jpeg import scan_start
from jaxlic.sandwich.model import (COMMENT_TAG, LEGACY_COMMENT_TAG, LEGACY_METADATA, METADATA, Sandwich, SandwichConfig,
                                  SandwichPackage, load_package, to_uint8, to_uint16)
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
    unet = UNet((4, 8, 8), 2)
    x = jnp.ones((1, *size, 3))
    params = unet.init(jax.random.PRNGKey(0), x)
    assert unet.apply(params, x).shape == (1, *size, 2)


def test_untrained_code_images_are_the_baselines(untrained, photo):
    """The fixed paths give Pillow's own pixels: convert("L"), bicubic /2, identity."""
    np.testing.assert_array_equal(untrained["rgb"].code_image(photo, 50), photo)
    np.testing.assert_array_equal(untrained["gray"].code_image(photo, 50)[:, :, 0],
                                  np.asarray(Image.fromarray(photo).convert("L")))
    odd = photo[:45, :67]
    half = np.asarray(Image.fromarray(odd).resize((34, 23), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(untrained["half-res"].code_image(odd, 50), half)
    wide = np.maximum(odd.astype(np.int64) * 257 - 100, 0).astype(np.uint16)  # rounds back to the 8-bit image
    np.testing.assert_array_equal(untrained["high-bit-depth"].code_image(wide, 50), odd)


@pytest.fixture(scope="module")
def two_photos():
    """Crops of two built-in photos, odd-sized so that edges and partial blocks count."""
    images = dict(default_images())
    return [images["astronaut"][60:191, 100:257], images["coffee"][150:281, 200:357]]


@pytest.mark.parametrize("scenario", ["gray", "half-res", "high-bit-depth", "rgb"])
def test_untrained_sandwich_equals_its_baseline_through_real_jpeg(untrained, two_photos, scenario):
    """Same scan as the plain codec's file (only the metadata comment differs) and the same PSNR."""
    package, plain = untrained[scenario], get_scenario(scenario)
    for image in two_photos:
        if plain.high_bit_depth:
            image = to_uint16(np.asarray(synthesize_high_bit_depth(jnp.asarray(image[None], jnp.float32) / 255.0))[0])
        peak = 65535.0 if plain.high_bit_depth else 255.0
        for quality in (25, 80):
            ours, theirs = package.encode(image, quality), baseline_encode(plain, image, quality)
            assert ours[scan_start(ours):] == theirs[scan_start(theirs):]
            assert len(ours) == len(theirs) + 26  # the metadata comment and its marker
            decoded = package.decode(ours)
            decoded = to_uint16(decoded) if plain.high_bit_depth else to_uint8(decoded)
            baseline = baseline_decode(plain, theirs, image.shape[:2])
            assert abs(psnr(image, decoded, peak) - psnr(image, baseline, peak)) < 0.01


@pytest.mark.parametrize("scenario", ["gray", "half-res"])
def test_gradients_reach_every_learned_part(tiny_config, photo, scenario):
    """Zero-initialized last layers still get gradients, and after one step every parameter does."""
    sandwich = Sandwich(tiny_config(scenario))
    x = jnp.asarray(photo[None, :32, :32], jnp.float32) / 255.0

    def loss(params):
        out = sandwich.forward(params, x, jnp.array([50]))
        return jnp.mean((out["x_hat"] - x) ** 2) + 1e-6 * jnp.sum(out["rate"][:, 0])

    grad_fn = jax.jit(jax.grad(loss))
    params = sandwich.init(0)
    learned = {k: params[k] for k in ("pre", "post")}
    grads = grad_fn(params)
    flat_params = jax.tree_util.tree_leaves_with_path(learned)
    flat_grads = jax.tree_util.tree_leaves({k: grads[k] for k in ("pre", "post")})
    zero_kernels = [(path, g) for (path, p), g in zip(flat_params, flat_grads)
                    if "kernel" in jax.tree_util.keystr(path) and not np.any(np.asarray(p))]
    assert len(zero_kernels) == 6  # linear, MLP output, U-Net output; pre and post
    assert all(np.any(np.asarray(g)) for _, g in zero_kernels)
    stepped = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    after = grad_fn(stepped)
    for path, g in jax.tree_util.tree_leaves_with_path({k: after[k] for k in ("pre", "post")}):
        assert np.any(np.asarray(g)), f"no gradient reaches {jax.tree_util.keystr(path)}"


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
    codec = rgb.sandwich.codec
    with pytest.raises(BitstreamError, match="corrupt sandwich metadata"):
        rgb.decode(codec.encode({}, photo, 50, COMMENT_TAG + b"short"))


def _with_noisy_post_net(package: SandwichPackage) -> SandwichPackage:
    """The package with random post-net weights: a large residual that has learned nothing."""
    leaves, tree = jax.tree_util.tree_flatten(package.params["post"])
    keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
    noisy = [leaf + 0.3 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys)]
    return SandwichPackage(package.config, {**package.params, "post": jax.tree_util.tree_unflatten(tree, noisy)})


def test_a_useless_post_net_is_switched_off_by_the_encoder(untrained, photo):
    """Strength 0 is the plain codec's reconstruction: a post-net that only adds noise is turned
    off per file, and the output is as good as the baseline's at the same scan bytes."""
    package = _with_noisy_post_net(untrained["rgb"])
    data = package.encode(photo, 50)
    assert package.post_strength(data) == 0
    plain = baseline_decode(get_scenario("rgb"), baseline_encode(get_scenario("rgb"), photo, 50), photo.shape[:2])
    assert psnr(photo, to_uint8(package.decode(data))) >= psnr(photo, to_uint8(plain)) - 1e-9
    full = package.sandwich.codec.encode({}, package.code_image(photo, 50), 50, COMMENT_TAG + METADATA.pack(
        bytes.fromhex(package.fingerprint), 50, *photo.shape[:2], 16))
    assert psnr(photo, to_uint8(package.decode(full))) < psnr(photo, to_uint8(package.decode(data))) - 1.0


def test_best_strength_finds_the_least_squares_scale(untrained, photo):
    """Where the residual is 2/3 of what the plain path misses, strength 3/2 (24/16) is the best."""
    package = SandwichPackage(untrained["rgb"].config, untrained["rgb"].params)
    target = photo.astype(np.float32) / 255.0
    plain = np.clip(target + np.random.default_rng(0).normal(0, 0.05, target.shape), 0, 1).astype(np.float32)
    package.__dict__["_parts_fn"] = lambda params, code, quality, size: (plain[None], (target - plain)[None] / 1.5)
    assert package.best_strength(photo, np.zeros((96, 128, 3), np.uint8), 50) == 24


def test_version_1_files_decode_at_full_strength_and_bad_strengths_are_refused(untrained, photo):
    package = _with_noisy_post_net(untrained["rgb"])
    codec, code = package.sandwich.codec, package.code_image(photo, 50)
    fields = (bytes.fromhex(package.fingerprint), 50, *photo.shape[:2])
    old = codec.encode({}, code, 50, LEGACY_COMMENT_TAG + LEGACY_METADATA.pack(*fields))
    new = codec.encode({}, code, 50, COMMENT_TAG + METADATA.pack(*fields, 16))
    np.testing.assert_array_equal(package.decode(old), package.decode(new))
    with pytest.raises(BitstreamError, match="strength"):
        package.decode(codec.encode({}, code, 50, COMMENT_TAG + METADATA.pack(*fields, 33)))


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


@pytest.mark.slow  # about 25 s of eager networks on the busy machine
def test_pre_gain_scales_the_pre_net_residual(tiny_config, photo):
    """pre_gain scales the pre-net's residual (with Adam, its step size); at 0 the code image is
    the baseline's whatever the pre-net's parameters (only the post-net learns)."""
    x = jnp.asarray(photo[None, :16, :16], jnp.float32) / 255.0
    quality = jnp.array([30])
    params = Sandwich(tiny_config("rgb")).init(0)
    params = {**params, "pre": jax.tree_util.tree_map(lambda p: p + 0.05, params["pre"])}  # a "trained" pre-net
    moved = {gain: np.asarray(Sandwich(tiny_config("rgb", pre_gain=gain)).code_image(params, x, quality) - 255.0 * x)
             for gain in (0.0, 0.1, 1.0)}
    assert not np.any(moved[0.0]) and np.any(moved[1.0])
    np.testing.assert_allclose(moved[0.1], 0.1 * moved[1.0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError):
        tiny_config("rgb", pre_gain=1.5)
