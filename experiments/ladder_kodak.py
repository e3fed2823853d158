"""Complexity-aware encoding on Kodak: the ladder's BD-rate against one fixed package family at
equal or higher mean decoder complexity.

    python experiments/ladder_kodak.py --kodak ../shared/data/kodak --out runs/ladder/kodak \
        --family ref=ref-hyperprior:1,ref-hyperprior:2,ref-hyperprior:3,ref-hyperprior:4 \
        --family p25=runs/ladder/p25-q1/model.jxlm,... --family p50=...

Each family is one architecture and width at four qualities (one decoder complexity). Every image
is coded once with every package (real bitstreams, decoded: `jaxlic.codec.ladder.code_all`);
the curves are then chosen from those measurements:
- a fixed family: its four qualities, the same for every image;
- the ladder under a budget: at target mean rates (the anchor family's four bpps and the
  midpoints, those the ladder reaches under the budget), per image the package of least bpp - t * PSNR (`choose(..., bpp=...)`), either
  capped per image at the budget ("cap") or with the budget on the mean kMAC/pixel over the
  images ("mean"); budgets are each family's kMAC/pixel and the midpoints between them;
- "qualities only": one family's four qualities chosen per image (no complexity choice), which
  separates the gain of per-image rate allocation from that of spending complexity unevenly;
  once more with --lambdas (least bpp + lambda * MSE, the `--lambda` objective) for the top family.
BD-rate (PCHIP, mean PSNR over images against mean bpp) is against the cheapest fixed family
whose kMAC/pixel is at least the budget, and against the costliest one within it. Writes OUT/ladder.json and OUT/ladder.md; each
package's measurements stay in OUT/coded/ (a rerun codes only packages it has not seen).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distill_common import markdown_table  # noqa: E402
from jaxlic.codec.ladder import Budget, Coded, build_ladder, choose, code_all, decoder_fps  # noqa: E402
from jaxlic.errors import ConfigError, DataError  # noqa: E402
from jaxlic.eval.bdrate import bd_psnr, bd_rate  # noqa: E402
from jaxlic.images import read_images  # noqa: E402
from jaxlic.models.config import MSE_LAMBDAS  # noqa: E402
from jaxlic.pretrained import load_model  # noqa: E402

LAMBDAS = tuple(float(v) for v in np.geomspace(MSE_LAMBDAS[0], MSE_LAMBDAS[3], 7))


def family(text: str) -> tuple[str, list[str]]:
    """NAME=PKG,PKG,... (package paths or shipped NAME:QUALITY)."""
    name, _, specs = text.partition("=")
    return name, specs.split(",")


def measured(rungs: list, images: list, cache: Path) -> Coded:
    """`code_all` of every package, each package's (bpp, MSE) per image kept in
    cache/FINGERPRINT.json, so a rerun with more packages codes only the new ones."""
    names = [name for name, _ in images]
    path = lambda rung: cache / f"{rung.package.fingerprint.hex()}.json"  # noqa: E731
    fresh = [r for r in rungs if not path(r).is_file() or json.loads(path(r).read_text())["images"] != names]
    if fresh:
        coded = code_all(fresh, images)
        cache.mkdir(parents=True, exist_ok=True)
        for r, rung in enumerate(fresh):
            path(rung).write_text(json.dumps({"package": rung.name, "images": names,
                                              "bpp": coded.bpp[:, r].tolist(), "mse": coded.mse[:, r].tolist()}))
    columns = [json.loads(path(r).read_text()) for r in rungs]
    return Coded(names, np.array([image.shape[:2] for _, image in images]), [[None] * len(rungs) for _ in names],
                 np.array([c["bpp"] for c in columns]).T, np.array([c["mse"] for c in columns]).T)


def mean_psnr(mse: np.ndarray) -> float:
    """Mean over images of each image's PSNR (the convention of `jaxlic eval`)."""
    return float(np.mean(10 * np.log10(255.0**2 / mse)))


