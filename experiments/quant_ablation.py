"""Where post-training quantization loses PSNR: one quantization source at a time.

    python experiments/quant_ablation.py --model runs/fac05b/model.jxlm --data ../shared/data/train \
        [--kodak ../shared/data/kodak] [--images 6] [--out runs/ptq2/ablation-fac05b.json]

The decoder is lowered twice from the float parameters with the calibration `jaxlic quantize`
uses: as exported (rounded constants) and with every rounding of a constant left out (the same
exponents, real-valued "integers"). Both run as the fake-quantized twin of the integer graph
(float32), where each requantize may round and/or clamp and isqrt may floor, per op. A variant
picks, per source, the rounded or the exact form; "all exact" is the float decoder, "all" is the
integer graph. The factorized prior's medians are on the latent grid (2^-k) in every variant,
as the package stores them. Every variant decodes the same latents (the PTQ package's encoder symbols) to
uint8 pixels, rounded as the float decoder rounds them; the table gives PSNR on the Kodak
images against "all exact" for the source alone ("only") and what leaving it out of the full
PTQ recovers ("all but"). Distortion only: the rate of the integer package is measured by
experiments/quant_ptq_qat.py (within 0.2% of the float model's for both trained models).

Sources: conv weights (all but the last layer), pixel-layer weights, biases, activation
rounding, activation clamping (the calibrated range, the latent's clamp included), and the
integer GDN: a = x^2 to 7 bits, gamma
to int8, beta, the pool's requantization, the root's floor. Then per layer (every source of that
layer alone).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

Policy = Callable[[str], bool]


@contextlib.contextmanager
def exact_constants():
    """Lower with every rounding of a constant left out (identity instead of round_ste)."""
    from jaxlic.quant import fakequant, lowering

    saved = fakequant.round_ste, lowering.round_ste
    fakequant.round_ste = lowering.round_ste = lambda x: x
    try:
        yield
    finally:
        fakequant.round_ste, lowering.round_ste = saved


def lower_both(config, params, calibration):
    """(rounded, exact) Lowered decoders with the same ops and exponents."""
    from jaxlic.quant.lowering import lower_decoder

    rounded = lower_decoder(config, params, calibration)
    with exact_constants():
        exact = lower_decoder(config, params, calibration)
    return rounded, exact


def ops_table(rounds: Policy, clamps: Policy, floors: Policy) -> dict:
    """The fake-quantized ops with per-op rounding, clamping and root flooring."""
    import jax.numpy as jnp

    from jaxlic.quant.execute import FAKE_OPS
    from jaxlic.quant.fakequant import exp2i

    def requantize(op, x, c):
        shift, value = c["shift"], x[0] * exp2i(-c["shift"])
        if rounds(op.name) or op.output == "pixels":  # pixels: the float decoder's uint8 rounding too
            value = jnp.floor(value + jnp.where(shift > 0, 0.5, 0.0))
        keep = clamps(op.name) or op.output == "pixels"
        return jnp.clip(value, op.attrs["lo"], op.attrs["hi"]) if keep else value

    def isqrt(op, x, c):
        if floors(op.name):  # the exact integer root of floor(x << t), = floor(sqrt(x << t))
            return FAKE_OPS["isqrt"](op, x, c)
        return jnp.sqrt(jnp.maximum(x[0], 0.0) * exp2i(c["pre_shift"]))

    return {**FAKE_OPS, "requantize": requantize, "isqrt": isqrt}


def layer_of(name: str) -> str:
    return name.split(".")[0]


def sources(lowered, last: str) -> dict[str, tuple[Policy, Policy, Policy, Policy]]:
    """source -> (constant is rounded, requantize rounds, requantize clamps, isqrt floors), each a
    predicate on a constant or op name that says whether the name belongs to the source."""
    gdn = set(lowered.meta.get("igdn", {}))
    requant = {op.name for op in lowered.ops if op.kind == "requantize"}
    outputs = {n for n in requant if n.endswith(".requantize") and layer_of(n) != last} | {"y.clamp"}
    never: Policy = lambda name: False  # noqa: E731
    return {
        "conv weights": (lambda n: n.endswith(".weight") and layer_of(n) not in gdn and layer_of(n) != last,
                         never, never, never),
        "pixel-layer weights": (lambda n: n == f"{last}.weight", never, never, never),
        "biases": (lambda n: n.endswith(".bias") and layer_of(n) not in gdn, never, never, never),
        "activation rounding": (never, lambda n: n in outputs, never, never),
        "activation clamping": (never, never, lambda n: n in outputs, never),
        "GDN a = x^2 rounding": (never, lambda n: n.endswith(".pooled"), lambda n: n.endswith(".pooled"), never),
        "GDN gamma": (lambda n: n.endswith(".pool.weight") or n.endswith(".pool.bias"), never, never, never),
        "GDN beta": (lambda n: n.endswith(".beta.addend"), never, never, never),
        "GDN pool requantize": (never, lambda n: ".pool" in n and not n.endswith(".pooled"),
                                lambda n: ".pool" in n and not n.endswith(".pooled"), never),
        "GDN root floor": (never, never, never, lambda n: n.endswith(".sqrt")),
    }


def variant(parts: list[tuple[Policy, Policy, Policy, Policy]]):
    """The union of some sources: each predicate true where any part's is."""
    return tuple((lambda n, i=i: any(p[i](n) for p in parts)) for i in range(4))


