"""From an integer model package to a deployment bundle, and what a board will make of it.

`build_bundle` plans which layers run on VTA (`compile.vta.offload`), lowers the rest of the
integer graph to TVM Relax (`compile.tvm`), builds the host part for this machine (so any bundle
can be simulated here) and for the board's CPU, and writes the bundle (`compile.bundle`), sealed
to the board when keys are given. `estimate` predicts a board's decode time: VTA cycles per
layer, host ops and entropy decoding measured here and scaled to the board's CPU (Amdahl).

The decoder runs in two phases, as `jaxlic.decompress` calls it: `hyper` (z symbols -> table
indexes, and means for mean-scale models) between the two entropy decoders, and `synthesis`
(y symbols -> pixels). Each phase is one Relax function of the host library.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from jaxlic.codec.package import ModelPackage
from jaxlic.errors import IntegerizationError, PackageError
from jaxlic.codec.decoders import check_integer_package
from jaxlic.quant.graph import IntegerGraph

# How much slower than one core of the build machine a board's CPU runs the host ops and the
# entropy decoder. Assumptions, not measurements: a Cortex-A9 at 650-800 MHz (PYNQ, DE10-Nano)
# ~12x slower than a current x86 core, a Cortex-A53 at 1.2-1.5 GHz (Ultra96, ZCU104) ~5x; scalar
# integer code, no NEON auto-vectorization credited.
HOST_SLOWDOWN = {"Cortex-A9": 12.0, "Cortex-A53": 5.0}


@dataclass(frozen=True)
class Phase:
    """One decoder phase: the graph inputs it takes and the outputs it computes."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def phases(graph: IntegerGraph) -> tuple[Phase, ...]:
    """The decoder's phases, in the order `jaxlic.decompress` runs them."""
    hyper_out = tuple(name for name in ("scale_index", "means") if name in graph.outputs)
    synthesis_in = ("y_symbols", "means") if "means" in graph.outputs else ("y_symbols",)
    hyper = (Phase("hyper", ("z_symbols",), hyper_out),) if "z_symbols" in graph.inputs else ()
    return (*hyper, Phase("synthesis", synthesis_in, ("pixels",)))


def load_integer_package(path: str | Path, data: bytes | None = None) -> tuple[ModelPackage, IntegerGraph]:
    """An integer-mode package (from `data`, the file's bytes, when given) and its graph;
    IntegerizationError for a float package."""
    package = ModelPackage.load(path) if data is None else ModelPackage.from_bytes(data, str(path))
    if package.integer is None:
        raise IntegerizationError(f"{path} is a float model package; only integer-mode packages compile to VTA. "
                                  f"Make one with `jaxlic quantize --model {path} --out MODEL-int8.jxlm`")
    return package, check_integer_package(package)


