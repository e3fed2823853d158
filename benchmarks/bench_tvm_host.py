"""TVM host-only build vs the JAX integer path: graph run time per decoder phase, side by side.

Usage: .venv/bin/python benchmarks/bench_tvm_host.py --model runs/hp05-int8.jxlm --resolution 768x512
Builds the whole integer graph with TVM for this machine's CPU (no VTA calls), checks it equals
the JAX integer path on random symbols, then prints the median of warm runs of each phase, the
ratio, the build time and the load average, plus the slowest TVM kernels (VirtualMachine
instrument). On a loaded machine, compare one core each by CPU time:
TVM_NUM_THREADS=1 XLA_FLAGS=--xla_cpu_multi_thread_eigen=false .venv/bin/python \
    benchmarks/bench_tvm_host.py --model runs/hp05-int8.jxlm --cpu-time
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np
import tvm
from tvm import relax

import jaxlic
from compile import tvm as tvm_build
from compile.cli import parse_resolution
from compile.deploy import latent_shapes, median_seconds, phases
from jaxlic.quant import execute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="integer-mode package")
    parser.add_argument("--resolution", type=parse_resolution, default=(768, 512))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-time", action="store_true",
                        help="median CPU time of all threads instead of wall time (with one thread each, see above)")
    args = parser.parse_args()
    package = jaxlic.load(args.model)
    graph = package.integer
    shapes = latent_shapes(package, args.resolution)
    start = time.perf_counter()
    module, names = tvm_build.to_relax(graph, shapes, functions=phases(graph))
    executable = tvm_build.build(module)
    build_s = time.perf_counter() - start
    host = tvm_build.HostModule(executable, names, graph.constants)
    rng = np.random.default_rng(0)
    symbols = {name: rng.integers(-3, 4, shape).astype(np.int32) for name, shape in shapes.items()}
    values = dict(symbols)
    clock = time.process_time if args.cpu_time else time.perf_counter
    for phase in phases(graph):
        inputs = {name: values[name] for name in phase.inputs}
        got, want = host.run(inputs, phase.outputs), execute.run(graph, inputs, phase.outputs)
        if not all(np.array_equal(got[k], want[k]) for k in phase.outputs):
            raise SystemExit(f"{phase.name}: TVM and the JAX integer path differ")
        values.update(want)
        tvm_s = median_seconds(lambda: host.run(inputs, phase.outputs), args.repeats, clock)
        jax_s = median_seconds(lambda: execute.run(graph, inputs, phase.outputs), args.repeats, clock)
        print(f"{phase.name}: TVM {tvm_s:.3f} s, JAX int path {jax_s:.3f} s, ratio {tvm_s / jax_s:.2f}")
    print(f"TVM build {build_s:.1f} s; {'CPU' if args.cpu_time else 'wall'} time; load average {os.getloadavg()}")

    vm = relax.VirtualMachine(executable, tvm.cpu())
    spent, started = collections.Counter(), {}

    def instrument(func, name, before_run, ret_value, *_):
        if before_run:
            started[name] = time.perf_counter()
        else:
            spent[name] += time.perf_counter() - started[name]
        return 0

    vm.set_instrument(instrument)
    last = phases(graph)[-1]
    vm[last.name](*[tvm.runtime.tensor(values[n]) for n in last.inputs],
                  *[tvm.runtime.tensor(np.ascontiguousarray(graph.constants[n])) for n in names])
    print(f"slowest kernels of {last.name}:")
    for name, seconds in spent.most_common(8):
        print(f"  {seconds:.3f} s  {name}")


if __name__ == "__main__":
    main()
