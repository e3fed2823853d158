"""Wall time of simulating one decode on the functional VTA simulator, checked against the reference.

Usage: .venv/bin/python experiments/vta_sim_speed.py [--resolution 768x512] [--model factorized]
Random int8 weights (seed 0) of the width-1.0 decoder; prints lowering, simulation and NumPy
reference times, the profiler counters and whether the outputs match bit for bit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from compile.cli import parse_resolution
from compile.vta.config import load_config
from compile.vta.network import decoder, lower_network, random_params, reference, simulate, width_channels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=parse_resolution, default=(768, 512))
    parser.add_argument("--model", default="factorized", choices=("factorized", "hyperprior"))
    parser.add_argument("--config", default="sim")
    args = parser.parse_args()
    network = decoder(args.model, args.resolution, width_channels(1.0))
    params = random_params(network, 0)
    rng = np.random.default_rng(1)
    inputs = {k: rng.integers(-40, 40, (1, *s), dtype=np.int8) for k, s in network.inputs.items()}
    start = time.perf_counter()
    lowered = lower_network(network, load_config(args.config), params, progress=True)
    lowered_at = time.perf_counter()
    outputs, counters = simulate(lowered, inputs, progress=True)
    simulated_at = time.perf_counter()
    want = reference(network, params, inputs)
    done = time.perf_counter()
    exact = all(np.array_equal(v, want[k]) for k, v in outputs.items())
    print(f"{network.name} decode {args.resolution[0]}x{args.resolution[1]} on {args.config}: "
          f"lower {lowered_at - start:.1f} s, simulate {simulated_at - lowered_at:.1f} s, "
          f"NumPy reference {done - simulated_at:.1f} s, bit-exact: {exact}")
    print({k: v for k, v in counters.as_dict().items()})


if __name__ == "__main__":
    main()
