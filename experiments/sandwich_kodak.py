"""Evaluate trained sandwiches on Kodak with the real codec (Pillow's libjpeg) against the plain codec.

    python experiments/sandwich_kodak.py --runs runs/sandwich --out runs/sandwich/eval [--images 24]

For every scenario with a `RUNS/SCENARIO/sandwich.jxls` (from experiments/sandwich_train.py):
RD points of the sandwich at the scenario's qualities and of the plain codec with its natural
inverse (bpp from real file bytes, PSNR on the original's bit depth), the gain in dB at equal bpp
and BD-rate/BD-PSNR, an RD plot, a check that the file is a valid JPEG of the expected mode and
size, the proxy's fidelity (PSNR between proxy and real decoded code images) and the rate proxy's
error (weights fitted on code images of training images, tested on Kodak's). With
--plain-fidelity, also the proxy against real JPEG on plain Kodak images.
High-bit-depth uses the synthetic 16-bit Kodak (`synthesize_high_bit_depth`), written as 16-bit
PNGs under OUT/kodak16 and read back through the same reader `jaxlic sandwich encode` uses.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from jaxlic.eval.plots import plot_rd
from jaxlic.eval.results import make_record, save_results
from jaxlic.images import list_images, read_image
from jaxlic.sandwich.evaluate import baseline_sweep, gains, proxy_fidelity, rate_proxy_error, rate_samples, sandwich_sweep
from jaxlic.sandwich.io import read_input, write_png16
from jaxlic.sandwich.model import load_package, to_uint16
from jaxlic.sandwich.scenarios import SCENARIOS, Scenario, synthesize_high_bit_depth

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BASELINE_QUALITIES = {"high-bit-depth": (40, 50, 60, 70, 80, 85, 90, 95, 98, 100)}
DEFAULT_BASELINE_QUALITIES = tuple(range(5, 100, 5))


def prepare(paths: list[Path], scenario: Scenario, folder: Path, crop: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, image) pairs as the scenario takes them; 16-bit ones go through a 16-bit PNG file."""
    images = []
    for path in paths:
        image = read_image(path)
        if crop:
            top, left = (image.shape[0] - crop) // 2, (image.shape[1] - crop) // 2
            image = image[top:top + crop, left:left + crop]
        if scenario.high_bit_depth:
            wide = to_uint16(np.asarray(synthesize_high_bit_depth(image[None].astype(np.float32) / 255.0))[0])
            write_png16(folder / f"{path.stem}.png", wide)
            image = read_input(folder / f"{path.stem}.png", high_bit_depth=True)
            assert np.array_equal(image, wide)
        images.append((path.stem, image))
    return images


