"""Which exact formulation of the Balle transforms' strided convolutions is fastest on XLA CPU.

    .venv/bin/python benchmarks/bench_conv_forms.py [--batch 8] [--crop 128] [--seconds 2]

For the layer shapes of bmshj2018-factorized q3 (N=128, 5x5, stride 2) at --batch crops of
--crop pixels, times every pass (forward, input gradient, weight gradient) of each form side by
side in one process, jitted, and prints ms and the ratio to the textbook form:
- downsampling: direct strided convolution (textbook) vs space-to-depth + stride-1 convolution;
- upsampling: lax.conv_transpose-style dilated convolution (textbook) vs sub-pixel (stride-1
  convolution + depth-to-space) vs per-phase (s*s stride-1 convolutions, interleaved);
- "jaxlic": `conv_down` / `conv_up`, the custom-VJP mix of forms the models use (the fastest
  form of each pass; this script is how that choice was made).
Results go to out/benchmarks/bench_conv_forms.json.
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

from jaxlic.nn.conv import (  # noqa: E402
    conv_down, conv_down_reference, conv_down_space_to_depth, conv_transpose_phases, conv_transpose_reference,
    conv_transpose_subpixel, conv_up,
)

DOWN_FORMS = {"direct": conv_down_reference, "space_to_depth": conv_down_space_to_depth, "jaxlic": conv_down}
UP_FORMS = {"dilated": conv_transpose_reference, "subpixel": conv_transpose_subpixel,
            "phases": conv_transpose_phases, "jaxlic": conv_up}


def _seconds_per_call(fn, args, budget: float) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget:
        jax.block_until_ready(fn(*args))
        calls += 1
    return (time.perf_counter() - start) / calls


def _passes(form):
    """forward, input gradient and weight gradient of a stride-2 convolution form."""
    def vjp(x, w, g, argnum):
        return jax.vjp(lambda *a: form(*a, 2), x, w)[1](g)[argnum]
    return {"forward": lambda x, w, g: form(x, w, 2),
            "input_grad": lambda x, w, g: vjp(x, w, g, 0),
            "weight_grad": lambda x, w, g: vjp(x, w, g, 1)}


def bench_layer(forms: dict, x_shape, k_shape, out_shape, budget: float) -> dict:
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x, w, g = (jax.random.normal(key, shape) for key, shape in zip(keys, (x_shape, k_shape, out_shape)))
    results = {}
    for name, form in forms.items():
        for pass_name, fn in _passes(form).items():
            results.setdefault(pass_name, {})[name] = _seconds_per_call(fn, (x, w, g), budget) * 1e3
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--channels", type=int, default=128, help="N of the transforms")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per pass and form")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "benchmarks" / "bench_conv_forms.json")
    args = parser.parse_args()
    n, b, c = args.channels, args.batch, args.crop
    layers = []  # (kind, input size, in channels, out channels): the g_a / g_s layers
    for i, (cin, cout) in enumerate([(3, n), (n, n), (n, n), (n, n)]):
        layers.append(("down", c >> i, cin, cout))
    for i, (cin, cout) in enumerate([(n, n), (n, n), (n, n), (n, 3)]):
        layers.append(("up", c >> (4 - i), cin, cout))
    report = {"batch": b, "crop": c, "channels": n, "load_average": os.getloadavg()[0], "layers": []}
    for kind, size, cin, cout in layers:
        x_shape = (b, size, size, cin)
        out_size = size // 2 if kind == "down" else size * 2
        results = bench_layer(DOWN_FORMS if kind == "down" else UP_FORMS, x_shape, (5, 5, cin, cout),
                              (b, out_size, out_size, cout), args.seconds)
        report["layers"].append({"kind": kind, "input": list(x_shape), "out_channels": cout, "ms": results})
        for pass_name, times in results.items():
            base = next(iter(times.values()))
            cells = "  ".join(f"{name} {ms:7.2f} ms ({ms / base:4.2f})" for name, ms in times.items())
            print(f"{kind:4s} {size:3d}px {cin:3d}->{cout:3d} {pass_name:11s} {cells}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
