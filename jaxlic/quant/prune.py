"""Iterative pruning inside training: masks in the train state, a schedule, physical shrinking.

A `PruneSchedule` says at which steps to prune and what cumulative fraction to have pruned by
then; training goes on between those steps, so the network adapts before the next cut. The
`Pruning` term keeps the masks in the train state (checkpointed, so runs resume), and its
`between_steps` hook (outside jit) recomputes masks at the scheduled steps and re-applies them
to the parameters after every step, so each forward pass sees the pruned network.

Two kinds:
- "channel": the output channels of each transform conv that feeds a GDN
  (`jaxlic.models.config.HIDDEN_LAYERS`) are ranked by ||incoming kernel|| x ||outgoing kernel||
  (the next conv's input slice), and the lowest are removed from that conv, its GDN and the next
  conv's input. A zeroed channel stays zero through GDN, so `shrink` can cut it out exactly:
  the exported model has fewer channels and fewer MACs.
- "magnitude": in every conv kernel of the transforms, the weights of smallest |w| are zeroed
  (layer by layer). The model keeps its shape; the zeros only pay off on sparse hardware.
The same fraction is cut in every layer; the first layer's 3 input channels and the latent
channels (M, which the entropy models and bitstreams depend on) are never channel-pruned.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlic.codec import ModelPackage, build_tables
from jaxlic.errors import ConfigError
from jaxlic.models import ModelConfig
from jaxlic.models.config import HIDDEN_LAYERS
from jaxlic.train.step import TrainState
from jaxlic.train.task import Task, codec_task, describe

PyTree = Any
PRUNE_KINDS = ("channel", "magnitude")
TRANSFORMS = ("g_a_", "g_s_", "h_a_", "h_s_")


@dataclass(frozen=True)
class PruneSchedule:
    """Prune to cumulative `fractions[i]` after training step `steps[i]` (kind "channel" or
    "magnitude"); fine-tuning continues between and after the steps."""

    kind: str
    steps: tuple[int, ...]
    fractions: tuple[float, ...]

    def __post_init__(self):
        if self.kind not in PRUNE_KINDS:
            raise ConfigError(f"pruning kind must be one of {PRUNE_KINDS}, got {self.kind!r}")
        if not self.steps or len(self.steps) != len(self.fractions):
            raise ConfigError("a pruning schedule needs one fraction per step and at least one step")
        if self.steps[0] < 1 or any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ConfigError(f"pruning steps must be >= 1 and increasing, got {list(self.steps)}")
        if not all(0 < f < 1 for f in self.fractions) or any(b < a for a, b in zip(self.fractions, self.fractions[1:])):
            raise ConfigError(f"pruning fractions must be in (0, 1) and non-decreasing, got {list(self.fractions)}")

    @classmethod
    def parse(cls, kind: str, text: str) -> PruneSchedule:
        """From "STEP:FRACTION,STEP:FRACTION,..." (e.g. "100:0.25,300:0.5")."""
        try:
            pairs = [item.split(":") for item in text.split(",")]
            steps = tuple(int(step) for step, _ in pairs)
            fractions = tuple(float(fraction) for _, fraction in pairs)
        except ValueError:
            raise ConfigError(f"pruning schedule must look like '100:0.25,300:0.5', got {text!r}") from None
        return cls(kind, steps, fractions)

    def fraction_at(self, step: int) -> float | None:
        """The fraction to prune to right after `step`, or None when no cut is due."""
        return dict(zip(self.steps, self.fractions)).get(step)


def _following(layer: str) -> tuple[str, str]:
    """The GDN and the conv that follow a hidden layer: g_a_2 -> (g_a_3, g_a_4)."""
    prefix, index = layer.rsplit("_", 1)
    return f"{prefix}_{int(index) + 1}", f"{prefix}_{int(index) + 2}"


def _kernel_layers(params: PyTree) -> list[str]:
    return sorted(k for k, v in params.items() if k.startswith(TRANSFORMS) and "kernel" in v)


def init_masks(kind: str, params: PyTree) -> dict[str, jax.Array]:
    """All-ones masks: per hidden layer (C,) for channels, per kernel for magnitude."""
    if kind == "channel":
        return {k: jnp.ones(params[k]["kernel"].shape[-1], jnp.float32) for k in HIDDEN_LAYERS}
    return {k: jnp.ones(params[k]["kernel"].shape, jnp.float32) for k in _kernel_layers(params)}


def apply_masks(kind: str, params: PyTree, masks: dict[str, jax.Array]) -> PyTree:
    """Parameters with the pruned weights (or whole channels) set to zero."""
    out = {k: dict(v) for k, v in params.items()}
    for layer, mask in masks.items():
        out[layer]["kernel"] = params[layer]["kernel"] * mask
        if kind == "channel":
            out[layer]["bias"] = params[layer]["bias"] * mask
            nxt = _following(layer)[1]
            out[nxt]["kernel"] = params[nxt]["kernel"] * mask[:, None]
    return out


def _keep_top(scores: np.ndarray, fraction: float) -> np.ndarray:
    """A 0/1 mask keeping the highest scores, at least one, pruning round(fraction * n)."""
    flat = scores.reshape(-1)
    keep = max(1, flat.size - int(round(fraction * flat.size)))
    mask = np.zeros(flat.size, np.float32)
    mask[np.argsort(-flat, kind="stable")[:keep]] = 1.0
    return mask.reshape(scores.shape)


def channel_scores(kernel: np.ndarray, outgoing: np.ndarray) -> np.ndarray:
    """Per output channel of `kernel`: ||incoming kernel|| x ||outgoing kernel (next layer's input)||."""
    return (np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), axis=0)
            * np.linalg.norm(np.moveaxis(outgoing, 2, 0).reshape(kernel.shape[-1], -1), axis=1))


