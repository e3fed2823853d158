"""Board libraries: armv7 hard-float NEON and aarch64 .so files with the right ELF facts (cross-
linked by the `ziglang` wheel of the `compile` extra, or Debian's cross g++), .tar without one."""

import importlib
import importlib.util
import tarfile
from pathlib import Path

import pytest

from compile.tvm import build, cross_linker, elf_facts, export, host_target, to_relax

build_module = importlib.import_module("compile.tvm.build")  # the module (the package exports its build())
_spec = importlib.util.spec_from_file_location("tvm_export_tests", Path(__file__).parent / "test_tvm_export.py")
_export_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_export_tests)

BOARDS = {"pynq": {"class": 32, "machine": "arm", "float_abi": "hard"},
          "zcu104": {"class": 64, "machine": "aarch64", "float_abi": "hard"}}


@pytest.fixture(scope="module")
def module():
    return to_relax(_export_tests.every_op_graph(), {"x": (1, 5, 7, 4)})[0]


@pytest.mark.slow
@pytest.mark.parametrize("board", BOARDS)
def test_board_library_elf(module, board, tmp_path):
    """Minutes the first time (zig builds the target's libc stubs), seconds after."""
    target = host_target(board)
    if cross_linker(target) is None:
        pytest.skip(f"no cross-linker for {target['mtriple']}: install the compile extra (ziglang) "
                    f"or Debian's {build_module.GNU_COMPILERS[target['mtriple']]}")
    library = export(build(module, target), tmp_path / "host.so", board)
    assert library.suffix == ".so"
    facts = elf_facts(library)
    assert {k: facts[k] for k in BOARDS[board]} == BOARDS[board]


def test_tar_export_without_a_cross_linker(module, tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "cross_linker", lambda target: None)
    library = export(build(module, host_target("pynq")), tmp_path / "host.so", "pynq")
    assert library.suffix == ".tar"
    with tarfile.open(library) as archive:
        assert any(name.endswith(".o") for name in archive.getnames())
