"""Deterministic entropy parameters of context models (ELIC's space-channel context).

A context model's Gaussian parameters come from networks fed with what was decoded before: the
hyper-synthesis of z, the channel context of the groups decoded before and the spatial context
of the anchors of the group being decoded. Decoded latents (symbol + mean) re-enter those
networks, so the means select no table but still feed the next pass: a mean that differs by an
ulp between encoder and decoder can change a later table index, and the range decoder then
desynchronizes without an error (CompressAI #188, #279). So every number on that path is an
integer computed exactly:

- z_hat and y_hat enter as integers at 2^-8 (symbol << 8 plus the median or mean, both on that
  grid; the symbol clamped to +-2^15 for the networks, never for the synthesis);
- every convolution (h_s, channel context, spatial context, parameter aggregation) has integer
  weights (per output channel a power-of-two scale, |w| <= 2^15 - 1, the input's exponents
  folded in) and integer biases, and every activation is requantized to |a| <= 2^20 - 1 at a
  calibrated power-of-two exponent per tensor (six bits of headroom above the calibration peak,
  whose z and y are drawn, not seen);
- the aggregation's last layer gives integer accumulators: the scale one selects the table
  (the number of table scales below it, an exact comparison), the mean one is rounded to the
  2^-8 grid.

The integers are held in float64 and the convolutions run as float64 convolutions: every
operand and every partial sum is an integer below 2^53 (checked per layer when the weights are
derived, by lowering a channel's weight scale where needed), so no addition or multiply rounds,
in whatever order, blocking or thread count XLA or BLAS sums. The jitted, op-by-op and NumPy
backends therefore agree bit for bit, on any machine. With 20-bit activations the parameters
stay close to the float model's (int8 ones would cost rate).

What a package stores is only the calibration (the activation exponents, in its header and its
fingerprint): the integer weights are derived from the float32 parameters with exact operations
(power-of-two scaling, rounding, comparisons), so every machine derives the same ones. The
calibration needs no images: z is drawn from the package's own prior and every y_hat from the
Gaussian the float model predicts for it, pass after pass.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.entropy.factorized import bottleneck_medians
from jaxlic.entropy.gaussian import SCALE_BOUND
from jaxlic.entropy.tables import CodingTables
from jaxlic.errors import IntegerizationError
from jaxlic.models import ModelConfig, build_model
from jaxlic.models.elic import merge_checkerboard, split_checkerboard
from jaxlic.models.layers import Activation
from jaxlic.nn import Conv, ConvTranspose
from jaxlic.nn.conv import subpixel_taps, depth_to_space, subpixel_kernel
from jaxlic.quant.entropy_params import sample_prior

FORMAT = "jaxlic-context-params"
VERSION = 1
LATENT_EXPONENT = 8  # y_hat, z_hat and the means are integers at 2^-8
SYMBOL_MAX = 1 << 15  # symbols are clamped to +-2^15 where they enter the context networks
LATENT_MAX = 1 << 24  # |y_hat|, |z_hat| at 2^-8 after that clamp
MEAN_MAX = 1 << 23
WEIGHT_MAX = (1 << 15) - 1
ACT_MAX = (1 << 20) - 1
EXACT_MAX = 1 << 52  # every accumulator stays below this (float64 holds integers to 2^53)
HEADROOM_BITS = 6
MAX_EXPONENT = 40
CALIBRATION_SHAPE = (2, 4, 4)  # z maps (batch, rows, columns) drawn from the prior: y is 2 x 16 x 16
SEED = 0
BACKENDS = ("jax", "jax-eager", "numpy")


@dataclass(frozen=True)
class Layer:
    """One convolution of a context network: its parameter path and form."""

    path: str
    transpose: bool
    stride: int
    relu: bool


def _layers(prefix: str, modules) -> tuple[Layer, ...]:
    """Conv/ConvTranspose layers of a module list, each with the ReLU that may follow it."""
    layers, modules = [], list(modules)
    for i, module in enumerate(modules):
        if isinstance(module, (Conv, ConvTranspose)):
            follows = modules[i + 1] if i + 1 < len(modules) else None
            relu = isinstance(follows, Activation) and follows.kind == "relu"
            layers.append(Layer(f"{prefix}_{i}", isinstance(module, ConvTranspose), module.stride, relu))
        elif not (isinstance(module, Activation) and module.kind == "relu"):
            raise IntegerizationError(f"{prefix}_{i}: {type(module).__name__} has no integer form in a context network")
    return tuple(layers)


@dataclass(frozen=True)
class Structure:
    """What the passes run: the networks of each group and the group bounds."""

    groups: tuple[int, ...]
    means_first: bool
    chandelier: bool
    networks: tuple[tuple[str, tuple[Layer, ...]], ...]  # (name, layers), hashable

    def network(self, name: str) -> tuple[Layer, ...]:
        return dict(self.networks)[name]

    @classmethod
    def of(cls, config: ModelConfig, params: dict) -> "Structure":
        model = build_model(config)
        if not getattr(model, "context_model", False):
            raise IntegerizationError(f"{config.arch} has no context model")
        bound = model.bind({"params": params})
        networks = {"h_s": _layers("h_s", bound.h_s)}
        for k, group in enumerate(bound.scctx):
            if k > 0:
                networks[f"scctx_{k}/channel_context"] = _layers(f"scctx_{k}/channel_context", group.channel_context)
            networks[f"scctx_{k}/context_prediction"] = (Layer(f"scctx_{k}/context_prediction", False, 1, False),)
            networks[f"scctx_{k}/entropy_parameters"] = _layers(f"scctx_{k}/entropy_parameters", group.entropy_parameters)
        return cls(tuple(bound.groups), bool(model.means_first), config.arch.endswith("chandelier"),
                   tuple(networks.items()))

    def calibrated(self) -> dict[str, str]:
        """Calibrated tensor name -> network: every layer output but the aggregation's last."""
        names = {}
        for net, layers in self.networks:
            for layer in layers[:-1] if net.endswith("entropy_parameters") else layers:
                names[layer.path] = net
        return names

    def channel_input(self, decoded: list) -> list:
        """The decoded groups the next group's channel context sees."""
        if self.chandelier:
            return decoded[:1] + decoded[-1:] if len(decoded) > 1 else decoded[:1]
        return decoded


