"""Quantization-aware training: a Task for the one train step and the same Trainer.

The forward pass keeps the encoder float and runs the decoder (hyper-synthesis and synthesis)
as the fake-quantized twin of the integer graph it will be exported to: the graph is lowered
from the current parameters inside the step (per-channel power-of-two int8 weights with
straight-through rounding) and executed on integer-valued float32 tensors, with the activation
exponents fixed by calibration. Rates use additive noise as in float training; the decoder sees
straight-through rounded latents, exactly what it will see from a bitstream.

With `fake_quant=False` the same recipe (rounded latents into a float decoder) fine-tunes the
float model: the control that isolates what quantization costs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.codec.package import ModelPackage, build_tables
from jaxlic.entropy.factorized import bottleneck_medians, y_offset
from jaxlic.entropy.gaussian import default_scale_table, gaussian_conditional
from jaxlic.errors import ConfigError, IntegerizationError
from jaxlic.models import ModelConfig, build_model
from jaxlic.quant.execute import run_ops
from jaxlic.quant.export import integerize
from jaxlic.quant.fakequant import exp2i, round_ste
from jaxlic.quant.lowering import Calibration, calibrate, lower_decoder
from jaxlic.train.data import Batches, ImageSet
from jaxlic.train.task import Task
from jaxlic.train.terms import LossTerm, RateDistortion


def _grid_medians(params: dict, exponents: np.ndarray) -> jax.Array:
    """Medians on the 2^-k grid of the latent input, as the integer package stores them."""
    scale = exp2i(jnp.asarray(exponents))
    return jnp.round(jax.lax.stop_gradient(bottleneck_medians(params)) * scale) / scale


class FakeQuantDecoder:
    """The decoder protocol (`jaxlic.codec.decoders.Decoder`) on the fake-quantized twin of the
    integer graph lowered from `params` (traceable; straight-through gradients): `hyper` gives
    the integer package's table indexes and means, `synthesis` its pixels (integer-valued
    float32, 0..255). For QAT's loss: `entropy_parameters` (the scales behind the indexes),
    `reconstruction` (pixels in [0, 1]) and `conv_weights` (what the watermark reads)."""

    def __init__(self, config: ModelConfig, params: dict, calibration: Calibration | Ranges):
        hyper = build_model(config).hyper
        self.graph = lower_decoder(config, params, calibration, default_scale_table() if hyper else None)
        self.medians = _grid_medians(params, calibration["z" if hyper else "y"])  # of the coded latent

    def conv_weights(self) -> dict[str, jax.Array]:
        """The integer-valued (straight-through) weights of every convolution op, by op name."""
        return {op.name: self.graph.consts[op.consts["weight"]] for op in self.graph.ops
                if op.kind in ("conv2d", "conv2d_transpose")}

    def _run(self, values: dict, outputs: list[str], mode: str = "fake") -> dict:
        return run_ops(self.graph.ops, self.graph.consts, values, outputs, mode)

    def _hyper_accumulators(self, z_symbols: jax.Array) -> dict:
        return self._run({"z_symbols": z_symbols}, ["scales"] + (["means"] if "means" in self.graph.outputs else []))

    def _means(self, out: dict) -> jax.Array | None:
        return out["means"] * exp2i(-self.graph.exponents["means"]) if "means" in out else None

    def entropy_parameters(self, z_symbols: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """(scales, means or None) of y, in latent units, differentiable."""
        out = self._hyper_accumulators(z_symbols)
        return out["scales"] * exp2i(-self.graph.exponents["scales"]), self._means(out)

    def hyper(self, z_symbols: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        out = self._hyper_accumulators(z_symbols)
        scales = jax.lax.stop_gradient(out["scales"])  # the index has no gradient
        return self._run({"scales": scales}, ["scale_index"], "int")["scale_index"], self._means(out)

    def synthesis(self, y_symbols: jax.Array, means: jax.Array | None) -> jax.Array:
        values = {"y_symbols": y_symbols}
        if means is not None:  # exact: the means are integers times 2^-e
            values["means"] = means * exp2i(self.graph.exponents["means"])
        return self._run(values, ["pixels"])["pixels"]

    def reconstruction(self, y_symbols: jax.Array, means: jax.Array | None) -> jax.Array:
        return self.synthesis(y_symbols, means) / 255.0


class _FloatDecoder:
    """The float decoder fed the same rounded latents (the fine-tuning control)."""

    def __init__(self, model, params: dict):
        self.model = model
        self.medians = jax.lax.stop_gradient(bottleneck_medians(params))

    def entropy_parameters(self, z_symbols: jax.Array):
        return self.model.hyper_synthesis(z_symbols + self.medians)

    def reconstruction(self, y_symbols: jax.Array, means: jax.Array | None) -> jax.Array:
        return self.model.synthesis(y_symbols + y_offset(self.model.hyper, self.medians, means))


class Ranges:
    """Activation exponents held as arrays (traceable, e.g. from the train state), read the way
    the lowering reads a `Calibration`."""

    def __init__(self, arrays: Mapping[str, jax.Array]):
        self.arrays = arrays

    def __getitem__(self, name: str) -> jax.Array:
        if name not in self.arrays:
            raise IntegerizationError(f"the ranges have no exponents for tensor {name!r} (ranges of another model?)")
        return jnp.asarray(self.arrays[name], jnp.float32)


def range_arrays(calibration: Calibration) -> dict[str, np.ndarray]:
    """A calibration's exponents as int32 arrays (a pytree for the train state)."""
    return {name: np.asarray(e, np.int32) for name, e in calibration.exponents.items()}


