"""From a float model to an integer graph: calibration, then lowering of the decoder.

Scales are powers of two per channel: an integer tensor t means t * 2^-e[c]. Weights are int8
per output channel; the input tensor's per-channel exponents are folded into them, so every
accumulator channel has one exponent and every requantization is "add 2^(n-1), shift right by
n, clamp" with n >= 0. Activations are int8 in [-127, 127] ([0, 127] after ReLU) at the
calibrated exponent, coarsened where the accumulator is coarser (a finer grid would add nothing).

Decoder graph (names of the tensors the codec uses):
- `z_symbols` -> `z` (int8) -> h_s -> `scale_index` (table index per latent) [and `means`
  (int32 at the exponents of `y`) for mean-scale models];
- `y_symbols` [+ `means`] -> `y` (int8) -> g_s -> `pixels` (uint8, round(255 * x_hat)).
Latent inputs are symbols << k + offset with k >= 0, so the decoded latent (symbol + median or
mean) is exact at 2^-k; medians are rounded to that grid (the package stores the rounded ones).

Inverse GDN in integer form (y = x * N(P), P = beta + sum_j gamma[c, j] * a_j):
- a = |x| (simplified) or requantize(x * x, 7) (GDN), int8;
- simplified: P16 = requantize(a (*) gamma + beta) to [0, 32767] (a 1x1 int8 convolution with beta
  as its int32 bias: a GEMM and its requantization, both for VTA), N(P) = P16;
- GDN: G16 = requantize(a (*) gamma) to [0, 32767] at the calibrated exponent of P's peak (the
  GEMM and its requantization, for VTA, as before but without beta), then on the host
  P = (G16 << 8) + round(beta * 2^(e + 8)) (requantize, add_channel) and N(P) = isqrt(P << t),
  t in {6, 7} making the exponent even. Folded into an int16 pool, a small trained beta rounded
  to 0 or 1 unit (a bound of 2.6e-01, and QAT's root gradient at 0 blew up); 8 bits finer it
  keeps its value, and it is at least 1 unit, so N(P) > 0. P < 2^24 stays exact in float32
  (QAT's twin) and P << t < 2^31;
- y = requantize(x * N(P)).
The exporter records a static bound on N(P)'s relative error per layer in the graph's meta (the
rounding of beta and isqrt's floor); `jaxlic.quant.gdn_error` measures the whole error.

The same code runs on traced parameters (QAT: integer-valued float32 constants with
straight-through rounding) and once at export (constants cast to int8/int32).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.entropy.factorized import bottleneck_medians, y_offset
from jaxlic.errors import IntegerizationError
from jaxlic.models import ModelConfig, build_model
from jaxlic.models.layers import Activation
from jaxlic.nn import GDN, Conv, ConvTranspose
from jaxlic.nn.gdn import effective
from jaxlic.quant import intops
from jaxlic.quant.fakequant import ACT_MAX, MAX_EXPONENT, POOL_MAX, exp2i, pow2_exponent, quantize_weight, round_ste
from jaxlic.quant.graph import IntegerGraph, Op

LATENT_MAX_EXPONENT = 8  # latents are symbol + median/mean; 2^-8 is plenty for the offset
SYMBOL_RANGE = (-(1 << 15), (1 << 15) - 1)
LATENT_RANGE = (SYMBOL_RANGE[0] << LATENT_MAX_EXPONENT, SYMBOL_RANGE[1] << LATENT_MAX_EXPONENT)
SQUARE_SHIFT = 7  # x * x <= 127^2 -> [0, 126]
LEAKY_SHIFT = 7  # leaky ReLU slope 2^-7 (the float model's 0.01 has no shift form)
PIXEL_RANGE = (0, 255)


@dataclass(frozen=True)
class Calibration:
    """Per-channel power-of-two exponents of every activation the graph quantizes."""

    exponents: dict[str, tuple[int, ...]]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.exponents:
            raise IntegerizationError(f"calibration has no range for tensor {name!r} (calibrated for another model?)")
        return np.asarray(self.exponents[name], np.float32)

    def to_json(self) -> dict:
        return {k: list(v) for k, v in sorted(self.exponents.items())}

    @classmethod
    def from_json(cls, data: dict | str) -> "Calibration":
        data = json.loads(data) if isinstance(data, str) else data
        return cls({str(k): tuple(int(e) for e in v) for k, v in data.items()})


def _bound(config: ModelConfig, params: dict):
    return build_model(config).bind({"params": params})


def _medians(params: dict) -> jax.Array:
    return jax.lax.stop_gradient(bottleneck_medians(params))


CLIP_CANDIDATES = 4  # MSE-optimal clipping tries the max-based exponent and 3 finer ones


def calibrate(config: ModelConfig, params: dict, batches: Iterable[np.ndarray], clipping: str = "mse") -> Calibration:
    """Run the float model on `batches` (NHWC in [0, 1]) and choose a power-of-two exponent for
    every channel of every decoder activation.

    clipping "max": the largest exponent that keeps the channel's peak inside int8. "mse"
    (default): of that exponent and the next `CLIP_CANDIDATES - 1` finer ones, the one with the
    least squared error of the int8 activation (rounded and clamped) over the batches: a finer
    grid clips the rare peaks and rounds everything else finer. Activation rounding at the
    max-based exponents was what post-training quantization lost on trained models
    (experiments/quant_ablation.py, docs/quantization.md); the latents (y, z: clamping a latent
    is a decoding error, not noise) and GDN pools (int16) keep the max rule.
    """
    if clipping not in ("max", "mse"):
        raise IntegerizationError(f"clipping must be 'max' or 'mse', got {clipping!r}")
    activations = jax.jit(lambda x: decoder_activations(config, params, x))

    @jax.jit
    def peak(value):
        return jnp.max(jnp.abs(value), axis=(0, 1, 2))

    @jax.jit
    def clip_errors(value, exponent):
        """Squared error per (candidate, channel) of int8 quantization at exponent + d."""
        scale = exp2i(exponent[None, :] + jnp.arange(CLIP_CANDIDATES, dtype=jnp.float32)[:, None])
        flat = value.reshape(-1, value.shape[-1])
        errors = [jnp.sum((jnp.clip(jnp.round(flat * s), -ACT_MAX, ACT_MAX) / s - flat) ** 2, axis=0) for s in scale]
        return jnp.stack(errors)

    batches = [jnp.asarray(batch, jnp.float32) for batch in batches]
    if not batches:
        raise IntegerizationError("calibration needs at least one batch of images")
    peaks: dict[str, np.ndarray] = {}
    for batch in batches:
        for name, value in activations(batch).items():
            peaks[name] = np.maximum(peaks.get(name, 0.0), np.asarray(peak(value), np.float64))
    exponents, clipped = {}, [n for n in peaks if clipping == "mse" and n not in ("y", "z") and not n.endswith(".pool")]
    for name, p in peaks.items():
        if name in ("y", "z"):
            exponents[name] = pow2_exponent(p, ACT_MAX, 0, LATENT_MAX_EXPONENT)
        else:
            exponents[name] = pow2_exponent(p, POOL_MAX if name.endswith(".pool") else ACT_MAX)
    if clipped:
        errors = {name: 0.0 for name in clipped}
        for batch in batches:
            seen = activations(batch)
            for name in clipped:
                errors[name] = errors[name] + np.asarray(clip_errors(seen[name], jnp.asarray(exponents[name], jnp.float32)))
        for name in clipped:
            finer = np.argmin(errors[name], axis=0)  # ties (e.g. an all-zero channel) keep the max rule
            exponents[name] = np.minimum(exponents[name] + finer, MAX_EXPONENT)
    return Calibration({name: tuple(int(v) for v in e) for name, e in exponents.items()})


def decoder_activations(config: ModelConfig, params: dict, x: jax.Array) -> dict[str, jax.Array]:
    """The float model's decoder tensors on images `x`: the rounded latents (`y`, `z`) and every
    hyper-synthesis and synthesis layer's output (`g_s_3`, ...) and GDN pool (`g_s_3.pool`)."""
    model = _bound(config, params)
    seen = {}
    y = model.analysis(x)
    means = None
    if model.hyper:
        z = model.hyper_analysis(y)
        med = _medians(params)
        z_hat = jnp.round(z - med) + med
        seen["z"] = z_hat
        h = _float_walk("h_s", model.h_s, z_hat, seen)
        if model.predicts_means:
            means = jnp.split(h, 2, axis=-1)[1]
    offset = y_offset(model.hyper, _medians(params), means)
    y_hat = jnp.round(y - offset) + offset
    seen["y"] = y_hat
    _float_walk("g_s", model.g_s, y_hat, seen)
    return seen


