"""Utilization per layer, fps per board and width, and the sizing tables of the VTA perf model.

Usage: .venv/bin/python experiments/vta_tables.py [--resolution 1280x720] [--fps 25]
Prints markdown tables; every number comes from lowering with the real scheduler and timing the
programs with compile/vta/perf.py.
"""

from __future__ import annotations

import argparse

from compile.cli import parse_resolution
from compile.vta.config import load_config
from compile.vta.network import decoder, layer_table, lower_network, width_channels
from compile.vta.sizing import size_model

BOARDS = ("pynq", "ultra96", "zcu104", "zcu104_block32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resolution", type=parse_resolution, default=(1280, 720))
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args()
    width, height = args.resolution

    print(f"## Per-layer GEMM utilization, hyperprior decoder width 1.0, {width}x{height}, zcu104\n")
    lowered = lower_network(decoder("hyperprior", args.resolution, width_channels(1.0)), load_config("zcu104"))
    print("| layer | input | output | tile | GMAC | cycles | ms | utilization |\n|---|---|---|---|---|---|---|---|")
    for row in layer_table(lowered):
        print(f"| {row['layer']} | {row['in']} | {row['out']} | {row['tiling']} | {row['gmac']:.3f} | "
              f"{row['cycles']} | {row['ms']:.2f} | {row['util']:.1%} |")

    print(f"\n## Predicted fps, {width}x{height} decode (VTA layers only)\n")
    print("| board | factorized w1.0 | factorized w0.5 | hyperprior w1.0 | hyperprior w0.5 |\n|---|---|---|---|---|")
    for board in BOARDS:
        config = load_config(board)
        rates = [lower_network(decoder(arch, args.resolution, width_channels(w)), config).fps()
                 for arch in ("factorized", "hyperprior") for w in (1.0, 0.5)]
        print(f"| {board} | " + " | ".join(f"{r:.2f}" for r in rates) + " |")

    for arch in ("hyperprior", "factorized"):
        print(f"\n## Sizing: {arch}, {width}x{height} at {args.fps:g} fps\n")
        results = {board: size_model(load_config(board), arch, args.resolution, args.fps, progress=False)
                   for board in BOARDS}
        widths = [c.width for c in results[BOARDS[0]][0]]
        print("| width | N, M | " + " | ".join(BOARDS) + " |\n|---|---|" + "---|" * len(BOARDS))
        for i, w in enumerate(widths):
            n, m = results[BOARDS[0]][0][i].channels
            cells = [f"{results[b][0][i].fps:.2f}{' ✓' if results[b][0][i].meets else ''}" for b in BOARDS]
            print(f"| {w:g} | {n}, {m} | " + " | ".join(cells) + " |")
        print("| **largest width meeting the budget** | | " + " | ".join(
            f"{results[b][1].width:g}" if results[b][1] else "none" for b in BOARDS) + " |")


if __name__ == "__main__":
    main()
