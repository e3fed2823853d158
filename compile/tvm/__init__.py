"""The integer graph's host part through TVM: Relax export, host/board builds, a run helper."""

from compile.tvm.build import HostModule, build, cross_linker, elf_facts, export, register_vta_function
from compile.tvm.relax_export import VTA_FUNCTION, Function, Offload, count_packed_calls, to_relax
from compile.tvm.targets import host_target

__all__ = ["HostModule", "build", "cross_linker", "elf_facts", "export", "register_vta_function", "VTA_FUNCTION",
           "Function", "Offload", "count_packed_calls", "to_relax", "host_target"]
