"""elic2022: channel groups, the checkerboard, the two-pass decoding order, training modes,
complexity, and the codec's refusal (parity with CompressAI: test_elic_parity.py)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlic.codec import ModelPackage, compress
from jaxlic.entropy.factorized import EntropyBottleneck
from jaxlic.errors import ConfigError
from jaxlic.models import build_model, init_params, model_config
from jaxlic.models.complexity import CONTEXT_PARTS, layer_macs, model_complexity
from jaxlic.models.elic import channel_groups, merge_checkerboard, split_checkerboard

ARCHS = ("elic2022", "elic2022-chandelier")
WIDTH = 0.15  # N=29, M=48: groups (2, 2, 4, 8, 32)


def random_params(model, seed: int) -> dict:
    """PyTorch-style uniform parameters drawn with NumPy, the entropy bottleneck's from its own
    init: a Flax init of the whole model compiles for minutes (eagerly or jitted). Any zoo model."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        bound = 1 / math.sqrt(math.prod(leaf.shape[:-1]) if len(leaf.shape) > 1 else leaf.shape[0])
        return jnp.asarray(rng.uniform(-bound, bound, leaf.shape), jnp.float32)

    params = jax.tree_util.tree_map(draw, jax.eval_shape(lambda: init_params(model, 0)))
    N = model.config.N if model.hyper else model.config.M  # the factorized prior codes y itself
    params["entropy_bottleneck"] = EntropyBottleneck(N).init(
        jax.random.PRNGKey(seed), jnp.zeros((1, 1, 1, N)), "round")["params"]
    return params


@pytest.fixture(scope="module", params=ARCHS)
def small(request):
    config = model_config(request.param, 1, WIDTH)
    model = build_model(config)
    return config, model, random_params(model, 0)


def test_channel_groups() -> None:
    assert channel_groups(320) == (16, 16, 32, 64, 192)  # ELIC's, and CompressAI's default
    assert channel_groups(48) == (2, 2, 4, 8, 32)
    assert all(sum(channel_groups(m)) == m for m in range(20, 400))
    with pytest.raises(ConfigError, match="M >= 20"):
        channel_groups(19)


def test_checkerboard_split_and_merge() -> None:
    x = jnp.arange(4 * 6, dtype=jnp.float32).reshape(1, 4, 6, 1)
    anchors, non_anchors = split_checkerboard(x)
    rows, cols = np.divmod(np.asarray(anchors).ravel().astype(int), 6)
    assert anchors.shape == non_anchors.shape == (1, 4, 3, 1) and np.all((rows + cols) % 2 == 0)
    rows, cols = np.divmod(np.asarray(non_anchors).ravel().astype(int), 6)
    assert np.all((rows + cols) % 2 == 1)
    np.testing.assert_array_equal(merge_checkerboard(anchors, non_anchors), x)


@pytest.fixture(scope="module")
def context(small):
    """The context model jitted, and a latent with its hyperprior output."""
    config, model, _ = small
    side_channels = 2 * (config.M if config.arch == "elic2022-chandelier" else config.N)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    y = 4 * jax.random.normal(keys[0], (1, 8, 8, config.M))
    side = jax.random.normal(keys[1], (1, 8, 8, side_channels))
    run = jax.jit(lambda p, y: model.apply({"params": p}, y, side, "round", method="space_channel_context"))
    return run, y


def test_two_pass_decoding_order(small, context) -> None:
    """What a decoder has when it decodes each element is all it depends on: earlier groups,
    and for non-anchors the anchors of their own group."""
    _, _, params = small
    run, y = context
    _, likelihoods = run(params, y)
    start, stop = 4, 8  # group 2
    anchor = (np.add.outer(np.arange(8), np.arange(8)) % 2 == 0)[None, :, :, None]
    for perturbed, first_changed in ((~anchor, "non-anchors"), (anchor, "anchors")):
        bump = jnp.zeros_like(y).at[..., start:stop].set(jnp.where(perturbed, 3.0, 0.0))
        _, likelihoods2 = run(params, y + bump)
        np.testing.assert_array_equal(likelihoods2[..., :start], likelihoods[..., :start])
        changed = np.asarray(likelihoods2[..., start:stop] != likelihoods[..., start:stop])
        if first_changed == "non-anchors":
            assert not changed[np.broadcast_to(anchor, changed.shape)].any()
        else:  # the spatial context carries the anchors to the non-anchors
            assert changed[np.broadcast_to(~anchor, changed.shape)].any()
        assert np.any(likelihoods2[..., stop:] != likelihoods[..., stop:])  # the channel context


