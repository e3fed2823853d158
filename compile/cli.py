"""`jaxlic-compile`: build deployment bundles from integer packages, run and inspect them, estimate a
board's decode speed; lower, disassemble, simulate and time single VTA programs; size models for a board."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxlic.cli import add_force_option, check_paths
from jaxlic.errors import JaxlicError, VTAScheduleError

SYNTHETIC = ("factorized", "hyperprior")  # decoders of random weights at a width (compile.vta.network)
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
    cells = [["-" if row[key] is None else fmt.format(row[key]) for key, _, fmt in columns] for row in rows]
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

    config = load_config(args.board)
    if args.model in SYNTHETIC:
        return _estimate_synthetic(args, config)
    from compile.deploy import estimate

    report = estimate(args.model, config, args.resolution, progress=True)
    print(f"# {report['model']} decoder, {args.resolution[0]}x{args.resolution[1]}, {config.name} "
          f"({config.board.clock_mhz:g} MHz, {config.macs_per_cycle} MAC/cycle), host CPU {config.board.host_cpu}")
    print(_placement_table(report["placement"]))
    print(_split_lines(report))


def _estimate_synthetic(args: argparse.Namespace, config) -> None:
    from compile.vta.network import BASE_CHANNELS, decoder, layer_table, lower_network, width_channels

    network = decoder(args.model, args.resolution, width_channels(args.width, BASE_CHANNELS[args.base]))
    lowered = lower_network(network, config, progress=True)
    print(f"# {network.name} decoder (random weights), {args.resolution[0]}x{args.resolution[1]}, {config.name} "
          f"({config.board.clock_mhz:g} MHz, {config.macs_per_cycle} MAC/cycle)")
    print(_table(layer_table(lowered), [("layer", "layer", "{}"), ("in", "input", "{}"), ("out", "output", "{}"),
                                        ("tiling", "tile", "{}"), ("gmac", "GMAC", "{:.3f}"),
                                        ("cycles", "cycles", "{}"), ("ms", "ms", "{:.2f}"), ("util", "util", "{:.1%}")]))
    print(f"total: {1e3 / lowered.fps():.1f} ms per decode = {lowered.fps():.2f} fps (VTA layers only)")


def _placement_table(rows: list[dict]) -> str:
    rows = [{**row, "mmac": row["macs"] / 1e6} for row in rows]
    return _table(rows, [("name", "layer/op", "{}"), ("placement", "where", "{}"), ("mmac", "MMAC", "{:.2f}"),
                         ("cycles", "cycles", "{}"), ("ms", "ms", "{:.3f}"), ("util", "util", "{:.1%}")])


def _split_lines(report: dict) -> str:
    return (f"VTA share of decoder MACs: {report['vta_mac_share']:.1%}\n"
            f"VTA layers: {1e3 * report['vta_s']:.1f} ms; host ops: {1e3 * report['host_s']:.1f} ms and entropy "
            f"decoding {1e3 * report['entropy_s']:.1f} ms on the board CPU (measured here x{report['host_slowdown']:g})\n"
            f"end-to-end bound: {report['fps']:.2f} fps (VTA layers alone: {report['vta_fps']:.2f} fps; "
            f"host share of the decode time {report['host_share']:.0%})")


def cmd_build(args: argparse.Namespace) -> None:
    from compile.deploy import build_bundle
    from jaxlic.secure.keys import load_private_key, load_public_key

    seal_to = load_public_key(args.seal_to, kind="x25519") if args.seal_to else None
    owner = load_private_key(args.owner_key, kind="ed25519") if args.owner_key else None
    check_paths([p for p in (args.model, args.seal_to, args.owner_key) if p], [args.out], args.force)
    report = build_bundle(args.model, args.board, args.resolution, args.out, seal_to, owner)
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"wrote {args.out} ({report['bytes']} bytes, {'sealed' if seal_to else 'plain'}): {report['vta_layers']} "
          f"layers on VTA ({report['vta_mac_share']:.1%} of the MACs), host libraries {', '.join(report['libraries'])}; "
          f"compiled in {report['compile_s']:.1f} s")


def cmd_run(args: argparse.Namespace) -> None:
    from compile.runtime import BundleDecoder
    from jaxlic.images import write_image
    from jaxlic.secure.keys import load_private_key, load_public_key

    key = load_private_key(args.key, kind="x25519") if args.key else None
    owner = load_public_key(args.owner, kind="ed25519") if args.owner else None
    check_paths([p for p in (args.bundle, args.stream, args.key, args.owner) if p], [args.output], args.force)
    data = Path(args.stream).read_bytes()
    decoder = BundleDecoder(args.bundle, key, owner, device=args.device, host=args.host)
    image = decoder.decode(data)
    write_image(args.output, image)
    print(f"wrote {args.output} ({image.shape[1]}x{image.shape[0]}), decoded with {args.bundle} "
          f"({len(decoder.layers)} VTA layers on the {args.device}, host ops in {args.host})")


def cmd_inspect(args: argparse.Namespace) -> None:
    from compile.bundle import read_bundle

    bundle = read_bundle(args.bundle)
    m = bundle.manifest
    print(f"{args.bundle}: {m['name']} ({'sealed' if bundle.sealed else 'plain'})")
    print(f"  versions: {m['versions']}; model {m['model']}; package {m['package_fingerprint']}; "
          f"graph sha256 {m['graph_sha256'][:16]}...")
    print(f"  board {m['board']} (VTA bitstream {m['bitstream']}); resolution {m['resolution'][0]}x{m['resolution'][1]}; "
          f"inputs {m['input_shapes']}")
    print(f"  host libraries: {', '.join(f'{k} ({len(v)} bytes)' for k, v in bundle.libraries.items())}; "
          f"payload {len(bundle.payload_blob)} bytes")
    print(_placement_table(m["placement"]))
    for entry in m["host_ops"]:
        print(f"  host: {entry['op']}: {entry['reason']}")
    print(f"VTA share of decoder MACs: {m['vta_mac_share']:.1%}")


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

    p = sub.add_parser("estimate", help="per-layer VTA cycles, host time and the fps bound of a decoder on a board")
    p.add_argument("--board", "--config", dest="board", required=True, help="VTA config name or JSON path")
    p.add_argument("--model", required=True,
                   help="integer-mode package (.jxlm), or a synthetic decoder: " + ", ".join(SYNTHETIC))
    p.add_argument("--resolution", type=parse_resolution, required=True, metavar="WxH")
    p.add_argument("--width", type=float, default=1.0, help="synthetic decoders: width multiplier")
    p.add_argument("--base", choices=("low", "high"), default="low",
                   help="synthetic decoders: channels at width 1: low = (128, 192), high = (192, 320)")
    p.set_defaults(func=cmd_estimate)

    from compile.vta.sizing import DEFAULT_WIDTHS
    p = sub.add_parser("size", help="largest width multiplier whose decoder meets an fps budget")
    p.add_argument("--board", "--config", dest="config", required=True, help="VTA config name or JSON path")
    p.add_argument("--model", choices=SYNTHETIC, default="hyperprior")
    p.add_argument("--resolution", type=parse_resolution, required=True, metavar="WxH")
    p.add_argument("--base", choices=("low", "high"), default="low",
                   help="channels at width 1: low = (128, 192) qualities 1-5, high = (192, 320) qualities 6-8")
    p.add_argument("--fps", type=float, required=True)
    p.add_argument("--widths", type=float, nargs="+", default=list(DEFAULT_WIDTHS))
    p.set_defaults(func=cmd_size)

    p = sub.add_parser("build", help="compile an integer package for a board into a deployment bundle (.jxvb)")
    p.add_argument("--model", required=True, help="integer-mode package (.jxlm) from `jaxlic quantize`")
    p.add_argument("--board", required=True, help="VTA config name (see vta_configs/) or JSON path")
    p.add_argument("--resolution", type=parse_resolution, required=True, metavar="WxH",
                   help="the image size the bundle decodes (as bitstreams declare it)")
    p.add_argument("--out", required=True, help="bundle file to write")
    p.add_argument("--seal-to", help="board's X25519 public key: seal the weights and programs to it")
    p.add_argument("--owner-key", help="owner's Ed25519 private key: signs the sealed bundle")
    add_force_option(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="decode a jaxlic bitstream with a bundle (VTA layers on the simulator or board)")
    p.add_argument("bundle")
    p.add_argument("stream", help="a .jxlc bitstream of the bundle's model and resolution")
    p.add_argument("-o", "--output", required=True, help="image to write (PNG, ...)")
    p.add_argument("--key", help="board's X25519 private key (sealed bundles)")
    p.add_argument("--owner", help="owner's Ed25519 public key (sealed bundles)")
    p.add_argument("--device", choices=("sim", "pynq"), default="sim", help="where the VTA layers run")
    p.add_argument("--host", choices=("tvm", "numpy"), default="tvm",
                   help="host ops in the bundle's TVM library, or the NumPy integer reference (no TVM runtime)")
    add_force_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="a bundle's manifest: versions, board, per-layer placement and cycles")
    p.add_argument("bundle")
    p.set_defaults(func=cmd_inspect)
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
