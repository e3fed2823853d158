"""Training runs: config, checkpoints with exact resume, JSONL metrics, progress, a package.

A run directory holds `checkpoints/` (orbax), `metrics.jsonl`, `config.json` and, at the end,
`model.jxlm`. Batch i and the step's noise are pure functions of (seed, i), so a resumed run
reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from jaxlic.codec import ModelPackage, build_tables
from jaxlic.errors import ConfigError
from jaxlic.models import build_model, model_config
from jaxlic.train.data import Batches, ImageSet
from jaxlic.train.parallel import data_parallel
from jaxlic.train.step import TrainState, init_state, make_optimizer, make_train_step
from jaxlic.train.terms import RateDistortion


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; saved next to its checkpoints."""

    model: str = "bmshj2018-factorized"
    quality: int = 3
    width: float = 1.0
    gdn: str = "gdn"
    metric: str = "mse"
    lmbda: float | None = None  # None: the zoo's lambda for `quality`
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

    @classmethod
    def from_file(cls, path: Path) -> "TrainConfig":
        data = json.loads(path.read_text())
        data["data"] = tuple(data.get("data", ()))
        return cls(**data)


class Trainer:
    """One run: model, loss terms, optimizer, data and the jitted step."""

    def __init__(self, config: TrainConfig, run_dir: str | Path, progress: bool = True):
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.model_config = model_config(config.model, config.quality, config.width, config.gdn)
        if config.lmbda is not None:
            self.model_config = dataclasses.replace(self.model_config, lmbda=config.lmbda)
        self.model = build_model(self.model_config)
        self.terms = [RateDistortion(self.model_config.lmbda, config.metric)]
        self.tx = make_optimizer(config.learning_rate, config.steps, config.clip_norm,
                                 config.warmup, config.decay)
        model = self.model

        def forward(params, batch, rng):
            return model.apply({"params": params}, batch, "noise", rngs={"noise": rng})

        self.step_fn = make_train_step(forward, self.terms, self.tx)
        self.parallel = data_parallel(config.batch_size)

    def initial_state(self) -> TrainState:
        size = self.model.downsampling
        variables = self.model.init(
            {"params": jax.random.PRNGKey(self.config.seed), "noise": jax.random.PRNGKey(self.config.seed + 1)},
            jnp.zeros((1, size, size, 3)),
        )
        return init_state(variables["params"], self.tx, self.terms, self.config.seed)

    def _batches(self) -> Batches:
        source = ImageSet.from_folders(*self.config.data, progress=self.progress) if self.config.data else ImageSet.default()
        return Batches(source, self.config.batch_size, self.config.crop, self.config.seed)

    def run(self, until: int | None = None) -> ModelPackage | None:
        """Train to `config.steps` (resuming from the latest checkpoint) and write the package.

        With `until`, stop after that step with a checkpoint and return None: a run in slices
        (or one that was interrupted) continues exactly where it stopped.
        """
        stop = self.config.steps if until is None else min(until, self.config.steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_config_file()
        state = self.initial_state()
        options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=self.config.checkpoint_every)
        with ocp.CheckpointManager((self.run_dir / "checkpoints").absolute(), options=options) as manager:
            if manager.latest_step() is not None:
                state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(state))
            state = self.parallel.put_state(state)
            start = int(state.step)
            batches = self._batches()
            log = (self.run_dir / "metrics.jsonl").open("a")
            bar = tqdm(total=self.config.steps, initial=start, desc="train", unit="step", disable=not self.progress)
            try:
                with batches.iterate(start, max(start, stop)) as stream:
                    for batch in stream:
                        state, metrics = self.step_fn(state, self.parallel.put_batch(batch))
                        step = int(state.step)
                        if step % self.config.log_every == 0 or step == self.config.steps:
                            record = {"step": step, "time": time.time(),
                                      **{k: float(v) for k, v in metrics.items()}}
                            log.write(json.dumps(record) + "\n")
                            log.flush()
                            bar.set_postfix(loss=f"{record['loss']:.2f}", bpp=f"{record['bpp']:.3f}",
                                            psnr=f"{record['psnr']:.2f}")
                        manager.save(step, args=ocp.args.StandardSave(state))
                        bar.update(1)
                if manager.latest_step() != int(state.step):
                    manager.save(int(state.step), args=ocp.args.StandardSave(state), force=True)
                manager.wait_until_finished()
            finally:
                bar.close()
                log.close()
        if int(state.step) < self.config.steps:
            return None
        package = build_tables(self.model_config, jax.device_get(state.params))
        package.save(self.run_dir / "model.jxlm")
        return package

    def _check_config_file(self) -> None:
        """Write config.json, or refuse to resume a run that was started with another config."""
        path = self.run_dir / "config.json"
        current = dataclasses.asdict(self.config)
        current["data"] = list(current["data"])
        if path.exists():
            saved = json.loads(path.read_text())
            if {k: v for k, v in saved.items() if k != "steps"} != {k: v for k, v in current.items() if k != "steps"}:
                raise ConfigError(f"{self.run_dir} holds a run with a different config; use another --out")
        path.write_text(json.dumps(current, indent=2))