# --- exact power-of-two arithmetic (no log or exp: the same bits on every machine) -------------

def ldexp(x, e) -> np.ndarray:
    return np.ldexp(np.asarray(x, np.float64), np.asarray(e, np.int64).astype(np.int32))


def pow2_exponent(peak: np.ndarray, limit: float, high: int = MAX_EXPONENT) -> np.ndarray:
    """Largest integer e <= high with peak * 2^e <= limit, per element (high where peak is 0);
    exact (frexp and comparisons only)."""
    peak = np.asarray(peak, np.float64)
    safe = np.where(peak > 0, peak, 1.0)
    e = np.frexp(np.float64(limit))[1] - np.frexp(safe)[1]
    for _ in range(3):
        e = np.where(ldexp(safe, e) > limit, e - 1, e)
        e = np.where(ldexp(safe, e + 1) <= limit, e + 1, e)
    return np.minimum(np.where(peak > 0, e, high), high).astype(np.int64)


# --- calibration ---------------------------------------------------------------------------------

def calibrate(config: ModelConfig, params: dict, tables: CodingTables, shape=CALIBRATION_SHAPE,
              seed: int = SEED) -> dict[str, tuple[int, ...]]:
    """The exponent of every calibrated activation (see the module docstring): float passes on
    z drawn from the prior and y_hat drawn from the predicted Gaussians."""
    structure = Structure.of(config, params)
    medians = np.asarray(bottleneck_medians(params), np.float64)
    z_hat = sample_prior(tables, medians, shape, seed)
    runner = _FloatRunner(structure, params)
    rng = np.random.default_rng(seed)

    def sample(_k, _anchor, scales, means):
        deviation = np.maximum(np.asarray(scales, np.float64), SCALE_BOUND) * rng.standard_normal(scales.shape)
        return np.round(deviation)

    run_passes(structure, runner, z_hat, sample)
    # One exponent per tensor, from its largest channel: a channel that the prior samples leave
    # at 0 (a ReLU they never open) would otherwise get the finest grid and saturate on images.
    limit = ACT_MAX * 2.0 ** -HEADROOM_BITS
    return {name: (int(pow2_exponent(runner.peaks[name].max(), limit)),) * runner.peaks[name].size
            for name in structure.calibrated()}


