"""The deep factorized prior of Balle et al. 2018 ("EntropyBottleneck" in CompressAI).

Each channel has a monotone cumulative c(x) = sigmoid(MLP(x)) whose weights are kept
positive by softplus. The quantiles (tail mass / 2, median, 1 - tail mass / 2) bound the range
of the coding tables. CompressAI fits them during training with an auxiliary loss, which needs
many steps to converge; jaxlic instead solves c(q) = target exactly by bisection when tables
are built (the cumulative is monotone), so short runs get exact ranges and no extra loss term.
Parameter shapes follow CompressAI so weights convert both ways.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from jaxlic.entropy.quantize import QuantizeMode, quantize
from jaxlic.entropy.tables import TAIL_MASS
from jaxlic.errors import ConfigError
from jaxlic.nn.bound import lower_bound

LIKELIHOOD_BOUND = 1e-9


class EntropyBottleneck(nn.Module):
    """Per-channel factorized density of a latent (NHWC, C = `channels`)."""

    channels: int
    filters: tuple[int, ...] = (3, 3, 3, 3)
    init_scale: float = 10.0

    def setup(self):
        dims = (1,) + tuple(self.filters) + (1,)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        c = self.channels
        matrices, biases, factors = [], [], []
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            shape = (c, dims[i + 1], dims[i])
            matrices.append(self.param(f"matrices_{i}", nn.initializers.constant(init), shape))
            biases.append(
                self.param(
                    f"biases_{i}",
                    lambda key, s: jax.random.uniform(key, s, minval=-0.5, maxval=0.5),
                    (c, dims[i + 1], 1),
                )
            )
            if i < len(self.filters):
                factors.append(
                    self.param(f"factors_{i}", nn.initializers.zeros, (c, dims[i + 1], 1))
                )
        self.matrices, self.biases, self.factors = matrices, biases, factors
        self.quantiles = self.param(
            "quantiles",
            lambda _key: jnp.tile(
                jnp.array([-self.init_scale, 0.0, self.init_scale])[None, None], (c, 1, 1)
            ),
        )

    def logits_cumulative(self, inputs: jax.Array, stop_gradient: bool = False) -> jax.Array:
        """Logit of the cumulative at `inputs` of shape (C, 1, K) -> (C, 1, K)."""
        logits = inputs
        for i, matrix in enumerate(self.matrices):
            bias = self.biases[i]
            if stop_gradient:
                matrix, bias = jax.lax.stop_gradient(matrix), jax.lax.stop_gradient(bias)
            logits = jnp.einsum("cij,cjk->cik", jax.nn.softplus(matrix), logits) + bias
            if i < len(self.factors):
                factor = self.factors[i]
                if stop_gradient:
                    factor = jax.lax.stop_gradient(factor)
                logits = logits + jnp.tanh(factor) * jnp.tanh(logits)
        return logits

    def medians(self) -> jax.Array:
        """The learned median of each channel, (C,)."""
        return self.quantiles[:, 0, 1]

    def interval_probability(self, centers: jax.Array) -> jax.Array:
        """P(center - 1/2 < x < center + 1/2) for centers of shape (C, 1, K)."""
        lower = self.logits_cumulative(centers - 0.5)
        upper = self.logits_cumulative(centers + 0.5)
        # Evaluate on the side of the median where the sigmoid is far from saturation.
        sign = jax.lax.stop_gradient(-jnp.sign(lower + upper))
        return jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))

    def likelihood(self, values: jax.Array) -> jax.Array:
        """Bounded likelihood of each element of an NHWC latent."""
        shape = values.shape
        flat = jnp.moveaxis(values, -1, 0).reshape(self.channels, 1, -1)
        probs = self.interval_probability(flat)
        probs = jnp.moveaxis(probs.reshape((self.channels,) + shape[:-1]), 0, -1)
        return lower_bound(probs, LIKELIHOOD_BOUND)

    def __call__(
        self, values: jax.Array, mode: QuantizeMode = "round"
    ) -> tuple[jax.Array, jax.Array]:
        """(quantized latent, likelihoods); 'noise' for training, 'round' for coding."""
        rng = self.make_rng("noise") if mode == "noise" else None
        quantized = quantize(values, mode, self.medians(), rng)
        return quantized, self.likelihood(quantized)

    def table_pmfs(self, centers: jax.Array) -> tuple[jax.Array, jax.Array]:
        """pmf at (C, 1, K) centers and the tail mass outside them, for building tables."""
        lower = self.logits_cumulative(centers - 0.5)
        upper = self.logits_cumulative(centers + 0.5)
        sign = -jnp.sign(lower + upper)
        pmf = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))[:, 0]
        tail = jax.nn.sigmoid(lower[:, 0, :1]) + jax.nn.sigmoid(-upper[:, 0, -1:])
        return pmf, tail[:, 0]


def bottleneck_medians(params: dict):
    """The factorized prior's medians (what its symbols are centred on) from a model's parameters."""
    return params["entropy_bottleneck"]["quantiles"][:, 0, 1]


def y_offset(hyper: bool, medians, means):
    """What y symbols are centred on: the predicted means, else 0 (a hyperprior's Gaussian) or
    the medians (a factorized prior's)."""
    if means is not None:
        return means
    return 0.0 if hyper else medians


def solve_quantiles(
    logits_cumulative: Callable[[np.ndarray], np.ndarray], channels: int, tail_mass: float = TAIL_MASS,
    iterations: int = 60,
) -> np.ndarray:
    """(C, 1, 3) points where the cumulative equals tail/2, 1/2 and 1 - tail/2, by bisection."""
    target = math.log(2.0 / tail_mass - 1.0)
    targets = np.tile(np.array([-target, 0.0, target]), (channels, 1, 1))
    lo, hi = np.full_like(targets, -1.0), np.full_like(targets, 1.0)
    for _ in range(40):
        below, above = logits_cumulative(lo) > targets, logits_cumulative(hi) < targets
        if not (below.any() or above.any()):
            break
        lo, hi = np.where(below, 2 * lo, lo), np.where(above, 2 * hi, hi)
    else:
        raise ConfigError("the factorized prior's cumulative does not reach its tails (diverged model?)")
    for _ in range(iterations):
        mid = (lo + hi) / 2
        left = logits_cumulative(mid) < targets
        lo, hi = np.where(left, mid, lo), np.where(left, hi, mid)
    return (lo + hi) / 2


def table_ranges(quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From (C, 1, 3) quantiles: medians, and the number of symbols below/above each median."""
    medians = quantiles[:, 0, 1]
    below = np.maximum(np.ceil(medians - quantiles[:, 0, 0]), 0).astype(np.int64)
    above = np.maximum(np.ceil(quantiles[:, 0, 2] - medians), 0).astype(np.int64)
    return medians, below, above
