"""The train state and the one jitted, pure training step.

`train_step(state, batch) -> (state, metrics)`: everything a run needs lives in the state
pytree (parameters, optimizer state, each loss term's state, the step counter and the base RNG);
everything it optimizes is the configured list of loss terms. Data parallelism comes from the
shardings of the inputs (batch split over the mesh's "data" axis, state replicated).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxlic.errors import ConfigError
from jaxlic.train.terms import LossTerm

PyTree = Any


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: PyTree
    opt_state: PyTree
    term_states: dict[str, PyTree]
    rng: jax.Array


FORWARD_STATE = "forward"  # the term_states entry of a stateful forward's state (`Task.forward_state`)


def init_state(params: PyTree, tx: optax.GradientTransformation, terms: Sequence[LossTerm], seed: int,
               forward_state: PyTree | None = None) -> TrainState:
    """A fresh state: optimizer initialized, each term's state from `init_state(params)`, and
    a stateful forward's state (if any) under FORWARD_STATE."""
    term_states = {t.name: t.init_state(params) for t in terms}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        term_states=term_states if forward_state is None else term_states | {FORWARD_STATE: forward_state},
        rng=jax.random.PRNGKey(seed),
    )


def make_train_step(
    forward: Callable[..., dict],
    terms: Sequence[LossTerm],
    tx: optax.GradientTransformation,
    stateful_forward: bool = False,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict]]:
    """Build the jitted step. `forward(params, batch, rng)` returns the model's outputs; a
    `stateful_forward` also gets `term_states[FORWARD_STATE]` as its last argument."""
    names = [t.name for t in terms]
    if len(set(names)) != len(names) or FORWARD_STATE in names:
        raise ValueError(f"loss term names must be unique and not {FORWARD_STATE!r}, got {names}")

    def loss_fn(params, state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        extra = (state.term_states[FORWARD_STATE],) if stateful_forward else ()
        outputs = forward(params, batch, rng, *extra)
        total, metrics = jnp.zeros(()), {}
        for term in terms:
            loss, term_metrics = term(params, outputs, batch, state.term_states[term.name])
            total = total + loss
            metrics[f"loss/{term.name}"] = loss
            metrics.update(term_metrics)
        metrics["loss"] = total
        return total, metrics

    def train_step(state: TrainState, batch: jax.Array):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, state, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.tree.norm(grads)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jax.jit(train_step, donate_argnums=0)


DECAYS = ("cosine", "constant")


def make_schedule(learning_rate: float, steps: int, warmup: int = 0, decay: str = "cosine") -> optax.Schedule:
    """Constant, or linear warm-up to `learning_rate` then cosine decay to 5% of it at `steps`."""
    if decay == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0 if warmup else learning_rate, learning_rate, warmup, max(steps, warmup + 1),
            end_value=learning_rate * 0.05,
        )
    if decay == "constant":
        return optax.constant_schedule(learning_rate)
    raise ConfigError(f"decay must be one of {DECAYS}, got {decay!r}")


def make_optimizer(
    learning_rate: float, steps: int, clip_norm: float = 1.0, warmup: int = 0, decay: str = "cosine",
) -> optax.GradientTransformation:
    """Adam with global-norm gradient clipping and a constant or warmup-cosine schedule."""
    schedule = make_schedule(learning_rate, steps, warmup, decay)
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(schedule))