def arrays_calibration(arrays: Mapping[str, np.ndarray]) -> Calibration:
    """The `Calibration` of `range_arrays` (e.g. of the final train state's ranges)."""
    return Calibration({name: tuple(int(e) for e in np.asarray(a)) for name, a in arrays.items()})


def ranged_forward(config: ModelConfig, fake_quant: bool = True) -> Callable:
    """`forward(params, batch, rng, ranges) -> outputs` for RateDistortion, decoder as in the
    module docstring, with the activation exponents `ranges` (`range_arrays` of a calibration,
    e.g. from the train state). With fake quantization the outputs also hold
    `integer_weights` (conv op name -> the integer-valued weights the export will write), which
    watermarking reads."""
    model = build_model(config)

    def forward(params, batch, rng, ranges):
        bound = model.bind({"params": params}, rngs={"noise": rng})
        if fake_quant:
            decoder = FakeQuantDecoder(config, params, Ranges(ranges))
            return run(bound, decoder, batch) | {"integer_weights": decoder.conv_weights()}
        return run(bound, _FloatDecoder(bound, params), batch)

    def run(bound, decoder, batch):
        y = bound.analysis(batch)
        if not model.hyper:
            _, y_likelihoods = bound.entropy_bottleneck(y, "noise")
            x_hat = decoder.reconstruction(round_ste(y - decoder.medians), None)
            return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods}, "y": y}
        z = bound.hyper_analysis(y)
        _, z_likelihoods = bound.entropy_bottleneck(z, "noise")
        scales, means = decoder.entropy_parameters(round_ste(z - decoder.medians))
        _, y_likelihoods = gaussian_conditional(y, scales, means, "noise", bound.make_rng("noise"))
        y_symbols = round_ste(y - means) if means is not None else round_ste(y)
        x_hat = decoder.reconstruction(y_symbols, means)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "y": y}

    return forward


def switched_forward(config: ModelConfig) -> Callable:
    """`forward(params, batch, rng, state)`: `ranged_forward` at `state["ranges"]`, fake-quantized
    when `state["quantized"]` (a bool array) and the float control before; both give the
    `integer_weights` (so a watermark trains from the first step)."""
    fake, control = ranged_forward(config, True), ranged_forward(config, False)

    def forward(params, batch, rng, state):
        def float_decoder(p):
            weights = FakeQuantDecoder(config, p, Ranges(state["ranges"])).conv_weights()
            return control(p, batch, rng, state["ranges"]) | {"integer_weights": weights}

        return jax.lax.cond(state["quantized"], lambda p: fake(p, batch, rng, state["ranges"]), float_decoder, params)

    return forward


def make_forward(config: ModelConfig, calibration: Calibration, fake_quant: bool = True) -> Callable:
    """`forward(params, batch, rng) -> outputs`: `ranged_forward` with fixed ranges."""
    forward = ranged_forward(config, fake_quant)
    ranges = range_arrays(calibration)
    return lambda params, batch, rng: forward(params, batch, rng, ranges)


def calibration_batches(folders: tuple[str, ...] = (), batches: int = 4, batch_size: int = 8, crop: int = 256,
                        seed: int = 0) -> list[np.ndarray]:
    """A few deterministic training batches (NHWC float in [0, 1]) to calibrate ranges on."""
    source = ImageSet.from_folders(*folders, progress=False) if folders else ImageSet.default()
    stream = Batches(source, batch_size, crop, seed)
    return [stream.batch(i) for i in range(batches)]


def qat_task(package_or_params: ModelPackage | dict, calibration: Calibration | None = None,
             config: ModelConfig | None = None, fake_quant: bool = True, metric: str = "mse",
             calibration_data: tuple[str, ...] = (), extra_terms: Sequence[LossTerm] = ()) -> Task:
    """Fine-tune a trained float model with its decoder fake-quantized; finalize writes the
    integer-mode package (`model.jxlm`). `fake_quant=False` fine-tunes the float control
    (same recipe, float decoder) into a float package. Without `calibration`, ranges come from
    four batches of `calibration_data` (default: the built-in images). `extra_terms` join the
    RD term (e.g. the watermark: `jaxlic.secure.watermark.WatermarkTerm`)."""
    if isinstance(package_or_params, ModelPackage):
        config, params = package_or_params.config, package_or_params.params
    elif config is None:
        raise ConfigError("qat_task needs the model config when it is given bare parameters")
    else:
        params = package_or_params
    if calibration is None:
        calibration = calibrate(config, params, calibration_batches(calibration_data))

    def finalize(final_params, run_dir: Path) -> ModelPackage:
        package = integerize(config, final_params, calibration) if fake_quant else build_tables(config, final_params)
        package.save(run_dir / "model.jxlm")
        return package

    description = {"task": "qat" if fake_quant else "finetune", "model": json.loads(config.to_json()),
                   "metric": metric, "calibration": calibration.to_json()}
    if extra_terms:
        description["extra_terms"] = [t.describe() if hasattr(t, "describe") else t.name for t in extra_terms]
    # A copy: the train step donates its state, which must not delete the caller's arrays.
    return Task(description, lambda _seed: jax.tree.map(jnp.array, params), make_forward(config, calibration, fake_quant),
                [RateDistortion(config.lmbda, metric), *extra_terms], finalize)