def prune_masks(kind: str, params: PyTree, masks: dict[str, np.ndarray], fraction: float) -> dict[str, np.ndarray]:
    """New masks with `fraction` of each layer pruned (what is pruned stays pruned)."""
    new = {}
    for layer, mask in masks.items():
        kernel = np.asarray(params[layer]["kernel"]) * mask
        if kind == "channel":
            outgoing = np.asarray(params[_following(layer)[1]]["kernel"]) * mask[:, None]
            scores = channel_scores(kernel, outgoing)
        else:
            scores = np.abs(kernel)
        new[layer] = _keep_top(scores, fraction) * mask
    return new


class Pruning:
    """Loss term that only carries the masks (zero loss; logs the kept fraction) plus the
    between-steps hook that prunes on schedule and keeps the parameters masked."""

    name = "prune"

    def __init__(self, schedule: PruneSchedule):
        self.schedule = schedule
        self._apply = jax.jit(functools.partial(apply_masks, schedule.kind))

    def init_state(self, params: PyTree) -> PyTree:
        return init_masks(self.schedule.kind, params)

    def __call__(self, params, outputs, batch, term_state):
        kept = sum(m.sum() for m in term_state.values()) / sum(m.size for m in term_state.values())
        return jnp.zeros(()), {"prune/kept": kept}

    def between_steps(self, state: TrainState, batch) -> TrainState:
        """Prune when the schedule says so; keep pruned weights at zero after every update."""
        step = int(state.step)
        if step < self.schedule.steps[0]:
            return state
        masks = state.term_states[self.name]
        fraction = self.schedule.fraction_at(step)
        if fraction is not None:
            new = prune_masks(self.schedule.kind, jax.device_get(state.params), jax.device_get(masks), fraction)
            masks = {k: jax.device_put(v, masks[k].sharding) for k, v in new.items()}
            state = state.replace(term_states={**state.term_states, self.name: masks})
        return state.replace(params=self._apply(state.params, masks))


def kept_channels(params: PyTree) -> dict[str, np.ndarray]:
    """Per hidden layer, the channels `shrink` keeps: those whose incoming kernel (from the
    previous layer's kept channels) or bias is not all zero (at least one)."""
    kept, inputs = {}, {}
    for layer in HIDDEN_LAYERS:
        kernel, bias = np.asarray(params[layer]["kernel"]), np.asarray(params[layer]["bias"])
        kernel = kernel[:, :, inputs[layer]] if layer in inputs else kernel
        alive = np.any(kernel.reshape(-1, kernel.shape[-1]) != 0, axis=0) | (bias != 0)
        kept[layer] = np.flatnonzero(alive) if alive.any() else np.arange(1)
        inputs[_following(layer)[1]] = kept[layer]
    return kept


def shrink(config: ModelConfig, params: PyTree) -> tuple[ModelConfig, PyTree]:
    """Cut out every hidden channel whose incoming kernel and bias are all zero (exact: such a
    channel is zero after its GDN): a physically smaller config and parameters."""
    params = {k: dict(v) for k, v in jax.device_get(params).items()}
    counts = []
    for layer, keep in kept_channels(params).items():
        gdn, nxt = _following(layer)
        kernel, bias = np.asarray(params[layer]["kernel"]), np.asarray(params[layer]["bias"])
        params[layer] = {"kernel": kernel[..., keep], "bias": bias[keep]}
        params[gdn] = {"beta": np.asarray(params[gdn]["beta"])[keep],
                       "gamma": np.asarray(params[gdn]["gamma"])[np.ix_(keep, keep)]}
        params[nxt]["kernel"] = np.asarray(params[nxt]["kernel"])[:, :, keep]
        counts.append(int(keep.size))
    hidden = () if counts == [config.N] * len(HIDDEN_LAYERS) else tuple(counts)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    return dataclasses.replace(config, hidden=hidden), params


def check_prunable(config: ModelConfig) -> None:
    """ConfigError for a staged g_s with ReLU or residual slots: `shrink` (which every pruned
    export runs) cuts channels through the GDN after each hidden layer."""
    if any(kind in ("relu", "res") for kind in config.decoder):
        raise ConfigError(f"pruning needs a GDN after every hidden layer; this g_s has blocks {list(config.decoder)}")


def prune_task(package: ModelPackage, schedule: PruneSchedule, metric: str = "mse") -> Task:
    """Fine-tune `package` while pruning on `schedule`; the artifact is the shrunk package."""
    check_prunable(package.config)
    pruning = Pruning(schedule)
    # A host copy: the step donates its state, which must not free the package's arrays.
    base = codec_task(package.config, metric, extra_terms=[pruning], initial_params=jax.device_get(package.params))

    def finalize(params: PyTree, run_dir: Path) -> ModelPackage:
        config, small = shrink(package.config, params)
        pruned = build_tables(config, small)
        pruned.save(run_dir / "model.jxlm")
        return pruned

    description = {**base.description, "prune": {"from": package.fingerprint.hex(), "schedule": describe(schedule)}}
    return dataclasses.replace(base, description=description, finalize=finalize,
                               between_steps=pruning.between_steps, log_keys=("bpp", "psnr", "prune/kept"))
