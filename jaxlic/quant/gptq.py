"""Weight rounding by GPTQ for post-training quantization of the synthesis transform.

Round-to-nearest puts every int8 weight on its nearest grid point independently. GPTQ (Frantar
et al., 2022, after Optimal Brain Surgeon) rounds a layer's weights one input coordinate
(kernel tap x input channel) at a time and moves the coordinates not yet rounded to cancel the
error, weighted by the inverse of H = sum X X^T over the layer's inputs X on calibration images,
so that the layer's outputs on those inputs move least. Layers go from the latents to the
pixels, each one's inputs computed with the layers before it already rounded.

GPTQ rounds toward a least-squares target (`least_squares_target`) rather than the float
weights themselves, so each layer also makes up, where it can, for the int8 rounding of its
inputs. The convolutions and the inverse GDNs' pools (gamma, a 1x1 int8 GEMM) are rounded so.

Only weight values change, and only to points of the grid the lowering rounds to (the exponents
are the lowering's own), so the lowering's round-to-nearest reproduces them exactly: the graph,
its ops, every backend and bit-exactness are untouched. `round_synthesis_weights` returns float
parameters whose synthesis kernels and gammas lie on that grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxlic.models import ModelConfig, build_model
from jaxlic.nn import GDN, Conv, ConvTranspose
from jaxlic.nn.conv import conv_down, conv_down_reference, conv_up
from jaxlic.nn.gdn import effective, reparametrize
from jaxlic.quant.fakequant import ACT_MAX, WEIGHT_MAX
from jaxlic.quant.lowering import SQUARE_SHIFT, Calibration, decoder_activations, lower_decoder

DAMPING = 0.01  # of H's mean diagonal, added to the diagonal (GPTQ's default)
TARGET_DAMPING = 1e-4  # the same for the least-squares target (0.01 measured 0.03 dB worse: docs/quantization.md)


def gptq_round(weight: np.ndarray, hessian: np.ndarray, damping: float = DAMPING, low: int = -WEIGHT_MAX) -> np.ndarray:
    """Integer weights (d inputs x outputs, in grid units, clipped to [low, 127]) that minimise
    sum over the inputs X behind `hessian` = X^T X of |(Q - W)^T x|^2 column by column (GPTQ):
    coordinates in order of decreasing H[i, i]; each one's rounding error is spread over the
    rest through the Cholesky factor of H^-1. Coordinates no input ever reaches round to nearest."""
    w = np.array(weight, np.float64)
    h = np.array(hessian, np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[order], h[np.ix_(order, order)]
    h[np.diag_indices_from(h)] += damping * np.mean(np.diag(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.zeros_like(w)
    for i in range(w.shape[0]):
        q[i] = np.clip(np.round(w[i]), low, WEIGHT_MAX)
        error = (w[i] - q[i]) / upper[i, i]
        w[i + 1:] -= np.outer(upper[i, i + 1:], error)
    result = np.empty_like(q)
    result[order] = q
    return result


def _layer_conv(layer):
    """The layer's convolution as a function of (input, kernel), bias left out."""
    if isinstance(layer, ConvTranspose):
        return lambda x, k: conv_up(x, k, layer.stride)
    if layer.stride == 1:
        return lambda x, k: conv_down_reference(x, k, 1)
    return lambda x, k: conv_down(x, k, layer.stride)


