"""lalic packages code real bitstreams: ELIC's groups and checkerboard passes with LALIC's integer
context networks (jaxlic.quant.rwkv_context): exact round trips, the same bits on every backend,
networks close to the float model, calibrations that travel with the package and are checked."""

import sys
from pathlib import Path

import numpy as np
import pytest

import jaxlic
from jaxlic.codec import Bitstream, ModelPackage, build_tables, decompress
from jaxlic.codec.context import decode_latent, encode_latent
from jaxlic.codec.package import _context
from jaxlic.entropy.factorized import bottleneck_medians
from jaxlic.errors import IntegerizationError
from jaxlic.models import build_model
from jaxlic.models.layers import run
from jaxlic.models.registry import model_config
from jaxlic.quant.context_params import FORMAT, LATENT_EXPONENT, VERSION, run_passes
from jaxlic.quant.rwkv_arith import MAX_TOKENS, NUMPY, FloatArith, IntArith, Value
from jaxlic.quant.rwkv_context import Shape, _FloatRunner, _parameters, _side, check_calibration

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_elic import random_params  # noqa: E402
from test_lalic import WIDTH  # noqa: E402
from small_packages import coded_random_image  # noqa: E402


@pytest.fixture(scope="module")
def package():
    """A tiny random lalic whose latents span several integers (g_a's last conv scaled up)."""
    config = model_config("lalic", 3, WIDTH)
    params = random_params(build_model(config), 5)
    params["g_a_15"]["kernel"] = params["g_a_15"]["kernel"] * 30
    package = build_tables(config, params)
    package.context_params  # calibrates
    return package


def _latents(package, seed: int = 0):
    rng = np.random.default_rng(seed)
    M, N = package.config.M, package.config.N
    y = (rng.standard_normal((1, 4, 8, M)) * rng.uniform(0.2, 6, M)).astype(np.float32)
    return y, rng.integers(-3, 4, (1, 1, 2, N)).astype(np.float64)


def test_passes_round_trip_on_numpy(package):
    """The integer networks on NumPy (nothing to compile): exact round trip, means on 2^-8."""
    y, z_symbols = _latents(package)
    stream = encode_latent(package, y, z_symbols, "numpy")
    symbols, means = decode_latent(package, stream, z_symbols, "numpy")
    np.testing.assert_array_equal(symbols, np.round(y.astype(np.float64) - means))
    assert np.array_equal(means * 2**LATENT_EXPONENT, np.round(means * 2**LATENT_EXPONENT))
    assert np.unique(means).size > 20


def test_integer_networks_follow_the_float_model(package):
    """Same symbols through the integer passes and the float ones (FloatArith, checked against
    the Flax model in test_float_arith_is_the_flax_model): means within a few 2^-8 steps."""
    z_symbols = _latents(package)[1]
    params = package.context_params
    rng = np.random.default_rng(1)
    draws = []

    def symbols(_k, _anchor, index, _means):
        draws.append(np.round(rng.standard_normal(index.shape) * 3))
        return draws[-1]

    integer = run_passes(params.structure, params.runner("numpy"), z_symbols, symbols)
    replay = iter(draws)
    shape = Shape.of(package.config, package.params)
    medians = np.asarray(bottleneck_medians(package.params), np.float64)
    floats = run_passes(shape.structure, _FloatRunner(shape, FloatArith(package.params)), z_symbols + medians,
                        lambda *_: next(replay))
    errors = np.concatenate([np.abs(i[1] / 2**LATENT_EXPONENT - f[1]).ravel() for i, f in zip(integer, floats)])
    assert errors.max() < 0.05 and errors.mean() < 0.004


@pytest.mark.slow  # compiles LALIC's hyper-synthesis and context networks (about 40 s)
def test_float_arith_is_the_flax_model(package):
    """The networks as written over FloatArith are the model's: h_s and a group's aggregation."""
    import jax
    import jax.numpy as jnp

    model = build_model(package.config)
    rng = np.random.default_rng(2)
    z = rng.standard_normal((1, 2, 3, package.config.N))
    arith = FloatArith(package.params)
    shape = Shape.of(package.config, package.params)
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), package.params)
        want = model.apply({"params": params64}, jnp.asarray(z), method=lambda m, x: run(m.h_s, x))
        x = rng.standard_normal((1, 4, 4, params64["scctx_1"]["entropy_parameters_0"]["mix"]["kernel"].shape[2]))
        want_params = model.apply({"params": params64}, jnp.asarray(x),
                                  method=lambda m, x: run(m.scctx[1].entropy_parameters, x))
    np.testing.assert_allclose(_side(arith, shape, z), np.asarray(want), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(_parameters(arith, shape, 1, x[..., :2], x[..., 2:]), np.asarray(want_params),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.slow  # compiles LALIC's context networks (about 40 s)
def test_jax_backends_code_the_same_bits_as_numpy(package):
    y, z_symbols = _latents(package, seed=4)
    stream = encode_latent(package, y, z_symbols, "numpy")
    assert encode_latent(package, y, z_symbols, "jax") == stream
    want = decode_latent(package, stream, z_symbols, "numpy")
    for backend in ("jax", "jax-eager"):
        got = decode_latent(package, stream, z_symbols, backend)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.slow  # loading checks the parameters against a traced LALIC (about 10 s)
def test_package_saves_and_loads(package, tmp_path):
    package.save(tmp_path / "lalic.jxlm")
    loaded = jaxlic.load(tmp_path / "lalic.jxlm")
    assert loaded.context == package.context and loaded.fingerprint == package.fingerprint
    uncalibrated = ModelPackage(package.config, package.params, package.tables, package.scale_table)
    assert uncalibrated.fingerprint == package.fingerprint  # the same calibration derived again


def test_calibration_names_every_tensor_once(package):
    calibration = package.context
    assert calibration == check_calibration(calibration, package.config, package.params)
    name = sorted(calibration)[0]
    for bad in ({k: v for k, v in calibration.items() if k != name}, {**calibration, name: (0.5,)},
                {**calibration, name: (1, 2)}, {**calibration, name: (99,)}, {**calibration, "extra": (0,)}):
        with pytest.raises(IntegerizationError):
            check_calibration(bad, package.config, package.params)


def test_a_package_from_the_float_networks_is_calibrated_on_first_use(package):
    """Packages written before the integer networks carry an empty calibration: it is derived
    (and enters the fingerprint), so their old streams are refused as another model's."""
    old = ModelPackage(package.config, package.params, package.tables, package.scale_table, context={})
    assert _context({"format": FORMAT, "version": VERSION, "exponents": {}}, old) is None


def test_too_many_tokens_are_refused(package):
    arith = IntArith(NUMPY, {}, {}, {"att": {"decay": np.zeros(1), "boost": np.zeros(1)}})
    big = Value(np.zeros((1, 1, MAX_TOKENS + 1, 1)), 8)
    with pytest.raises(IntegerizationError, match="latent tokens"):
        arith.biwkv(big, big, "att")


@pytest.mark.slow  # compiles LALIC's transforms per padded shape (about 40 s)
@pytest.mark.parametrize("size", [(17, 31), (1, 1), (70, 9)])
def test_images_round_trip(package, size):
    _, data, latents = coded_random_image(package, size)
    assert np.abs(latents.y_symbols).max() > 3  # non-trivial symbols
    assert decompress(package, data).shape == (*size, 3)
    assert len(Bitstream.from_bytes(data).streams) == 2