def latent_shapes(package: ModelPackage, resolution: tuple[int, int]) -> dict[str, tuple[int, int, int, int]]:
    """NHWC shapes of every graph input for images of (width, height), padded as the codec pads."""
    width, height = resolution
    step = package.model.downsampling
    ph, pw = -(-height // step) * step, -(-width // step) * step
    config = package.config
    shapes = {"y_symbols": (1, ph // 16, pw // 16, config.M)}
    if package.model.hyper:
        shapes["z_symbols"] = (1, ph // 64, pw // 64, config.N)
    if "means" in package.integer.outputs:
        shapes["means"] = shapes["y_symbols"]
    return shapes


def host_slowdown(config) -> float:
    """The assumed slowdown of the board's CPU against this machine (1 for the x86 `sim` board)."""
    for family, factor in HOST_SLOWDOWN.items():
        if family in config.board.host_cpu:
            return factor
    return 1.0


def _offloads(plan):
    from compile.tvm import Offload

    return [Offload(layer.index, layer.conv, layer.requantize, layer.output, layer.out_shape, layer.out_dtype)
            for layer in plan.layers]


def build_bundle(model: str | Path, board: str, resolution: tuple[int, int], out: str | Path,
                 seal_to=None, owner_key=None, progress: bool = True) -> dict:
    """Compile an integer package for a board at one resolution into a bundle; returns a report."""
    from compile import tvm as tvm_build
    from compile.bundle import Payload, write_bundle
    from compile.vta.config import load_config
    from compile.vta.offload import plan_offload

    started = time.perf_counter()
    config = load_config(board)
    try:
        package_bytes = Path(model).read_bytes()  # read once: parsed here, shipped in the payload
    except OSError as exc:
        raise PackageError(f"cannot read model package {model}: {exc.strerror}") from None
    package, graph = load_integer_package(model, package_bytes)
    shapes = latent_shapes(package, resolution)
    plan = plan_offload(graph, shapes, config, progress=progress)
    offloads = _offloads(plan)
    module, param_names = tvm_build.to_relax(graph, shapes, offloads, functions=phases(graph))
    libraries, notes = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("x86_64", "sim")] + ([] if config.board.host_cpu.startswith("host") else [(config.name, config)])
        for name, target_board in targets:
            executable = tvm_build.build(module, tvm_build.host_target(target_board))
            path = tvm_build.export(executable, Path(tmp) / f"{name}.so", target_board)
            if path.suffix != ".so":
                notes.append(f"no cross-linker for {config.name}: its host part is a .tar of object files; "
                             "link it on the board (see docs/deploy.md)")
            libraries[f"host/{path.name}"] = path.read_bytes()
    compile_s = time.perf_counter() - started
    programs = {layer.conv: layer.program.to_bytes() for layer in plan.layers}
    manifest = manifest_of(package, graph, config, resolution, shapes, plan, param_names, libraries)
    write_bundle(out, manifest, libraries, Payload(package_bytes, programs), seal_to, owner_key)
    return {"out": str(out), "compile_s": compile_s, "bytes": Path(out).stat().st_size, "notes": notes,
            "vta_layers": len(plan.layers), "vta_mac_share": plan.vta_mac_share(),
            "libraries": sorted(libraries)}


def manifest_of(package, graph, config, resolution, shapes, plan, param_names, libraries) -> dict:
    """The public description of a bundle (no weights)."""
    import tvm

    import jaxlic
    from compile.bundle import sha256

    return {
        "name": f"{package.config.arch}-{config.name}-{resolution[0]}x{resolution[1]}",
        "versions": {"jaxlic": jaxlic.__version__, "tvm": tvm.__version__},
        "package_fingerprint": package.fingerprint.hex(),
        "graph_sha256": sha256(graph.spec_json().encode()),
        "model": {"arch": package.config.arch, "N": package.config.N, "M": package.config.M},
        "board": config.name, "vta_config": config.to_json(), "bitstream": config.bitstream_name,
        "resolution": list(resolution), "input_shapes": {k: list(v) for k, v in shapes.items()},
        "phases": [{"name": p.name, "inputs": list(p.inputs), "outputs": list(p.outputs)} for p in phases(graph)],
        "params": list(param_names),
        "vta_layers": [{f.name: getattr(layer, f.name) for f in fields(layer) if f.name != "program"}
                       for layer in plan.layers],  # VTALayer without its program (in the payload)
        "placement": plan.table(),
        "host_ops": [{"op": op, "reason": reason} for op, reason in plan.host_ops],
        "vta_mac_share": plan.vta_mac_share(),
        "libraries": sorted(libraries),
    }


def median_seconds(fn, repeats: int = 3, clock=time.perf_counter) -> float:
    """Median time of `repeats` calls of `fn` by `clock`: wall time, or with time.process_time
    the CPU time of all the process's threads (what other processes' load hardly changes)."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return float(np.median(times))


def estimate(model: str | Path, config, resolution: tuple[int, int], progress: bool = False) -> dict:
    """Predicted decode time of an integer package on a board: VTA cycles per layer (cycle model),
    host ops and entropy decoding measured here with the JAX integer path and scaled by
    `host_slowdown`, summed without overlap (the Amdahl bound of one decode at a time). Host and
    entropy times are CPU time (all threads): the slowdown is against one core of this machine,
    and CPU time stays put when other processes load it."""
    import jax
    import jax.numpy as jnp

    from compile.vta.offload import plan_offload
    from jaxlic.codec.api import compress, decompress
    from jaxlic.quant import execute

    package, graph = load_integer_package(model)
    shapes = latent_shapes(package, resolution)
    plan = plan_offload(graph, shapes, config, progress=progress)
    vta_s = sum(row["ms"] for row in plan.table() if row["placement"] == "vta") / 1e3

    # Host ops alone: every host op's output computed, with every VTA layer's output given.
    rng = np.random.default_rng(0)
    given = {name: jnp.asarray(rng.integers(-20, 20, shape).astype(np.int32)) for name, shape in shapes.items()}
    given.update({layer.output: jnp.asarray(np.zeros(layer.out_shape, layer.out_dtype)) for layer in plan.layers})
    on_vta = {name for layer in plan.layers for name in (layer.conv, layer.requantize)}
    host_outputs = [op.output for op in graph.ops if op.name not in on_vta]
    consts = {name: jnp.asarray(a) for name, a in graph.constants.items()}
    host = jax.jit(lambda c, v: execute.run_ops(graph.ops, c, v, host_outputs, "int"))
    jax.block_until_ready(host(consts, given))
    host_here = median_seconds(lambda: jax.block_until_ready(host(consts, given)), clock=time.process_time)

    # Entropy decoding: a real stream of this size, each decode's time minus its time in the graph.
    data = compress(package, _test_image(resolution))
    timer = TimedRunner(lambda inputs, outputs: execute.run(graph, inputs, outputs), time.process_time)
    decompress(package, data, backend=timer)  # warm: compiles the graph for these shapes
    entropy_runs = []
    for _ in range(3):
        timer.seconds, start = 0.0, time.process_time()
        decompress(package, data, backend=timer)
        entropy_runs.append(time.process_time() - start - timer.seconds)
    entropy_here = max(float(np.median(entropy_runs)), 0.0)

    slowdown = host_slowdown(config)
    host_s, entropy_s = host_here * slowdown, entropy_here * slowdown
    total_s = vta_s + host_s + entropy_s
    return {"model": f"{package.config.arch} (N={package.config.N}, M={package.config.M})",
            "placement": plan.table(), "vta_mac_share": plan.vta_mac_share(), "vta_s": vta_s,
            "host_s": host_s, "entropy_s": entropy_s, "host_here_s": host_here, "entropy_here_s": entropy_here,
            "host_slowdown": slowdown, "fps": 1.0 / total_s, "vta_fps": 1.0 / vta_s if vta_s else float("inf"),
            "host_share": (host_s + entropy_s) / total_s, "bitstream_bytes": len(data)}


class TimedRunner:
    """A graph runner (`jaxlic.codec.decoders.GraphRunner`) that adds up the time another spends (by
    `clock`, as `median_seconds`), to tell the graph's share of a decode from entropy decoding."""

    def __init__(self, run, clock=time.perf_counter):
        self._run, self._clock, self.seconds = run, clock, 0.0

    def run(self, inputs, outputs):
        start = self._clock()
        result = self._run(inputs, outputs)
        self.seconds += self._clock() - start
        return result


def _test_image(resolution: tuple[int, int]) -> np.ndarray:
    """A natural photo (scikit-image's) resized to (width, height): real statistics for the coder."""
    from PIL import Image

    from jaxlic.images import default_images

    photo = Image.fromarray(default_images()[0][1])
    return np.asarray(photo.resize(resolution, Image.BICUBIC))