def _float_walk(prefix: str, layers, x: jax.Array, seen: dict) -> jax.Array:
    """Apply bound float layers, recording every output (and every GDN pool)."""
    for i, layer in enumerate(layers):
        if isinstance(layer, GDN):
            beta, gamma = _gdn_parameters(layer.variables["params"], layer)
            pooled = jnp.abs(x) if layer.simplified else x * x
            seen[f"{prefix}_{i}.pool"] = pooled @ gamma.T + beta
        x = layer(x)
        seen[f"{prefix}_{i}"] = x
    return x


def _gdn_parameters(p: dict, layer: GDN) -> tuple[jax.Array, jax.Array]:
    return effective(p["beta"], layer.beta_min), effective(p["gamma"])


@dataclass
class Lowered:
    """A lowered decoder: static ops, constants (integer-valued arrays) and exponents."""

    inputs: dict[str, int] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    consts: dict[str, jax.Array] = field(default_factory=dict)
    exponents: dict[str, jax.Array] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    grids: dict[str, tuple] = field(default_factory=dict)  # int8 GEMM (conv, GDN pool) -> (input exps, accumulator exps, scale)

    def emit(self, name: str, kind: str, inputs: list[str], output: str | None = None,
             attrs: dict | None = None, **consts) -> str:
        """Append an op; constants are stored as `<op name>.<role>`. Returns the output name."""
        output = output or name
        refs = {}
        for role, value in consts.items():
            refs[role] = f"{name}.{role}"
            self.consts[refs[role]] = value
        self.ops.append(Op(name, kind, tuple(inputs), output, attrs or {}, refs))
        self.channels[output] = consts["weight"].shape[-1] if "weight" in consts else self.channels[inputs[0]]
        return output

    def requantize(self, name: str, source: str, shift, lo: int, hi: int, output: str | None = None) -> str:
        """requantize with one shift per channel (a scalar is broadcast)."""
        shift = jnp.broadcast_to(jnp.asarray(shift, jnp.float32), (self.channels[source],))
        return self.emit(name, "requantize", [source], output, {"lo": lo, "hi": hi}, shift=shift)


