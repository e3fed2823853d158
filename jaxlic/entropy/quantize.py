"""How continuous latents become (proxies of) integers during training and coding."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

QuantizeMode = Literal["noise", "ste", "round"]
QUANTIZE_MODES = ("noise", "ste", "round")


def quantize(
    values: jax.Array, mode: QuantizeMode, offset: jax.Array | float = 0.0,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Additive uniform noise, straight-through rounding, or plain rounding around `offset`.

    Rounding is round(values - offset) + offset, as the decoder reconstructs it from symbols.
    """
    if mode == "noise":
        if rng is None:
            raise ValueError("quantize(mode='noise') needs an rng")
        return values + jax.random.uniform(rng, values.shape, values.dtype, -0.5, 0.5)
    rounded = jnp.round(values - offset) + offset
    if mode == "ste":
        return values + jax.lax.stop_gradient(rounded - values)
    if mode == "round":
        return rounded
    raise ValueError(f"unknown quantize mode {mode!r}; expected one of {QUANTIZE_MODES}")
