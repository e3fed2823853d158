"""Generalized divisive normalization (Balle et al.) with CompressAI's parametrization.

beta and gamma are stored as square roots with a pedestal of 2^-36 and bounded below, so that
they stay positive under gradient descent; the bound passes gradients only when they push the
parameter back above it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxlic.nn.bound import lower_bound

REPARAM_OFFSET = 2.0**-18
PEDESTAL = REPARAM_OFFSET**2




def reparametrize(value: jax.Array) -> jax.Array:
    """Stored form of a non-negative parameter: sqrt(max(value + pedestal, pedestal))."""
    return jnp.sqrt(jnp.maximum(value + PEDESTAL, PEDESTAL))


def effective(stored: jax.Array, minimum: float = 0.0) -> jax.Array:
    """The non-negative parameter a stored square root stands for, never below `minimum`."""
    bound = (minimum + PEDESTAL) ** 0.5
    return lower_bound(stored, bound) ** 2 - PEDESTAL


class GDN(nn.Module):
    """GDN (y = x / sqrt(beta + gamma x^2)) or its inverse, optionally simplified (|x|, no root).

    Parameters: `beta` (C,) and `gamma` (C_out, C_in), stored reparametrized as in CompressAI.
    """

    inverse: bool = False
    simplified: bool = False
    beta_min: float = 1e-6
    gamma_init: float = 0.1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        beta = self.param("beta", lambda _key: reparametrize(jnp.ones((channels,))))
        gamma = self.param(
            "gamma", lambda _key: reparametrize(self.gamma_init * jnp.eye(channels))
        )
        beta = effective(beta, self.beta_min)
        gamma = effective(gamma)
        pooled = jnp.abs(x) if self.simplified else x * x
        norm = jnp.einsum("...j,cj->...c", pooled, gamma) + beta
        if self.simplified:
            return x * norm if self.inverse else x / norm
        return x * jnp.sqrt(norm) if self.inverse else x * jax.lax.rsqrt(norm)
