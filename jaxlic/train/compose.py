"""One run that composes distillation, pruning, QAT and watermarking: one task, one step, one checkpoint.

`compose_task(config, params, parts)` builds one `Task` from parts on top of the codec task
(RD term, float forward, a float package):
- distillation: a `Distillation` term (the student is `config`, e.g. `student_config(teacher, w)`);
- pruning: the `Pruning` term and its between-steps hook; the artifact is shrunk;
- QAT: the fake-quantized decoder forward of `jaxlic.quant.qat`, with activation ranges
  calibrated on the initial parameters; the artifact is an integer-mode package (what
  `jaxlic quantize` writes). With a `Recalibration` (for a model that starts untrained, whose
  ranges would be a random network's), the decoder trains in float until the first step it
  names, and the ranges are re-measured on the current parameters after each of its steps; they
  live in the train state (a resumed run has them) and the package is written with the last;
- watermarking: a `WatermarkTerm` on the fake-quantized weights (needs QAT).
With one part the run trains exactly what that part's own task trains (tests/train/test_compose.py).

Channel pruning changes the shapes of the watermark's carrier layers, so at every cut the
carrier positions are re-derived for the layout the shrunk export will have and mapped into the
full, masked weights the step trains. After the last cut they are final: `extract` on the
exported package reads the positions that were trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxlic.codec import ModelPackage, build_tables
from jaxlic.errors import ConfigError
from jaxlic.models import ModelConfig
from jaxlic.quant.export import integerize
from jaxlic.quant.lowering import Calibration, calibrate
from jaxlic.quant.prune import Pruning, PruneSchedule, _following, check_prunable, kept_channels, shrink
from jaxlic.quant.qat import arrays_calibration, calibration_batches, range_arrays, ranged_forward, switched_forward
from jaxlic.secure.watermark import CarrierLayout, WatermarkTerm
from jaxlic.train.distill import Distillation
from jaxlic.train.loop import TrainConfig
from jaxlic.train.step import FORWARD_STATE, TrainState
from jaxlic.train.task import Task, codec_task, describe

PyTree = Any


@dataclass(frozen=True)
class Recalibration:
    """Re-measure QAT's activation ranges on `batches` after each of `steps`; fake quantization
    starts at the first."""

    steps: tuple[int, ...]
    batches: tuple[np.ndarray, ...]

    def __post_init__(self):
        if not self.batches or any(s < 1 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ConfigError(f"recalibration needs batches and increasing steps >= 1, got {self.steps}")


@dataclass(frozen=True)
class Parts:
    """The techniques a run composes; each is off when None."""

    distill: Distillation | None = None
    prune: PruneSchedule | None = None
    qat: Calibration | None = None  # QAT with these activation ranges (see `qat_calibration`)
    watermark: WatermarkTerm | None = None
    recalibrate: Recalibration | None = None  # re-measure the QAT ranges during the run

    def __post_init__(self):
        if self.watermark is not None and self.qat is None:
            raise ConfigError("a watermark lives in the integer weights: it needs QAT (--qat)")
        if self.recalibrate is not None and self.qat is None:
            raise ConfigError("only QAT's activation ranges are recalibrated: it needs QAT (--qat)")


def qat_batches(train: TrainConfig, batches: int = 4) -> list[np.ndarray]:
    """The `batches` training batches QAT's ranges are measured on (as `jaxlic quantize` does)."""
    if batches < 1:
        raise ConfigError(f"calibration batches must be >= 1, got {batches}")
    return calibration_batches(train.data, batches, train.batch_size, train.crop, train.seed + 1)


def qat_calibration(config: ModelConfig, params: PyTree, train: TrainConfig, batches: int = 4) -> Calibration:
    """Activation ranges on `qat_batches`, as `jaxlic quantize` calibrates."""
    return calibrate(config, params, qat_batches(train, batches))


def recalibration_steps(steps: int, prune: PruneSchedule | None = None) -> tuple[int, ...]:
    """The default for a model that starts untrained: QAT from half the run, re-measured after
    each later pruning cut."""
    half = steps // 2
    return (half, *[s for s in (prune.steps if prune is not None else ()) if s > half])


def check_schedule(schedule: PruneSchedule, steps: int) -> None:
    """ConfigError unless the last cut comes before the last step (the pruned model is fine-tuned)."""
    if schedule.steps[-1] >= steps:
        raise ConfigError(f"the last pruning step ({schedule.steps[-1]}) must come before --steps ({steps}) "
                          "so the pruned model is fine-tuned")


def carrier_map(params: PyTree, kept: dict[str, np.ndarray]) -> tuple[CarrierLayout, np.ndarray]:
    """The watermark carrier layout of the model shrunk to `kept` channels and, for each of its
    flat positions, the flat position of the same weight in the full model's carriers."""
    inputs = {_following(layer)[1]: keep for layer, keep in kept.items()}
    shapes, index, offset = [], [], 0
    for name, shape in CarrierLayout.of_params(params).shapes:
        idx = np.arange(math.prod(shape)).reshape(shape) + offset
        offset += idx.size
        idx = idx[:, :, inputs[name]] if name in inputs else idx
        idx = idx[..., kept[name]] if name in kept else idx
        shapes.append((name, idx.shape))
        index.append(idx.ravel())
    return CarrierLayout(tuple(shapes)), np.concatenate(index)


