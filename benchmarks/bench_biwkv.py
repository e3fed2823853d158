"""BiWKV in linear time (jaxlic.nn.biwkv.biwkv) against the formula evaluated term by term
(`biwkv_quadratic`, O(T^2) work in blocks of 1024 query tokens) at LALIC's token counts.

    .venv/bin/python benchmarks/bench_biwkv.py [--sides 64 128] [--channels 16] [--seconds 3]

For each side s (s x s tokens, T = s^2; batch 1, --channels channels, random keys and values),
both forms run jitted side by side in one process: forward wall time (best of the calls made
in --seconds after a warm-up call), the memory XLA's compiled program allocates (temporaries
plus output, from its memory analysis), their ratios, and each output's largest error against
float64 (the linear form in float64, which tests/nn/test_biwkv.py holds to the formula within
1e-9). Prints a table with the 1-minute load average; results to
out/benchmarks/bench_biwkv.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jaxlic  # noqa: E402,F401  (sets XLA_FLAGS before jax starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxlic.nn.biwkv import biwkv, biwkv_quadratic  # noqa: E402

FORMS = {"linear": biwkv, "quadratic": biwkv_quadratic}


def _measure(fn, args, budget: float) -> dict:
    compiled = jax.jit(fn).lower(*args).compile()
    memory = compiled.memory_analysis()
    out = jax.block_until_ready(compiled(*args))
    best, start = float("inf"), time.perf_counter()
    while True:
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start >= budget:
            break
    return {"seconds": best, "bytes": int(memory.temp_size_in_bytes + memory.output_size_in_bytes), "out": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    report = {"channels": args.channels, "load_average_start": os.getloadavg()[0], "sizes": []}
    print(f"{'tokens':>9} {'form':>9} {'ms':>10} {'MiB':>9}   (load average {report['load_average_start']:.2f})")
    for side in args.sides:
        T, rng = side * side, np.random.default_rng(side)
        w = rng.standard_normal(args.channels) * 3 / T
        u = rng.standard_normal(args.channels) * 3
        k, v = (rng.standard_normal((1, T, args.channels)) * 4 for _ in range(2))
        inputs = [np.asarray(a, np.float32) for a in (w, u, k, v)]
        runs = {name: _measure(fn, inputs, args.seconds) for name, fn in FORMS.items()}
        for name, run in runs.items():
            print(f"{side:>4}x{side:<4} {name:>9} {run['seconds'] * 1e3:>10.1f} {run['bytes'] / 2**20:>9.1f}")
        with jax.enable_x64(True):
            reference = np.asarray(jax.jit(biwkv)(*[np.asarray(a, np.float64) for a in (w, u, k, v)]))
        lin, quad = runs["linear"], runs["quadratic"]
        entry = {"side": side, "tokens": T, **{f"{n}_{m}": r[m] for n, r in runs.items() for m in ("seconds", "bytes")},
                 **{f"{n}_error": float(np.abs(np.asarray(r["out"]) - reference).max()) for n, r in runs.items()},
                 "time_ratio": quad["seconds"] / lin["seconds"], "memory_ratio": quad["bytes"] / lin["bytes"]}
        print(f"{'':>9} quadratic / linear: time x{entry['time_ratio']:.0f}, memory x{entry['memory_ratio']:.1f}; "
              f"max error vs float64: linear {entry['linear_error']:.1e}, quadratic {entry['quadratic_error']:.1e} "
              f"(max |v| {np.abs(v).max():.1f})")
        report["sizes"].append(entry)
    report["load_average_end"] = os.getloadavg()[0]
    print(f"load average at the end {report['load_average_end']:.2f}")
    out = REPO / "out" / "benchmarks" / "bench_biwkv.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
