"""Float hyperprior packages across thread counts: table indexes from the float hyper-synthesis
(what float packages used before, and what CompressAI does) against the package's integer
entropy graph, and what the integer graph costs in rate.

An encoder process pinned to one CPU with XLA's multi-threaded Eigen off, and a decoder process
on two CPUs (defaults), each compute the table index of every latent from the same z symbols,
both ways; the script counts indexes that differ between the two processes (any difference
desynchronizes the range decoder), then compresses in the one-thread process, decodes the
latents in the two-thread one and counts differing latents. The rate part codes every image's
latents with the float-derived indexes and with the graph's, in one process.

Usage: .venv/bin/python experiments/float_package_determinism.py --model runs/hp05/model.jxlm \
    --images ../shared/data/kodak --out runs/float_determinism.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CROP = ("kodim19.png", 77, 203)  # the case the hardening issue reported (top-left crop)


def float_indexes(package, z_symbols: np.ndarray) -> np.ndarray:
    """Table indexes from the float hyper-synthesis: the first table scale >= the bounded scale."""
    from jaxlic.entropy.gaussian import SCALE_BOUND

    import jax

    z_hat = z_symbols.astype(np.float32) + package.transforms.medians
    hyper = jax.jit(lambda params, z: package.model.apply({"params": params}, z, method="hyper_synthesis"))
    scales, _ = hyper(package.params, z_hat)
    bounded = np.maximum(np.asarray(scales), SCALE_BOUND)
    return np.searchsorted(package.scale_table[:-1], bounded, side="left").astype(np.int32)


def worker(model: str, folder: str, role: str) -> None:
    """One side: the encoder writes z symbols, streams and indexes; the decoder reads them."""
    import jaxlic
    from jaxlic.codec.api import compress, decode_latents
    from jaxlic.codec.decoders import decoder_for
    from jaxlic.images import read_image

    package, work = jaxlic.load(model), Path(folder)
    for path in sorted(work.glob("*.png")):
        pixels = read_image(path)
        if role == "encoder":
            data = compress(package, pixels)
            (work / f"{path.stem}.jxlc").write_bytes(data)
            z = np.asarray(package.transforms.hyper_analysis(_latent(package, pixels)))
            np.save(work / f"{path.stem}.z.npy", np.round(z - package.transforms.medians).astype(np.int32))
        z_symbols = np.load(work / f"{path.stem}.z.npy")
        np.save(work / f"{path.stem}.{role}.float.npy", float_indexes(package, z_symbols))
        np.save(work / f"{path.stem}.{role}.graph.npy", decoder_for(package).hyper(z_symbols)[0])
        if role == "decoder":
            latents = decode_latents(package, (work / f"{path.stem}.jxlc").read_bytes())
            np.save(work / f"{path.stem}.decoder.latents.npy", latents.y_symbols)
        else:
            np.save(work / f"{path.stem}.encoder.latents.npy", _encoder_symbols(package, pixels))


def _latent(package, pixels: np.ndarray) -> np.ndarray:
    """The encoder's y."""
    from jaxlic.codec.api import _to_model_input

    return np.asarray(package.transforms.analysis(_to_model_input(pixels, package.model.downsampling)))


def _encoder_symbols(package, pixels: np.ndarray) -> np.ndarray:
    from jaxlic.codec.decoders import decoder_for

    y = _latent(package, pixels)
    z = np.asarray(package.transforms.hyper_analysis(y))
    _, means = decoder_for(package).hyper(np.round(z - package.transforms.medians))
    return np.round(y - (means if means is not None else 0.0)).astype(np.int64)


def run_side(model: Path, folder: Path, role: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpus = sorted(os.sched_getaffinity(0))
    if role == "encoder":
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
        cpus = cpus[:1]
    code = (f"import os; os.sched_setaffinity(0, {cpus}); import sys; sys.path.insert(0, {str(ROOT / 'experiments')!r}); "
            f"from float_package_determinism import worker; worker({str(model)!r}, {str(folder)!r}, {role!r})")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def rates(package, names: list[str], folder: Path) -> list[dict]:
    """Bits per pixel of each image's latents coded with float-derived and with graph indexes."""
    from jaxlic.codec import Bitstream

    rows = []
    for name in names:
        data = (folder / f"{name}.jxlc").read_bytes()
        streams = Bitstream.from_bytes(data).streams
        y_symbols = np.load(folder / f"{name}.encoder.latents.npy")
        indexes = np.load(folder / f"{name}.encoder.float.npy")
        float_stream = package.coders["gaussian"].encode(y_symbols, indexes)
        pixels = int(np.prod(np.load(folder / f"{name}.shape.npy")))
        rows.append({"image": name, "bpp_float_indexes": 8 * (len(streams[0]) + len(float_stream)) / pixels,
                     "bpp_graph_indexes": 8 * (len(streams[0]) + len(streams[1])) / pixels})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="float hyperprior package (.jxlm)")
    parser.add_argument("--images", type=Path, required=True, help="folder with kodim19.png and other images")
    parser.add_argument("--limit", type=int, help="at most this many images of the folder (plus the crop)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import jaxlic
    from jaxlic.images import read_image, read_images, write_image

    package = jaxlic.load(args.model)
    images = read_images(args.images, args.limit)
    crop_name, height, width = CROP
    images.append((f"crop-{Path(crop_name).stem}", read_image(args.images / crop_name)[:height, :width]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, pixels in images:
            stem = Path(name).stem
            write_image(folder / f"{stem}.png", pixels)
            np.save(folder / f"{stem}.shape.npy", np.array(pixels.shape[:2]))
        run_side(args.model, folder, "encoder")
        run_side(args.model, folder, "decoder")
        names = [Path(n).stem for n, _ in images]
        rows = rates(package, names, folder)
        for row in rows:
            name = row["image"]
            for kind in ("float", "graph"):
                a, b = (np.load(folder / f"{name}.{side}.{kind}.npy") for side in ("encoder", "decoder"))
                row[f"{kind}_indexes_differing"] = int(np.sum(a != b))
            a, b = (np.load(folder / f"{name}.{side}.latents.npy") for side in ("encoder", "decoder"))
            row["latents_differing"] = int(np.sum(a != b))
            print(json.dumps(row), flush=True)
    summary = {key: sum(r[key] for r in rows) for key in ("float_indexes_differing", "graph_indexes_differing",
                                                           "latents_differing")}
    summary["images_with_float_desync"] = sum(r["float_indexes_differing"] > 0 for r in rows)
    for key in ("bpp_float_indexes", "bpp_graph_indexes"):
        summary[f"mean_{key}"] = float(np.mean([r[key] for r in rows if not r["image"].startswith("crop-")]))
    summary["rate_change_percent"] = 100 * (summary["mean_bpp_graph_indexes"] / summary["mean_bpp_float_indexes"] - 1)
    print(json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "summary": summary, "images": rows}, indent=1))


if __name__ == "__main__":
    main()
