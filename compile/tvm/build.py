"""Build, export, inspect and run the host part: tvm.compile, shared libraries, ELF facts.

A library for this machine links with the system C compiler. A board's library links with a
cross-linker: `zig cc` from the `ziglang` wheel (the `compile` extra installs it), else
Debian's `g++-aarch64-linux-gnu` / `g++-arm-linux-gnueabihf`; with neither, `export` writes a
`.tar` of object files to link on the board.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import tvm
from tvm import relax
from tvm.support import cc

from compile.tvm.relax_export import SIGNATURE
from compile.tvm.schedule import host_pipeline
from compile.tvm.targets import host_target, this_machine, triple
from compile.vta.config import VTAConfig
from jaxlic.errors import CompileError

# zig's target names (with the oldest glibc the boards' images may have) and Debian's compilers.
ZIG_TARGETS = {"armv7a-linux-gnueabihf": "arm-linux-gnueabihf.2.17", "aarch64-linux-gnu": "aarch64-linux-gnu.2.17"}
GNU_COMPILERS = {"armv7a-linux-gnueabihf": "arm-linux-gnueabihf-g++", "aarch64-linux-gnu": "aarch64-linux-gnu-g++"}
ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64"}
EF_ARM_ABI_FLOAT_SOFT, EF_ARM_ABI_FLOAT_HARD = 0x200, 0x400


def build(mod: tvm.IRModule, target: str | dict | None = None) -> tvm.runtime.Executable:
    """Compile a Relax module (from `to_relax`) for a host target (default: this machine's CPU,
    `targets.this_machine`; a library to ship takes `host_target(board)`)."""
    target = tvm.target.Target(target if target is not None else this_machine())
    return tvm.compile(mod, target, relax_pipeline=host_pipeline(target))


def cross_linker(target: dict) -> Callable | None:
    """An `export_library` compile function for the target's CPU, None if none is installed."""
    name = triple(target)
    zig = _zig()
    if zig is not None:
        zig_target = ZIG_TARGETS[name]

        def link(output: str, objects: list[str], options=None) -> None:
            command = [zig, "cc", "-shared", "-fPIC", "-target", zig_target, "-o", output, *objects]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise CompileError(f"zig cc failed for {zig_target}: {done.stderr.strip()[-2000:]}")

        return cc.cross_compiler(link, get_target_triple=lambda: name)
    gnu = shutil.which(GNU_COMPILERS[name])
    return cc.cross_compiler(gnu, get_target_triple=lambda: name) if gnu else None


def _zig() -> str | None:
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(spec.submodule_search_locations[0]) / "zig"
    return str(binary) if binary.is_file() else None


def export(executable: tvm.runtime.Executable, path: str | Path, board: VTAConfig | str) -> Path:
    """Write the board's host library: `path` as a .so, or (no cross-linker installed) the same
    name with .tar, object files to link on the board. Returns the path written."""
    path = Path(path)
    target = host_target(board)
    if triple(target) is None:
        executable.export_library(str(path.with_suffix(".so")))
        return path.with_suffix(".so")
    linker = cross_linker(target)
    if linker is None:
        executable.export_library(str(path.with_suffix(".tar")))
        return path.with_suffix(".tar")
    executable.export_library(str(path.with_suffix(".so")), fcompile=linker)
    return path.with_suffix(".so")


def elf_facts(path: str | Path) -> dict:
    """ELF class (32/64), machine and float ABI ('hard', 'soft' or None when the ELF says
    neither; AArch64 is always hard) of a shared library."""
    header = Path(path).read_bytes()[:64]
    if len(header) < 52 or header[:4] != b"\x7fELF":
        raise CompileError(f"{path} is not an ELF file")
    bits = {1: 32, 2: 64}[header[4]]
    order = "<" if header[5] == 1 else ">"
    machine = struct.unpack_from(order + "H", header, 18)[0]
    flags = struct.unpack_from(order + "I", header, 36 if bits == 32 else 48)[0]
    name = ELF_MACHINES.get(machine, str(machine))
    if name == "arm":
        abi = "hard" if flags & EF_ARM_ABI_FLOAT_HARD else "soft" if flags & EF_ARM_ABI_FLOAT_SOFT else None
    else:
        abi = "hard" if name in ("aarch64", "x86_64") else None
    return {"class": bits, "machine": name, "float_abi": abi, "flags": flags}


def register_vta_function(name: str, vta_layer: Callable[[int, np.ndarray], np.ndarray]) -> None:
    """Register the packed function the module's VTA calls reach: (x, index, out) with
    out = vta_layer(index, x); replaces an earlier registration."""

    def packed(x, index, out):
        result = np.asarray(vta_layer(int(index), x.numpy()))
        if result.shape != tuple(out.shape) or str(result.dtype) != str(out.dtype):
            raise CompileError(f"VTA layer {index} returned {result.dtype} {result.shape}, the module expects "
                               f"{out.dtype} {tuple(out.shape)}")
        out.copyfrom(np.ascontiguousarray(result))

    tvm.register_global_func(name, packed, override=True)


class HostModule:
    """A built host part, loaded with its parameters: `run(inputs, outputs)` like a graph runner."""

    def __init__(self, library_path_or_executable, param_names: Sequence[str], params: Mapping[str, np.ndarray]):
        source = library_path_or_executable
        if isinstance(source, (str, Path)):
            if not Path(source).is_file():
                raise CompileError(f"host library {source} does not exist")
            source = tvm.runtime.load_module(str(source))
        self._vm = relax.VirtualMachine(source, tvm.cpu())
        self.signature = json.loads(self._vm[SIGNATURE]().numpy().tobytes())
        if list(param_names) != self.signature["params"]:
            raise CompileError(f"the library takes parameters {self.signature['params']}, got {list(param_names)}")
        missing = [name for name in param_names if name not in params]
        if missing:
            raise CompileError(f"parameters {missing} are missing")
        self._params = [tvm.runtime.tensor(np.ascontiguousarray(params[name])) for name in param_names]

    def function_for(self, inputs: Sequence[str], outputs: Sequence[str]) -> str:
        """The function computing `outputs` from (a subset of) `inputs`."""
        for name, fn in self.signature["functions"].items():
            if set(outputs) <= set(fn["outputs"]) and set(fn["inputs"]) <= set(inputs):
                return name
        raise CompileError(f"no function of the library computes {list(outputs)} from {sorted(inputs)}; it has "
                           f"{ {n: f['outputs'] for n, f in self.signature['functions'].items()} }")

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Compute `outputs` from named NHWC tensors of the shapes the module was built for."""
        name = self.function_for(list(inputs), outputs)
        fn = self.signature["functions"][name]
        args = []
        for tensor in fn["inputs"]:
            value = np.asarray(inputs[tensor])
            shape, dtype = tuple(self.signature["input_shapes"][tensor]), self.signature["input_dtypes"][tensor]
            if value.shape != shape or str(value.dtype) != dtype:
                raise CompileError(f"input {tensor!r} must be {dtype} {shape} (the shape the library was built for), "
                                   f"got {value.dtype} {value.shape}")
            args.append(tvm.runtime.tensor(np.ascontiguousarray(value)))
        results = self._vm[name](*args, *self._params)
        computed = dict(zip(fn["outputs"], (r.numpy() for r in results)))
        return {tensor: computed[tensor] for tensor in outputs}