def shrink_calibration(calibration: Calibration, kept: dict[str, np.ndarray]) -> Calibration:
    """Per-channel exponents of the kept channels of every pruned layer (and its GDN)."""
    exponents = dict(calibration.exponents)
    for layer, keep in kept.items():
        gdn = _following(layer)[0]
        for name in (layer, gdn, f"{gdn}.pool"):
            if name in exponents:
                exponents[name] = tuple(np.asarray(exponents[name])[keep].tolist())
    return Calibration(exponents)


def _watermark_positions(term: WatermarkTerm, params: PyTree, kept: dict[str, np.ndarray]) -> dict:
    """The watermark's positions and signs for the shrunk layout, indexed into the full weights."""
    layout, index = carrier_map(params, kept)
    positions, signs = term.key.carrier_positions(layout)
    return {"positions": index[positions].astype(np.int32), "signs": signs.astype(np.float32)}


def compose_task(config: ModelConfig, params: PyTree, parts: Parts, metric: str = "mse") -> Task:
    """One task training `config` from `params` with every part in `parts` (module docstring)."""
    if parts.prune is not None:
        check_prunable(config)
    pruning = Pruning(parts.prune) if parts.prune is not None else None
    extra = [t for t in (parts.distill, pruning, parts.watermark) if t is not None]
    # A host copy: the step donates its state, which must not free the caller's arrays.
    base = codec_task(config, metric, extra_terms=extra, initial_params=jax.device_get(params))
    relayout = parts.watermark is not None and parts.prune is not None and parts.prune.kind == "channel"
    if relayout:  # a key the pruned model cannot carry fails now, not at the last cut
        counts = {k: max(1, len(v) - int(round(parts.prune.fractions[-1] * len(v))))
                  for k, v in kept_channels(params).items()}
        _watermark_positions(parts.watermark, params, {k: np.arange(n) for k, n in counts.items()})

    def between_steps(state: TrainState, batch) -> TrainState:
        if pruning is not None:
            state = pruning.between_steps(state, batch)
        if relayout and parts.prune.fraction_at(int(state.step)) is not None:
            host = jax.device_get(state.params)
            state = _replace_term_state(state, parts.watermark.name,
                                        _watermark_positions(parts.watermark, host, kept_channels(host)))
        if parts.recalibrate is not None and int(state.step) in parts.recalibrate.steps:
            ranges = calibrate(config, jax.device_get(state.params), parts.recalibrate.batches)
            state = _replace_term_state(state, FORWARD_STATE, {"ranges": range_arrays(ranges), "quantized": True})
        return state

    def finalize(final_params: PyTree, run_dir: Path, qat: dict | None = None) -> ModelPackage:
        """The package; with QAT, integer-mode at the run's last ranges (`qat`, the forward state)."""
        model, calibration = config, arrays_calibration(qat["ranges"]) if qat is not None else None
        if pruning is not None:
            if calibration is not None:
                calibration = shrink_calibration(calibration, kept_channels(jax.device_get(final_params)))
            model, final_params = shrink(config, final_params)
        package = integerize(model, final_params, calibration) if calibration is not None else build_tables(model, final_params)
        package.save(run_dir / "model.jxlm")
        return package

    described = {"distill": parts.distill, "prune": parts.prune and describe(parts.prune),
                 "qat": parts.qat and parts.qat.to_json(), "watermark": parts.watermark,
                 "recalibrate": parts.recalibrate and list(parts.recalibrate.steps)}
    description = {"task": "composed", "model": json.loads(config.to_json()), "metric": metric,
                   "parts": {k: v.describe() if hasattr(v, "describe") else v
                             for k, v in described.items() if v is not None}}
    log_keys = ("bpp", "psnr", *(["teacher_psnr"] if parts.distill else []), *(["prune/kept"] if pruning else []),
                *(["wm_ber"] if parts.watermark else []))
    qat = parts.qat is not None
    ranged = ranged_forward(config)
    forward = switched_forward(config) if parts.recalibrate is not None else (
        lambda params, batch, rng, state: ranged(params, batch, rng, state["ranges"]))
    return dataclasses.replace(
        base, description=description, finalize=finalize, log_keys=log_keys,
        forward=forward if qat else base.forward,
        forward_state=(lambda _params: {"ranges": range_arrays(parts.qat),
                                        "quantized": np.asarray(parts.recalibrate is None)}) if qat else None,
        between_steps=between_steps if pruning is not None or parts.recalibrate is not None else None)


def _replace_term_state(state: TrainState, name: str, values: dict) -> TrainState:
    """`state` with these entries of term state `name` replaced (host arrays, placed like the old)."""
    old = state.term_states[name]
    new = {k: jax.device_put(jax.tree.map(np.asarray, v), jax.tree.map(lambda a: a.sharding, old[k]))
           for k, v in values.items()}
    return state.replace(term_states={**state.term_states, name: {**old, **new}})