def bd(metric, *curves) -> float | None:
    """A Bjontegaard metric, None where the curves do not overlap."""
    try:
        return metric(*curves)
    except DataError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--family", type=family, action="append", required=True, help="NAME=PKG,PKG,PKG,PKG")
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS))
    parser.add_argument("--board", default="zcu104", help="VTA board whose fps each family's decoder is shown at")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    names = [(f"{fam}:{spec}", spec) for fam, specs in args.family for spec in specs]
    rungs = build_ladder((name, load_model(spec)) for name, spec in names)
    images = read_images(args.kodak, progress=True)
    coded = measured(rungs, images, args.out / "coded")
    kmac = np.array([r.kmac for r in rungs])
    columns = {fam: [i for i, (name, _) in enumerate(names) if name.startswith(f"{fam}:")] for fam, _ in args.family}
    families = {}
    for fam, cols in columns.items():
        if len(set(kmac[cols])) != 1:
            raise SystemExit(f"family {fam} mixes decoder complexities: {sorted(set(kmac[cols]))}")
        curve = [(float(coded.weights @ coded.bpp[:, c]), mean_psnr(coded.mse[:, c])) for c in cols]
        families[fam] = {"kmac": float(kmac[cols[0]]), "curve": curve,
                         "fps": decoder_fps(rungs[cols[0]].package.config, args.board, images[0][1].shape[:2])}
    by_cost = sorted(families, key=lambda f: families[f]["kmac"])

    def ladder_curve(budget: Budget, cols: list[int], anchor: str | None = None) -> list[dict]:
        """Points at the anchor family's four rates and the midpoints (target bpp), or at --lambdas."""
        sub, view = [rungs[c] for c in cols], coded.only(cols)
        targets = [{"lmbda": lmbda} for lmbda in args.lambdas]
        if anchor:
            rates = [b for b, _ in families[anchor]["curve"]]
            targets = [{"bpp": b} for b in sorted(rates + [(a + b) / 2 for a, b in zip(rates, rates[1:])])]
        points = []
        for target in targets:
            try:
                choice = choose(view, sub, budget, **target)
            except ConfigError:  # a rate below what these packages reach under this budget: no point
                continue
            rows = (np.arange(len(images)), choice.rungs)
            points.append({**target, "bpp": choice.bpp, "psnr": mean_psnr(view.mse[rows]),
                           "kmac": choice.kmac, "picks": [sub[r].name for r in choice.rungs]})
        return points

    def row(label: str, mode: str, budget_kmac: float, points: list[dict], anchor: str | None = None) -> dict:
        below = anchor or below_of(budget_kmac)  # a family's own qualities: that family both ways
        anchor = anchor or anchor_of(budget_kmac)
        a_bpp, a_psnr = zip(*families[anchor]["curve"])
        b_bpp, b_psnr = zip(*families[below]["curve"])
        t_bpp, t_psnr = zip(*sorted({(p["bpp"], p["psnr"]) for p in points}))  # targets that chose alike: one point
        return {"ladder": label, "mode": mode, "budget": budget_kmac, "points": points,
                "kmac": float(np.mean([p["kmac"] for p in points])),
                "kmac_max": float(max(p["kmac"] for p in points)),
                "bpp": f"{min(t_bpp):.3f}-{max(t_bpp):.3f}", "psnr": f"{min(t_psnr):.2f}-{max(t_psnr):.2f}",
                "anchor": f"{anchor} ({families[anchor]['kmac']:.2f})",
                "bd_rate": bd(bd_rate, a_bpp, a_psnr, t_bpp, t_psnr), "bd_psnr": bd(bd_psnr, a_bpp, a_psnr, t_bpp, t_psnr),
                "below": f"{below} ({families[below]['kmac']:.2f})", "bd_below": bd(bd_rate, b_bpp, b_psnr, t_bpp, t_psnr)}

    every = list(range(len(rungs)))
    costs = [families[f]["kmac"] for f in by_cost]
    budgets = sorted(set(costs) | {(a + b) / 2 for a, b in zip(costs, costs[1:])})
    def anchor_of(budget_kmac: float) -> str:
        return next(f for f in by_cost if families[f]["kmac"] >= budget_kmac - 1e-9)

    def below_of(budget_kmac: float) -> str:
        return [f for f in by_cost if families[f]["kmac"] <= budget_kmac + 1e-9][-1]

    table = [row(f"qualities only: {fam}", "-", families[fam]["kmac"], ladder_curve(Budget(), columns[fam], fam), fam)
             for fam in by_cost]
    table += [row(f"qualities only, --lambda (MSE): {fam}", "-", families[fam]["kmac"],
                  ladder_curve(Budget(), columns[fam]), fam) for fam in by_cost[-1:]]
    for budget in budgets:
        for mode in ("cap", "mean"):
            curve = ladder_curve(Budget(kmac=budget, mean=mode == "mean"), every, anchor_of(budget))
            table.append(row("all packages", mode, budget, curve))

    fixed = [{"family": f, "kmac": families[f]["kmac"], "fps": families[f]["fps"],
              "bpp": ", ".join(f"{b:.3f}" for b, _ in families[f]["curve"]),
              "psnr": ", ".join(f"{p:.2f}" for _, p in families[f]["curve"])} for f in by_cost]
    height, width = images[0][1].shape[:2]
    text = "\n".join([
        markdown_table(fixed, [("fixed family", "family", ""), ("dec kMAC/px", "kmac", ".2f"),
                               (f"{args.board} fps at {width}x{height} (VTA layers)", "fps", ".1f"),
                               ("bpp q1-q4", "bpp", ""), ("PSNR dB q1-q4", "psnr", "")]),
        markdown_table(table, [("ladder", "ladder", ""), ("budget", "mode", ""), ("kMAC/px", "budget", ".2f"),
                               ("mean kMAC/px (curve mean)", "kmac", ".2f"), ("max", "kmac_max", ".2f"),
                               ("bpp", "bpp", ""), ("PSNR dB", "psnr", ""), ("vs fixed (kMAC/px)", "anchor", ""),
                               ("BD-rate %", "bd_rate", "+.2f"), ("BD-PSNR dB", "bd_psnr", "+.3f"),
                               ("vs fixed below (kMAC/px)", "below", ""), ("BD-rate % ", "bd_below", "+.2f")]),
        f"{len(images)} images, lambdas {', '.join(f'{v:.4g}' for v in args.lambdas)}; "
        f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}",
    ])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ladder.md").write_text(text + "\n")
    (args.out / "ladder.json").write_text(json.dumps(
        {"packages": [{"name": r.name, "kmac": r.kmac, "fingerprint": r.package.fingerprint.hex()} for r in rungs],
         "images": coded.names, "bpp": coded.bpp.tolist(), "mse": coded.mse.tolist(),
         "families": families, "table": table}, indent=1))


if __name__ == "__main__":
    main()