def lower_decoder(config: ModelConfig, params: dict, calibration: Calibration,
                  scale_table: np.ndarray | None = None, synthesis: bool = True) -> Lowered:
    """Lower hyper-synthesis and synthesis of a zoo model (works on traced parameters); with
    `synthesis` False, only the hyper phase's scales (the entropy graph of float packages).

    With `scale_table` (export), hyperprior graphs output `scale_index`; without it (QAT) the
    scale accumulator `scales` is the output, with its exponents in `exponents["scales"]`.
    """
    model = _bound(config, params)
    g = Lowered()
    means = _lower_hyper(g, config, model, params, calibration, scale_table, synthesis) if model.hyper else None
    if not synthesis:
        return g
    offset = None if model.hyper else _medians(params)
    y_exp = calibration["y"]
    y = _latent_input(g, "y", config.M, y_exp, offset, means)
    layers = list(model.g_s)
    x, x_exp = _lower_layers(g, "g_s", layers[:-1], params, y, jnp.asarray(y_exp), calibration)
    _pixels(g, f"g_s_{len(layers) - 1}", layers[-1], params, x, x_exp)
    return g


def _lower_hyper(g: Lowered, config: ModelConfig, model, params: dict, calibration: Calibration,
                 scale_table: np.ndarray | None, with_means: bool) -> str | None:
    """z symbols -> h_s -> scale index (or accumulator) [and means]; returns the means tensor."""
    z_exp = calibration["z"]
    z = _latent_input(g, "z", config.N, z_exp, _medians(params))
    layers = list(model.h_s)
    last = max(i for i, layer in enumerate(layers) if isinstance(layer, (Conv, ConvTranspose)))
    for i, layer in enumerate(layers[last + 1:], last + 1):
        # A ReLU on the scales changes no table index: every table scale is positive.
        if not (isinstance(layer, Activation) and layer.kind == "relu"):
            raise IntegerizationError(f"layer h_s_{i}: only a ReLU may follow the last hyper-synthesis convolution")
    h, h_exp = _lower_layers(g, "h_s", layers[:last], params, z, jnp.asarray(z_exp), calibration)
    return _hyper_outputs(g, config, f"h_s_{last}", layers[last], params[f"h_s_{last}"], h, h_exp,
                          calibration, scale_table, model.predicts_means, with_means)


