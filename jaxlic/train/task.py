"""What a run trains: a task bundles parameter init, the forward pass, the loss terms, what to
do between steps (outside jit) and how to turn final parameters into an artifact.

The loop (`jaxlic.train.loop.Trainer`) knows nothing else, so a new capability (distillation,
quantization-aware watermarking, sandwich codec proxies) is a new task or a few more terms.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import jax

from jaxlic.models import ModelConfig, build_model, init_params as init_model_params
from jaxlic.train.step import TrainState
from jaxlic.train.terms import LossTerm, RateDistortion

PyTree = Any


@dataclass
class Task:
    """Everything model-specific about a run."""

    description: dict  # JSON-serializable; saved with the run and compared on resume
    init_params: Callable[[int], PyTree]  # seed -> parameters
    forward: Callable[[PyTree, jax.Array, jax.Array], dict]  # (params, batch, rng) -> outputs
    terms: Sequence[LossTerm]
    finalize: Callable[[PyTree, Path], Any]  # (params, run_dir) -> artifact (e.g. a package)
    between_steps: Callable[[TrainState, Any], TrainState] | None = None  # (state, batch), outside jit
    log_keys: tuple[str, ...] = field(default=("bpp", "psnr"))
    # params -> a state the forward reads (e.g. QAT's activation ranges); with it, forward and
    # finalize take that state as their last argument, and between_steps may replace it
    # (`jaxlic.train.step.FORWARD_STATE`).
    forward_state: Callable[[PyTree], PyTree] | None = None
    # wraps the run's optimizer (e.g. a smaller learning rate for part of the parameters)
    optimizer: Callable[[Any], Any] | None = None


def codec_task(model_config: ModelConfig, metric: str = "mse", extra_terms: Sequence[LossTerm] = (),
               initial_params: PyTree | None = None) -> Task:
    """Train a zoo model for rate + lambda * distortion (plus any extra terms) into a package."""
    from jaxlic.codec import build_tables

    model = build_model(model_config)

    def forward(params, batch, rng):
        return model.apply({"params": params}, batch, "noise", rngs={"noise": rng})

    def finalize(params, run_dir: Path):
        package = build_tables(model_config, params)
        package.save(run_dir / "model.jxlm")
        return package

    def init(seed):
        return initial_params if initial_params is not None else init_model_params(model, seed)

    description = {"task": "codec", "model": json.loads(model_config.to_json()), "metric": metric,
                   "extra_terms": [t.name for t in extra_terms]}
    return Task(description, init, forward, [RateDistortion(model_config.lmbda, metric), *extra_terms], finalize)


def describe(obj) -> dict:
    """A dataclass as a JSON-ready dict (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))