def test_checkerboard_mask_is_implied(small, context) -> None:
    """CompressAI masks the taps of the spatial context that would read non-anchors; here they
    only ever multiply zeros, so changing them changes nothing, and changing the others does."""
    _, _, params = small
    run, y = context
    _, likelihoods = run(params, y)
    kernel = params["scctx_4"]["context_prediction"]["kernel"]
    taps = np.add.outer(np.arange(5), np.arange(5)) % 2 == 0  # masked in CompressAI
    for masked, same in ((taps, True), (~taps, False)):
        bumped = kernel + jnp.asarray(np.where(masked[:, :, None, None], 5.0, 0.0), kernel.dtype)
        changed = jax.tree_util.tree_map(lambda a: a, params)
        changed["scctx_4"]["context_prediction"]["kernel"] = bumped
        assert np.array_equal(run(changed, y)[1], likelihoods) == same


@pytest.mark.slow
def test_training_modes() -> None:
    """As CompressAI trains it: the synthesis sees y and z rounded straight through (around the
    predicted means), the likelihoods see noise; gradients reach every part."""
    model = build_model(model_config("elic2022", 1, WIDTH))
    params = random_params(model, 1)
    x = jax.random.uniform(jax.random.PRNGKey(2), (1, 64, 64, 3))
    rngs = {"noise": jax.random.PRNGKey(3)}

    def loss(p):
        out = model.apply({"params": p}, x, "noise", rngs=rngs)
        bits = sum(-jnp.sum(jnp.log2(v)) for v in out["likelihoods"].values())
        return bits / x.size + 100 * jnp.mean((out["x_hat"] - x) ** 2), out

    (_, noise), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    ste = jax.jit(lambda p: model.apply({"params": p}, x, "ste"))(params)
    np.testing.assert_allclose(noise["x_hat"], ste["x_hat"], atol=1e-6)
    assert not np.allclose(noise["likelihoods"]["y"], ste["likelihoods"]["y"])
    for name in ("g_a_0", "g_s_14", "h_a_4", "h_s_4", "entropy_bottleneck", "scctx_0", "scctx_4"):
        norm = sum(float(jnp.sum(g**2)) for g in jax.tree_util.tree_leaves(grads[name]))
        assert np.isfinite(norm) and norm > 0, name


def test_complexity_counts_the_context_model(small) -> None:
    config, _, _ = small
    info, macs = model_complexity(config), layer_macs(config)
    context = sum(v for k, v in macs.items() if k.startswith(CONTEXT_PARTS))
    assert info["context_model"] and context > 0
    g_a = sum(v for k, v in macs.items() if k.startswith("g_a"))
    g_s = sum(v for k, v in macs.items() if k.startswith("g_s"))
    assert info["encoder_macs"] - info["decoder_macs"] == pytest.approx(g_a + sum(
        v for k, v in macs.items() if k.startswith("h_a")) - g_s)
    # The aggregation runs once per pass on half the latent each: one full-size pass in all.
    # Group 0 (2 channels, no channel context) at N=29, M=48: Official ramps 62 -> 58 -> 58 -> 4,
    # Chandelier goes 100 -> 96 -> 512 -> 4.
    per_position = 62 * 58 + 58 * 58 + 58 * 4 if config.arch == "elic2022" else 100 * 96 + 96 * 512 + 512 * 4
    aggregation = sum(v for k, v in macs.items() if k.startswith("scctx_0/entropy_parameters"))
    assert aggregation == pytest.approx(per_position / 256)


def test_a_parameters_only_package_refuses_to_code() -> None:
    """A package of parameters alone (no tables): coding it is a ConfigError, not a KeyError on
    the missing tables. (The codec codes ELIC packages: tests/codec/test_context_coding.py.)"""
    config = model_config("elic2022", 1, WIDTH)
    package = ModelPackage(config, random_params(build_model(config), 3))
    with pytest.raises(ConfigError, match="parameters only"):
        compress(package, np.zeros((64, 64, 3), np.uint8))
