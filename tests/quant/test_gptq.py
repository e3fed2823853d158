"""GPTQ weight rounding (jaxlic.quant.gptq): the layer algebra, the grid, and the decoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlic
from jaxlic.nn import Conv, ConvTranspose
from jaxlic.quant.export import integerize
from jaxlic.quant.gptq import gptq_round, input_statistics, least_squares_target

from jaxlic.quant.pipeline import quantize
from jaxlic.nn.gdn import effective

from conftest import GPTQ_CASE as KEY, image_batch


def _correlated_inputs(rng, n: int, d: int) -> np.ndarray:
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def test_gptq_moves_the_outputs_less_than_rounding_to_nearest():
    rng = np.random.default_rng(0)
    x = _correlated_inputs(rng, 4000, 48)
    weight = rng.uniform(-90, 90, (48, 5))
    output_error = lambda q: np.sum((x @ (q - weight)) ** 2)  # noqa: E731
    rounded = gptq_round(weight, x.T @ x)
    assert np.array_equal(rounded, np.round(rounded)) and np.abs(rounded).max() <= 127
    assert np.abs(rounded - weight).max() > 0.5  # it does move weights past their nearest point
    assert output_error(rounded) < 0.5 * output_error(np.round(weight))


def test_unreached_inputs_round_to_nearest_and_weights_clip_to_int8():
    rng = np.random.default_rng(1)
    x = _correlated_inputs(rng, 500, 10)
    x[:, [2, 7]] = 0
    weight = rng.uniform(-100, 100, (10, 3))
    weight[0, 0] = 300.0
    rounded = gptq_round(weight, x.T @ x)
    assert np.array_equal(rounded[[2, 7]], np.round(weight[[2, 7]]))
    assert rounded[0, 0] == 127


@pytest.mark.parametrize("layer", [Conv(6, 5, 2), ConvTranspose(6, 5, 2), Conv(6, 3, 1), ConvTranspose(6, 3, 2)],
                         ids=["conv5s2", "deconv5s2", "conv3s1", "deconv3s2"])
def test_patch_moments_reproduce_the_layer(layer):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 7, 4)).astype(np.float32)
    xq = np.round(x * 4) / 4
    params = layer.init(jax.random.PRNGKey(0), jnp.asarray(x))["params"]
    kernel = np.asarray(params["kernel"], np.float64)
    run = lambda v: np.asarray(layer.apply({"params": params}, jnp.asarray(v))) - np.asarray(params["bias"])  # noqa: E731
    stats = input_statistics(layer, [(x, xq)])
    flat = kernel.reshape(-1, kernel.shape[-1])
    out, out_q = run(x).reshape(-1, flat.shape[1]), run(xq).reshape(-1, flat.shape[1])
    np.testing.assert_allclose(np.einsum("dc,de,ec->c", flat, stats["gram"], flat), np.sum(out_q**2, 0), rtol=1e-4)
    np.testing.assert_allclose(np.einsum("dc,de,ec->c", flat, stats["cross"], flat), np.sum(out_q * out, 0), rtol=1e-4)


def test_the_least_squares_target_fits_float_outputs_from_quantized_inputs():
    rng = np.random.default_rng(3)
    x = _correlated_inputs(rng, 3000, 12)
    xq = x + rng.normal(scale=0.3, size=x.shape)
    weight = rng.normal(size=(12, 4))
    stats = {"gram": xq.T @ xq, "cross": xq.T @ x}
    fit = lambda w: np.sum((xq @ w - x @ weight) ** 2)  # noqa: E731
    assert fit(least_squares_target(weight, stats)) < 0.9 * fit(weight)
    exact = np.linalg.lstsq(xq, x @ weight, rcond=None)[0]
    np.testing.assert_allclose(least_squares_target(weight, stats, damping=0), exact, rtol=1e-6, atol=1e-9)


def test_rounded_weights_lie_on_the_lowering_grid(float_packages, calibrations, gptq_params):
    package = float_packages[KEY]
    graph = integerize(package.config, gptq_params, calibrations[KEY]).integer
    rounded = gptq_params
    changed = [k for k in rounded if not all(np.array_equal(rounded[k][p], package.params[k][p]) for p in rounded[k])]
    assert changed == [f"g_s_{i}" for i in range(7)]  # every convolution and every inverse GDN's gamma
    for name in changed:
        if "gamma" in rounded[name]:
            integer = graph.constants[f"{name}.pool.weight"].astype(np.float64)
            kernel = np.asarray(effective(rounded[name]["gamma"]), np.float64).T[None, None]
            assert integer.min() >= 0  # gamma >= 0: the pool is never below beta
        else:
            integer = graph.constants[f"{name}.weight"].astype(np.float64)
            kernel = np.asarray(rounded[name]["kernel"], np.float64) * (255 if name == "g_s_6" else 1)
        steps = np.log2(np.abs(kernel / np.where(integer == 0, np.nan, integer)))
        assert np.all(kernel[integer == 0] == 0)
        # one power-of-two step per (input, output) channel, whatever the tap
        per_channel = np.broadcast_to(np.fmax.reduce(steps, axis=(0, 1), keepdims=True), steps.shape)  # NaNs skipped
        np.testing.assert_allclose(steps[integer != 0], np.round(per_channel[integer != 0]), atol=1e-6)


def _error_to_float(package, integer, photo) -> float:
    reference = jaxlic.decompress(package, jaxlic.compress(package, photo)).astype(np.float64)
    return np.mean((jaxlic.decompress(integer, jaxlic.compress(integer, photo)) - reference) ** 2)


def test_gptq_packages_decode_closer_to_the_float_decoder(float_packages, calibrations, gptq_params, int_packages, photo):
    package = float_packages[KEY]
    gptq = integerize(package.config, gptq_params, calibrations[KEY])
    assert _error_to_float(package, gptq, photo) < _error_to_float(package, int_packages[KEY], photo)


@pytest.mark.slow
def test_simplified_gdn_and_mean_scale_models_too(float_packages, int_packages, photo):
    key = ("mbt2018-mean", "simplified")
    gptq = quantize(float_packages[key], [image_batch()])
    assert _error_to_float(float_packages[key], gptq, photo) < _error_to_float(float_packages[key], int_packages[key], photo)
