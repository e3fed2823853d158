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
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.codec.package import ModelPackage, build_tables
from jaxlic.entropy.factorized import bottleneck_medians, y_offset
from jaxlic.entropy.gaussian import gaussian_conditional
from jaxlic.errors import ConfigError
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


class _FakeQuantDecoder:
    """The decoder as the fake-quantized integer graph lowered from the current parameters."""

    def __init__(self, config: ModelConfig, params: dict, calibration: Calibration, hyper: bool):
        self.graph = lower_decoder(config, params, calibration)
        self.medians = _grid_medians(params, calibration["z" if hyper else "y"])  # of the coded latent

    def conv_weights(self) -> dict[str, jax.Array]:
        """The integer-valued (straight-through) weights of every convolution op, by op name."""
        return {op.name: self.graph.consts[op.consts["weight"]] for op in self.graph.ops
                if op.kind in ("conv2d", "conv2d_transpose")}

    def _run(self, values: dict, outputs: list[str]) -> dict:
        return run_ops(self.graph.ops, self.graph.consts, values, outputs, "fake")

    def hyper(self, z_symbols: jax.Array):
        """(scales, means for the likelihood, means the synthesis takes)."""
        wanted = ["scales"] + (["means"] if "means" in self.graph.outputs else [])
        out = self._run({"z_symbols": z_symbols}, wanted)
        scales = out["scales"] * exp2i(-self.graph.exponents["scales"])
        if "means" not in out:
            return scales, None, None
        return scales, out["means"] * exp2i(-self.graph.exponents["means"]), out["means"]

    def synthesis(self, y_symbols: jax.Array, means: jax.Array | None) -> jax.Array:
        values = {"y_symbols": y_symbols} | ({"means": means} if means is not None else {})
        return self._run(values, ["pixels"])["pixels"] / 255.0


class _FloatDecoder:
    """The float decoder fed the same rounded latents (the fine-tuning control)."""

    def __init__(self, model, params: dict):
        self.model = model
        self.medians = jax.lax.stop_gradient(bottleneck_medians(params))

    def hyper(self, z_symbols: jax.Array):
        scales, means = self.model.hyper_synthesis(z_symbols + self.medians)
        return scales, means, means

    def synthesis(self, y_symbols: jax.Array, means: jax.Array | None) -> jax.Array:
        return self.model.synthesis(y_symbols + y_offset(self.model.hyper, self.medians, means))


def make_forward(config: ModelConfig, calibration: Calibration, fake_quant: bool = True) -> Callable:
    """`forward(params, batch, rng) -> outputs` for RateDistortion, decoder as described above.
    With fake quantization the outputs also hold `integer_weights` (conv op name -> the
    integer-valued weights the export will write), which watermarking reads."""
    model = build_model(config)

    def forward(params, batch, rng):
        bound = model.bind({"params": params}, rngs={"noise": rng})
        if fake_quant:
            decoder = _FakeQuantDecoder(config, params, calibration, model.hyper)
            return run(bound, decoder, batch) | {"integer_weights": decoder.conv_weights()}
        return run(bound, _FloatDecoder(bound, params), batch)

    def run(bound, decoder, batch):
        y = bound.analysis(batch)
        if not model.hyper:
            _, y_likelihoods = bound.entropy_bottleneck(y, "noise")
            x_hat = decoder.synthesis(round_ste(y - decoder.medians), None)
            return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods}, "y": y}
        z = bound.hyper_analysis(y)
        _, z_likelihoods = bound.entropy_bottleneck(z, "noise")
        scales, means, synthesis_means = decoder.hyper(round_ste(z - decoder.medians))
        _, y_likelihoods = gaussian_conditional(y, scales, means, "noise", bound.make_rng("noise"))
        y_symbols = round_ste(y - means) if means is not None else round_ste(y)
        x_hat = decoder.synthesis(y_symbols, synthesis_means)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}, "y": y}

    return forward


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
