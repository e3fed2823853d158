"""Codec speed: jaxlic vs CompressAI (PyTorch) compress/decompress on one Kodak image, on CPU.

    .venv/bin/python benchmarks/bench_codec.py [--rounds 3] [--repeats 5] [--quality 3]

For each architecture (bmshj2018-factorized, bmshj2018-hyperprior) the CompressAI peer exports a
randomly initialized, calibrated model with the zoo's channel counts for --quality (q3: N=128,
M=192); jaxlic imports exactly those weights (`jaxlic.io.compressai.from_state_dict`). Both code
../shared/data/kodak/kodim01.png (768 x 512, no padding needed) with the same thread count
(torch.set_num_threads(--threads); XLA's pool = the machine's cores, 2 here):
- CompressAI: `model.compress` / `model.decompress` (peers/compressai_peer.py bench);
- jaxlic: `jaxlic.compress(package, pixels)` / `jaxlic.decompress(package, data)`, the public
  API (networks jitted once per package and shape, range coding with the stored tables).
The first jaxlic call per shape compiles the networks: that one-time cost is reported apart.
Rounds interleave peer and jaxlic; times are medians over all timed runs; the spread is the
range of per-round ratios; the load average is recorded (the machine is shared).
Results go to out/benchmarks/bench_codec.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import jaxlic  # noqa: E402,F401  (sets XLA_FLAGS before jax starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxlic.codec import compress, decompress  # noqa: E402
from jaxlic.images import read_image  # noqa: E402
from jaxlic.io.compressai import from_state_dict, read_state_dict  # noqa: E402
from peer_utils import peer_unavailable_reason, run_peer_json  # noqa: E402

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior")
IMAGE = REPO.parent / "shared" / "data" / "kodak" / "kodim01.png"


def load() -> float:
    return os.getloadavg()[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def jaxlic_times(package, pixels: np.ndarray, repeats: int, warmup: int):
    encode, decode = [], []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        data = compress(package, pixels)
        t1 = time.perf_counter()
        image = decompress(package, data)
        t2 = time.perf_counter()
        if i >= warmup:
            encode.append(t1 - t0)
            decode.append(t2 - t1)
    return encode, decode, data, image


def run_arch(arch: str, args, work: Path, pixels: np.ndarray) -> dict:
    print(f"\n[{arch}] quality {args.quality}", flush=True)
    state = work / f"{arch}_q{args.quality}.npz"
    exported = run_peer_json(["export", "--arch", arch, "--quality", args.quality, "--seed", args.seed,
                              "--out", state, "--threads", args.threads], timeout=3600)
    package = from_state_dict(read_state_dict(state), arch)
    t0 = time.perf_counter()
    data = compress(package, pixels)
    t1 = time.perf_counter()
    decompress(package, data)
    t2 = time.perf_counter()
    first = {"encode_s": t1 - t0, "decode_s": t2 - t1}
    print(f"  N={exported['N']} M={exported['M']}; jaxlic first call (jit compile, excluded): "
          f"encode {first['encode_s']:.2f} s, decode {first['decode_s']:.2f} s", flush=True)
    rounds = []
    for r in range(args.rounds):
        before = load()
        peer = run_peer_json(["bench", "--arch", arch, "--state", state, "--image", args.image,
                              "--threads", args.threads, "--repeats", args.repeats, "--warmup", 1,
                              "--out", work / f"{arch}_bench.json"], timeout=3600)
        peer = json.loads((work / f"{arch}_bench.json").read_text())
        mid = load()
        enc, dec, data, image = jaxlic_times(package, pixels, args.repeats, 1)
        after = load()
        row = {
            "peer_encode_s": peer["encode_all_s"], "peer_decode_s": peer["decode_all_s"],
            "jaxlic_encode_s": enc, "jaxlic_decode_s": dec,
            "encode_ratio": statistics.median(enc) / peer["encode_s"],
            "decode_ratio": statistics.median(dec) / peer["decode_s"],
            "load": [before, mid, after],
        }
        rounds.append(row)
        print(f"  round {r + 1}: encode {peer['encode_s']:.4f} / {statistics.median(enc):.4f} s "
              f"(ratio {row['encode_ratio']:.3f}), decode {peer['decode_s']:.4f} / "
              f"{statistics.median(dec):.4f} s (ratio {row['decode_ratio']:.3f})  "
              f"load {before:.1f}/{mid:.1f}/{after:.1f}", flush=True)

    def pooled(key):
        return statistics.median([t for r in rounds for t in r[key]])

    result = {
        "arch": arch, "quality": args.quality, "N": exported["N"], "M": exported["M"],
        "compressai_encode_s": pooled("peer_encode_s"), "compressai_decode_s": pooled("peer_decode_s"),
        "jaxlic_encode_s": pooled("jaxlic_encode_s"), "jaxlic_decode_s": pooled("jaxlic_decode_s"),
        "compressai_bytes": int(peer["nbytes"]), "jaxlic_bytes": len(data),
        "jaxlic_psnr": psnr(image, pixels), "jaxlic_first_call_s": first, "rounds": rounds,
    }
    for side in ("encode", "decode"):
        per_round = [r[f"{side}_ratio"] for r in rounds]
        result[f"{side}_ratio"] = result[f"jaxlic_{side}_s"] / result[f"compressai_{side}_s"]
        result[f"{side}_ratio_range"] = [min(per_round), max(per_round)]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--quality", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image", default=str(IMAGE))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per round and side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "out" / "benchmarks" / "bench_codec.json"))
    args = parser.parse_args(argv)
    if not Path(args.image).is_file():
        print(f"bench_codec: skipped: Kodak image {args.image} not found (../shared is absent); "
              "pass --image PATH to use another 768x512 image")
        return 0
    reason = peer_unavailable_reason()
    if reason:
        print(f"bench_codec: skipped: {reason}")
        return 0
    pixels = read_image(args.image)
    with tempfile.TemporaryDirectory(prefix="bench_codec_") as tmp:
        results = [run_arch(arch, args, Path(tmp), pixels) for arch in args.archs]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "compress/decompress, jaxlic vs CompressAI (CPU)", "image": args.image,
        "image_hw": list(pixels.shape[:2]), "threads": args.threads, "cpu_count": os.cpu_count(),
        "jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "platform": platform.platform(), "rounds": args.rounds, "repeats": args.repeats,
        "results": results,
    }, indent=1))
    print(f"\n{'model':22s} {'':7s} {'CompressAI s':>12s} {'jaxlic s':>9s} {'ratio':>6s}  round ratios")
    for r in results:
        for side in ("encode", "decode"):
            lo, hi = r[f"{side}_ratio_range"]
            print(f"{r['arch']:22s} {side:7s} {r[f'compressai_{side}_s']:12.4f} {r[f'jaxlic_{side}_s']:9.4f} "
                  f"{r[f'{side}_ratio']:6.3f}  {lo:.3f}-{hi:.3f}")
        print(f"{'':22s} bytes: CompressAI {r['compressai_bytes']}, jaxlic {r['jaxlic_bytes']}; "
              f"jaxlic PSNR {r['jaxlic_psnr']:.2f} dB; first call {r['jaxlic_first_call_s']['encode_s']:.1f}"
              f"+{r['jaxlic_first_call_s']['decode_s']:.1f} s")
    print(f"(ratio = jaxlic / CompressAI median time; target <= 1.0)  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
