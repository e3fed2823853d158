"""Rate and time of a context-model package (elic2022, lalic) on real images: payload of the
coded streams vs the model's own estimate (-log2 of its forward pass likelihoods, rounding mode),
mean estimated and real bpp, the share of the estimate spent on y symbols at the likelihood floor
(1e-9: about 30 bits each, while the coder escapes them for less), exact round trips, and CPU
encode/decode time per image (the first image includes the per-shape compiles; reported apart). The integer context networks are also
checked to decode the same latents on the NumPy backend. With --threads-check, a second process
pinned to one CPU (XLA's multi-threaded Eigen off) decodes every stream again and the latents
(symbols and means) are compared with this process's (all CPUs): any difference would
desynchronize a decoder on another machine's thread count.

    python experiments/context_rate.py --model runs/ctx/elic_w025q3/model.jxlm --images ../shared/data/kodak
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxlic.codec import Bitstream, compress, decode_latents, decompress, load
from jaxlic.codec.api import _to_model_input
from jaxlic.entropy.gaussian import LIKELIHOOD_BOUND
from jaxlic.images import read_image


def latent_digest(latents) -> str:
    """SHA-256 of a decoded latent's symbols and means."""
    return hashlib.sha256(latents.y_symbols.tobytes() + latents.means.tobytes()).hexdigest()


def one_cpu_digests(model: Path, streams: Path) -> dict[str, str]:
    """Digests of every stream's latents, decoded in a process pinned to one CPU."""
    code = ("import os, sys, json; os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:1]); "
            "sys.path.insert(0, sys.argv[3]); from context_rate import latent_digest; "
            "from pathlib import Path; from jaxlic.codec import decode_latents, load; p = load(sys.argv[1]); "
            "print(json.dumps({f.stem: latent_digest(decode_latents(p, f.read_bytes())) "
            "for f in sorted(Path(sys.argv[2]).glob('*.jxlc'))}))")
    env = {**os.environ, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
    out = subprocess.run([sys.executable, "-c", code, str(model), str(streams), str(Path(__file__).parent)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--count", type=int, default=None, help="the first COUNT images (default: all)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads-check", action="store_true", help="decode again on one CPU and compare latents")
    args = p.parse_args()
    stream_dir = Path(tempfile.mkdtemp(prefix="context_rate_")) if args.threads_check else None
    package = load(args.model)
    multiple = package.model.downsampling
    rows = []
    for path in sorted(args.images.glob("*.png"))[: args.count]:
        pixels = read_image(path)
        t0 = time.perf_counter()
        data = compress(package, pixels)
        t1 = time.perf_counter()
        image = decompress(package, data)
        t2 = time.perf_counter()
        numpy_latents = decode_latents(package, data, "numpy")
        t3 = time.perf_counter()
        latents = decode_latents(package, data)
        if stream_dir:
            (stream_dir / f"{path.stem}.jxlc").write_bytes(data)
        assert np.array_equal(latents.y_symbols, numpy_latents.y_symbols)
        assert np.array_equal(latents.means, numpy_latents.means)
        y = np.asarray(package.transforms.analysis(_to_model_input(pixels, multiple)))
        exact = bool(np.array_equal(latents.y_symbols, np.round(y.astype(np.float64) - latents.means)))
        same_image = bool(np.array_equal(image, decompress(package, data)))
        out = package.model.apply({"params": package.params}, jnp.asarray(_to_model_input(pixels, multiple)), "round")
        estimate = {k: float(-jnp.log2(v).sum()) / 8 for k, v in out["likelihoods"].items()}
        y_likelihoods = np.asarray(out["likelihoods"]["y"], np.float64)
        at_floor = y_likelihoods <= LIKELIHOOD_BOUND * (1 + 1e-6)  # charged ~30 bits each by the estimate
        streams = Bitstream.from_bytes(data).streams
        pixels_count = pixels.shape[0] * pixels.shape[1]
        mse = np.mean((image.astype(np.float64) - pixels) ** 2)
        row = {"image": path.stem, "bytes": len(data), "payload": sum(map(len, streams)),
               "z_bytes": len(streams[0]), "y_bytes": len(streams[1]),
               "estimate_z": estimate["z"], "estimate_y": estimate["y"],
               "y_at_floor": int(at_floor.sum()), "estimate_y_at_floor": float(-np.log2(y_likelihoods[at_floor]).sum()) / 8,
               "overhead_pct": 100 * (sum(map(len, streams)) / sum(estimate.values()) - 1),
               "y_overhead_pct": 100 * (len(streams[1]) / estimate["y"] - 1),
               "estimate_bpp": 8 * sum(estimate.values()) / pixels_count,
               "payload_bpp": 8 * sum(map(len, streams)) / pixels_count,
               "bpp": 8 * len(data) / pixels_count, "psnr": 10 * np.log10(255**2 / mse),
               "symbols_exact": exact, "decode_repeats_exactly": same_image,
               "digest": latent_digest(latents), "encode_s": t1 - t0, "decode_s": t2 - t1, "decode_latents_numpy_s": t3 - t2}
        rows.append(row)
        print(json.dumps(row))
    later = rows[1:] or rows
    summary = {"images": len(rows), "arch": package.config.arch, "width": package.config.width,
               "N": package.config.N, "M": package.config.M,
               "estimate_bpp": float(np.mean([r["estimate_bpp"] for r in rows])),
               "payload_bpp": float(np.mean([r["payload_bpp"] for r in rows])),
               "bpp": float(np.mean([r["bpp"] for r in rows])),
               "psnr": float(np.mean([r["psnr"] for r in rows])),
               "exact_round_trips": sum(r["symbols_exact"] and r["decode_repeats_exactly"] for r in rows),
               "overhead_pct": 100 * (sum(r["payload"] for r in rows)
                                      / sum(r["estimate_y"] + r["estimate_z"] for r in rows) - 1),
               "worst_overhead_pct": max(r["overhead_pct"] for r in rows),
               "estimate_share_at_floor_pct": 100 * sum(r["estimate_y_at_floor"] for r in rows)
                                              / sum(r["estimate_y"] + r["estimate_z"] for r in rows),
               "encode_s_after_first": float(np.mean([r["encode_s"] for r in later])),
               "decode_s_after_first": float(np.mean([r["decode_s"] for r in later])),
               "decode_latents_numpy_s": float(np.mean([r["decode_latents_numpy_s"] for r in later])),
               "first_encode_s": rows[0]["encode_s"], "first_decode_s": rows[0]["decode_s"]}
    if args.threads_check:
        one_cpu = one_cpu_digests(args.model, stream_dir)
        summary["one_cpu_latents_differ"] = sum(one_cpu[r["image"]] != r["digest"] for r in rows)
        summary["cpus"] = len(os.sched_getaffinity(0))
        shutil.rmtree(stream_dir, ignore_errors=True)
    print(json.dumps(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
