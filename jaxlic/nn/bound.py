"""A lower bound whose gradient still lets a parameter climb back over it."""

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def lower_bound(x: jax.Array, bound: float) -> jax.Array:
    """max(x, bound) whose gradient flows where x >= bound or where it pushes x upwards."""
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
    return jnp.maximum(x, bound), x


def _lower_bound_bwd(bound, x, grad):
    passes = (x >= bound) | (grad < 0)
    return (grad * passes,)


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)
