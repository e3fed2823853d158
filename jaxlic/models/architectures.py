"""The zoo's architectures (Balle 2018 factorized and hyperprior, Minnen 2018 mean-scale).

Every model exposes the same pieces, which both the training forward pass and the codec use:
`analysis`, `synthesis`, and for hyperprior models `hyper_analysis` / `hyper_synthesis`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxlic.entropy.factorized import EntropyBottleneck
from jaxlic.entropy.gaussian import gaussian_conditional
from jaxlic.entropy.quantize import QuantizeMode
from jaxlic.models.config import ModelConfig
from jaxlic.models.layers import (
    analysis_layers, conv, deconv, leaky_relu, relu, run, synthesis_layers,
)


class FactorizedPrior(nn.Module):
    """bmshj2018-factorized: latent coded with a per-channel factorized prior."""

    config: ModelConfig
    downsampling = 16
    hyper = False
    predicts_means = False  # the hyperprior predicts each latent's mean as well as its scale

    def setup(self):
        c = self.config
        self.g_a = analysis_layers(c.hidden_channels[:3], c.M, c.gdn)
        self.g_s = synthesis_layers(c.hidden_channels[3:], c.gdn, c.decoder)
        self.entropy_bottleneck = EntropyBottleneck(c.M)

    def analysis(self, x: jax.Array) -> jax.Array:
        return run(self.g_a, x)

    def synthesis(self, y_hat: jax.Array) -> jax.Array:
        return run(self.g_s, y_hat)

    def __call__(self, x: jax.Array, mode: QuantizeMode = "noise") -> dict:
        """Training/evaluation forward: reconstruction and likelihoods of every latent."""
        y = self.analysis(x)
        y_hat, y_likelihoods = self.entropy_bottleneck(y, mode)
        return {"x_hat": self.synthesis(y_hat), "likelihoods": {"y": y_likelihoods}, "y": y}


class ScaleHyperprior(FactorizedPrior):
    """bmshj2018-hyperprior: a hyperprior z predicts the scale of each latent element."""

    downsampling = 64
    hyper = True

    def setup(self):
        c = self.config
        self.g_a = analysis_layers(c.hidden_channels[:3], c.M, c.gdn)
        self.g_s = synthesis_layers(c.hidden_channels[3:], c.gdn, c.decoder)
        self.h_a = self.hyper_analysis_layers()
        self.h_s = self.hyper_synthesis_layers()
        self.entropy_bottleneck = EntropyBottleneck(c.N)

    def hyper_analysis_layers(self) -> list[nn.Module]:
        N = self.config.N
        return [conv(N, 3, 1), relu(), conv(N), relu(), conv(N)]

    def hyper_synthesis_layers(self) -> list[nn.Module]:
        N, M = self.config.N, self.config.M
        return [deconv(N), relu(), deconv(N), relu(), conv(M, 3, 1), relu()]

    def hyper_analysis(self, y: jax.Array) -> jax.Array:
        return run(self.h_a, jnp.abs(y))

    def hyper_synthesis(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """(scales, means) of the latent; means is None for this model."""
        return run(self.h_s, z_hat), None

    def __call__(self, x: jax.Array, mode: QuantizeMode = "noise") -> dict:
        y = self.analysis(x)
        z = self.hyper_analysis(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z, mode)
        scales, means = self.hyper_synthesis(z_hat)
        rng = self.make_rng("noise") if mode == "noise" else None
        y_hat, y_likelihoods = gaussian_conditional(y, scales, means, mode, rng)
        return {
            "x_hat": self.synthesis(y_hat),
            "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
            "y": y,
        }


class MeanScaleHyperprior(ScaleHyperprior):
    """mbt2018-mean: the hyperprior predicts a mean and a scale for each latent element."""

    predicts_means = True

    def hyper_analysis_layers(self) -> list[nn.Module]:
        N = self.config.N
        return [conv(N, 3, 1), leaky_relu(), conv(N), leaky_relu(), conv(N)]

    def hyper_synthesis_layers(self) -> list[nn.Module]:
        M = self.config.M
        return [deconv(M), leaky_relu(), deconv(M * 3 // 2), leaky_relu(), conv(M * 2, 3, 1)]

    def hyper_analysis(self, y: jax.Array) -> jax.Array:
        return run(self.h_a, y)

    def hyper_synthesis(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        params = run(self.h_s, z_hat)
        scales, means = jnp.split(params, 2, axis=-1)
        return scales, means
