"""TVM targets of the host CPUs: this machine's x86 and the boards' ARM cores.

TVM 0.27 takes targets as dicts (the old "llvm -mtriple=..." strings are rejected). A board's
config names its CPU by an LLVM triple in `board.host_target`; this module turns that triple
into the full target (the ARMv7 boards need hard float: without it the link fails).
"""

from __future__ import annotations

import re

from tvm.target import codegen

from compile.vta.config import VTAConfig, load_config
from jaxlic.errors import CompileError

# x86-64-v3 (AVX2, FMA; every x86 CPU since about 2015): without an -mcpu LLVM emits SSE2 only,
# which made the host part 3-4x slower; v4 (AVX-512) would not load on many desktops. Libraries
# that only run here (host-only builds) use `this_machine()` instead.
X86_HOST = {"kind": "llvm", "mcpu": "x86-64-v3"}
ARMV7 = {"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf", "mcpu": "cortex-a9", "mattr": ["+neon"],
         "mfloat-abi": "hard"}
AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53"}
BY_TRIPLE = {target["mtriple"]: target for target in (ARMV7, AARCH64)}


def this_machine() -> dict:
    """The target of the CPU running this process (its own -mcpu: AVX-512 where it has it), for
    libraries that run only here; bundles' x86 libraries use the portable X86_HOST."""
    return {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}


def host_target(board: VTAConfig | str) -> dict:
    """The TVM target dict of a board's host CPU (a config or a config name/path); the x86
    host for boards whose CPU is this machine (`sim`). VTAConfigError for an unknown board."""
    config = board if isinstance(board, VTAConfig) else load_config(board)
    found = re.search(r"-mtriple=(\S+)", config.board.host_target)
    if found is None:
        return dict(X86_HOST)
    target = BY_TRIPLE.get(found.group(1))
    if target is None:
        raise CompileError(f"board {config.name!r}: no TVM target for CPU triple {found.group(1)!r}; "
                           f"known: {sorted(BY_TRIPLE)}")
    return dict(target)


def triple(target: dict) -> str | None:
    """The cross triple of a target dict, None for this machine."""
    return target.get("mtriple")
