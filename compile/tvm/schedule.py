"""The Relax pipeline for host CPUs: TVM's CPU pipeline with CPU schedules for its kernels."""

from __future__ import annotations

import tvm
from tvm import relax


def host_pipeline(target: tvm.target.Target):
    """TVM's default CPU pipeline."""
    return relax.backend.cpu_generic.get_default_pipeline(target)
