"""The quantize pipeline: a float model package -> an integer-mode package (int8 + integer GDN).

`quantize(package, batches)` calibrates the decoder's activation ranges on `batches`, rounds the
synthesis weights by GPTQ (`jaxlic.quant.gptq`) and lowers it (post-training quantization); with
a `qat` TrainConfig it instead fine-tunes through the fake-quantized decoder (`jaxlic.quant.qat`),
with any `extra_terms` (e.g. a watermark).
`jaxlic quantize` and `jaxlic watermark` are this function with flags.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxlic.codec.package import ModelPackage
from jaxlic.errors import ConfigError
from jaxlic.quant.export import integerize
from jaxlic.quant.gptq import round_synthesis_weights
from jaxlic.quant.lowering import calibrate
from jaxlic.quant.qat import qat_task
from jaxlic.train.loop import TrainConfig, Trainer
from jaxlic.train.terms import LossTerm


def quantize(package: ModelPackage, batches: Sequence[np.ndarray], qat: TrainConfig | None = None,
             run_dir: Path | None = None, extra_terms: Sequence[LossTerm] = (),
             from_integer: bool = False, weight_rounding: str = "gptq", progress: bool = False) -> ModelPackage:
    """The integer-mode package of `package`: ranges calibrated on `batches` (NHWC in [0, 1]),
    then, with `qat`, that many QAT steps in `run_dir` (checkpoints; a run there resumes).
    Post-training, `weight_rounding` "gptq" rounds the synthesis weights by GPTQ on `batches`,
    "nearest" each to its nearest grid point (`progress`: a bar over GPTQ's layers).
    `from_integer` lets an integer-mode package start again from its float parameters; without
    it such a package is a ConfigError (quantize its float parent)."""
    if package.integer is not None and not from_integer:
        raise ConfigError("this is already an integer-mode package; quantize its float parent")
    if extra_terms and qat is None:
        raise ConfigError("extra loss terms are trained by QAT: give a QAT TrainConfig")
    if qat is not None and run_dir is None:
        raise ConfigError("QAT needs a run directory for its checkpoints")
    if weight_rounding not in ("gptq", "nearest"):
        raise ConfigError(f"weight rounding must be 'gptq' or 'nearest', got {weight_rounding!r}")
    if package.integer is not None:
        package = dataclasses.replace(package, integer=None)
    calibration = calibrate(package.config, package.params, batches)
    if qat is None:
        params = package.params
        if weight_rounding == "gptq":
            params = round_synthesis_weights(package.config, params, calibration, batches, progress=progress)
        return integerize(package.config, params, calibration)
    return Trainer(qat, qat_task(package, calibration, extra_terms=extra_terms), run_dir).run()


def describe(package: ModelPackage) -> str:
    """One line about an integer-mode package: its ops (VTA and host), the static bound on the
    integer GDN's normalizer error from beta's rounding and the root's floor, per layer, and the
    fingerprint (`jaxlic.quant.gdn_error` measures the whole error)."""
    graph = package.integer
    on_vta = sum(op.placement == "vta" for op in graph.ops)
    bounds = ", ".join(f"{k} {v['max_relative_error']:.1e}" for k, v in graph.meta["igdn"].items())
    return (f"{len(graph.ops)} integer ops, {on_vta} for VTA, {len(graph.ops) - on_vta} for the host; "
            f"integer GDN bound (beta, root): {bounds}; fingerprint {package.fingerprint.hex()}")
