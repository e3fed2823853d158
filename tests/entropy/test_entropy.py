"""Entropy models: likelihoods are proper, quantization modes behave, tables are valid integer
tables, and the range coder round-trips every value (escapes included) near the ideal size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxlic.entropy.coder import SymbolCoder
from jaxlic.entropy.factorized import EntropyBottleneck, solve_quantiles
from jaxlic.entropy.gaussian import (
    default_scale_table, gaussian_likelihood, gaussian_table_pmfs,
)
from jaxlic.entropy.quantize import quantize
from jaxlic.entropy.tables import TOTAL, CodingTables, quantize_pmf
from jaxlic.errors import BitstreamError, PackageError


@pytest.fixture(scope="module")
def bottleneck():
    module = EntropyBottleneck(4)
    params = module.init({"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, jnp.zeros((1, 2, 2, 4)))
    return module, params


def test_factorized_likelihoods_sum_to_one_over_integers(bottleneck):
    module, params = bottleneck
    grid = jnp.arange(-400.0, 401.0)[:, None, None, None] * jnp.ones((1, 1, 1, 4))
    _, likelihood = module.apply(params, grid, "round")
    np.testing.assert_allclose(likelihood.sum(0).ravel(), np.ones(4), atol=1e-4)


def test_solved_quantiles_hit_the_tail_targets(bottleneck):
    module, params = bottleneck

    def logits(points):
        return np.asarray(module.apply(params, jnp.asarray(points, jnp.float32),
                                       method=lambda m, x: m.logits_cumulative(x)), np.float64)

    quantiles = solve_quantiles(logits, 4, tail_mass=1e-9)
    assert np.all(np.diff(quantiles[:, 0], axis=-1) > 0)
    cdf = 1 / (1 + np.exp(-logits(quantiles)))
    np.testing.assert_allclose(cdf[:, 0], np.tile([0.5e-9, 0.5, 1 - 0.5e-9], (4, 1)), rtol=1e-3, atol=1e-6)


def test_quantize_modes():
    x = jnp.array([0.2, 1.7, -2.5, 3.49])
    np.testing.assert_array_equal(quantize(x, "round"), jnp.round(x))
    np.testing.assert_allclose(quantize(x, "round", 0.3), jnp.round(x - 0.3) + 0.3)
    ste_grad = jax.grad(lambda v: quantize(v, "ste").sum())(x)
    np.testing.assert_array_equal(ste_grad, np.ones(4))
    noisy = quantize(x, "noise", rng=jax.random.PRNGKey(0))
    assert float(jnp.abs(noisy - x).max()) <= 0.5
    with pytest.raises(ValueError):
        quantize(x, "noise")


def test_gaussian_likelihood_sums_to_one():
    scales = default_scale_table()
    values = jnp.arange(-40.0, 41.0)[:, None]
    total = gaussian_likelihood(values, jnp.asarray(scales[:20])[None]).sum(0)
    np.testing.assert_allclose(total, np.ones(20), atol=1e-5)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=300), st.floats(0.0, 1e-3))
@settings(max_examples=50, deadline=None)
def test_quantized_pmf_is_a_valid_table(pmf, tail):
    if sum(pmf) + tail == 0:
        pmf = [1.0] + pmf[1:]
    freqs = quantize_pmf(np.array(pmf), tail)
    assert freqs.sum() == TOTAL and freqs.min() >= 1 and freqs.size == len(pmf) + 1


def _gaussian_coder():
    pmfs, tails, offsets = gaussian_table_pmfs(default_scale_table())
    return SymbolCoder(CodingTables.from_pmfs(pmfs, tails, offsets))


def test_gaussian_coding_is_near_ideal_and_escapes_round_trip():
    coder = _gaussian_coder()
    rng = np.random.default_rng(0)
    index = rng.integers(0, 256, 100_000)
    scales = default_scale_table()[index]
    values = np.round(rng.normal(0, scales)).astype(np.int64)
    values[:6] = [10**6, -(10**6), 5000, -3, 2**31 - 1, -(2**31) + 1]
    data = coder.encode(values, index)
    np.testing.assert_array_equal(coder.decode(data, index), values)
    ideal_bits = -np.log2(np.asarray(gaussian_likelihood(jnp.asarray(values[6:], jnp.float32),
                                                          jnp.asarray(scales[6:], jnp.float32)))).sum()
    assert 8 * len(data) < 1.005 * ideal_bits + 400  # escapes of the 6 outliers cost a little


@given(st.lists(st.integers(-(2**20), 2**20), min_size=0, max_size=200), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_any_integers_round_trip(values, seed):
    coder = _gaussian_coder()
    index = np.random.default_rng(seed).integers(0, 64, len(values))
    values = np.array(values, np.int64)
    np.testing.assert_array_equal(coder.decode(coder.encode(values, index), index), values)


def test_decoder_rejects_misaligned_stream():
    coder = _gaussian_coder()
    with pytest.raises(BitstreamError):
        coder.decode(b"\x01\x02\x03", np.zeros(3, np.int64))


def test_inconsistent_tables_are_refused():
    tables = CodingTables.from_pmfs([np.ones(3)], np.array([0.0]), np.array([0]))
    broken = CodingTables(tables.freqs + 1, tables.lengths, tables.offsets)
    with pytest.raises(PackageError):
        broken.validate()


def test_tables_are_stored_packed_and_read_back_exactly():
    pmfs, tails, offsets = gaussian_table_pmfs(default_scale_table(levels=256))
    tables = CodingTables.from_pmfs(pmfs, tails, offsets)
    arrays = tables.to_arrays("t")
    assert arrays["t/packed_freqs"].dtype == np.uint16 and arrays["t/packed_freqs"].size == tables.lengths.sum()
    again = CodingTables.from_arrays(arrays, "t")
    assert np.array_equal(again.freqs, tables.freqs) and np.array_equal(again.offsets, tables.offsets)
    # Packages written before packing stored the zero-padded rows; they still load.
    legacy = {"t/freqs": tables.freqs, "t/lengths": tables.lengths, "t/offsets": tables.offsets}
    assert np.array_equal(CodingTables.from_arrays(legacy, "t").freqs, tables.freqs)
    for bad in ({**arrays, "t/packed_freqs": arrays["t/packed_freqs"][:-1]}, {"t/lengths": tables.lengths}):
        with pytest.raises(PackageError):
            CodingTables.from_arrays(bad, "t")
