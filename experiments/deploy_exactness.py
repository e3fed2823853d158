"""Bit-exactness and speed of every decoder of an integer package, on real bitstreams.

For each image size: the NumPy reference, the JAX integer path, a TVM host-only build (no VTA)
and a `sim` bundle (host ops in TVM, VTA layers on the functional simulator) decode the same
bitstream; the script counts differing bytes against the reference and times the builds, the
graph runs (TVM host-only vs the JAX integer path) and opening a sealed bundle.

Usage: .venv/bin/python experiments/deploy_exactness.py --model runs/hp05-int8.jxlm \
    --images ../shared/data/kodak --odd 4 --out runs/deploy_exactness/hp05.json
(`--odd N` adds N odd-size built-in scikit-image photos.)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

import jaxlic
from compile import tvm as tvm_build
from compile.bundle import read_bundle
from compile.deploy import TimedRunner, build_bundle, latent_shapes, phases
from compile.runtime import BundleDecoder
from jaxlic.codec.api import compress, decompress
from jaxlic.images import default_images, read_images
from jaxlic.quant import execute
from jaxlic.secure.keys import generate_key, public_key_of

ODD_PHOTOS = ("chelsea", "rocket", "motorcycle", "coffee")  # 451x300, 640x427, 741x500, 600x400


def host_only(package, size: tuple[int, int]) -> tuple[tvm_build.HostModule, float]:
    """A TVM build of the whole integer graph (no VTA calls) and its build time."""
    graph = package.integer
    start = time.perf_counter()
    module, names = tvm_build.to_relax(graph, latent_shapes(package, size), functions=phases(graph))
    executable = tvm_build.build(module)
    return tvm_build.HostModule(executable, names, graph.constants), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="integer-mode package")
    parser.add_argument("--images", type=Path, help="folder of images (e.g. ../shared/data/kodak)")
    parser.add_argument("--limit", type=int, help="at most this many images of the folder")
    parser.add_argument("--odd", type=int, default=4, help="odd-size built-in photos to add (0-4)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    package = jaxlic.load(args.model)
    images = read_images(args.images, args.limit) if args.images else []
    images += [(n, a) for n, a in default_images() if n in ODD_PHOTOS[:args.odd]]
    by_size = defaultdict(list)
    for name, image in images:
        by_size[(image.shape[1], image.shape[0])].append((name, image))
    rows, sizes = [], []
    owner, board = generate_key("ed25519"), generate_key("x25519")
    with tempfile.TemporaryDirectory() as tmp:
        for size, group in by_size.items():
            host, host_build_s = host_only(package, size)
            bundle_path = Path(tmp) / f"{size[0]}x{size[1]}.jxvb"
            report = build_bundle(args.model, "sim", size, bundle_path, public_key_of(board), owner, progress=False)
            start = time.perf_counter()
            read_bundle(bundle_path).open_payload(board, public_key_of(owner))
            open_s = time.perf_counter() - start
            start = time.perf_counter()
            decoder = BundleDecoder(bundle_path, board, public_key_of(owner))
            decoder_s = time.perf_counter() - start
            sizes.append({"size": list(size), "images": len(group), "bundle_build_s": report["compile_s"],
                          "host_only_build_s": host_build_s, "sealed_open_s": open_s, "decoder_init_s": decoder_s,
                          "bundle_bytes": report["bytes"], "vta_layers": report["vta_layers"],
                          "vta_mac_share": report["vta_mac_share"]})
            for name, image in tqdm(group, desc=f"{size[0]}x{size[1]}"):
                data = compress(package, image)
                want = decompress(package, data, backend="numpy")
                jax_timer = TimedRunner(lambda i, o: execute.run(package.integer, i, o))
                tvm_timer = TimedRunner(host.run)
                decompress(package, data, backend=jax_timer)  # warm: the first call compiles
                jax_timer.seconds = 0.0
                decoded = {"jax": decompress(package, data, backend=jax_timer),
                           "tvm_host": decompress(package, data, backend=tvm_timer)}
                start = time.perf_counter()
                decoded["bundle_vta_sim"] = decoder.decode(data)
                bundle_s = time.perf_counter() - start
                rows.append({"image": name, "size": list(size), "bytes": len(data),
                             **{f"{k}_differing_bytes": int((v != want).sum()) for k, v in decoded.items()},
                             "jax_graph_s": jax_timer.seconds, "tvm_graph_s": tvm_timer.seconds,
                             "bundle_decode_s": bundle_s})
    differing = {k: sum(r[k] for r in rows) for k in rows[0] if k.endswith("differing_bytes")}
    ratio = float(np.median([r["tvm_graph_s"] / r["jax_graph_s"] for r in rows]))
    summary = {"model": str(args.model), "images": len(rows), "differing_bytes": differing,
               "tvm_over_jax_graph_time_median": ratio, "sizes": sizes, "rows": rows,
               "load_average": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"{args.model}: {len(rows)} images; differing bytes vs the NumPy reference: {differing}")
    print(f"graph time TVM host-only / JAX int path (median): {ratio:.2f}; load average {os.getloadavg()}")
    for s in sizes:
        print(f"  {s['size'][0]}x{s['size'][1]}: bundle build {s['bundle_build_s']:.1f} s, host-only build "
              f"{s['host_only_build_s']:.1f} s, sealed open {1e3 * s['sealed_open_s']:.0f} ms, decoder init "
              f"{s['decoder_init_s']:.2f} s, VTA MAC share {s['vta_mac_share']:.1%}")


if __name__ == "__main__":
    main()
