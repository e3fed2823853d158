"""lalic: OmniShift's folding, the Bi-RWKV block's token order, sizes and complexity, and
training gradients (parity with a PyTorch build of the official structure: test_lalic_parity.py;
coding: tests/codec/test_lalic_coding.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.models import build_model, get_model, init_params, model_config
from jaxlic.models.complexity import layer_macs, param_count
from jaxlic.models.lalic import lalic_dims
from jaxlic.nn.biwkv import biwkv_quadratic
from jaxlic.nn.rwkv import OmniShift, SpatialMix
from test_elic import random_params

WIDTH = 0.0625  # N = 12, M = 20: dims (6, 9, 16, 20, 16, 12), groups (1, 1, 2, 4, 12)


def _depthwise(x, kernel):
    size = kernel.shape[0]
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), [(size // 2, size // 2)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])


def test_omnishift_is_its_four_branches_in_one_convolution():
    shift = OmniShift(3)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 7, 3))
    p = shift.init(jax.random.PRNGKey(1), x)["params"]
    branches = (p["alpha"][0] * x + p["alpha"][1] * _depthwise(x, p["conv1x1"])
                + p["alpha"][2] * _depthwise(x, p["conv3x3"]) + p["alpha"][3] * _depthwise(x, p["conv5x5"]))
    np.testing.assert_allclose(shift.apply({"params": p}, x), branches, atol=1e-5)


def test_spatial_mix_runs_biwkv_over_row_major_tokens():
    mix = SpatialMix(4)
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 3, 5, 4))
    p = mix.init(jax.random.PRNGKey(3), x)["params"]
    shifted = mix.apply({"params": p}, x, method=lambda m, x: m.omni_shift(x))

    def dense(name, h):
        return h @ p[name]["kernel"]

    k, v = dense("key", shifted).reshape(1, 15, 4), dense("value", shifted).reshape(1, 15, 4)
    mixed = biwkv_quadratic(p["decay"] / 15, p["boost"] / 15, k, v).reshape(1, 3, 5, 4)
    want = dense("output", jax.nn.sigmoid(dense("receptance", shifted)) * mixed)
    np.testing.assert_allclose(mix.apply({"params": p}, x), want, atol=1e-5)


@pytest.mark.slow  # builds the full-width model (about 10 s); lalic_dims is checked in the default suite
def test_full_size_matches_the_official_parameter_count():
    """65.6M here; the official module list (about 66M) adds a stale `conv5x5_reparam` copy of
    every OmniShift kernel (25 C), which jaxlic folds from the branches instead."""
    params = jax.eval_shape(lambda: init_params(get_model("lalic", 1), 0))
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]

    def count(prefix: str, official: bool = False) -> int:
        chosen = [(path, leaf) for path, leaf in leaves if path[0].key.startswith(prefix)]
        reparam = sum(25 * leaf.shape[-1] for path, leaf in chosen if path[-1].key == "conv5x5")
        return sum(leaf.size for _, leaf in chosen) + official * reparam

    assert count("") == param_count(params) == 65_621_045
    assert (count("g_a"), count("h_a")) == (7_810_992, 8_508_912)
    # The official figures: about 66M in all, g_a 7.9M, h_a 8.6M.
    assert (round(count("", True) / 1e6), round(count("g_a", True) / 1e6, 1), round(count("h_a", True) / 1e6, 1)) == (
        66, 7.9, 8.6)


def test_width_scales_every_stage():
    config = model_config("lalic", 1, WIDTH)
    assert (config.N, config.M) == (12, 20)
    assert lalic_dims(config.width, config.N, config.M) == (6, 9, 16, 20, 16, 12)
    assert lalic_dims(1.0, 192, 320) == (96, 144, 256, 320, 256, 192)


@pytest.mark.slow  # about 20 s; the Balle/ELIC counters stay in the default suite
def test_complexity_counts_the_token_mixers():
    config = model_config("lalic", 1, WIDTH)
    macs = layer_macs(config)
    # g_a_1 sees a half-resolution 6-channel map: a quarter of the pixels.
    assert macs["g_a_1/att/key"] == pytest.approx(6 * 6 / 4)
    assert macs["g_a_1/att/omni_shift"] == pytest.approx(25 * 6 / 4)
    assert macs["g_a_1/ffn/key"] == pytest.approx(6 * 24 / 4)
    assert macs["scctx_1/channel_context_1/ffn/key"] == pytest.approx(20 * 160 / 256)  # hidden rate 8


@pytest.mark.slow  # compiles the gradient of the whole model (about a minute)
def test_gradients_reach_every_part():
    model = build_model(model_config("lalic", 1, WIDTH))
    params = random_params(model, 1)
    x = jax.random.uniform(jax.random.PRNGKey(2), (1, 64, 64, 3))

    def loss(p):
        out = model.apply({"params": p}, x, "noise", rngs={"noise": jax.random.PRNGKey(3)})
        bits = sum(-jnp.sum(jnp.log2(v)) for v in out["likelihoods"].values())
        return bits / x.size + 100 * jnp.mean((out["x_hat"] - x) ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    for name in ("g_a_1", "g_s_15", "h_a_3", "h_s_3", "entropy_bottleneck", "scctx_0", "scctx_4"):
        norm = sum(float(jnp.sum(g**2)) for g in jax.tree_util.tree_leaves(grads[name]))
        assert np.isfinite(norm) and norm > 0, name
