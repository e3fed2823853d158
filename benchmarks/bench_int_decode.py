"""Integer-mode vs float package decode time of the same model, side by side, on a Kodak image.

    .venv/bin/python benchmarks/bench_int_decode.py [--repeats 5] [--widths 0.25 0.5] [--profile]
    .venv/bin/python benchmarks/bench_int_decode.py --pair runs/hp05/model.jxlm runs/hp05-int8.jxlm ...

For bmshj2018-factorized and bmshj2018-hyperprior (quality 3) at each width: lively random
parameters (tests/quant/conftest.py), calibrated on crops of the built-in photos and made integer
with `jaxlic.quant.export.integerize`, as `jaxlic quantize` does after calibration. Each package
codes ../shared/data/kodak/kodim01.png (768 x 512) with `jaxlic.compress`; `jaxlic.decompress`
of those real bitstreams is timed after one warm-up call, alternating float and integer, and the
medians are compared. The integer decode is checked bit-exact against the NumPy reference.
`--pair FLOAT INT` (repeatable) times trained packages instead: a float package and its
`jaxlic quantize` output.
--profile times every op of the integer graph alone (jitted, on that image's latent shapes),
summed per op kind, with XLA's int8 convolutions ("before") and with the exact float32 planes
("after"); the other ops run as they are now in both.
The machine may be shared: the 1-minute load average is printed with every number.
Results go to out/benchmarks/bench_int_decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "quant"))

import jaxlic  # noqa: E402  (sets XLA_FLAGS before jax starts)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from conftest import lively_packages  # noqa: E402
from jaxlic.images import read_image  # noqa: E402
from jaxlic.quant import execute  # noqa: E402
from jaxlic.quant.exact_conv import plan_graph  # noqa: E402

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior")
IMAGE = REPO.parent / "shared" / "data" / "kodak" / "kodim01.png"


def load() -> float:
    return os.getloadavg()[0]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decode_times(float_package, int_package, pixels: np.ndarray, repeats: int) -> dict:
    streams = {"float": jaxlic.compress(float_package, pixels), "int": jaxlic.compress(int_package, pixels)}
    chosen = {"float": float_package, "int": int_package}
    decoded = {kind: jaxlic.decompress(chosen[kind], data) for kind, data in streams.items()}  # compiles
    exact = np.array_equal(decoded["int"], jaxlic.decompress(int_package, streams["int"], backend="numpy"))
    times = {kind: [] for kind in streams}
    loads = [load()]
    for _ in range(repeats):
        for kind, data in streams.items():
            times[kind].append(timed(lambda: jaxlic.decompress(chosen[kind], data)))
        loads.append(load())
    medians = {kind: statistics.median(t) for kind, t in times.items()}
    bpp = {kind: 8 * len(data) / (pixels.shape[0] * pixels.shape[1]) for kind, data in streams.items()}
    return {"float_s": medians["float"], "int_s": medians["int"], "ratio": medians["int"] / medians["float"],
            "bpp": bpp, "bit_exact_vs_numpy": exact, "load": [min(loads), max(loads)]}


def profile(graph, height: int, width: int, repeats: int) -> dict:
    """Seconds per op kind, every op jitted alone, with integer convolutions and with the planes."""
    shapes = {"y_symbols": (1, height // 16, width // 16), "z_symbols": (1, height // 64, width // 64)}
    inputs = {name: np.zeros(shapes[name] + (c,), np.int32) for name, c in graph.inputs.items()}
    values = execute.run(graph, inputs, [op.output for op in graph.ops]) | inputs
    consts = {name: jnp.asarray(a) for name, a in graph.constants.items()}
    result = {}
    for label, plans in (("before", None), ("after", plan_graph(graph))):
        per_kind = defaultdict(float)
        for op in graph.ops:
            fn = jax.jit(lambda c, v, op=op: execute.run_ops([op], c, v, [op.output], "int", plans))
            args = {name: jnp.asarray(values[name]) for name in op.inputs}
            jax.block_until_ready(fn(consts, args))
            per_kind[op.kind] += statistics.median(
                timed(lambda: jax.block_until_ready(fn(consts, args))) for _ in range(repeats))
        result[label] = dict(per_kind) | {"total": sum(per_kind.values()), "load": load()}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pair", nargs=2, action="append", type=Path, metavar=("FLOAT", "INT"),
                        help="a trained float package and its integer package (repeatable; replaces the random models)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "benchmarks" / "bench_int_decode.json")
    args = parser.parse_args(argv)
    pixels = read_image(args.image)
    print(f"{args.image.name} {pixels.shape[1]}x{pixels.shape[0]}, {jax.device_count()} {jax.default_backend()} "
          f"device(s), {os.cpu_count()} cores, median of {args.repeats} warm decodes")
    rows = []
    if args.pair:
        pairs = [(jaxlic.load(f), jaxlic.load(i)) for f, i in args.pair]
    else:
        pairs = [lively_packages(arch, width) for arch in ARCHS for width in args.widths]
    for float_package, int_package in pairs:
        arch, width = float_package.config.arch, float_package.config.width
        row = {"arch": arch, "width": width, "N": float_package.config.N, "M": float_package.config.M,
               **decode_times(float_package, int_package, pixels, args.repeats)}
        print(f"{arch} w{width} (N={row['N']}, M={row['M']}): float {row['float_s']:.3f} s, integer "
              f"{row['int_s']:.3f} s, ratio {row['ratio']:.2f}; bpp float {row['bpp']['float']:.3f} int "
              f"{row['bpp']['int']:.3f}; bit-exact vs NumPy: {row['bit_exact_vs_numpy']}; "
              f"load {row['load'][0]:.2f}-{row['load'][1]:.2f}", flush=True)
        if args.profile:
            row["profile"] = profile(int_package.integer, *pixels.shape[:2], args.repeats)
            for label, kinds in row["profile"].items():
                print(f"  {label}: " + ", ".join(f"{k} {v:.4f}" for k, v in kinds.items()), flush=True)
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")
    return 0 if all(row["bit_exact_vs_numpy"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
