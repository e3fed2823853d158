"""Context-model (ELIC) coding: channel groups in two checkerboard passes each, real streams,
exact round trips, typed errors for bad streams, and entropy parameters that are the same
integers on every backend and thread count (jaxlic.quant.context_params).

The default tests drive the passes on synthetic latents with the NumPy backend (nothing to
compile); the slow ones run whole images through compress/decompress."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxlic
from jaxlic.codec import Bitstream, ModelPackage, build_tables, compress, decode_latents, decompress
from jaxlic.codec.api import _to_model_input
from jaxlic.codec.context import decode_latent, encode_latent
from jaxlic.codec.package import _context
from jaxlic.errors import BitstreamError, ConfigError, PackageError
from jaxlic.models import build_model
from jaxlic.models.registry import model_config
from jaxlic.quant import context_params
from jaxlic.quant.context_params import LATENT_EXPONENT, pow2_exponent

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "models"))
from test_elic import WIDTH, random_params  # noqa: E402
from small_packages import coded_random_image  # noqa: E402


@pytest.fixture(scope="module", params=["elic2022", "elic2022-chandelier"])
def package(request):
    config = model_config(request.param, 3, WIDTH)
    package = build_tables(config, random_params(build_model(config), 5))
    package.context_params  # calibrates
    return package


def _latents(package, rows: int, cols: int, seed: int = 0):
    """A synthetic y (1, rows, cols, M) with a spread of magnitudes, and z symbols."""
    rng = np.random.default_rng(seed)
    config = package.config
    y = (rng.standard_normal((1, rows, cols, config.M)) * rng.uniform(0.2, 6, config.M)).astype(np.float32)
    z_symbols = rng.integers(-3, 4, (1, rows // 4, cols // 4, config.N)).astype(np.float64)
    return y, z_symbols


# Latent sizes of 17x31 and 1x1 images (padded to 64x64), 70x9 (128x64), and a wider one.
@pytest.mark.parametrize("rows, cols", [(4, 4), (8, 4), (8, 12)])
def test_passes_round_trip(package, rows, cols):
    y, z_symbols = _latents(package, rows, cols)
    stream = encode_latent(package, y, z_symbols, "numpy")
    symbols, means = decode_latent(package, stream, z_symbols, "numpy")
    assert symbols.shape == means.shape == y.shape
    np.testing.assert_array_equal(symbols, np.round(y.astype(np.float64) - means))
    # Means are integers at 2^-8 and differ from group to group and position to position.
    assert np.array_equal(means * 2**LATENT_EXPONENT, np.round(means * 2**LATENT_EXPONENT))
    assert np.unique(means).size > 20


def test_escapes_and_huge_values_round_trip(package):
    y, z_symbols = _latents(package, 4, 8, seed=1)
    y[0, 0, 0, :3] = [5e4, -7e5, 1e9]  # beyond the tables and the networks' symbol clamp
    stream = encode_latent(package, y, z_symbols, "numpy")
    symbols, means = decode_latent(package, stream, z_symbols, "numpy")
    np.testing.assert_array_equal(symbols, np.round(y.astype(np.float64) - means))


def test_bad_streams_are_typed_errors(package):
    y, z_symbols = _latents(package, 4, 4, seed=2)
    stream = encode_latent(package, y, z_symbols, "numpy")
    bad = [stream[:-4], stream[:-1], stream + b"\0\0\0\0", b"", bytes(len(stream)),
           stream[:8] + bytes([stream[8] ^ 0x40]) + stream[9:]]
    for data in bad:
        with pytest.raises(BitstreamError):
            decode_latent(package, data, z_symbols, "numpy")


def test_non_finite_latents_are_a_package_error(package):
    y, z_symbols = _latents(package, 4, 4)
    y[0, 1, 1, 0] = np.nan
    with pytest.raises(PackageError):
        encode_latent(package, y, z_symbols, "numpy")


@pytest.mark.slow  # loading checks the parameters against a traced ELIC (tens of seconds)
def test_calibration_travels_with_the_package(package, tmp_path):
    path = tmp_path / "elic.jxlm"
    package.save(path)
    loaded = jaxlic.load(path)
    assert loaded.context == package.context and loaded.fingerprint == package.fingerprint
    y, z_symbols = _latents(package, 4, 4, seed=3)
    stream = encode_latent(package, y, z_symbols, "numpy")
    np.testing.assert_array_equal(decode_latent(loaded, stream, z_symbols, "numpy")[1],
                                  decode_latent(package, stream, z_symbols, "numpy")[1])


def test_another_calibration_is_another_model(package):
    other = ModelPackage(package.config, package.params, package.tables, package.scale_table,
                         context={k: tuple(e - 1 for e in v) for k, v in package.context.items()})
    assert other.fingerprint != package.fingerprint


def test_bad_calibrations_are_refused(package):
    spec = package._context_spec()
    name = sorted(spec["exponents"])[0]
    short = {**spec, "exponents": {**spec["exponents"], name: spec["exponents"][name][:-1]}}
    fractional = {**spec, "exponents": {**spec["exponents"], name: [0.5] * len(spec["exponents"][name])}}
    missing = {**spec, "exponents": {k: v for k, v in spec["exponents"].items() if k != name}}
    for bad in (None, {}, {**spec, "version": 2}, short, fractional, missing):
        with pytest.raises(PackageError):
            _context(bad, package)


def test_parameters_only_package_is_a_config_error(package):
    bare = ModelPackage(package.config, package.params)
    with pytest.raises(ConfigError, match="parameters only"):
        compress(bare, np.zeros((8, 8, 3), np.uint8))


def test_exponents_are_exact():
    peaks = np.array([0.0, 1.0, 32767.0, 32767.5, 1e-30, 3.0, 2.0**-20])
    e = pow2_exponent(peaks, 32767.0)
    ok = np.ldexp(peaks, e) <= 32767.0
    assert ok.all() and np.all((np.ldexp(peaks, e + 1) > 32767.0) | (peaks == 0) | (e == context_params.MAX_EXPONENT))


def test_every_accumulator_is_bounded(package):
    """The static bound that makes float64 sums exact in any order: inputs at most 2^24 (latents)
    or 2^15 (activations), weights at most 2^15."""
    for name, layers in package.context_params.networks.items():
        in_max = context_params.LATENT_MAX if not name.endswith("entropy_parameters") else context_params.ACT_MAX
        for layer in layers:
            assert np.abs(layer.weight).max() <= context_params.WEIGHT_MAX
            reach = np.abs(layer.weight).sum(axis=(0, 1, 2)) * in_max + np.abs(layer.bias)
            assert reach.max() <= context_params.EXACT_MAX, layer.layer.path
            in_max = context_params.ACT_MAX


@pytest.mark.parametrize("k, stride, transpose", [(5, 1, False), (1, 1, False), (5, 2, False), (5, 2, True),
                                                (3, 1, True)])
def test_jitted_convolutions_equal_numpy_taps(k, stride, transpose):
    """The jax backend's matrix-product convolutions give NumPy's tap-by-tap integers exactly, at
    the largest inputs (2^24) and weights (2^15), odd sizes and 1x1."""
    import jax

    rng = np.random.default_rng(k * 10 + stride)
    w = rng.integers(-context_params.WEIGHT_MAX, context_params.WEIGHT_MAX + 1, (k, k, 6, 5)).astype(np.float64)
    for h, wd in ((7, 6), (1, 1)):
        x = rng.integers(-context_params.LATENT_MAX, context_params.LATENT_MAX + 1, (1, h, wd, 6)).astype(np.float64)
        with jax.enable_x64(True):
            got = np.asarray(jax.jit(context_params.jax_conv, static_argnums=(2, 3))(x, w, transpose, stride))
        np.testing.assert_array_equal(got, context_params.np_conv(x, w, transpose, stride))


# --- whole images (slow: ELIC's transforms and the jitted passes compile per shape) ---------

@pytest.mark.slow
@pytest.mark.parametrize("size", [(17, 31), (1, 1), (70, 9)])
def test_images_round_trip_on_every_backend(package, size):
    _, data, latents = coded_random_image(package, size)
    for backend in ("numpy", "jax-eager"):
        other = decode_latents(package, data, backend)
        np.testing.assert_array_equal(other.y_symbols, latents.y_symbols)
        np.testing.assert_array_equal(other.means, latents.means)
    assert decompress(package, data).shape == (*size, 3)
    assert len(Bitstream.from_bytes(data).streams) == 2


@pytest.mark.slow
def test_large_image_round_trip(package):
    """512x768 (Kodak's size): 32 x 48 latents, every group's passes on real shapes."""
    rng = np.random.default_rng(8)
    pixels = np.clip(np.cumsum(rng.integers(-6, 7, (512, 768, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    data = compress(package, pixels)
    y = np.asarray(package.transforms.analysis(_to_model_input(pixels, 64)))
    latents = decode_latents(package, data)
    np.testing.assert_array_equal(latents.y_symbols, np.round(y.astype(np.float64) - latents.means))
    np.testing.assert_array_equal(decode_latents(package, data, "numpy").means, latents.means)


DECODER = """
import hashlib, json, os, sys
threads = int(sys.argv[3])
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
from jaxlic.codec import decode_latents, load
latents = decode_latents(load(sys.argv[1]), open(sys.argv[2], "rb").read(), "jax")
print(json.dumps([len(os.sched_getaffinity(0)), hashlib.sha256(latents.y_symbols.tobytes()).hexdigest(),
                  hashlib.sha256(latents.means.tobytes()).hexdigest()]))
"""


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_one_and_two_xla_threads_decode_the_same_latents(package, tmp_path):
    pixels = np.random.default_rng(9).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    package.save(tmp_path / "m.jxlm")
    data = compress(package, pixels)
    (tmp_path / "i.jxlc").write_bytes(data)
    latents = decode_latents(package, data)
    want = [hashlib.sha256(latents.y_symbols.tobytes()).hexdigest(), hashlib.sha256(latents.means.tobytes()).hexdigest()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for threads in (1, 2):
        out = subprocess.run([sys.executable, "-c", DECODER, str(tmp_path / "m.jxlm"), str(tmp_path / "i.jxlc"),
                              str(threads)], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got == [threads, *want]
