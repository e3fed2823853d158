"""The exact integer arithmetic of LALIC's context networks (jaxlic.quant.rwkv_arith): exact
divisions and square roots whatever the float rounding, tables close to the functions, and
integer LayerNorm, sigmoid and BiWKV close to their float forms and identical on NumPy and jax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.nn.biwkv import biwkv
from jaxlic.quant import rwkv_arith
from jaxlic.quant.rwkv_arith import (JAX, KEY_EXPONENT, NUMPY, FloatArith, IntArith, Value, floor_div, isqrt,
                                     tables)


def _both(fn, *args):
    """fn on NumPy and on jitted jax.numpy (float64); both results as NumPy."""
    with jax.enable_x64(True):
        on_jax = jax.jit(lambda *a: fn(jnp, *a))(*(jnp.asarray(a) for a in args))
        return fn(np, *args), np.asarray(on_jax)


def test_floor_div_is_exact_at_the_bounds():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(-2**50, 2**50, 2000), [2**50 - 1, -2**50, 0, 7, -7]])
    b = np.concatenate([rng.integers(1, 2**50, 2000), [3, 2**50 - 3, 5, 7, 7]])
    want = np.array([int(x) // int(y) for x, y in zip(a, b)], np.float64)
    for got in _both(floor_div, a.astype(np.float64), b.astype(np.float64)):
        np.testing.assert_array_equal(got, want)


def test_isqrt_is_exact_next_to_squares():
    rng = np.random.default_rng(1)
    roots = rng.integers(0, 2**26, 1000)
    n = np.concatenate([roots**2, roots**2 - 1, roots**2 + 1, [2**53 - 1, 0, 1]]).clip(0, 2**53 - 1)
    want = np.array([math.isqrt(int(x)) for x in n], np.float64)
    for got in _both(isqrt, n.astype(np.float64)):
        np.testing.assert_array_equal(got, want)


def test_tables_are_close_to_the_functions():
    t = tables()
    x = np.arange(-16 * 256, 16 * 256 + 1) / 256
    assert np.abs(t["sigmoid"] / 2**16 - 1 / (1 + np.exp(-x))).max() <= 2**-17
    assert np.abs(t["exp_coarse"] / 2**24 - np.exp(-np.arange(32 * 256) / 256)).max() <= 2**-25
    assert np.abs(t["exp_fine"] / 2**24 - np.exp(-np.arange(256) / 2**16)).max() <= 2**-25


def test_exp_of_the_scan_is_close_to_exp():
    x = np.concatenate([np.arange(0, 2**16), np.random.default_rng(2).integers(0, 40 << 24, 20000)]).astype(np.int64)
    t = {k: v.astype(np.int64) for k, v in tables().items()}
    got = rwkv_arith._exp_neg(np, x, t["exp_coarse"], t["exp_fine"]) / 2**24
    assert np.abs(got - np.exp(-x / 2**24)).max() <= 3 * 2**-24


def _arith(xp_backend, exponents, params):
    return IntArith(xp_backend, {}, exponents, params)


def test_integer_sigmoid_and_layer_norm_follow_the_float_ones():
    rng = np.random.default_rng(3)
    C = 24
    x = rng.standard_normal((2, 5, 7, C)) * rng.uniform(0.1, 30, (2, 5, 7, 1))
    params = {"norm": {"scale": rng.uniform(0.5, 2, C), "bias": rng.standard_normal(C)}}
    e = 14
    value = Value(np.round(x * 2**e), e)
    exact = value.q / 2**e
    sigmoid = _arith(NUMPY, {}, params).sigmoid(value)
    assert np.abs(sigmoid.q / 2**sigmoid.e - 1 / (1 + np.exp(-exact))).max() <= 2**-15
    normed = _arith(NUMPY, {"norm": 16}, params).layer_norm(value, "norm")
    want = FloatArith(params).layer_norm(exact, "norm")
    assert np.abs(normed.q / 2**normed.e - want).max() <= 2e-4 * np.abs(want).max()
    constant = Value(np.full((1, 1, 1, C), 12345.0), e)  # variance 0: the bias alone
    out = _arith(NUMPY, {"norm": 16}, params).layer_norm(constant, "norm")
    np.testing.assert_allclose(out.q.ravel() / 2**16, params["norm"]["bias"], atol=2**-15)


@pytest.mark.parametrize("tokens, decay_scale, key_scale", [(1, 1, 1), (60, 1, 3), (60, -4, 1), (300, 20, 60)])
def test_integer_biwkv_follows_the_float_formula_and_is_the_same_on_numpy_and_jax(tokens, decay_scale, key_scale):
    """Growing (negative decay) and fast-decaying weights, keys far apart (e^(+-180))."""
    rng = np.random.default_rng(tokens)
    C = 6
    decay, boost = rng.standard_normal(C) * decay_scale, rng.standard_normal(C) * 3
    k = rng.standard_normal((2, tokens, C)) * key_scale
    v = rng.standard_normal((2, tokens, C)) * 50
    e_k, e_v = 14, 12
    params = {"att": {"decay": decay, "boost": boost}}
    keys, values = Value(np.round(k * 2**e_k).reshape(2, 1, tokens, C), e_k), Value(np.round(v * 2**e_v).reshape(2, 1, tokens, C), e_v)
    arith = _arith(NUMPY, {}, params)
    got = arith.biwkv(keys, values, "att")
    with jax.enable_x64(True):
        want = np.asarray(biwkv(jnp.asarray(decay) / tokens, jnp.asarray(boost) / tokens,
                                jnp.asarray(keys.q.reshape(2, tokens, C) / 2**e_k),
                                jnp.asarray(values.q.reshape(2, tokens, C) / 2**e_v)))
    assert got.e == e_v
    assert np.abs(got.q.reshape(want.shape) / 2**e_v - want).max() <= 1e-4 * np.abs(v).max()
    with jax.enable_x64(True):
        on_jax = jax.jit(lambda c, kq, vq: IntArith(JAX, c, {}).biwkv(Value(kq, e_k), Value(vq, e_v), "att").q)(
            arith.consts, keys.q, values.q)
    np.testing.assert_array_equal(np.asarray(on_jax), got.q)


def test_the_scan_sums_fit_int64_at_the_token_limit():
    """|a| <= tokens x 2^20 x 2^24 stays below 2^62, so 2 a + b in the last division cannot overflow."""
    assert rwkv_arith.MAX_TOKENS * 2**20 * 2**KEY_EXPONENT <= 2**61
