"""Every backend has one table with one kernel per integer op kind, and the JAX runner cache
belongs to `execute` and goes away with its graph."""

import gc

import numpy as np

from jaxlic.quant import execute, reference
from jaxlic.quant.graph import OP_KINDS


def test_each_backend_has_a_kernel_for_every_op_kind():
    assert set(reference.OPS) == set(OP_KINDS)
    assert set(execute.INT_OPS) == set(OP_KINDS)
    assert set(execute.FAKE_OPS) == set(OP_KINDS) - {"scale_index"}  # QAT trains on the scales


def test_runner_cache_is_dropped_with_its_graph(int_packages):
    graph = next(iter(int_packages.values())).integer
    copy = type(graph).from_spec(graph.spec(), graph.constants)
    z = np.zeros((1, 1, 1, copy.inputs["z_symbols"]), np.int32) if "z_symbols" in copy.inputs else None
    inputs = {"z_symbols": z} if z is not None else {"y_symbols": np.zeros((1, 1, 1, copy.inputs["y_symbols"]), np.int32)}
    execute.run(copy, inputs, [copy.ops_for(copy.outputs, inputs)[-1].output])
    key = id(copy)
    assert key in execute._CACHES
    del copy
    gc.collect()
    assert key not in execute._CACHES
