"""Data parallelism with JAX's own sharding: the batch is split over a 1-D "data" mesh of all
devices (all hosts after `jax.distributed.initialize()`), the state is replicated, and XLA
inserts the gradient all-reduce."""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlic.errors import ConfigError


def maybe_initialize_distributed() -> None:
    """Join a multi-host run when JAX's coordinator variables are set (no-op otherwise)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and jax.process_count() == 1:
        jax.distributed.initialize()


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
        return jax.device_put(state, self.replicated)

    def put_batch(self, batch: np.ndarray) -> jax.Array:
        """This host's share of the global batch, laid out over the local devices."""
        return jax.make_array_from_process_local_data(self.batch_sharding, batch)


def data_parallel(global_batch: int) -> DataParallel:
    """A mesh over every device; the global batch must split evenly across them."""
    maybe_initialize_distributed()
    devices = jax.devices()
    if global_batch % len(devices):
        raise ConfigError(f"batch size {global_batch} does not split over {len(devices)} devices")
    return DataParallel(Mesh(np.array(devices), ("data",)))
