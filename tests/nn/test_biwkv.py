"""BiWKV in linear time against its O(T^2) formula: values (float64, large keys, long
sequences, both signs of decay), float32 accuracy and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxlic.nn.biwkv import biwkv, biwkv_quadratic


def _inputs(T: int, C: int, key_scale: float, seed: int, batch: int = 2):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(C) * 3 / T  # LALIC passes decay / T; both signs
    w[0] = 40.0  # a steep decay: far tokens vanish
    u = rng.standard_normal(C) * 3
    k = rng.standard_normal((batch, T, C)) * key_scale
    v = rng.standard_normal((batch, T, C))
    return w, u, k, v


@pytest.mark.parametrize("T, key_scale", [(1, 1.0), (2, 1.0), (37, 1.0), (300, 60.0), (257, 400.0)])
def test_matches_the_formula_in_float64(T, key_scale):
    with jax.enable_x64(True):
        args = [jnp.asarray(a, jnp.float64) for a in _inputs(T, 5, key_scale, T)]
        linear, direct = jax.jit(biwkv)(*args), jax.jit(biwkv_quadratic)(*args)
        assert linear.dtype == jnp.float64 and linear.shape == args[2].shape
        np.testing.assert_allclose(linear, direct, rtol=1e-9, atol=1e-12)


def test_long_sequences_with_huge_keys_stay_finite_and_exact():
    """T = 2048 (a 32 x 64 latent), keys up to +-1000 and decays that would overflow e^{T w}."""
    w, u, k, v = _inputs(2048, 2, 300.0, 1, batch=1)
    w[1] = -1.5  # e^{T |w|} = e^{3072}
    k[0, 100, :] = 1000.0
    with jax.enable_x64(True):
        args = [jnp.asarray(a, jnp.float64) for a in (w, u, k, v)]
        direct = jax.jit(biwkv_quadratic)(*args)
    linear = jax.jit(biwkv)(*[jnp.asarray(a, jnp.float32) for a in (w, u, k, v)])
    assert np.all(np.isfinite(linear))
    np.testing.assert_allclose(linear, direct, atol=2e-5, rtol=0)


def test_gradients_match_the_formula():
    with jax.enable_x64(True):
        args = [jnp.asarray(a, jnp.float64) for a in _inputs(12, 3, 5.0, 3)]
        g = jnp.asarray(np.random.default_rng(4).standard_normal(args[2].shape))

        def loss(fn):
            return lambda *a: jnp.sum(fn(*a) * g)

        linear = jax.grad(loss(biwkv), argnums=(0, 1, 2, 3))(*args)
        direct = jax.grad(loss(biwkv_quadratic), argnums=(0, 1, 2, 3))(*args)
        for a, b in zip(linear, direct):
            assert np.all(np.isfinite(a))
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
        small = [a[:1, :6, :2] if a.ndim == 3 else a[:2] for a in args]
        check_grads(biwkv, small, order=1, modes=["rev"])
