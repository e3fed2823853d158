"""Train the four sandwich scenarios one after another with `jaxlic sandwich train` (resumable).

    python experiments/sandwich_train.py --out runs/sandwich --steps gray=2000 rgb=2000 half-res=1500 high-bit-depth=1500
    python experiments/sandwich_train.py --out runs/sw --steps rgb=400 -- --lr 3e-4 --pre-gain 0.1

Arguments after `--` go to every `jaxlic sandwich train` call unchanged.

Trains on ../shared/data/train only (never Kodak). Each run directory gets `wall_time.json` with
the wall and CPU seconds (all threads, compiles included) spent per invocation, so the report can
say exactly what the budget bought.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jaxlic.cli import main as jaxlic_main
from timed_runs import cpu_seconds

TRAIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sandwich"))
    parser.add_argument("--steps", nargs="+", required=True, help="SCENARIO=STEPS, in the order to train")
    parser.add_argument("--data", type=Path, default=TRAIN)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("extra", nargs="*", help="after --: more `jaxlic sandwich train` options")
    args = parser.parse_args()
    for item in args.steps:
        scenario, steps = item.split("=")
        run = args.out / scenario
        start, cpu_start = time.time(), cpu_seconds()
        code = jaxlic_main(["sandwich", "train", "--scenario", scenario, "--data", str(args.data), "--steps", steps,
                            "--seed", str(args.seed), "--out", str(run), *args.extra])
        if code:
            raise SystemExit(code)
        log = run / "wall_time.json"
        times = json.loads(log.read_text()) if log.exists() else []
        log.write_text(json.dumps(times + [{"steps": int(steps), "seconds": time.time() - start,
                                                  "cpu_seconds": cpu_seconds() - cpu_start}], indent=2))
        print(f"{scenario}: {time.time() - start:.0f} s wall, {cpu_seconds() - cpu_start:.0f} s CPU")


if __name__ == "__main__":
    main()