def _latent_input(g: Lowered, name: str, channels: int, k: np.ndarray, medians=None, means: str | None = None) -> str:
    """symbols -> clamp to int16 -> << k -> + offset (rounded median, or the means) -> int8."""
    source = f"{name}_symbols"
    g.inputs[source] = g.channels[source] = channels
    t = g.requantize(f"{name}.symbols", source, 0, *SYMBOL_RANGE)
    t = g.requantize(f"{name}.scaled", t, -k, *LATENT_RANGE)
    if means is not None:
        t = g.emit(f"{name}.offset", "add", [t, means])
    elif medians is not None:
        t = g.emit(f"{name}.offset", "add_channel", [t], addend=jnp.round(medians * exp2i(k)))
    g.exponents[name] = jnp.asarray(k)
    return g.requantize(f"{name}.clamp", t, 0, -ACT_MAX, ACT_MAX, output=name)


def _lower_layers(g: Lowered, prefix: str, layers, params: dict, x: str, x_exp: jax.Array,
                  calibration: Calibration) -> tuple[str, jax.Array]:
    """Lower conv(+activation) and inverse-GDN layers; returns the last tensor and its exponents."""
    i = 0
    while i < len(layers):
        layer, name = layers[i], f"{prefix}_{i}"
        if isinstance(layer, (Conv, ConvTranspose)):
            act = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], Activation) else None
            out = f"{prefix}_{i + 1}" if act is not None else name
            x, x_exp = _conv(g, name, layer, params[name], x, x_exp, calibration[out], act, out)
            i += 2 if act is not None else 1
        elif isinstance(layer, GDN):
            if not layer.inverse:
                raise IntegerizationError(f"layer {name}: forward GDN needs a division and only appears in encoders; "
                                          "the integer graph covers decoders (inverse GDN)")
            x, x_exp = _igdn(g, name, layer, params[name], x, x_exp, calibration)
            i += 1
        elif isinstance(layer, Activation):
            raise IntegerizationError(f"layer {name}: activation {layer.kind!r} does not follow a convolution")
        else:
            raise IntegerizationError(f"layer {name}: {type(layer).__name__} has no integer form")
    return x, x_exp


