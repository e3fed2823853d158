"""Training-step and inference speed of jaxlic vs CompressAI (PyTorch), side by side on CPU.

    .venv/bin/python benchmarks/bench_train.py [--rounds 3] [--steps 5] [--sizes small big]

Both sides train the same architecture (bmshj2018-factorized, FactorizedPrior(N, M)) on the same
batch and crop of random data with Adam:
- jaxlic through the library's own step: `codec_task(config)` (forward and loss terms),
  `make_optimizer` (Adam lr 1e-4, global-norm clip 1.0) and `make_train_step` (jitted).
- CompressAI through `peers/compressai_peer.py bench-train` (its examples/train.py step: Adam
  lr 1e-4 + aux Adam on the quantiles, lambda * 255^2 * MSE + bpp, clip 1.0,
  torch.set_num_threads(--threads)).
Sizes: small = batch 8 x 128 x 128, N=64, M=96; big = 16 x 256 x 256, N=128, M=192.
Inference: g_s(g_a(x)) on one 768 x 512 image (N=128, M=192), without gradients.

The machine is shared, so each size runs in interleaved rounds (peer, then jaxlic, `--rounds`
times); warm-up steps (and jaxlic's one-time jit compile, reported separately) are excluded.
torch needs about ten steps to reach its steady speed (with 2 warm-up steps the small case
read 0.27-0.39 s per CompressAI step, against 0.16-0.18 s after 20 and 0.18 s over a
3000-step run), hence the default of 10 warm-up steps per round and side;
step time = median over all timed steps of all rounds; the spread is the range of the per-round
ratios. The load average is recorded before and after each round: ratios taken under load are
not comparable (torch's OpenMP threads degrade far more than XLA's under contention).
Results go to out/benchmarks/bench_train.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import jaxlic  # noqa: E402,F401  (sets XLA_FLAGS before jax starts)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxlic.models import ModelConfig, build_model, init_params  # noqa: E402
from jaxlic.train.step import init_state, make_optimizer, make_train_step  # noqa: E402
from jaxlic.train.task import codec_task  # noqa: E402
from peer_utils import peer_unavailable_reason, run_peer_json  # noqa: E402

ARCH = "bmshj2018-factorized"
SIZES = {"small": (8, 128, 128, 64, 96), "big": (16, 256, 256, 128, 192)}  # batch, H, W, N, M
INFER = (1, 512, 768, 128, 192)
LMBDA = 0.0067  # quality 3; irrelevant for speed


def load() -> float:
    """1-minute load average."""
    return os.getloadavg()[0]


def config_for(n: int, m: int) -> ModelConfig:
    return ModelConfig(arch=ARCH, quality=3, N=n, M=m, width=n / 128, lmbda=LMBDA)


class JaxlicTrain:
    """The library's real training step for one size."""

    def __init__(self, batch: int, height: int, width: int, n: int, m: int, seed: int = 0):
        task = codec_task(config_for(n, m))
        tx = make_optimizer(1e-4, 10_000, clip_norm=1.0, decay="constant")
        self.step = make_train_step(task.forward, task.terms, tx)
        self.state = init_state(task.init_params(seed), tx, task.terms, seed)
        rng = np.random.default_rng(seed + 1)
        self.batch = jnp.asarray(rng.random((batch, height, width, 3), np.float32))
        t0 = time.perf_counter()
        self._one()
        self.compile_s = time.perf_counter() - t0

    def _one(self) -> float:
        self.state, metrics = self.step(self.state, self.batch)
        return float(metrics["loss"])  # blocks until the step is done

    def time_steps(self, steps: int, warmup: int) -> list[float]:
        times = []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            loss = self._one()
            elapsed = time.perf_counter() - t0
            if not np.isfinite(loss):
                raise RuntimeError(f"jaxlic step gave a non-finite loss {loss}")
            if i >= warmup:
                times.append(elapsed)
        return times


class JaxlicInfer:
    """g_s(g_a(x)) through the model's own analysis/synthesis, jitted as the codec runs them."""

    def __init__(self, batch: int, height: int, width: int, n: int, m: int, seed: int = 0):
        model = build_model(config_for(n, m))
        params = init_params(model, seed)
        analysis = jax.jit(lambda p, x: model.apply({"params": p}, x, method="analysis"))
        synthesis = jax.jit(lambda p, y: model.apply({"params": p}, y, method="synthesis"))
        self.fn = lambda x: synthesis(params, analysis(params, x))
        rng = np.random.default_rng(seed + 1)
        self.x = jnp.asarray(rng.random((batch, height, width, 3), np.float32))
        t0 = time.perf_counter()
        self.fn(self.x).block_until_ready()
        self.compile_s = time.perf_counter() - t0

    def time_steps(self, steps: int, warmup: int) -> list[float]:
        times = []
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            self.fn(self.x).block_until_ready()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        return times


