"""Time and peak memory of decompression bombs, and the codec's memory per pixel (docs/codec.md).

    python experiments/decompression_bombs.py bombs            # 24-byte streams, a 9000x9000 PNG
    python experiments/decompression_bombs.py budget --side 2048

Every case runs in a fresh process; peak memory is that process's maximum RSS
(`resource.getrusage(RUSAGE_CHILDREN)` read right after it ends). Models are random-initialized.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import sys, time
import numpy as np
from jaxlic.codec import Bitstream, build_tables, compress, decompress
from jaxlic.models import build_model, init_params, model_config
case, arch, width, side, path = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
config = model_config(arch, 3, width=width)
package = build_tables(config, init_params(build_model(config), 0))
start = time.perf_counter()
try:
    if case == "stream":
        decompress(package, Bitstream(package.fingerprint, side, side, (b"", b"")).to_bytes())
    elif case == "png":
        compress(package, path)
    elif case == "compress":
        yy, xx = np.mgrid[0:side, 0:side] / side
        pixels = np.stack([128 + 100 * np.sin(5 * xx + c) * np.cos(4 * yy) for c in range(3)], -1).astype(np.uint8)
        start = time.perf_counter()
        open(path, "wb").write(compress(package, pixels))
    else:
        decompress(package, open(path, "rb").read())
    outcome = "ok"
except Exception as exc:
    outcome = f"{type(exc).__name__}"
print(f"{outcome}, {time.perf_counter() - start:.2f} s")
'''


def _run(case: str, arch: str, width: float, side: int, path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-c", CHILD, case, arch, str(width), str(side), str(path)],
                         capture_output=True, text=True)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = out.stdout.strip() or f"died: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
    shown = f"{peak / 2**20:.2f} GiB" if peak > before else "<= an earlier case"
    print(f"{case:10s} {arch} width {width} {side}x{side}: {result}, peak RSS {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["bombs", "budget"])
    parser.add_argument("--side", type=int, default=2048, help="budget: the image side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case"
        if args.what == "bombs":
            from PIL import Image

            for side in (4096, 65535):
                _run("stream", "bmshj2018-hyperprior", 0.25, side, path)
            Image.new("RGB", (9000, 9000), (90, 120, 200)).save(path.with_suffix(".png"))
            print(f"PNG: {path.with_suffix('.png').stat().st_size} bytes")
            _run("png", "bmshj2018-hyperprior", 0.25, 9000, path.with_suffix(".png"))
        else:  # smallest first: RUSAGE_CHILDREN is the maximum over the children so far
            for side in (64, args.side):
                for step in ("compress", "decompress"):
                    _run(step, "bmshj2018-hyperprior", 1.0, side, path)


if __name__ == "__main__":
    main()
