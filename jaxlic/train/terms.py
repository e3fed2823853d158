"""Loss terms: everything a training run optimizes is a list of these.

A term is a callable `term(params, outputs, batch, term_state) -> (loss, metrics)` with a `name`
and an `init_state(params) -> pytree` for what it needs in the train state (teacher parameters,
watermark key material, a rate-proxy weight, ...). Distillation, sandwich codec proxies and
quantization-aware watermarking are added as terms, without touching the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jaxlic.errors import ConfigError

PyTree = Any


class LossTerm(Protocol):
    name: str

    def init_state(self, params: PyTree) -> PyTree: ...

    def __call__(self, params: PyTree, outputs: dict, batch: jax.Array, term_state: PyTree
                 ) -> tuple[jax.Array, dict[str, jax.Array]]: ...


def total_bits(outputs: dict) -> jax.Array:
    """Bits of a forward pass: -log2 of every likelihood, or a codec proxy's own `bits`."""
    if "bits" in outputs:
        return outputs["bits"]
    return sum(-jnp.log2(lik).sum() for lik in outputs["likelihoods"].values())


def bits_per_pixel(outputs: dict, batch: jax.Array) -> jax.Array:
    n, h, w = batch.shape[:3]
    return total_bits(outputs) / (n * h * w)


@dataclass(frozen=True)
class RateDistortion:
    """bpp + lambda * D, with D = 255^2 * MSE (CompressAI's convention) or 1 - MS-SSIM."""

    lmbda: float
    metric: str = "mse"
    name: str = "rd"

    def __post_init__(self):
        if self.metric not in ("mse", "ms-ssim"):
            raise ConfigError(f"distortion metric must be 'mse' or 'ms-ssim', got {self.metric!r}")

    def init_state(self, params: PyTree) -> PyTree:
        return {}

    def __call__(self, params, outputs, batch, term_state):
        x_hat = outputs["x_hat"]
        bpp = bits_per_pixel(outputs, batch)
        mse = jnp.mean((x_hat - batch) ** 2)
        metrics = {"bpp": bpp, "mse": mse, "psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))}
        if self.metric == "mse":
            distortion = 255.0**2 * mse
        else:
            from jaxlic.eval.metrics import ms_ssim_jax

            ms_ssim = ms_ssim_jax(jnp.clip(x_hat, 0.0, 1.0), batch)
            metrics["ms_ssim"] = ms_ssim
            distortion = 1.0 - ms_ssim
        return bpp + self.lmbda * distortion, metrics