def check_calibration(calibration, config: ModelConfig, params: dict) -> dict[str, tuple[int, ...]]:
    """The calibration if it names every calibrated tensor of this model with one integer
    exponent in [-64, 64] per channel; IntegerizationError otherwise."""
    structure = Structure.of(config, params)
    widths = {layer.path: params_at(params, layer.path)["bias"].shape[0]
              for _, layers in structure.networks for layer in layers}
    want = structure.calibrated()
    if not isinstance(calibration, dict) or set(calibration) != set(want):
        raise IntegerizationError(f"the context calibration does not name this model's {len(want)} context tensors")
    out = {}
    for name, exps in calibration.items():
        ok = (isinstance(exps, (list, tuple)) and len(exps) == widths[name]
              and all(isinstance(e, int) and not isinstance(e, bool) and -64 <= e <= 64 for e in exps))
        if not ok:
            raise IntegerizationError(f"the context calibration of {name!r} is not {widths[name]} exponents in [-64, 64]")
        out[name] = tuple(exps)
    return out


def params_at(params: dict, path: str) -> dict:
    node = params
    for key in path.split("/"):
        node = node[key]
    return node


# --- the integer networks ------------------------------------------------------------------------

@functools.partial(jax.tree_util.register_dataclass, data_fields=["weight", "bias", "half", "scale", "unit"],
                   meta_fields=["layer", "lo"])
@dataclass(frozen=True)
class IntLayer:
    """A convolution with integer (float64-held) weight and bias whose accumulator (at exponent
    f per channel) becomes floor((acc + half) * scale) clipped to [lo, ACT_MAX], a requantization
    by f - exponent of the output. The aggregation's last layer keeps its accumulator: `unit`
    (2^-f) turns it into scales, half and scale requantize it to means at 2^-8."""

    layer: Layer
    weight: np.ndarray
    bias: np.ndarray
    half: np.ndarray
    scale: np.ndarray
    unit: np.ndarray | None
    lo: int


