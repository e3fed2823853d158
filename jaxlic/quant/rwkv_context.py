"""Integer context networks of LALIC (RWKV-SCCTX): the same bits on every machine.

LALIC's hyper-synthesis, channel contexts and parameter aggregation hold LayerNorms, sigmoid
gates, squared ReLUs, OmniShift and BiWKV, which ELIC's integer convolutions
(jaxlic.quant.context_params) do not cover. The networks are written here once, over an
arithmetic (jaxlic.quant.rwkv_arith): the float one runs the calibration, the integer one codes,
its results fixed exactly by IEEE-754 and two's complement, so the jitted, op-by-op and NumPy
backends agree bit for bit, on any machine.

The passes are ELIC's (`run_passes`). Activations get one exponent per tensor, calibrated as
ELIC's (the peak over float passes on z drawn from the prior and y from the predicted Gaussians,
six bits of headroom below 2^20); the concatenations a pass feeds its networks are requantized
to one calibrated exponent; the aggregation's output is at 2^-16, whose scales select the table
by exact comparison and whose means are rounded to 2^-8. A package stores the calibration (one
exponent per tensor, in its header and fingerprint); the integer weights are derived from the
float32 parameters with exact operations on first use, by a pass over a 1 x 1 z on NumPy.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import jax
import numpy as np

from jaxlic.entropy.factorized import bottleneck_medians
from jaxlic.entropy.gaussian import SCALE_BOUND
from jaxlic.entropy.tables import CodingTables
from jaxlic.errors import IntegerizationError
from jaxlic.models import ModelConfig, build_model
from jaxlic.models.elic import merge_checkerboard, split_checkerboard
from jaxlic.quant.context_params import (ACT_MAX, HEADROOM_BITS, LATENT_EXPONENT, MEAN_MAX, SYMBOL_MAX, Structure,
                                         latent, ldexp, pow2_exponent, requantization, requantize, run_passes)
from jaxlic.quant.entropy_params import sample_prior
from jaxlic.quant.rwkv_arith import HEAD_EXPONENT, JAX, NUMPY, FloatArith, IntArith, Value

CALIBRATION_SHAPE = (2, 4, 4)
SEED = 0
BACKENDS = ("jax", "jax-eager", "numpy")

# --- the networks, written once over an arithmetic (float for calibration, integer to code) ------

def _block(a, x, path: str):
    """Bi-RWKV block (jaxlic.nn.rwkv.BiRwkvBlock)."""
    mixed = _spatial_mix(a, a.layer_norm(x, f"{path}/ln1"), f"{path}/att")
    x = a.add(x, a.channel_scale(mixed, f"{path}/gamma1"), f"{path}/residual1")
    mixed = _squared_relu_mix(a, a.omni_shift(a.layer_norm(x, f"{path}/ln2"), f"{path}/ffn/omni_shift"), f"{path}/ffn")
    return a.add(x, a.channel_scale(mixed, f"{path}/gamma2"), f"{path}/residual2")


def _spatial_mix(a, x, path: str):
    x = a.omni_shift(x, f"{path}/omni_shift")
    mixed = a.biwkv(a.linear(x, f"{path}/key"), a.linear(x, f"{path}/value"), path)
    return a.linear(a.mul(a.sigmoid(a.linear(x, f"{path}/receptance")), mixed, f"{path}/gated"), f"{path}/output")


def _squared_relu_mix(a, x, path: str):
    hidden = a.squared_relu(a.linear(x, f"{path}/key"), f"{path}/hidden")
    return a.mul(a.sigmoid(a.linear(x, f"{path}/receptance")), a.linear(hidden, f"{path}/value"), f"{path}/gated")


def _aggregation(a, x, k: int, blocks: int):
    """The parameter aggregation: EntropyParametersBlocks (x = mix(x); x + mix of LN(x))."""
    for i in range(0, 2 * blocks - 1, 2):
        path = f"scctx_{k}/entropy_parameters_{i}"
        x = a.conv(x, f"{path}/mix")
        head = i == 2 * blocks - 2
        x = a.add(x, _squared_relu_mix(a, a.layer_norm(x, f"{path}/norm"), path),
                  f"scctx_{k}/entropy_parameters" if head else f"{path}/residual", head=head)
    return x


def _sequential(a, x, prefix: str, count: int, transpose: bool):
    """conv, Bi-RWKV blocks, conv (h_s and the channel contexts)."""
    x = a.conv(x, f"{prefix}_0", transpose)
    for i in range(1, count - 1):
        x = _block(a, x, f"{prefix}_{i}")
    return a.conv(x, f"{prefix}_{count - 1}", transpose)


@dataclass(frozen=True)
class Shape:
    """What the passes run: module counts of the networks and the group structure."""

    structure: Structure
    h_s: int
    channel_context: int
    aggregation_blocks: int

    @classmethod
    def of(cls, config: ModelConfig, params: dict) -> "Shape":
        model = build_model(config)
        if not getattr(model, "rwkv_context", False):
            raise IntegerizationError(f"{config.arch} has no RWKV context networks")
        groups = tuple(model.bind({"params": params}).groups)
        count = lambda prefix: sum(key.startswith(prefix) for key in params)  # noqa: E731
        scctx = params.get("scctx_1", {})
        return cls(Structure(groups, bool(model.means_first), False, ()), count("h_s_"),
                   sum(key.startswith("channel_context_") for key in scctx),
                   sum(key.startswith("entropy_parameters_") for key in params["scctx_0"]))


def _side(a, shape: Shape, z):
    return _sequential(a, z, "h_s", shape.h_s, True)


def _channel_base(a, shape: Shape, k: int, decoded, side):
    """[channel context of the groups decoded before, side] (requantized to one exponent)."""
    if not k:
        return side
    channel = _sequential(a, a.concat(decoded, None), f"scctx_{k}/channel_context", shape.channel_context, False)
    return a.concat([channel, side], f"scctx_{k}/base")


def _spatial(a, k: int, anchors):
    return a.conv(anchors, f"scctx_{k}/context_prediction")


def _parameters(a, shape: Shape, k: int, spatial, base):
    return _aggregation(a, a.concat([spatial, base], f"scctx_{k}/aggregation_input"), k, shape.aggregation_blocks)


# --- the passes ----------------------------------------------------------------------------------

def _side_step(a, shape: Shape, z_offset, z_symbols):
    z = a.xp.clip(z_symbols, -SYMBOL_MAX, SYMBOL_MAX) * 2.0**LATENT_EXPONENT + z_offset
    return _side(a, shape, Value(z, LATENT_EXPONENT)).q


def _base_step(a, shape: Shape, k: int, decoded, side):
    side = Value(side, a.exponents[f"h_s_{shape.h_s - 1}"])
    base = _channel_base(a, shape, k, [Value(x, LATENT_EXPONENT) for x in decoded], side)
    return split_checkerboard(base.q, a.xp)


def _spatial_step(a, k: int, anchors):
    full = merge_checkerboard(anchors, a.xp.zeros_like(anchors), a.xp)
    return split_checkerboard(_spatial(a, k, Value(full, LATENT_EXPONENT)).q, a.xp)[1]


def _parameters_step(a, shape: Shape, scale_heads, k: int, spatial, base):
    """(table index, means at 2^-8) of one pass."""
    xp = a.xp
    base_exponent = a.exponents[f"scctx_{k}/base" if k else f"h_s_{shape.h_s - 1}"]
    spatial = Value(spatial, a.exponents[f"scctx_{k}/context_prediction"])
    head = _parameters(a, shape, k, spatial, Value(base, base_exponent)).q
    g = head.shape[-1] // 2
    first, second = head[..., :g], head[..., g:]
    scales, means = (second, first) if shape.structure.means_first else (first, second)
    half, scale = requantization(np.int64(HEAD_EXPONENT - LATENT_EXPONENT))
    return (xp.searchsorted(scale_heads, scales * 2.0**-HEAD_EXPONENT, side="left"),
            requantize(a.backend, means, half, scale, -MEAN_MAX, MEAN_MAX))


class RwkvContextParams:
    """The integer context networks of one LALIC package (`structure` and `runner`, as
    jaxlic.quant.context_params.ContextParams)."""

    def __init__(self, config: ModelConfig, params: dict, calibration: dict, scale_table: np.ndarray):
        self.shape = Shape.of(config, params)
        self.structure = self.shape.structure
        calibration = check_calibration(calibration, config, params)
        if calibration is None:
            raise IntegerizationError("this lalic package has no context calibration")
        self.exponents = {name: e[0] for name, e in calibration.items()}
        medians = np.asarray(bottleneck_medians(params), np.float64)
        self.z_offset = np.round(ldexp(medians, LATENT_EXPONENT))
        self.scale_heads = np.asarray(scale_table, np.float64)[:-1]
        self.consts = {}
        deriving = _Runner(self, "numpy", params)  # every constant, from a pass over a 1 x 1 z
        run_passes(self.structure, deriving, np.zeros((1, 1, 1, config.N)),
                   lambda _k, _anchor, index, _means: np.zeros(index.shape))

    def runner(self, backend: str = "jax") -> "_Runner":
        if backend not in BACKENDS:
            raise IntegerizationError(f"unknown backend {backend!r} for context models; choose one of {BACKENDS}")
        return _Runner(self, backend)

    @functools.cached_property
    def jitted(self) -> Callable[[str, int], Callable]:
        @functools.lru_cache(maxsize=None)
        def compiled(step: str, k: int):
            return jax.jit(lambda consts, *args: self._step(step, k, IntArith(JAX, consts, self.exponents), *args))
        return compiled

    def _step(self, step: str, k: int, a: IntArith, *args):
        if step == "side":
            return _side_step(a, self.shape, self.z_offset, *args)
        if step == "base":
            return _base_step(a, self.shape, k, *args)
        if step == "spatial":
            return _spatial_step(a, k, *args)
        return _parameters_step(a, self.shape, self.scale_heads, k, *args)


class _Runner:
    """The integer passes of one package on one backend; arrays are float64 integers."""

    def __init__(self, context: RwkvContextParams, backend: str, params: dict | None = None):
        self.context, self.backend, self.params = context, backend, params
        self.structure = context.structure

    def _call(self, step: str, k: int, *args):
        c = self.context
        if self.backend == "numpy":
            return c._step(step, k, IntArith(NUMPY, c.consts, c.exponents, self.params), *args)
        with jax.enable_x64(True):
            if self.backend == "jax":
                out = c.jitted(step, k)(c.consts, *args)
            else:
                out = c._step(step, k, IntArith(JAX, c.consts, c.exponents), *args)
            return jax.tree_util.tree_map(np.asarray, out)

    def side(self, z_symbols):
        return self._call("side", 0, np.asarray(z_symbols, np.float64))

    def base(self, k, decoded, side):
        return self._call("base", k, tuple(decoded[:k]), side)

    def parameters(self, k, spatial, base):
        return self._call("parameters", k, spatial, base)

    def spatial(self, k, anchors):
        return self._call("spatial", k, anchors)

    latent = staticmethod(latent)


# --- calibration ---------------------------------------------------------------------------------

class _FloatRunner:
    """The same passes on FloatArith (calibration)."""

    def __init__(self, shape: Shape, arith: FloatArith):
        self.shape, self.arith, self.structure = shape, arith, shape.structure

    def side(self, z_hat):
        return _side(self.arith, self.shape, np.asarray(z_hat, np.float64))

    def base(self, k, decoded, side):
        return split_checkerboard(_channel_base(self.arith, self.shape, k, decoded[:k], side), np)

    def parameters(self, k, spatial, base):
        first, second = np.split(_parameters(self.arith, self.shape, k, spatial, base), 2, -1)
        return (second, first) if self.structure.means_first else (first, second)

    def spatial(self, k, anchors):
        full = merge_checkerboard(anchors, np.zeros_like(anchors), np)
        return split_checkerboard(_spatial(self.arith, k, full), np)[1]

    def latent(self, symbols, means):
        return symbols + means


def _float_passes(config: ModelConfig, params: dict, z_hat: np.ndarray, sample) -> FloatArith:
    shape = Shape.of(config, params)
    arith = FloatArith(params)
    run_passes(shape.structure, _FloatRunner(shape, arith), z_hat, sample)
    return arith


def calibrate(config: ModelConfig, params: dict, tables_: CodingTables, shape=CALIBRATION_SHAPE,
              seed: int = SEED) -> dict[str, tuple[int]]:
    """One exponent per tensor (as a 1-tuple) from float passes on z drawn from the prior and
    every y_hat drawn from the Gaussian the float model predicts for it."""
    medians = np.asarray(bottleneck_medians(params), np.float64)
    rng = np.random.default_rng(seed)

    def sample(_k, _anchor, scales, _means):
        return np.round(np.maximum(np.asarray(scales, np.float64), SCALE_BOUND) * rng.standard_normal(scales.shape))

    arith = _float_passes(config, params, sample_prior(tables_, medians, shape, seed), sample)
    limit = ACT_MAX * 2.0**-HEADROOM_BITS
    return {name: (int(pow2_exponent(peak, limit)),) for name, peak in sorted(arith.peaks.items())}


def tensor_names(config: ModelConfig, params: dict) -> frozenset[str]:
    """The calibrated tensors of this model (a float pass over a 1 x 1 z, once per config)."""
    if config not in _NAMES:
        arith = _float_passes(config, params, np.zeros((1, 1, 1, config.N)),
                              lambda _k, _anchor, scales, _means: np.zeros(scales.shape))
        _NAMES[config] = frozenset(arith.peaks)
    return _NAMES[config]


_NAMES: dict[ModelConfig, frozenset[str]] = {}


def check_calibration(calibration, config: ModelConfig, params: dict) -> dict[str, tuple[int]] | None:
    """The calibration if it names every tensor of this model with one integer exponent in
    [-64, 64]; None for an empty one (a package from before the integer networks: derive it);
    IntegerizationError otherwise."""
    if calibration == {}:
        return None
    want = tensor_names(config, params)
    if not isinstance(calibration, dict) or set(calibration) != want:
        raise IntegerizationError(f"the context calibration does not name this model's {len(want)} context tensors")
    out = {}
    for name, exps in calibration.items():
        ok = (isinstance(exps, (list, tuple)) and len(exps) == 1 and isinstance(exps[0], int)
              and not isinstance(exps[0], bool) and -64 <= exps[0] <= 64)
        if not ok:
            raise IntegerizationError(f"the context calibration of {name!r} is not one exponent in [-64, 64]")
        out[name] = tuple(exps)
    return out
