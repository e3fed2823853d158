"""Training a sandwich: one loss term in the jitted step, real-codec calibration between steps.

The forward pass is pre-net -> codec proxy -> post-net at a JPEG quality drawn per image from the
config's range. The loss term turns the proxy's rate features into bits with weights held in its
term state and hands ``{"x_hat", "bits"}`` and the scenario's target to the ordinary
`RateDistortion`. Between steps (outside jit) the current batch's code images are encoded with the
real codec (Pillow's libjpeg); their payload sizes and rate features join a window of the last
`window` files, and the weights are refit to them by non-negative least squares. Before the refit,
the old weights' relative error on the new files' payloads is recorded: an out-of-sample measure of the
rate proxy that the next step logs as ``rate_err``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import nnls

from jaxlic.errors import ConfigError
from jaxlic.sandwich.model import Sandwich, SandwichConfig, SandwichPackage
from jaxlic.sandwich.scenarios import target_from_batch
from jaxlic.train.step import TrainState
from jaxlic.train.task import Task
from jaxlic.train.terms import RateDistortion

PyTree = Any


def draw_qualities(rng: jax.Array, n: int, qualities: tuple[int, int]) -> jax.Array:
    """Per-image JPEG qualities, uniform over the inclusive range."""
    return jax.random.randint(rng, (n,), qualities[0], qualities[1] + 1)


@dataclass(frozen=True)
class CalibratedRate:
    """Rate + lambda * distortion with bits = rate features @ calibrated weights + header bits.

    Each image's bits are scaled by lmbda / lambda(quality) before `inner` (a RateDistortion with
    lmbda) sees them, which is per-image lambda up to a per-image factor; the logged bpp is unscaled.
    """

    inner: RateDistortion
    config: SandwichConfig
    prior: tuple[float, ...]
    window: int = 64
    name: str = "sandwich_rd"

    def init_state(self, params: PyTree) -> PyTree:
        f = len(self.prior)
        return {"weights": jnp.asarray(self.prior, jnp.float32), "header_bits": jnp.zeros((), jnp.float32),
                "features": jnp.zeros((self.window, f), jnp.float32), "bits": jnp.zeros((self.window,), jnp.float32),
                "count": jnp.zeros((), jnp.int32), "error": jnp.zeros((), jnp.float32)}

    def __call__(self, params, outputs, batch, term_state):
        bits = outputs["rate"] @ term_state["weights"] + term_state["header_bits"]
        price = self.config.lmbda / self.config.lambda_at(outputs["quality"].astype(jnp.float32))
        target = outputs["target"]
        loss, metrics = self.inner(params, {"x_hat": outputs["x_hat"], "bits": (bits * price).sum()}, target, {})
        metrics.update(bpp=bits.sum() / (target.shape[0] * target.shape[1] * target.shape[2]),
                       rate_err=term_state["error"], w=term_state["weights"][0],
                       quality=jnp.mean(outputs["quality"].astype(jnp.float32)))
        return loss, metrics


def refit(term_state: dict, features: np.ndarray, payload_bits: np.ndarray, header_bits: float) -> dict:
    """Add one batch of real files to the window and refit the weights (NumPy, outside jit)."""
    old = {k: np.array(v) for k, v in term_state.items()}
    predicted = features @ old["weights"]
    error = float(np.mean(np.abs(predicted - payload_bits) / np.maximum(payload_bits, 1.0)))
    window, count = len(old["bits"]), int(old["count"])
    rows = (count + np.arange(len(payload_bits))) % window
    old["features"][rows], old["bits"][rows] = features, payload_bits
    count += len(payload_bits)
    filled = min(count, window)
    weights, _ = nnls(old["features"][:filled].astype(np.float64), old["bits"][:filled].astype(np.float64))
    new = {"weights": weights, "header_bits": header_bits, "features": old["features"], "bits": old["bits"],
           "count": count, "error": error}
    return {k: jax.device_put(jnp.asarray(v, dtype=term_state[k].dtype), getattr(term_state[k], "sharding", None))
            for k, v in new.items()}


def sandwich_task(config: SandwichConfig, calibrate_every: int = 1, window: int = 64) -> Task:
    """Train a sandwich for `config` into `sandwich.jxls` (a `SandwichPackage`)."""
    if calibrate_every < 1 or window < 1:
        raise ConfigError("calibrate_every and window must be >= 1")
    sandwich = Sandwich(config)
    codec, scenario = sandwich.codec, sandwich.scenario
    term = CalibratedRate(RateDistortion(config.lmbda), config, tuple(codec.rate_prior), window)

    def forward(params, batch, rng):
        target = target_from_batch(scenario, batch)
        quality = draw_qualities(rng, batch.shape[0], config.qualities)
        return {**sandwich.forward(params, target, quality), "target": target, "quality": quality}

    @jax.jit
    def codes_and_rates(params, batch, quality):
        code = sandwich.code_image(params, target_from_batch(scenario, batch), quality)
        rate = codec.proxy(params["codec"], code, quality).rate
        return jnp.clip(jnp.round(code), 0, 255).astype(jnp.uint8), rate

    def between_steps(state: TrainState, batch) -> TrainState:
        step = int(state.step)
        if (step - 1) % calibrate_every:
            return state
        quality = draw_qualities(jax.random.fold_in(state.rng, step - 1), len(batch), config.qualities)
        codes, rates = jax.device_get(codes_and_rates(state.params, batch, quality))
        codec_params = jax.device_get(state.params["codec"])
        files = [codec.encode(codec_params, code, int(q)) for code, q in zip(codes, quality)]
        payload = np.array([codec.payload_bits(f) for f in files], np.float64)
        header = float(np.mean([8 * len(f) for f in files]) - payload.mean())
        new = refit(state.term_states[term.name], np.asarray(rates, np.float64), payload, header)
        return state.replace(term_states={**state.term_states, term.name: new})

    def finalize(params, run_dir: Path) -> SandwichPackage:
        package = SandwichPackage(config, params)
        package.save(Path(run_dir) / "sandwich.jxls")
        return package

    description = {"task": "sandwich", "config": config.to_json(), "calibrate_every": calibrate_every, "window": window}
    return Task(description, sandwich.init, forward, [term], finalize, between_steps,
                log_keys=("bpp", "psnr", "rate_err"))
