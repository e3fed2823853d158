"""The fast convolution forms equal the textbook ones, values and gradients; GDN matches its
definition and its reparametrization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.nn import GDN, lower_bound
from jaxlic.nn.conv import (
    PHASE_MIN_CHANNELS, conv_down, conv_down_reference, conv_down_space_to_depth, conv_transpose_phases,
    conv_transpose_reference, conv_transpose_subpixel, conv_up, depth_to_space, space_to_depth,
)
from jaxlic.nn.gdn import PEDESTAL, effective, reparametrize

SHAPES = [(8, 6, 3, 5, 5), (7, 9, 4, 3, 5), (5, 5, 2, 2, 3), (1, 1, 3, 2, 5), (6, 11, 2, 4, 7)]


def _inputs(seed, h, w, cin, cout, k):
    x = jax.random.normal(jax.random.PRNGKey(seed), (2, h, w, cin))
    return x, jax.random.normal(jax.random.PRNGKey(seed + 1), (k, k, cin, cout))


def _assert_same_values(fast, slow, shape):
    assert fast.shape == slow.shape == shape
    np.testing.assert_allclose(fast, slow, atol=2e-5 * float(jnp.abs(slow).max()))


def _assert_same_gradients(fast, slow, x, kernel, stride=2):
    """d/dx and d/dkernel of sum(conv(x, kernel)^2) agree between two forms."""
    def grads(fn):
        return jax.grad(lambda x, w: (fn(x, w, stride) ** 2).sum(), argnums=(0, 1))(x, kernel)
    for g, r in zip(grads(fast), grads(slow)):
        np.testing.assert_allclose(g, r, atol=1e-5 * float(jnp.abs(r).max()))


@pytest.mark.parametrize("h,w,cin,cout,k", SHAPES)
def test_subpixel_transposed_conv_equals_reference(h, w, cin, cout, k):
    x, kernel = _inputs(0, h, w, cin, cout, k)
    _assert_same_values(conv_transpose_subpixel(x, kernel, 2), conv_transpose_reference(x, kernel, 2),
                        (2, 2 * h, 2 * w, cout))


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("h,w,cin,cout,k", SHAPES)
def test_space_to_depth_conv_equals_strided_conv(h, w, cin, cout, k, stride):
    x, kernel = _inputs(8, h, w, cin, cout, k)
    _assert_same_values(conv_down_space_to_depth(x, kernel, stride), conv_down_reference(x, kernel, stride),
                        (2, -(-h // stride), -(-w // stride), cout))
    _assert_same_gradients(conv_down_space_to_depth, conv_down_reference, x, kernel, stride)


def test_space_to_depth_inverts_depth_to_space():
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x, 2), 2), x)


@pytest.mark.parametrize("h,w,cin,cout,k", SHAPES)
def test_custom_gradients_equal_autodiff_of_reference(h, w, cin, cout, k):
    x, kernel = _inputs(2, h, w, cin, cout, k)
    for fast, slow in [(conv_up, conv_transpose_reference), (conv_down, conv_down_reference)]:
        _assert_same_gradients(fast, slow, x, kernel)


# Wide enough for the per-phase forms (PHASE_MIN_CHANNELS) in conv_up/conv_down's passes.
WIDE_SHAPES = [(6, 5, 16, 24, 5), (5, 7, 24, 16, 3), (3, 4, 16, 16, 5)]


@pytest.mark.parametrize("h,w,cin,cout,k", SHAPES + WIDE_SHAPES)
def test_phase_transposed_conv_equals_reference(h, w, cin, cout, k):
    x, kernel = _inputs(4, h, w, cin, cout, k)
    _assert_same_values(conv_transpose_phases(x, kernel, 2), conv_transpose_reference(x, kernel, 2),
                        (2, 2 * h, 2 * w, cout))


@pytest.mark.parametrize("h,w,cin,cout,k", WIDE_SHAPES)
def test_custom_gradients_of_wide_layers_equal_autodiff_of_reference(h, w, cin, cout, k):
    assert min(cin, cout) >= PHASE_MIN_CHANNELS
    x, kernel = _inputs(6, h, w, cin, cout, k)
    for fast, slow in [(conv_up, conv_transpose_reference), (conv_down, conv_down_reference)]:
        reference = slow(x, kernel, 2)
        _assert_same_values(fast(x, kernel, 2), reference, reference.shape)
        _assert_same_gradients(fast, slow, x, kernel)


def test_transposed_conv_matches_scatter_definition():
    """Independent check of the layout: out[s*i - p + k] += x[i] * w[k] (PyTorch semantics)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 4, 2)).astype(np.float32)
    kernel = rng.standard_normal((5, 5, 2, 3)).astype(np.float32)
    out = np.zeros((1, 6 + 4, 8 + 4, 3), np.float32)  # padded by p = 2 on each side
    for i in range(3):
        for j in range(4):
            out[0, 2 * i : 2 * i + 5, 2 * j : 2 * j + 5] += np.einsum("c,hwco->hwo", x[0, i, j], kernel)
    want = out[:, 2 : 2 + 6, 2 : 2 + 8]
    np.testing.assert_allclose(conv_up(jnp.asarray(x), jnp.asarray(kernel), 2), want, atol=1e-5)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("simplified", [False, True])
def test_gdn_matches_definition(inverse, simplified):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 6))
    layer = GDN(inverse=inverse, simplified=simplified)
    params = layer.init(jax.random.PRNGKey(1), x)
    params = jax.tree_util.tree_map(lambda p: p * 1.3, params)
    beta = effective(params["params"]["beta"], 1e-6)
    gamma = effective(params["params"]["gamma"])
    pooled = np.abs(x) if simplified else np.asarray(x) ** 2
    norm = np.einsum("nhwj,cj->nhwc", pooled, gamma) + beta
    norm = norm if simplified else np.sqrt(norm)
    want = x * norm if inverse else x / norm
    np.testing.assert_allclose(layer.apply(params, x), want, rtol=1e-5)


def test_gdn_init_and_reparametrization_round_trip():
    layer = GDN()
    params = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 2, 4)))["params"]
    np.testing.assert_allclose(effective(params["beta"], 1e-6), np.ones(4), atol=1e-6)
    np.testing.assert_allclose(effective(params["gamma"]), 0.1 * np.eye(4), atol=1e-6)
    assert float(reparametrize(jnp.array(-5.0))) == pytest.approx(PEDESTAL**0.5)


def test_lower_bound_gradient_rule():
    x = jnp.array([0.5, 2.0, 0.5])
    # Below the bound (1.0): the gradient passes only if it would push x up (negative grad of loss).
    up = jax.grad(lambda v: (-lower_bound(v, 1.0)).sum())(x)
    down = jax.grad(lambda v: lower_bound(v, 1.0).sum())(x)
    np.testing.assert_array_equal(up, [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(down, [0.0, 1.0, 0.0])
