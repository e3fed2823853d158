"""Training runs: config, checkpoints with exact resume, JSONL metrics, progress, a package.

A run directory holds `checkpoints/` (orbax), `metrics.jsonl`, `config.json` and, at the end,
the task's artifact (for codec tasks `model.jxlm`). Batch i and the step's noise are pure
functions of (seed, i), so a resumed run reproduces an uninterrupted one.

Multi-host: every process runs the same Trainer; each loads only its rows of every global
batch, orbax coordinates the checkpoints, and process 0 alone writes config.json,
metrics.jsonl, the progress bar and the artifact.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from jaxlic.errors import ConfigError
from jaxlic.train.data import Batches, ImageSet
from jaxlic.train.parallel import data_parallel, initialize_distributed, is_primary, local_value
from jaxlic.train.step import DECAYS, FORWARD_STATE, TrainState, init_state, make_optimizer, make_train_step
from jaxlic.train.task import Task, describe


@dataclass(frozen=True)
class TrainConfig:
    """How to train (data, schedule, seeds, checkpoints); what to train is the task."""

    data: tuple[str, ...] = ()  # folders; empty: the built-in default images
    steps: int = 1000
    batch_size: int = 8
    crop: int = 128
    learning_rate: float = 1e-4
    warmup: int = 0
    decay: str = "cosine"
    clip_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.crop < 16:
            raise ConfigError("steps and batch_size must be >= 1 and crop >= 16")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be >= 1")
        if not (self.learning_rate > 0 and self.clip_norm > 0 and self.warmup >= 0):
            raise ConfigError(f"learning_rate and clip_norm must be > 0 and warmup >= 0, got "
                              f"{self.learning_rate}, {self.clip_norm}, {self.warmup}")
        if self.decay not in DECAYS:
            raise ConfigError(f"decay must be one of {DECAYS}, got {self.decay!r}")


class Trainer:
    """One run of a task: data, optimizer, the jitted step, checkpoints and logs."""

    def __init__(self, config: TrainConfig, task: Task, run_dir: str | Path, progress: bool = True):
        initialize_distributed()  # joins a run named by JAX_COORDINATOR_ADDRESS; else nothing
        self.config = config
        self.task = task
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.tx = make_optimizer(config.learning_rate, config.steps, config.clip_norm,
                                 config.warmup, config.decay)
        if task.optimizer is not None:
            self.tx = task.optimizer(self.tx)
        self.step_fn = make_train_step(task.forward, task.terms, self.tx, task.forward_state is not None)
        self.parallel = data_parallel(config.batch_size)
        self.primary = is_primary()

    def initial_state(self) -> TrainState:
        params = self.task.init_params(self.config.seed)
        forward_state = self.task.forward_state(params) if self.task.forward_state is not None else None
        return init_state(params, self.tx, self.task.terms, self.config.seed, forward_state)

    def _batches(self) -> Batches:
        source = ImageSet.from_folders(*self.config.data, progress=self.progress) if self.config.data else ImageSet.default()
        return Batches(source, self.config.batch_size, self.config.crop, self.config.seed)

    def run(self, until: int | None = None):
        """Train to `config.steps` (resuming from the latest checkpoint); return the task's
        artifact (for codec tasks, the model package) on process 0, None on the others.

        With `until`, stop after that step with a checkpoint and return None: a run in slices
        (or one that was interrupted) continues exactly where it stopped.
        """
        stop = self.config.steps if until is None else min(until, self.config.steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.primary:
            self._check_config_file()
        state = self.parallel.put_state(self.initial_state())
        options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=self.config.checkpoint_every)
        with ocp.CheckpointManager((self.run_dir / "checkpoints").absolute(), options=options) as manager:
            if manager.latest_step() is not None:
                state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(state))
            start = int(local_value(state.step))
            batches = self._batches()
            rows = self.parallel.local_rows(self.config.batch_size)
            log = (self.run_dir / "metrics.jsonl").open("a") if self.primary else None
            bar = tqdm(total=self.config.steps, initial=start, desc="train", unit="step",
                       disable=not (self.progress and self.primary))
            try:
                with batches.iterate(start, max(start, stop), rows=rows) as stream:
                    for batch in stream:
                        state, metrics = self.step_fn(state, self.parallel.put_batch(batch))
                        if self.task.between_steps is not None:
                            state = self.task.between_steps(state, batch)
                        step = int(local_value(state.step))
                        if log and (step % self.config.log_every == 0 or step == self.config.steps):
                            self._log(log, bar, step, local_value(metrics))
                        manager.save(step, args=ocp.args.StandardSave(state))
                        bar.update(1)
                if manager.latest_step() != int(local_value(state.step)):
                    manager.save(int(local_value(state.step)), args=ocp.args.StandardSave(state), force=True)
                manager.wait_until_finished()
            finally:
                bar.close()
                if log:
                    log.close()
        if int(local_value(state.step)) < self.config.steps or not self.primary:
            return None
        extra = (local_value(state.term_states[FORWARD_STATE]),) if self.task.forward_state is not None else ()
        return self.task.finalize(local_value(state.params), self.run_dir, *extra)

    def _log(self, log, bar, step: int, metrics: dict) -> None:
        record = {"step": step, "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        log.write(json.dumps(record) + "\n")
        log.flush()
        shown = {k: f"{record[k]:.3f}" for k in ("loss", *self.task.log_keys) if k in record}
        bar.set_postfix(shown)

    def _check_config_file(self) -> None:
        """Write config.json, or refuse to resume a run that was started with another config."""
        path = self.run_dir / "config.json"
        current = {"train": describe(self.config), "task": self.task.description}
        if path.exists():
            saved = json.loads(path.read_text())
            saved.get("train", {}).pop("steps", None)
            if saved != {"train": {k: v for k, v in current["train"].items() if k != "steps"}, "task": current["task"]}:
                raise ConfigError(f"{self.run_dir} holds a run with a different config; use another --out")
        path.write_text(json.dumps(current, indent=2))
