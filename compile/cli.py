"""`jaxlic-compile`: lower, disassemble, simulate and time VTA programs; size models for a board."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from jaxlic.errors import JaxlicError, VTAScheduleError

LAYER_KEYS = {"kind": str, "cin": int, "cout": int, "k": int, "s": int, "p": int, "op": int, "shift": int,
              "lo": int, "hi": int}


def parse_resolution(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 1280x720, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return width, height


def parse_layer(text: str):
    """'kind=convT,cin=128,cout=128,k=5,s=2,p=2,op=1,shift=12' -> ConvLayer."""
    from compile.vta.schedule import ConvLayer

    values: dict = {"kind": "conv", "s": 1, "p": 0, "op": 0, "shift": 0, "lo": -128, "hi": 127}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in LAYER_KEYS:
            raise VTAScheduleError(f"unknown layer key {key!r}; keys: {list(LAYER_KEYS)}")
        try:
            values[key] = LAYER_KEYS[key](value)
        except ValueError:
            raise VTAScheduleError(f"layer key {key} needs an integer, got {value!r}") from None
    missing = [k for k in ("cin", "cout", "k") if k not in values]
    if missing or values["kind"] not in ("conv", "convT"):
        raise VTAScheduleError(f"layer spec needs kind=conv|convT and {missing or 'cin, cout, k'}")
    return ConvLayer("layer", values["cin"], values["cout"], values["k"], values["s"], values["p"],
                     values["kind"] == "convT", values["op"], values["shift"], (values["lo"], values["hi"]))


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    cells = [[fmt.format(row[key]) for key, _, fmt in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title, _) in enumerate(columns)]
    lines = ["  ".join(t.rjust(w) for (_, t, _), w in zip(columns, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def cmd_lower(args: argparse.Namespace) -> None:
    from compile.vta.config import load_config
    from compile.vta.schedule import lower_conv

    config, layer = load_config(args.config), parse_layer(args.layer)
    height, width = args.input
    rng = np.random.default_rng(args.seed)
    weights = rng.integers(-128, 128, (layer.kernel, layer.kernel, layer.in_channels, layer.out_channels), dtype=np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, layer.out_channels).astype(np.int32)
    lowered = lower_conv(layer, height, width, config, weights, bias)
    lowered.program.save(args.output)
    print(f"{args.output}: {len(lowered.program.insns)} instructions, tiling {lowered.tiling}, "
          f"output {lowered.out_shape[0]}x{lowered.out_shape[1]}x{layer.out_channels}")


def cmd_disasm(args: argparse.Namespace) -> None:
    from compile.vta.isa import InstructionLayout, decode_uops, disassemble
    from compile.vta.program import Program

    program = Program.load(args.program)
    print(f"# config {program.config.name} ({program.config.bitstream_name}), {len(program.insns)} instructions")
    print(disassemble(program.insns))
    if args.uops:
        segment = next((s for s in program.segments if s.name.endswith("uops")), None)
        if segment is not None:
            dst, src, wgt = decode_uops(np.frombuffer(segment.data, "<u4"), InstructionLayout(program.config))
            print(f"# micro-ops ({segment.name})")
            for i, triple in enumerate(zip(dst, src, wgt)):
                print(f"{i:6d}  dst={triple[0]} src={triple[1]} wgt={triple[2]}")


def cmd_simulate(args: argparse.Namespace) -> None:
    from compile.vta.packing import pack_activation, unpack_activation, unpack_weights
    from compile.vta.perf import estimate
    from compile.vta.program import Program
    from compile.vta.schedule import ConvLayer
    from compile.vta.simulator import run_program

    program = Program.load(args.program)
    config = program.config
    layer_meta = program.meta.get("layer")
    if not layer_meta:
        raise VTAScheduleError(f"{args.program} carries no layer description; make it with `jaxlic-compile lower`")
    layer = ConvLayer(**(layer_meta | {"clamp": tuple(layer_meta["clamp"])}))
    height, width = program.meta["input_hw"]
    out_h, out_w = program.meta["output_hw"]
    x = np.random.default_rng(args.seed).integers(-128, 128, (1, height, width, layer.in_channels), dtype=np.int8)
    sim, counters = run_program(program, {"input": pack_activation(x, config.block)}, allow_mul=not args.no_mul)
    out = program.buffers["output"]
    got = unpack_activation(sim.read(out.addr, out.nbytes).view(np.int8).reshape(1, -1, out_h, out_w, config.block),
                            layer.out_channels)
    segments = {s.name.split(".")[-1]: s.data for s in program.segments}
    packed_w = np.frombuffer(segments["weights"], np.int8).reshape(
        -1, -(-layer.in_channels // config.block), layer.kernel, layer.kernel, config.block, config.block)
    rounding = (1 << (layer.shift - 1)) if layer.shift else 0
    bias = ((np.frombuffer(segments["bias"], "<i4").astype(np.int64) - rounding).astype(np.int32)
            [:layer.out_channels])
    want = layer.reference(x, unpack_weights(packed_w, layer.in_channels, layer.out_channels), bias)
    timing = estimate(program.insns, config)
    for key, value in counters.as_dict().items():
        print(f"{key:>18}: {value}")
    print(f"{'cycles':>18}: {timing.cycles} ({1e3 * timing.seconds(config):.3f} ms at {config.board.clock_mhz:g} MHz)")
    print(f"{'gemm utilization':>18}: {timing.utilization(layer.macs(height, width)):.1%}")
    exact = bool(np.array_equal(got, want))
    print(f"{'bit-exact':>18}: {'yes' if exact else 'NO'} (vs the NumPy integer reference)")
    for warning in sim.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not exact:
        raise SystemExit(1)


def cmd_estimate(args: argparse.Namespace) -> None:
    from compile.vta.config import load_config
    from compile.vta.network import BASE_CHANNELS, decoder, layer_table, lower_network, width_channels

    config = load_config(args.config)
    network = decoder(args.model, args.resolution, width_channels(args.width, BASE_CHANNELS[args.base]))
    lowered = lower_network(network, config, progress=True)
    print(f"# {network.name} decoder, {args.resolution[0]}x{args.resolution[1]}, {config.name} "
          f"({config.board.clock_mhz:g} MHz, {config.macs_per_cycle} MAC/cycle)")
    print(_table(layer_table(lowered), [("layer", "layer", "{}"), ("in", "input", "{}"), ("out", "output", "{}"),
                                        ("tiling", "tile", "{}"), ("gmac", "GMAC", "{:.3f}"),
                                        ("cycles", "cycles", "{}"), ("ms", "ms", "{:.2f}"), ("util", "util", "{:.1%}")]))
    print(f"total: {1e3 / lowered.fps():.1f} ms per decode = {lowered.fps():.2f} fps (VTA layers only)")


def cmd_size(args: argparse.Namespace) -> None:
    from compile.vta.config import load_config
    from compile.vta.network import BASE_CHANNELS
    from compile.vta.sizing import size_model

    config = load_config(args.config)
    candidates, best = size_model(config, args.model, args.resolution, args.fps, tuple(args.widths),
                                  BASE_CHANNELS[args.base])
    print(f"# {args.model} decoder at {args.resolution[0]}x{args.resolution[1]} on {config.name}, "
          f"budget {args.fps:g} fps")
    rows = [{"width": c.width, "n": c.channels[0], "m": c.channels[1], "fps": c.fps, "ok": "yes" if c.meets else "no"}
            for c in candidates]
    print(_table(rows, [("width", "width", "{:g}"), ("n", "N", "{}"), ("m", "M", "{}"), ("fps", "pred. fps", "{:.2f}"),
                        ("ok", "meets", "{}")]))
    if best is None:
        print(f"no candidate width meets {args.fps:g} fps on {config.name}")
    else:
        print(f"largest width meeting the budget: {best.width:g} (N={best.channels[0]}, M={best.channels[1]}, "
              f"{best.fps:.2f} fps)")


def build_parser() -> argparse.ArgumentParser:
    """The `jaxlic-compile` argument parser."""
    parser = argparse.ArgumentParser(prog="jaxlic-compile", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    hw = lambda text: tuple(reversed(parse_resolution(text)))  # noqa: E731  'HxW' for layer inputs

    p = sub.add_parser("lower", help="lower one int8 conv layer (random weights) to a VTA program file")
    p.add_argument("--config", default="pynq", help="config name or JSON path")
    p.add_argument("--layer", required=True, help="e.g. kind=convT,cin=128,cout=128,k=5,s=2,p=2,op=1,shift=12")
    p.add_argument("--input", type=hw, required=True, metavar="HxW", help="input height x width")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_lower)

    p = sub.add_parser("disasm", help="disassemble a VTA program file")
    p.add_argument("program")
    p.add_argument("--uops", action="store_true", help="also list the micro-ops")
    p.set_defaults(func=cmd_disasm)

    p = sub.add_parser("simulate", help="run a program on the simulator with a random input and check it")
    p.add_argument("program")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-mul", action="store_true", help="refuse ALU MUL (not on FPGA)")
    p.set_defaults(func=cmd_simulate)

    for name, func, text in (("estimate", cmd_estimate, "per-layer cycles, utilization and fps of a decoder"),
                             ("size", cmd_size, "largest width multiplier whose decoder meets an fps budget")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="config name or JSON path")
        p.add_argument("--model", choices=("factorized", "hyperprior"), default="hyperprior")
        p.add_argument("--resolution", type=parse_resolution, required=True, metavar="WxH")
        p.add_argument("--base", choices=("low", "high"), default="low",
                       help="channels at width 1: low = (128, 192) qualities 1-5, high = (192, 320) qualities 6-8")
        if name == "estimate":
            p.add_argument("--width", type=float, default=1.0, help="width multiplier")
        else:
            from compile.vta.sizing import DEFAULT_WIDTHS
            p.add_argument("--fps", type=float, required=True)
            p.add_argument("--widths", type=float, nargs="+", default=list(DEFAULT_WIDTHS))
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; typed errors become one clear line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (JaxlicError, OSError) as exc:
        print(f"jaxlic-compile: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
