"""ELIC codec speed: jaxlic's elic2022 vs CompressAI 1.2.8's Elic2022Official, same weights, CPU.

    .venv/bin/python benchmarks/bench_elic_compressai.py [--count 4] [--repeats 3] [--N 192 --M 320]

The ELIC peer (peers/elic_peer.py export) builds a random Elic2022Official and calibrates it as
the parity tests do (y std 4, real ranges of scales and means); jaxlic imports exactly that state
dict (`jaxlic.io.compressai.from_state_dict`). A persistent CompressAI worker (`elic_peer.py
serve`, started once: torch's start-up is never timed) and this process then take turns on the
same Kodak images: per image and repeat, CompressAI's `model.compress` / `model.decompress`,
then `jaxlic.compress` / `jaxlic.decompress`, both with real bitstreams and the same thread
count. Before timing, both code every image shape once (jaxlic compiles its networks per shape;
torch warms its kernels); that warm-up is reported apart.
Checks: CompressAI's decoded y_hat equals its encoder's; jaxlic's decoded symbols equal
round(y - means) of its own analysis; both decoded images are compared with the original and
with each other. The 1-minute load average is recorded around every image (shared machine).
Results go to out/benchmarks/bench_elic_compressai.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
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

from bench_codec import load, psnr  # noqa: E402
from jaxlic.codec import compress, decode_latents, decompress  # noqa: E402
from jaxlic.codec.api import _to_model_input  # noqa: E402
from jaxlic.images import read_image  # noqa: E402
from jaxlic.io.compressai import from_state_dict, read_state_dict  # noqa: E402
from jaxlic.models.elic import channel_groups  # noqa: E402
from peer_utils import _peer_env, peer_python, peer_unavailable_reason, run_peer  # noqa: E402

KODAK = REPO.parent / "shared" / "data" / "kodak"
ELIC_PEER = REPO / "peers" / "elic_peer.py"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class Peer:
    """The CompressAI worker: one JSON request line in, one JSON reply line out."""

    def __init__(self, state: Path, groups: tuple[int, ...], threads: int):
        self.proc = subprocess.Popen([str(peer_python()), str(ELIC_PEER), "serve"], cwd=REPO, env=_peer_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self.ask({"load": str(state), "arch": "elic2022", "groups": list(groups), "threads": threads})

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the CompressAI worker exited ({self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def jaxlic_code(package, pixels: np.ndarray) -> dict:
    """Timed jaxlic.compress / decompress of one image, and the round trip's checks (untimed)."""
    t0 = time.perf_counter()
    data = compress(package, pixels)
    t1 = time.perf_counter()
    image = decompress(package, data)
    t2 = time.perf_counter()
    latents = decode_latents(package, data)
    y = np.asarray(package.transforms.analysis(_to_model_input(pixels, package.model.downsampling)))
    exact = bool(np.array_equal(latents.y_symbols, np.round(y.astype(np.float64) - latents.means)))
    return {"encode_s": t1 - t0, "decode_s": t2 - t1, "bytes": len(data), "symbols_exact": exact, "image": image}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=KODAK)
    parser.add_argument("--count", type=int, default=4, help="the first COUNT images (sorted names)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per image and library")
    parser.add_argument("--N", type=int, default=192)
    parser.add_argument("--M", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=REPO / "out" / "benchmarks" / "bench_elic_compressai.json")
    args = parser.parse_args(argv)
    paths = sorted(args.images.glob("*.png"))[: args.count]
    reason = peer_unavailable_reason() or ("" if paths else f"no PNG images in {args.images}")
    if reason:
        print(f"bench_elic_compressai: skipped: {reason}")
        return 0
    groups = channel_groups(args.M)
    start = {"uptime": uptime(), "load": load()}
    print(f"start: {start['uptime']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_elic_") as tmp:
        tmp = Path(tmp)
        state = tmp / "state.npz"
        run_peer(["export", "--arch", "elic2022", "--N", args.N, "--M", args.M, "--groups", *groups,
                  "--seed", args.seed, "--out", state], timeout=1800, script=ELIC_PEER)
        package = from_state_dict(read_state_dict(state), "elic2022")
        peer = Peer(state, groups, args.threads)
        try:
            images = {p.stem: read_image(p) for p in paths}
            warmup = {}
            for name in {pixels.shape: name for name, pixels in images.items()}.values():  # one per shape
                theirs = peer.ask({"image": str(args.images / f"{name}.png"), "out": str(tmp / "warm.npy")})
                ours = jaxlic_code(package, images[name])
                warmup[name] = {"compressai": [theirs["encode_s"], theirs["decode_s"]],
                                "jaxlic": [ours["encode_s"], ours["decode_s"]]}
                print(f"warm-up {name} {images[name].shape[1]}x{images[name].shape[0]}: CompressAI "
                      f"{theirs['encode_s']:.2f}+{theirs['decode_s']:.2f} s, jaxlic (compiles) "
                      f"{ours['encode_s']:.2f}+{ours['decode_s']:.2f} s", flush=True)
            rows = []
            for name, pixels in images.items():
                times = {lib: {"encode_s": [], "decode_s": []} for lib in ("compressai", "jaxlic")}
                loads = [load()]
                for _ in range(args.repeats):
                    theirs = peer.ask({"image": str(args.images / f"{name}.png"), "out": str(tmp / f"{name}.npy")})
                    ours = jaxlic_code(package, pixels)
                    for lib, result in (("compressai", theirs), ("jaxlic", ours)):
                        for key in ("encode_s", "decode_s"):
                            times[lib][key].append(result[key])
                    loads.append(load())
                their_image = np.load(tmp / f"{name}.npy")
                row = {"image": name, "load": [min(loads), max(loads)],
                       "compressai_bytes": theirs["bytes"], "jaxlic_bytes": ours["bytes"],
                       "compressai_y_hat_exact": theirs["y_hat_exact"], "jaxlic_symbols_exact": ours["symbols_exact"],
                       "compressai_psnr": psnr(their_image, pixels), "jaxlic_psnr": psnr(ours["image"], pixels),
                       "max_pixel_difference": int(np.abs(their_image.astype(int) - ours["image"]).max()),
                       "times": times}
                for lib in times:
                    for key in ("encode_s", "decode_s"):
                        row[f"{lib}_{key}"] = statistics.median(times[lib][key])
                for key in ("encode", "decode"):
                    row[f"{key}_ratio"] = row[f"jaxlic_{key}_s"] / row[f"compressai_{key}_s"]
                rows.append(row)
                print(f"{name}: encode CompressAI {row['compressai_encode_s']:.3f} s, jaxlic "
                      f"{row['jaxlic_encode_s']:.3f} s (x{row['encode_ratio']:.2f}); decode "
                      f"{row['compressai_decode_s']:.3f} s, {row['jaxlic_decode_s']:.3f} s "
                      f"(x{row['decode_ratio']:.2f});"
                      f" bytes {row['compressai_bytes']} / {row['jaxlic_bytes']}; exact "
                      f"{row['compressai_y_hat_exact']} / {row['jaxlic_symbols_exact']}; PSNR "
                      f"{row['compressai_psnr']:.2f} / {row['jaxlic_psnr']:.2f} dB, max pixel difference "
                      f"{row['max_pixel_difference']}; load {row['load'][0]:.2f}-{row['load'][1]:.2f}", flush=True)
        finally:
            peer.close()
    summary = {key: statistics.median(r[key] for r in rows)
               for key in ("compressai_encode_s", "jaxlic_encode_s", "compressai_decode_s", "jaxlic_decode_s")}
    for key in ("encode", "decode"):
        summary[f"{key}_ratio"] = summary[f"jaxlic_{key}_s"] / summary[f"compressai_{key}_s"]
    exact = all(r["compressai_y_hat_exact"] and r["jaxlic_symbols_exact"] for r in rows)
    end = {"uptime": uptime(), "load": load()}
    print(f"median over {len(rows)} images ({args.repeats} runs each, after warm-up): encode CompressAI "
          f"{summary['compressai_encode_s']:.3f} s, jaxlic {summary['jaxlic_encode_s']:.3f} s, ratio "
          f"{summary['encode_ratio']:.2f}; decode {summary['compressai_decode_s']:.3f} s, "
          f"{summary['jaxlic_decode_s']:.3f} s, ratio {summary['decode_ratio']:.2f} (target <= 1.0); "
          f"round trips exact: {exact}\nend: {end['uptime']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "elic2022 compress/decompress, jaxlic vs CompressAI Elic2022Official (CPU)",
        "N": args.N, "M": args.M, "groups": groups, "threads": args.threads, "repeats": args.repeats,
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
        "jax": jax.__version__, "peer": peer.info, "start": start, "end": end, "warmup": warmup,
        "rows": rows, "summary": summary, "exact": exact,
    }, indent=1))
    print(f"-> {args.out}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