def pixels_fn(lowered, exact, policy):
    """jitted y_symbols -> uint8-valued pixels for one variant."""
    import jax

    from jaxlic.quant.graph import needed_ops

    const_rounded, rounds, clamps, floors = policy
    consts = {k: (v if const_rounded(k) else exact.consts[k]) for k, v in lowered.consts.items()}
    table = ops_table(rounds, clamps, floors)
    ops = needed_ops(lowered.ops, ["pixels"], ["y_symbols", "means"])

    @jax.jit
    def run(values):
        v = dict(values)
        for op in ops:
            c = {role: consts[name] for role, name in op.consts.items()}
            v[op.output] = table[op.kind](op, [v[n] for n in op.inputs], c)
        return v["pixels"]

    return run


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="trained float package, or NAME:QUALITY of a shipped model")
    parser.add_argument("--data", type=Path, action="append", required=True, help="calibration folder (repeatable)")
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/kodak"))
    parser.add_argument("--images", type=int, default=6, help="first N Kodak images")
    parser.add_argument("--clipping", choices=("mse", "max"), default="mse", help="calibration rule (lowering.calibrate)")
    parser.add_argument("--per-layer", action="store_true", help="also every layer alone")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import jax.numpy as jnp

    from jaxlic.pretrained import load_model
    from jaxlic.images import read_images
    from jaxlic.quant import execute
    from jaxlic.quant.export import integerize
    from jaxlic.quant.lowering import calibrate
    from jaxlic.quant.qat import calibration_batches
    from jaxlic.quant.gdn_error import synthesis_inputs

    base = load_model(args.model)
    calibration = calibrate(base.config, base.params, calibration_batches(tuple(map(str, args.data)), 4, 8, 256, 1),
                            args.clipping)
    ptq = integerize(base.config, base.params, calibration)
    rounded, exact = lower_both(base.config, ptq.params, calibration)
    last = next(op.name for op in rounded.ops if op.output == "pixels").split(".")[0]
    table = sources(rounded, last)
    images = read_images(args.kodak)[:args.images]
    symbols = [synthesis_inputs(ptq, im[None] / 255.0) for _, im in images]
    inputs = [{k: jnp.asarray(v, jnp.float32) for k, v in s.items()} for s in symbols]

    def measure(policy) -> float:
        run = pixels_fn(rounded, exact, policy)
        return float(np.mean([psnr(np.asarray(run(v))[0], im) for v, (_, im) in zip(inputs, images)]))

    every = list(table.values())
    reference, full = measure(variant([])), measure(variant(every))
    # "all" is the integer graph: its float32 twin against the exact integer path, on one image.
    twin = np.asarray(pixels_fn(rounded, exact, variant(every))(inputs[0]))
    differing = int(np.sum(twin != execute.run(ptq.integer, symbols[0], ["pixels"])["pixels"]))
    model = base.model.bind({"params": base.params})
    float_psnr = float(np.mean([psnr(np.round(np.clip(np.asarray(model.synthesis(
        v["y_symbols"] + (0.0 if model.hyper else jnp.asarray(ptq.params["entropy_bottleneck"]["quantiles"][:, 0, 1])))
    )[0], 0, 1) * 255), im) for v, (_, im) in zip(inputs, images)]))
    record = {"model": str(args.model), "clipping": args.clipping, "images": len(images), "float_decoder": float_psnr, "all_exact": reference,
              "all": full, "twin_vs_integer_differing_pixels": differing, "sources": {}, "layers": {}}
    print(f"{len(images)} Kodak images: float decoder {float_psnr:.3f} dB, all exact {reference:.3f} dB, "
          f"PTQ (all sources) {full:.3f} dB ({full - reference:+.3f} dB); the twin differs from the integer "
          f"graph in {differing} pixel values of {images[0][0]}", flush=True)
    print(f"{'source':28s} {'only':>8s} {'all but':>8s}")
    for name, source in table.items():
        only = measure(variant([source])) - reference
        but = measure(variant([s for s in every if s is not source])) - full
        record["sources"][name] = {"only": only, "all_but_recovers": but}
        print(f"{name:28s} {only:+8.3f} {but:+8.3f}", flush=True)
    if args.per_layer:
        layers = sorted({layer_of(op.name) for op in rounded.ops if op.name.startswith("g_s_")},
                        key=lambda n: int(n.split("_")[-1]))
        for layer in layers:
            policy = variant(every)
            mine = tuple((lambda n, p=p: p(n) and layer_of(n) == layer) for p in policy)
            only = measure(mine) - reference
            record["layers"][layer] = only
            print(f"layer {layer:22s} {only:+8.3f}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
