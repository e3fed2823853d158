"""lalic packages code real bitstreams: ELIC's groups and checkerboard passes with LALIC's float
context networks (jaxlic.quant.float_context), exact round trips on one machine, typed refusals
of the backends that need integer networks, and packages that save and load."""

import sys
from pathlib import Path

import numpy as np
import pytest

import jaxlic
from jaxlic.codec import Bitstream, build_tables, decompress
from jaxlic.codec.context import decode_latent, encode_latent
from jaxlic.errors import IntegerizationError
from jaxlic.models import build_model
from jaxlic.models.registry import model_config
from jaxlic.quant.context_params import LATENT_EXPONENT

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
    return build_tables(config, params)


@pytest.mark.slow  # compiles LALIC's 40 blocks and its context networks (about 23 s)
def test_passes_round_trip(package):
    rng = np.random.default_rng(0)
    M, N = package.config.M, package.config.N
    y = (rng.standard_normal((1, 4, 8, M)) * rng.uniform(0.2, 6, M)).astype(np.float32)
    z_symbols = rng.integers(-3, 4, (1, 1, 2, N)).astype(np.float64)
    stream = encode_latent(package, y, z_symbols)
    symbols, means = decode_latent(package, stream, z_symbols)
    np.testing.assert_array_equal(symbols, np.round(y.astype(np.float64) - means))
    assert np.array_equal(means * 2**LATENT_EXPONENT, np.round(means * 2**LATENT_EXPONENT))
    assert np.unique(means).size > 20
    with pytest.raises(IntegerizationError, match="'jax' backend only"):
        decode_latent(package, stream, z_symbols, "numpy")


@pytest.mark.slow  # loading checks the parameters against a traced LALIC (about 10 s)
def test_package_saves_and_loads(package, tmp_path):
    package.save(tmp_path / "lalic.jxlm")
    loaded = jaxlic.load(tmp_path / "lalic.jxlm")
    assert loaded.context == {} and loaded.fingerprint == package.fingerprint


@pytest.mark.slow  # compiles LALIC's transforms per padded shape (about 40 s)
@pytest.mark.parametrize("size", [(17, 31), (1, 1), (70, 9)])
def test_images_round_trip(package, size):
    _, data, latents = coded_random_image(package, size)
    assert np.abs(latents.y_symbols).max() > 3  # non-trivial symbols
    assert decompress(package, data).shape == (*size, 3)
    assert len(Bitstream.from_bytes(data).streams) == 2
