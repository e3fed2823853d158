"""Predicted decode speed of integer packages on every board: VTA utilization, host share, fps.

Usage: .venv/bin/python experiments/board_estimates.py runs/hp05-int8.jxlm runs/fac05-int8.jxlm \
    --resolution 768x512 --out runs/board_estimates.json
VTA time comes from the cycle model of each layer's program; host ops and entropy decoding are
measured on this machine (CPU time) with the JAX integer path and scaled by the board CPU's
assumed slowdown (`compile.deploy.HOST_SLOWDOWN`). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from compile.cli import parse_resolution
from compile.deploy import estimate
from compile.vta.config import available_configs, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="integer-mode packages")
    parser.add_argument("--resolution", type=parse_resolution, default=(768, 512))
    parser.add_argument("--boards", nargs="+", default=[b for b in available_configs() if b != "zcu104_block32"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    print("| model | board | VTA MAC share | mean VTA utilization | VTA ms | host ms | entropy ms | host share | fps bound | VTA-only fps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for board in args.boards:
            report = estimate(model, load_config(board), args.resolution)
            vta = [r for r in report["placement"] if r["placement"] == "vta"]
            utilization = sum(r["util"] * r["cycles"] for r in vta) / sum(r["cycles"] for r in vta)
            row = {"model": str(model), "board": board, "utilization": utilization,
                   **{k: v for k, v in report.items() if k != "placement"}}
            rows.append(row)
            print(f"| {model.name} | {board} | {report['vta_mac_share']:.1%} | {utilization:.1%} | "
                  f"{1e3 * report['vta_s']:.1f} | {1e3 * report['host_s']:.0f} | {1e3 * report['entropy_s']:.0f} | "
                  f"{report['host_share']:.0%} | {report['fps']:.2f} | {report['vta_fps']:.2f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"resolution": list(args.resolution), "load_average": os.getloadavg(),
                                    "rows": rows}, indent=1))
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