def file_check(package, image: np.ndarray) -> dict:
    """Open a sandwich file with plain Pillow: format, mode and size as expected?"""
    data = package.encode(image, 50)
    opened = Image.open(io.BytesIO(data))
    opened.load()
    s = package.sandwich.scale
    expected_size = (-(-image.shape[1] // s), -(-image.shape[0] // s))
    expected_mode = "L" if package.config.code_channels == 1 else "RGB"
    return {"format": opened.format, "mode": opened.mode, "size": list(opened.size),
            "ok": opened.format == "JPEG" and opened.mode == expected_mode and opened.size == expected_size}


def evaluate_scenario(name: str, runs: Path, out: Path, n_images: int, progress: bool, diagnostics: bool = True) -> dict:
    scenario = SCENARIOS[name]
    package = load_package(runs / name / "sandwich.jxls")
    folder = out / "kodak16"
    folder.mkdir(parents=True, exist_ok=True)
    kodak = prepare(list_images(SHARED / "kodak")[:n_images], scenario, folder)
    train = prepare(list_images(SHARED / "train")[::21][:8], scenario, out / "train16", crop=256) if diagnostics else []

    sandwich_q = scenario.eval_qualities
    baseline_q = BASELINE_QUALITIES.get(name, DEFAULT_BASELINE_QUALITIES)
    sandwich = make_record(f"sandwich {name}", package.config.to_json(),
                           sandwich_sweep(package, kodak, sandwich_q, progress), sandwich_q)
    plain = make_record(f"plain JPEG + natural inverse ({name})", scenario.summary,
                        baseline_sweep(scenario, kodak, baseline_q, progress), baseline_q)
    save_results(out / f"{name}_results.json", [sandwich, plain])
    plot_rd([sandwich, plain], out / f"{name}_rd.png", title=f"{scenario.summary} (Kodak, {len(kodak)} images)")

    fit_q = tuple(sorted(set(sandwich_q[::2]) | {sandwich_q[-1]}))
    walls = runs / name / "wall_time.json"
    summary = {
        "scenario": name, "summary": scenario.summary, "images": len(kodak), "config": package.config.to_json(),
        "training": {"wall_time": json.loads(walls.read_text()) if walls.exists() else None,
                     "last_logged": json.loads((runs / name / "metrics.jsonl").read_text().splitlines()[-1])},
        "gains": gains(sandwich, plain),
        "file_check": file_check(package, kodak[0][1]),
    }
    if diagnostics:
        summary["proxy_fidelity"] = proxy_fidelity(package, kodak[:4], fit_q)
        summary["rate_proxy_error"] = rate_proxy_error(rate_samples(package, train, fit_q),
                                                       rate_samples(package, kodak[:8], fit_q))
    return summary


def plain_proxy_fidelity(n_images: int, qualities=(5, 20, 50, 90)) -> list[dict]:
    """PSNR between proxy and real JPEG on plain Kodak images (no networks), per codec setting."""
    import jax
    import jax.numpy as jnp

    from jaxlic.eval.metrics import psnr
    from jaxlic.sandwich.jpeg import JpegCodec

    images = [read_image(p) for p in list_images(SHARED / "kodak")[:n_images]]
    rows = []
    for channels, subsampling in ((1, "4:2:0"), (3, "4:4:4"), (3, "4:2:0")):
        codec = JpegCodec(channels=channels, subsampling=subsampling)
        proxy = jax.jit(codec.proxy)
        for q in qualities:
            values = []
            for image in images:
                code = image[:, :, :1] if channels == 1 else image
                real, _ = codec.decode(codec.encode({}, code, q))
                values.append(psnr(real, np.asarray(proxy({}, jnp.asarray(code[None], jnp.float32), jnp.array([q])).decoded[0])))
            rows.append({"codec": "gray" if channels == 1 else f"rgb {subsampling}", "quality": q,
                         "psnr_proxy_vs_real_db": float(np.mean(values)), "min_db": float(np.min(values))})
    return rows


def _fmt(value, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def markdown_table(out: Path) -> str:
    """One row per evaluated scenario (every SCENARIO_summary.json in `out`)."""
    lines = ["| scenario | images | train steps (wall s) | gain at equal bpp, dB: mean (min..max) | BD-PSNR dB | "
             "BD-rate % | proxy vs real PSNR dB | rate-proxy error (3 features / w per quality) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in SCENARIOS:
        path = out / f"{name}_summary.json"
        if not path.exists():
            continue
        s = json.loads(path.read_text())
        g, walls = s["gains"], s["training"]["wall_time"] or []
        points = [p["gain_db"] for p in g["points"]]
        fidelity = [r["psnr_proxy_vs_real_db"] for r in s.get("proxy_fidelity", [])]
        rate = s.get("rate_proxy_error")
        lines.append(
            f"| {name} | {s['images']} | {s['training']['last_logged']['step']} ({sum(w['seconds'] for w in walls):.0f}) | "
            f"{_fmt(g['mean_gain_db'])} ({_fmt(min(points) if points else None)}..{_fmt(g['max_gain_db'])}) | "
            f"{_fmt(g['bd_psnr_db'])} | {_fmt(g['bd_rate_percent'], '.1f')} | "
            + (f"{min(fidelity):.1f}..{max(fidelity):.1f} | " if fidelity else "n/a | ")
            + (f"{100 * rate['all_features']['mean_abs_rel_error_payload']:.1f}% / "
               f"{100 * rate['log_magnitude_per_quality']['mean_abs_rel_error_payload']:.1f}% |" if rate else "n/a |"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/sandwich"))
    parser.add_argument("--out", type=Path, default=Path("runs/sandwich/eval"))
    parser.add_argument("--images", type=int, default=24, help="first N Kodak images")
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--plain-fidelity", action="store_true", help="also: proxy vs real JPEG on plain Kodak images")
    parser.add_argument("--rd-only", action="store_true", help="skip the proxy-fidelity and rate-proxy diagnostics")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.plain_fidelity:
        rows = plain_proxy_fidelity(min(args.images, 8))
        (args.out / "plain_proxy_fidelity.json").write_text(json.dumps(rows, indent=2))
        for row in rows:
            print(f"proxy vs real, {row['codec']} q{row['quality']}: {row['psnr_proxy_vs_real_db']:.2f} dB (min {row['min_db']:.2f})")
    for name in args.scenarios:
        summary = evaluate_scenario(name, args.runs, args.out, args.images, not args.quiet, not args.rd_only)
        (args.out / f"{name}_summary.json").write_text(json.dumps(summary, indent=2))
        g = summary["gains"]
        worst = min((p["gain_db"] for p in g["points"]), default=None)
        print(f"{name}: mean gain {g['mean_gain_db']} dB (worst {worst}, max {g['max_gain_db']}), "
              f"BD-rate {g['bd_rate_percent']} %, "
              f"BD-PSNR {g['bd_psnr_db']} dB; file {summary['file_check']}")
    print(markdown_table(args.out))


if __name__ == "__main__":
    main()
