"""Shared by the experiment scripts: one timed, resumable Trainer run with the usual recipe knobs."""

from __future__ import annotations

import resource
import time
from pathlib import Path


def cpu_seconds() -> float:
    """User + system CPU seconds this process has used so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_run(run_dir: Path, task, *, data: tuple[str, ...], steps: int, lr: float, warmup: int = 0,
              batch_size: int = 8, crop: int = 128, seed: int = 0, log_every: int = 50,
              progress: bool = False):
    """Run (or resume) `task` in `run_dir`, checkpointing every quarter; print and return
    (the task's artifact, wall seconds of this call)."""
    from jaxlic.train.loop import TrainConfig, Trainer

    config = TrainConfig(data=tuple(data), steps=steps, batch_size=batch_size, crop=crop, learning_rate=lr,
                         warmup=warmup, seed=seed, checkpoint_every=max(steps // 4, 1), log_every=log_every)
    start = time.perf_counter()
    artifact = Trainer(config, task, run_dir, progress=progress).run()
    seconds = time.perf_counter() - start
    print(f"{run_dir}: {steps} steps in {seconds:.0f} s", flush=True)
    return artifact, seconds