def input_statistics(layer, inputs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Second moments of the layer's input patches over (float, quantized) input pairs: `gram`
    = sum p~ p~^T and `cross` = sum p~ p^T, p the float model's patch, p~ the quantized model's
    (kernel taps x input channels, in the kernel's (kh, kw, in) order). The layer applied to the
    identity kernel gives the patches, whatever its stride or transposition."""
    conv = _layer_conv(layer)

    @jax.jit
    def moments(x, xq):
        d = layer.kernel_size * layer.kernel_size * x.shape[-1]
        identity = jnp.eye(d, dtype=jnp.float32).reshape(layer.kernel_size, layer.kernel_size, x.shape[-1], d)
        p, pq = conv(x, identity).reshape(-1, d), conv(xq, identity).reshape(-1, d)
        return {"gram": pq.T @ pq, "cross": pq.T @ p}

    total: dict[str, np.ndarray] = {}
    for x, xq in inputs:
        for image, image_q in zip(np.asarray(x, np.float32), np.asarray(xq, np.float32)):  # bounds patch memory
            for key, value in moments(jnp.asarray(image[None]), jnp.asarray(image_q[None])).items():
                total[key] = total.get(key, 0.0) + np.asarray(value, np.float64)
    return total


def least_squares_target(weight: np.ndarray, stats: dict[str, np.ndarray], damping: float = TARGET_DAMPING) -> np.ndarray:
    """W* = argmin sum |W*^T p~ - W^T p|^2: the weights that, on the quantized model's inputs
    p~, best reproduce the float layer's outputs on its own inputs p (damped as GPTQ is). Since
    sum |Q^T p~ - W^T p|^2 = sum |(Q - W*)^T p~|^2 + const, GPTQ of W* with H = sum p~ p~^T
    rounds for the float outputs, making up for the rounding before this layer where it can."""
    gram = stats["gram"] + damping * np.mean(np.diag(stats["gram"])) * np.eye(len(weight))
    return np.linalg.solve(gram, stats["cross"] @ weight)


@dataclass(frozen=True)
class _Roundable:
    """One int8 GEMM of the synthesis: its grid's name in `Lowered.grids`, the layer whose
    patches it sees, its float weights (HWIO), their lowest integer, and its input."""

    grid: str
    layer: object
    weight: np.ndarray
    low: int
    pool: str | None = None  # "abs" or "square": a GDN pool, whose input is |x| or x^2 of the layer's

    def inputs(self, x: np.ndarray, rounded: bool) -> np.ndarray:
        """The GEMM's input from the layer's int8-unit input (float model's or, rounded, the integer
        one's): for a pool |x|, or x^2 at the exponent of the lowering's square requantized by
        SQUARE_SHIFT (half up, to [0, 127] where rounded)."""
        if self.pool is None or self.pool == "abs":
            return x if self.pool is None else np.abs(x)
        square = x * x * 2.0**-SQUARE_SHIFT
        return np.minimum(np.floor(square + 0.5), ACT_MAX) if rounded else square


def _roundable(name: str, layer, p: dict) -> _Roundable | None:
    if isinstance(layer, (Conv, ConvTranspose)):
        return _Roundable(name, layer, np.asarray(p["kernel"], np.float64), -WEIGHT_MAX)
    if isinstance(layer, GDN) and layer.inverse:
        gamma = np.asarray(effective(p["gamma"]), np.float64).T[None, None]  # (1, 1, in, out)
        # gamma >= 0 keeps the pool at or above beta, as the exporter's bound assumes
        return _Roundable(f"{name}.pool", Conv(gamma.shape[-1], 1, 1), gamma, 0, "abs" if layer.simplified else "square")
    return None


def round_synthesis_weights(config: ModelConfig, params: dict, calibration: Calibration,
                            batches: Sequence[np.ndarray], progress: bool = False) -> dict:
    """`params` with every synthesis convolution's kernel, and every inverse GDN's gamma (the
    pool's 1x1 int8 GEMM), rounded by GPTQ onto the int8 grid that `lower_decoder` gives it,
    from the latents to the pixels, toward the float layer's outputs (`least_squares_target`).
    Inputs on `batches` (NHWC in [0, 1]): the float model's activations, and the partly rounded
    model's rounded to int8 at the calibrated exponents (for a pool, |x| or x^2 of those).
    (The hyper-synthesis is left as it is: rounded by GPTQ too, it measured the same rate.)"""
    layers = list(build_model(config).bind({"params": params}).g_s)
    gemms = {i: g for i, layer in enumerate(layers) if (g := _roundable(f"g_s_{i}", layer, params.get(f"g_s_{i}", {})))}
    sources = {i: "y" if i == 0 else f"g_s_{i - 1}" for i in gemms}

    @jax.jit
    def grids_and_exponents(p):
        lowered = lower_decoder(config, p, calibration)
        return lowered.grids, lowered.exponents

    activations = jax.jit(lambda p, x: decoder_activations(config, p, x))
    float_inputs = [{s: np.asarray(v) for s, v in activations(params, jnp.asarray(b)).items() if s in sources.values()}
                    for b in batches]  # the float model's, once
    rounded_params = dict(params)
    for i, gemm in tqdm(gemms.items(), desc="GPTQ weight rounding", unit="layer", disable=not progress):
        name, source = f"g_s_{i}", sources[i]
        grids, exponents = grids_and_exponents(rounded_params)
        x_exp, f, scale = (np.asarray(v, np.float64) for v in grids[gemm.grid])
        step = np.exp2(np.asarray(exponents[source], np.float64))  # x * 2^e is the int8 activation

        def pairs():
            for batch, inputs in zip(batches, float_inputs):
                xq = np.clip(np.round(np.asarray(activations(rounded_params, jnp.asarray(batch))[source]) * step),
                             -ACT_MAX, ACT_MAX)
                yield gemm.inputs(inputs[source] * step, rounded=False), gemm.inputs(xq, rounded=True)

        stats = input_statistics(gemm.layer, pairs())
        to_units = scale * np.exp2(f[None, None, None, :] - x_exp[None, None, :, None])
        units = (gemm.weight * to_units).reshape(-1, gemm.weight.shape[-1])
        target = least_squares_target(units, stats)
        rounded = gptq_round(target, stats["gram"], low=gemm.low).reshape(gemm.weight.shape) / to_units
        if gemm.pool is None:
            rounded_params[name] = {**params[name], "kernel": jnp.asarray(rounded, jnp.float32)}
        else:
            rounded_params[name] = {**params[name], "gamma": reparametrize(jnp.asarray(rounded[0, 0].T, jnp.float32))}
    return rounded_params
