"""Data parallelism with JAX's own sharding: the batch is split over a 1-D "data" mesh of all
devices (every host's after `initialize_distributed()`), the state is replicated, and XLA
inserts the gradient all-reduce.

In a multi-host run every process builds the same mesh; each loads only the rows of the global
batch its own devices hold (`local_rows`), and `put_batch` assembles the global array from
those shares. CPU hosts reduce over gloo (JAX's default CPU collectives).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlic.errors import ConfigError

# What `initialize_distributed` reads (JAX itself reads only the address).
DISTRIBUTED_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def initialize_distributed(auto_detect: bool = False) -> None:
    """Join a multi-host run before anything else touches JAX's backends.

    With JAX_COORDINATOR_ADDRESS set, joins that coordinator as process JAX_PROCESS_ID of
    JAX_NUM_PROCESSES (JAX's cluster detection fills whichever of the two is unset); with
    `auto_detect`, leaves everything to JAX's cluster detection (SLURM, Open MPI, Kubernetes,
    TPU pods, ...). Otherwise, or when already joined, it does nothing.
    """
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if jax.distributed.is_initialized() or not (address or auto_detect):
        return
    try:
        jax.distributed.initialize(address, _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID"))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"cannot join the multi-host run (set {', '.join(DISTRIBUTED_VARIABLES)}, "
                          f"or run under a cluster JAX detects): {exc}") from None


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; the only one when single-host)."""
    return jax.process_index() == 0


def local_value(tree):
    """Host NumPy copies of replicated arrays, readable on every process (a multi-host array
    is not addressable as a whole, but each host holds a full replica)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


@dataclass
class DataParallel:
    mesh: Mesh

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec("data"))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def put_state(self, state):
        """The state replicated on every device of every host (each host passes the same)."""
        def put(leaf):
            host = np.asarray(local_value(leaf))
            return jax.make_array_from_callback(host.shape, self.replicated, lambda index: host[index])

        return jax.tree.map(put, state)

    def local_rows(self, global_batch: int) -> range:
        """The rows of a global batch that this host's devices hold (one contiguous range)."""
        shape = (global_batch,)
        starts = sorted(index[0].start or 0 for index in self.batch_sharding.addressable_devices_indices_map(shape).values())
        rows = global_batch // self.mesh.devices.size
        if starts != list(range(starts[0], starts[0] + rows * len(starts), rows)):
            raise ConfigError("this host's devices do not hold one contiguous part of the batch")
        return range(starts[0], starts[0] + rows * len(starts))

    def put_batch(self, batch: np.ndarray) -> jax.Array:
        """The global batch from this host's share (its `local_rows`), laid out over the devices."""
        return jax.make_array_from_process_local_data(self.batch_sharding, batch)


def data_parallel(global_batch: int) -> DataParallel:
    """A mesh over every device of every host; the global batch must split evenly across them."""
    devices = jax.devices()
    if global_batch % len(devices):
        raise ConfigError(f"batch size {global_batch} does not split over {len(devices)} devices "
                          f"({jax.process_count()} process(es))")
    return DataParallel(Mesh(np.array(devices), ("data",)))