def peer_times(mode: str, shape, threads: int, steps: int, warmup: int) -> list[float]:
    batch, height, width, n, m = shape
    out = run_peer_json([
        "bench-train", "--mode", mode, "--N", n, "--M", m, "--batch", batch, "--size", width,
        "--height", height, "--threads", threads, "--steps", steps, "--warmup", warmup,
        "--lmbda", LMBDA,
    ], timeout=3600)
    return out["all_s"]


def run_case(name: str, mode: str, shape, args) -> dict:
    """Interleaved rounds of peer and jaxlic for one case; medians, per-round ratios, loads."""
    batch, height, width, n, m = shape
    print(f"\n[{name}] {mode}: batch {batch} x {height} x {width}, N={n}, M={m}", flush=True)
    ours = (JaxlicTrain if mode == "train" else JaxlicInfer)(*shape)
    print(f"  jaxlic jit compile (one-time, excluded): {ours.compile_s:.1f} s", flush=True)
    rounds = []
    for r in range(args.rounds):
        before = load()
        peer = peer_times(mode, shape, args.threads, args.steps, args.warmup)
        mid = load()
        mine = ours.time_steps(args.steps, args.warmup)
        after = load()
        ratio = statistics.median(mine) / statistics.median(peer)
        rounds.append({"peer_s": peer, "jaxlic_s": mine, "ratio": ratio, "load": [before, mid, after]})
        print(f"  round {r + 1}: compressai {statistics.median(peer):.4f} s  jaxlic "
              f"{statistics.median(mine):.4f} s  ratio {ratio:.3f}  (load {before:.1f}/{mid:.1f}/{after:.1f})",
              flush=True)
    peer_all = [t for r in rounds for t in r["peer_s"]]
    mine_all = [t for r in rounds for t in r["jaxlic_s"]]
    ratios = [r["ratio"] for r in rounds]
    return {
        "case": name, "mode": mode, "batch": batch, "height": height, "width": width, "N": n, "M": m,
        "compressai_s": statistics.median(peer_all), "jaxlic_s": statistics.median(mine_all),
        "ratio": statistics.median(mine_all) / statistics.median(peer_all),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
        "compressai_min_s": min(peer_all), "jaxlic_min_s": min(mine_all),
        "ratio_of_minima": min(mine_all) / min(peer_all),
        "jaxlic_compile_s": ours.compile_s, "rounds": rounds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "big", "infer"],
                        choices=["small", "big", "infer"])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved peer/jaxlic rounds")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round and side")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per round and side")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (jaxlic: XLA's pool)")
    parser.add_argument("--out", default=str(REPO / "out" / "benchmarks" / "bench_train.json"))
    args = parser.parse_args(argv)
    reason = peer_unavailable_reason()
    if reason:
        print(f"bench_train: skipped: {reason}")
        return 0
    cases = []
    for name in args.sizes:
        mode, shape = ("infer", INFER) if name == "infer" else ("train", SIZES[name])
        cases.append(run_case(name, mode, shape, args))
    result = {
        "benchmark": "train step / inference, jaxlic vs CompressAI (CPU)",
        "cpu_count": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
        "threads": args.threads, "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "platform": platform.platform(), "rounds": args.rounds, "steps": args.steps,
        "warmup": args.warmup, "cases": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{'case':8s} {'what':34s} {'CompressAI s':>12s} {'jaxlic s':>10s} {'ratio':>7s}  {'round ratios':>14s}")
    for c in cases:
        what = f"{c['mode']} {c['batch']}x{c['height']}x{c['width']} N={c['N']} M={c['M']}"
        print(f"{c['case']:8s} {what:34s} {c['compressai_s']:12.4f} {c['jaxlic_s']:10.4f} "
              f"{c['ratio']:7.3f}  {c['ratio_min']:.3f}-{c['ratio_max']:.3f}")
    print(f"(ratio = jaxlic / CompressAI median step time; target <= 1.0)  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