def requantization(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(half, scale) of a requantization by `shift` bits (<= 0: exact multiply by 2^-shift)."""
    return ldexp(np.where(shift > 0, 1.0, 0.0), shift - 1), ldexp(1.0, -shift)


def integer_weights(path: str, kernel, bias, in_exp, in_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weight, bias, f): an HWIO kernel and its bias as integers whose accumulator, on inputs at
    exponent `in_exp` (per input channel, or one) with |x| <= in_max, is at exponent f per output
    channel; |w| <= 2^15 - 1, |b| <= 2^48 and every accumulator below 2^52 (f lowered where the
    static bound is exceeded)."""
    scaled = ldexp(np.asarray(kernel, np.float64), -np.asarray(in_exp)[..., None])
    bias = np.asarray(bias, np.float64)
    f = np.minimum(pow2_exponent(np.abs(scaled).max(axis=(0, 1, 2)), WEIGHT_MAX),
                   pow2_exponent(np.abs(bias), 2.0 ** 48))
    for _ in range(64):
        weight, b = np.round(ldexp(scaled, f)), np.round(ldexp(bias, f))
        reach = np.abs(weight).sum(axis=(0, 1, 2)) * in_max + np.abs(b)
        if np.all(reach <= EXACT_MAX):
            return weight, b, f
        f = np.where(reach > EXACT_MAX, f - 1, f)
    raise IntegerizationError(f"{path}: no weight scale keeps the accumulator below 2^52")


def _int_layer(layer: Layer, p: dict, in_exp: np.ndarray, in_max: float,
               target: np.ndarray | None) -> tuple[IntLayer, np.ndarray | None]:
    """The integer layer and the exponents of its output (None for the aggregation's head)."""
    weight, b, f = integer_weights(layer.path, p["kernel"], p["bias"], in_exp, in_max)
    if target is None:
        return IntLayer(layer, weight, b, *requantization(f - LATENT_EXPONENT), ldexp(1.0, -f), -MEAN_MAX), None
    out_exp = np.minimum(target, f)
    return IntLayer(layer, weight, b, *requantization(f - out_exp), None, 0 if layer.relu else -ACT_MAX), out_exp


def _int_network(structure: Structure, params: dict, calibration: dict, name: str, in_exp: np.ndarray,
                 in_max: float) -> tuple[tuple[IntLayer, ...], np.ndarray | None]:
    layers = []
    for layer in structure.network(name):
        target = calibration.get(layer.path)
        int_layer, out_exp = _int_layer(layer, params_at(params, layer.path), in_exp, in_max,
                                        None if target is None else np.asarray(target, np.int64))
        layers.append(int_layer)
        if out_exp is not None:
            in_exp, in_max = out_exp, float(ACT_MAX)
    return tuple(layers), out_exp


@functools.partial(jax.tree_util.register_dataclass, data_fields=["networks", "z_offset", "scale_heads"],
                   meta_fields=["structure"])
@dataclass(frozen=True)
class ContextParams:
    """The integer context networks of one package, and the passes that run them."""

    structure: Structure
    networks: dict[str, tuple[IntLayer, ...]]
    z_offset: np.ndarray  # round(medians * 2^8)
    scale_heads: np.ndarray  # every table scale but the last (index = how many lie below the scale)

    @classmethod
    def derive(cls, config: ModelConfig, params: dict, calibration: dict, scale_table: np.ndarray) -> "ContextParams":
        structure = Structure.of(config, params)
        calibration = check_calibration(calibration, config, params)
        latent = np.full(config.M, LATENT_EXPONENT, np.int64)
        networks, exps = {}, {}
        networks["h_s"], exps["side"] = _int_network(
            structure, params, calibration, "h_s", np.full(config.N, LATENT_EXPONENT, np.int64), LATENT_MAX)
        for k in range(len(structure.groups)):
            g = structure.groups[k]
            inputs = []
            if k > 0:
                seen = sum(x.shape[-1] for x in structure.channel_input([np.zeros(c) for c in structure.groups[:k]]))
                name = f"scctx_{k}/channel_context"
                networks[name], channel_exp = _int_network(structure, params, calibration, name, latent[:seen], LATENT_MAX)
                inputs.append(channel_exp)
            name = f"scctx_{k}/context_prediction"
            networks[name], spatial_exp = _int_network(structure, params, calibration, name, latent[:g], LATENT_MAX)
            aggregation_in = np.concatenate([spatial_exp, *inputs, exps["side"]])
            name = f"scctx_{k}/entropy_parameters"
            networks[name], _ = _int_network(structure, params, calibration, name, aggregation_in, float(ACT_MAX))
        medians = np.asarray(bottleneck_medians(params), np.float64)
        return cls(structure, networks, np.round(ldexp(medians, LATENT_EXPONENT)),
                   np.asarray(scale_table, np.float64)[:-1])

    def runner(self, backend: str = "jax") -> "_IntRunner":
        if backend not in BACKENDS:
            raise IntegerizationError(f"unknown backend {backend!r} for context models; choose one of {BACKENDS}")
        return _IntRunner(self, backend)


# --- backends: one op set over jax.numpy (jitted or eager) or NumPy ------------------------------

def np_conv(x: np.ndarray, w: np.ndarray, transpose: bool, stride: int) -> np.ndarray:
    """float64 NHWC x HWIO convolution, padding k // 2 (PyTorch's ConvTranspose2d rule with
    output padding stride - 1 when transposed), tap by tap."""
    n, h, wd, _ = x.shape
    k, p = w.shape[0], w.shape[0] // 2
    if not transpose:
        ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        out = np.zeros((n, ho, wo, w.shape[3]))
        for dy, dx in itertools.product(range(k), range(k)):
            out += xp[:, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride] @ w[dy, dx]
        return out
    ho, wo = h * stride, wd * stride
    full = np.zeros((n, max(stride * (h - 1) + k, p + ho), max(stride * (wd - 1) + k, p + wo), w.shape[3]))
    for dy, dx in itertools.product(range(k), range(k)):
        full[:, dy:dy + stride * (h - 1) + 1:stride, dx:dx + stride * (wd - 1) + 1:stride] += x @ w[dy, dx]
    return full[:, p:p + ho, p:p + wo]


def _dot_conv(x, w, stride: int, pad: tuple[int, int]):
    """Correlation of x padded by `pad` on both axes, as one float64 matrix product per kernel
    row: XLA CPU runs float64 convolutions about 15x slower than these products."""
    k = w.shape[0]
    xp = jnp.pad(x, ((0, 0), pad, pad, (0, 0)))
    ho, wo = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    out = 0.0
    for dy in range(k):
        rows = xp[:, dy:dy + stride * (ho - 1) + 1:stride]
        taps = jnp.concatenate([rows[:, :, dx:dx + stride * (wo - 1) + 1:stride] for dx in range(k)], axis=-1)
        out = out + taps @ w[dy].reshape(-1, w.shape[-1])
    return out


def jax_conv(x, w, transpose: bool, stride: int):
    if transpose:  # the sub-pixel form: one stride-1 correlation, then depth-to-space
        left, window, _ = subpixel_taps(w.shape[0], stride, w.shape[0] // 2)
        return depth_to_space(_dot_conv(x, subpixel_kernel(w, stride), 1, (left, window - 1 - left)), stride)
    return _dot_conv(x, w, stride, (w.shape[0] // 2,) * 2)


@dataclass(frozen=True)
class _Ops:
    xp: object
    conv: Callable

    def searchsorted(self, table, values):
        return self.xp.searchsorted(table, values, side="left")


_NUMPY, _JAX = _Ops(np, np_conv), _Ops(jnp, jax_conv)


def requantize(ops: _Ops, acc, half, scale, lo: float, hi: float):
    """clip(floor((acc + half) * scale), lo, hi): exact on float64 integers below 2^53, scale a
    power of two."""
    return ops.xp.clip(ops.xp.floor((acc + half) * scale), lo, hi)


def _net(ops: _Ops, layers: tuple[IntLayer, ...], x):
    for layer in layers:
        acc = ops.conv(x, layer.weight, layer.layer.transpose, layer.layer.stride) + layer.bias
        x = acc if layer.unit is not None else requantize(ops, acc, layer.half, layer.scale, layer.lo, ACT_MAX)
    return x


def _int_side(ops, params: ContextParams, z_symbols):
    xp = ops.xp
    z = xp.clip(z_symbols, -SYMBOL_MAX, SYMBOL_MAX) * 2.0 ** LATENT_EXPONENT + params.z_offset
    return _net(ops, params.networks["h_s"], z)


def _int_channel_base(ops, params: ContextParams, k: int, decoded: tuple, side):
    """(anchor, non-anchor) halves of [channel context of the groups decoded before, side]."""
    xp = ops.xp
    if k:
        channel = _net(ops, params.networks[f"scctx_{k}/channel_context"], xp.concatenate(decoded, axis=-1))
        side = xp.concatenate([channel, side], axis=-1)
    return split_checkerboard(side, xp)


def _int_spatial(ops, params: ContextParams, k: int, anchors):
    """The spatial context at the non-anchors of a group's decoded anchors."""
    xp = ops.xp
    full = merge_checkerboard(anchors, xp.zeros_like(anchors), xp)
    return split_checkerboard(_net(ops, params.networks[f"scctx_{k}/context_prediction"], full), xp)[1]


def _int_parameters(ops, params: ContextParams, k: int, spatial, base):
    """(table index, means at 2^-8) of one pass from [spatial context, base]."""
    xp = ops.xp
    head = params.networks[f"scctx_{k}/entropy_parameters"][-1]
    acc = _net(ops, params.networks[f"scctx_{k}/entropy_parameters"], xp.concatenate([spatial, base], axis=-1))
    scaled = acc * head.unit
    means = requantize(ops, acc, head.half, head.scale, -MEAN_MAX, MEAN_MAX)
    g = acc.shape[-1] // 2
    first, second = (slice(0, g), slice(g, 2 * g)) if params.structure.means_first else (slice(g, 2 * g), slice(0, g))
    return ops.searchsorted(params.scale_heads, scaled[..., second]), means[..., first]


def latent(symbols, means) -> np.ndarray:
    """y_hat at 2^-8 as the context networks see it (symbols clamped); NumPy, exact."""
    return np.clip(np.asarray(symbols, np.float64), -SYMBOL_MAX, SYMBOL_MAX) * 2.0 ** LATENT_EXPONENT + means


_STEPS = {"side": _int_side, "channel_base": _int_channel_base, "spatial": _int_spatial,
          "parameters": _int_parameters}


@functools.lru_cache(maxsize=None)
def _jitted(step: str):
    """A step jitted once per process; XLA compiles it once per network structure and shape
    (the weights are arguments, the group number is static)."""
    return jax.jit(functools.partial(_STEPS[step], _JAX), static_argnums=() if step == "side" else (1,))


class _IntRunner:
    """The integer passes of one package on one backend; arrays are float64 integers."""

    def __init__(self, params: ContextParams, backend: str):
        self.params, self.backend = params, backend

    def _call(self, step: str, *args):
        if self.backend == "numpy":
            return _STEPS[step](_NUMPY, *args)
        with jax.enable_x64(True):
            if self.backend == "jax":
                out = _jitted(step)(*args)
            else:
                out = _STEPS[step](_JAX, *args)
            return jax.tree_util.tree_map(np.asarray, out)

    def side(self, z_symbols):
        return self._call("side", self.params, np.asarray(z_symbols, np.float64))

    def base(self, k, decoded, side):
        return self._call("channel_base", self.params, k, tuple(self.params.structure.channel_input(decoded)), side)

    def parameters(self, k, spatial, base):
        return self._call("parameters", self.params, k, spatial, base)

    def spatial(self, k, anchors):
        return self._call("spatial", self.params, k, anchors)

    latent = staticmethod(latent)


class _FloatRunner:
    """The same passes on the float model in NumPy (calibration), recording every activation's
    peak."""

    def __init__(self, structure: Structure, params: dict):
        self.structure, self.peaks = structure, {}
        self.params = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
        self.names = structure.calibrated()

    def _net(self, name: str, x, positions: str | None = None):
        for layer in self.structure.network(name):
            p = params_at(self.params, layer.path)
            x = np_conv(x, p["kernel"], layer.transpose, layer.stride) + p["bias"]
            if layer.relu:
                x = np.maximum(x, 0.0)
            if layer.path in self.names:
                seen = split_checkerboard(x, np)[1] if positions == "non-anchors" else x
                peak = np.abs(seen).max(axis=(0, 1, 2))
                self.peaks[layer.path] = np.maximum(self.peaks.get(layer.path, 0.0), peak)
        return x

    def side(self, z_hat):
        return self._net("h_s", np.asarray(z_hat, np.float64))

    def base(self, k, decoded, side):
        if k:
            channel = self._net(f"scctx_{k}/channel_context", np.concatenate(self.structure.channel_input(decoded), -1))
            side = np.concatenate([channel, side], axis=-1)
        return split_checkerboard(side, np)

    def parameters(self, k, spatial, base):
        first, second = np.split(self._net(f"scctx_{k}/entropy_parameters", np.concatenate([spatial, base], -1)), 2, -1)
        return (second, first) if self.structure.means_first else (first, second)

    def latent(self, symbols, means):
        return symbols + means

    def spatial(self, k, anchors):
        full = merge_checkerboard(anchors, np.zeros_like(anchors), np)
        return split_checkerboard(self._net(f"scctx_{k}/context_prediction", full, "non-anchors"), np)[1]


SymbolSource = Callable[[int, bool, np.ndarray, np.ndarray], np.ndarray]


def run_passes(structure: Structure, runner, z, symbols_for: SymbolSource):
    """Every group's two checkerboard passes (anchors, then the rest), in coding order.

    `symbols_for(group, anchors, table_index_or_scales, means)` gives the pass's symbols (the
    encoder rounds y around the means, the decoder reads the stream). Returns per group
    (symbols, means) of both passes merged, as the runner holds them."""
    side = runner.side(z)
    decoded, out = [], []
    for k in range(len(structure.groups)):
        base_a, base_n = runner.base(k, decoded, side)
        no_context = np.zeros((*np.shape(base_a)[:-1], 2 * structure.groups[k]))  # anchors have no spatial context
        index_a, means_a = runner.parameters(k, no_context, base_a)
        symbols_a = symbols_for(k, True, index_a, means_a)
        latent_a = runner.latent(symbols_a, means_a)
        index_n, means_n = runner.parameters(k, runner.spatial(k, latent_a), base_n)
        symbols_n = symbols_for(k, False, index_n, means_n)
        decoded.append(merge_checkerboard(latent_a, runner.latent(symbols_n, means_n), np))
        out.append((merge_checkerboard(np.asarray(symbols_a), np.asarray(symbols_n), np),
                    merge_checkerboard(np.asarray(means_a), np.asarray(means_n), np)))
    return out