def _conv_op(g: Lowered, name: str, layer, x: str, weight, bias, output: str | None = None) -> str:
    k, s = layer.kernel_size, layer.stride
    if isinstance(layer, ConvTranspose):
        kind, attrs = "conv2d_transpose", {"stride": s, "padding": k // 2, "output_padding": s - 1}
    else:
        kind, attrs = "conv2d", {"stride": s, "padding": k // 2}
    return g.emit(name, kind, [x], output or f"{name}.acc", attrs, weight=weight, bias=bias)


def _quantized(g: Lowered, name: str, kernel, bias, x_exp, high, scale: float = 1.0):
    """(integer weight, integer bias, accumulator exponents) of a conv layer; its weight grid is
    recorded in `g.grids` (weight [t, j, c] is an integer times 2^(x_exp[j] - f[c]) / scale)."""
    weight, f = quantize_weight(kernel * scale, x_exp, bias * scale, high)
    g.grids[name] = (x_exp, f, scale)
    return weight, round_ste(bias * scale * exp2i(f)), f


def _conv(g: Lowered, name: str, layer, p: dict, x: str, x_exp, target: np.ndarray,
          act: Activation | None, out: str) -> tuple[str, jax.Array]:
    if act is not None and act.kind not in ("relu", "leaky_relu"):
        raise IntegerizationError(f"layer {out}: activation {act.kind!r} has no integer form (known: relu, leaky_relu)")
    weight, bias, f = _quantized(g, name, p["kernel"], p["bias"], x_exp, target + 31)
    acc = _conv_op(g, name, layer, x, weight, bias)
    if act is not None and act.kind == "leaky_relu":
        acc = g.emit(f"{out}.leaky", "leaky_relu", [acc], attrs={"shift": LEAKY_SHIFT})
    lo = 0 if act is not None and act.kind == "relu" else -ACT_MAX
    e_out = jnp.minimum(target, f)
    g.exponents[out] = e_out
    return g.requantize(f"{out}.requantize", acc, f - e_out, lo, ACT_MAX, output=out), e_out


BETA_SHIFT = 8  # GDN: beta joins the pool 8 bits below P16's unit, so P < 2^24
ROOT_SHIFT = 7  # P << 7 < 2^31: isqrt's pre-shift, 6 where the exponent of P is even


def _igdn(g: Lowered, name: str, layer: GDN, p: dict, x: str, x_exp, calibration: Calibration):
    beta, gamma = _gdn_parameters(p, layer)
    pool_target = calibration[f"{name}.pool"]
    if layer.simplified:
        a = g.emit(f"{name}.abs", "abs", [x])
        weight, pool_exp = quantize_weight(gamma.T[None, None], x_exp, beta, pool_target + 31)
        g.grids[f"{name}.pool"] = (x_exp, pool_exp, 1.0)
        pool = g.emit(f"{name}.pool", "conv2d", [a], f"{name}.pool_acc", {"stride": 1, "padding": 0},
                      weight=weight, bias=round_ste(beta * exp2i(pool_exp)))
        g.exponents[pool] = pool_exp
        norm_exp = jnp.minimum(pool_target, pool_exp)
        norm = g.requantize(f"{name}.pool16", pool, pool_exp - norm_exp, 0, POOL_MAX)
        g.exponents[norm] = norm_exp
        pooled = norm
    else:
        a = g.requantize(f"{name}.pooled", g.emit(f"{name}.square", "square", [x]), SQUARE_SHIFT, 0, ACT_MAX)
        weight, pool_exp = quantize_weight(gamma.T[None, None], 2 * x_exp - SQUARE_SHIFT, None, pool_target + 31)
        g.grids[f"{name}.pool"] = (2 * x_exp - SQUARE_SHIFT, pool_exp, 1.0)
        acc = g.emit(f"{name}.pool", "conv2d", [a], f"{name}.pool_acc", {"stride": 1, "padding": 0},
                     weight=weight, bias=jnp.zeros_like(beta))
        g.exponents[acc] = pool_exp
        e16 = jnp.minimum(pool_target, pool_exp)
        gamma16 = g.requantize(f"{name}.pool16", acc, pool_exp - e16, 0, POOL_MAX)
        g.exponents[gamma16] = e16
        e_pool = e16 + BETA_SHIFT
        fine = g.requantize(f"{name}.pool23", gamma16, -BETA_SHIFT, 0, POOL_MAX << BETA_SHIFT)
        g.exponents[fine] = e_pool
        # beta <= the calibrated peak < 2^15 units of P16, so P < 2^24; never 0, so N(P) > 0.
        pooled = g.emit(f"{name}.beta", "add_channel", [fine],
                        addend=jnp.clip(round_ste(beta * exp2i(e_pool)), 1, POOL_MAX << BETA_SHIFT))
        g.exponents[pooled] = e_pool
        pre = ROOT_SHIFT - 1 + jnp.mod(e_pool, 2)
        norm = g.emit(f"{name}.sqrt", "isqrt", [pooled], pre_shift=pre)
        norm_exp = (e_pool + pre) / 2
        g.exponents[norm] = norm_exp
    prod = g.emit(f"{name}.mul", "mul", [x, norm])
    prod_exp = x_exp + norm_exp
    e_out = jnp.minimum(calibration[name], prod_exp)
    g.exponents[name] = e_out
    g.meta.setdefault("igdn", {})[name] = {"simplified": layer.simplified, "pool": pooled, "norm": norm}
    return g.requantize(f"{name}.requantize", prod, prod_exp - e_out, -ACT_MAX, ACT_MAX, output=name), e_out


def _pixels(g: Lowered, name: str, layer, params: dict, x: str, x_exp) -> None:
    """Last synthesis layer: weights * 255, so the requantized output is round(255 * x_hat)."""
    if not isinstance(layer, (Conv, ConvTranspose)):
        raise IntegerizationError(f"layer {name}: a synthesis must end in a convolution, got {type(layer).__name__}")
    weight, bias, f = _quantized(g, name, params[name]["kernel"], params[name]["bias"], x_exp, 31.0, 255.0)
    acc = _conv_op(g, name, layer, x, weight, bias)
    g.requantize(f"{name}.requantize", acc, f, *PIXEL_RANGE, output="pixels")
    g.exponents["pixels"] = jnp.zeros(layer.features)
    g.outputs.append("pixels")


def _hyper_outputs(g: Lowered, config: ModelConfig, name: str, layer, p: dict, x: str, x_exp,
                   calibration: Calibration, scale_table: np.ndarray | None, split: bool,
                   with_means: bool = True) -> str | None:
    """The last h_s convolution: the scale accumulator (-> table index) and, for mean-scale
    models (which predict scales and means in one convolution), the means at the exponents of y."""
    M = config.M
    weight, bias, f = _quantized(g, f"{name}.scales", p["kernel"][..., :M], p["bias"][:M], x_exp, 31.0)
    _conv_op(g, f"{name}.scales" if split else name, layer, x, weight, bias, output="scales")
    g.exponents["scales"] = f
    if scale_table is not None:
        # scale_int * 2^-f > t  <=>  scale_int > floor(t * 2^f) for t = float32(table[j]); values
        # beyond int32 are clipped to 2^31 - 128 (the largest float32 below 2^31), which no
        # accumulator exceeds. These integers, not the float table, define the index.
        scaled = jnp.asarray(scale_table[:-1], jnp.float32)[None, :] * exp2i(f)[:, None]
        thresholds = jnp.clip(jnp.floor(scaled), -(2.0**31), 2.0**31 - 128)
        g.emit("scale_index", "scale_index", ["scales"], thresholds=thresholds)
        g.outputs.append("scale_index")
    else:
        g.outputs.append("scales")
    if not (split and with_means):
        return None
    k = jnp.asarray(calibration["y"])
    weight, bias, f = _quantized(g, f"{name}.means", p["kernel"][..., M:], p["bias"][M:], x_exp, k + 31)
    acc = _conv_op(g, f"{name}.means", layer, x, weight, bias)
    g.exponents["means"] = k
    g.outputs.append("means")
    return g.requantize("means.requantize", acc, f - k, *LATENT_RANGE, output="means")


def export_graph(config: ModelConfig, params: dict, calibration: Calibration, scale_table: np.ndarray,
                 synthesis: bool = True) -> IntegerGraph:
    """The validated integer graph of a model's decoder (or of its hyper phase alone):
    `lower_decoder` evaluated once under jit (one compilation instead of hundreds of eager ops),
    then cast to integers."""
    box = {}

    def constants(p):
        box["lowered"] = lowered = lower_decoder(config, p, calibration, scale_table, synthesis)
        return lowered.consts, lowered.exponents

    consts, exponents = jax.jit(constants)(params)
    lowered = box["lowered"]
    lowered.consts, lowered.exponents = consts, exponents
    return to_graph(lowered, config)


def to_graph(lowered: Lowered, config: ModelConfig) -> IntegerGraph:
    """Cast a lowered decoder (evaluated on concrete parameters) into a validated IntegerGraph."""
    dtypes = {}
    for op in lowered.ops:
        for role, cname in op.consts.items():
            dtypes[cname] = np.int8 if role == "weight" else np.int32
    constants = {}
    for cname, value in lowered.consts.items():
        array = np.asarray(value, np.float64)
        info = np.iinfo(dtypes[cname])
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) or array.min(initial=0) < info.min \
                or array.max(initial=0) > info.max:
            layer = cname.rsplit(".", 1)[0]
            raise IntegerizationError(f"layer {layer}: constant {cname} has no {np.dtype(dtypes[cname])} form "
                                      "(non-finite parameters or a range no shift can reach)")
        constants[cname] = array.astype(dtypes[cname])
    exponents = {name: tuple(int(v) for v in np.asarray(e, np.float64)) for name, e in lowered.exponents.items()}
    meta = {"model": json.loads(config.to_json()), "igdn": _igdn_error_bounds(lowered, constants)}
    return IntegerGraph(dict(lowered.inputs), tuple(lowered.ops), constants, tuple(lowered.outputs), exponents, meta)


def _igdn_error_bounds(lowered: Lowered, constants: dict[str, np.ndarray]) -> dict:
    """A static bound on the relative error of the integer normalizer N(P) per inverse-GDN layer,
    from beta's rounding and the root's floor (not the quantization of a and gamma).

    P >= Pmin, the integer P where a = 0, which rounds beta by at most half a unit. Simplified:
    N = P16, Pmin = requantize(bias), relative error <= 0.5 / Pmin. GDN: Pmin = the beta addend,
    N = isqrt(P << t) with |isqrt(n) - sqrt(n)| < 1: <= 0.25 / Pmin + 1 / isqrt(Pmin << t).
    """
    bounds = {}
    for name, info in lowered.meta.get("igdn", {}).items():
        if info["simplified"]:
            p_min = intops.requantize(constants[f"{name}.pool.bias"], constants[f"{info['pool']}.shift"], 0, POOL_MAX)
            bound = 0.5 / np.maximum(p_min.astype(np.int64), 1)
        else:
            p_min = np.maximum(constants[f"{info['pool']}.addend"].astype(np.int64), 1)
            root = intops.isqrt((p_min << constants[f"{info['norm']}.pre_shift"]).astype(np.int32))
            bound = 0.25 / p_min + 1.0 / np.maximum(root, 1)
        bounds[name] = {"normalizer": "P" if info["simplified"] else "sqrt(P)", "pool": info["pool"],
                        "norm": info["norm"], "max_relative_error": float(bound.max())}
    return bounds
