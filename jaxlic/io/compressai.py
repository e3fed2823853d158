"""Import CompressAI models (bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean).

A CompressAI state dict (a `.pth`/`.pth.tar` checkpoint, read with torch where torch is
installed, or a NumPy `.npz` of it, which the peer environment writes) becomes a jaxlic
package. Parameters map one to one: the Flax parameter names mirror CompressAI's layer
indices; convolution kernels are transposed from (out, in, kh, kw), transposed convolutions
from (in, out, kh, kw), to (kh, kw, in, out). GDN and entropy-bottleneck parameters share
CompressAI's reparametrization and shapes. Buffers (CDF tables, bounds) are not imported:
jaxlic builds its own tables from the parameters, keeping CompressAI's learned quantiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxlic.codec import ModelPackage, build_tables
from jaxlic.entropy.gaussian import COMPRESSAI_SCALE_LEVELS
from jaxlic.errors import ConfigError, PackageError
from jaxlic.models import ARCHITECTURES, ModelConfig, build_model, init_params, model_config
from jaxlic.nn import ConvTranspose

# Buffers CompressAI keeps in its state dicts that jaxlic rebuilds or does not need.
_IGNORED_SUFFIXES = (
    "pedestal", ".bound", "_offset", "_quantized_cdf", "_cdf_length", "scale_table",
    "scale_bound", "entropy_bottleneck.target",
)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A CompressAI state dict from `.npz`, or from `.pth`/`.pth.tar` when torch is importable."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}
    try:
        import torch
    except ImportError:
        raise PackageError(
            f"{path}: reading PyTorch checkpoints needs torch; convert it where torch is installed "
            "(peers/compressai_peer.py convert IN.pth OUT.npz) and import the .npz"
        ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    return {k: v.numpy() for k, v in state.items()}


def _zoo_quality(arch: str, N: int, M: int) -> tuple[int, float]:
    """The first zoo quality with these channel counts (width 1), else quality 1 at N's width."""
    for quality in range(1, 9):
        config = model_config(arch, quality)
        if (config.N, config.M) == (N, M):
            return quality, 1.0
    return 1, N / model_config(arch, 1).N


def _deconv_layers(model, params) -> set[str]:
    bound = model.bind({"params": params})
    names = set()
    for group in ("g_a", "g_s", "h_a", "h_s"):
        for i, layer in enumerate(getattr(bound, group, ())):
            if isinstance(layer, ConvTranspose):
                names.add(f"{group}_{i}")
    return names


def _flax_name(key: str) -> tuple[str, str] | None:
    """('g_s_0', 'kernel') for 'g_s.0.weight'; None for buffers jaxlic does not import."""
    if key.endswith(_IGNORED_SUFFIXES):
        return None
    parts = key.split(".")
    if parts[0] == "entropy_bottleneck":
        if len(parts) == 3:  # matrices.0 -> matrices_0
            return "entropy_bottleneck", f"{parts[1]}_{parts[2]}"
        return "entropy_bottleneck", parts[1]
    if len(parts) == 3:
        layer = f"{parts[0]}_{parts[1]}"
        return layer, {"weight": "kernel"}.get(parts[2], parts[2])
    return ("?", key)


def from_state_dict(state: Mapping[str, np.ndarray], arch: str, quality: int | None = None) -> ModelPackage:
    """A jaxlic package from a CompressAI state dict of architecture `arch`."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    try:
        N, M = int(state["g_a.0.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    except KeyError:
        raise PackageError("not a CompressAI state dict of a Balle-style model (no g_a.0/g_a.6 weights)") from None
    zoo_quality, width = _zoo_quality(arch, N, M)
    quality = quality or zoo_quality
    config = ModelConfig(arch=arch, quality=quality, N=N, M=M, width=width,
                         lmbda=model_config(arch, quality).lmbda)
    model = build_model(config)
    expected = traverse_util.flatten_dict(jax.device_get(init_params(model, 0)))
    deconvs = _deconv_layers(model, traverse_util.unflatten_dict(expected))

    params, unknown = {}, []
    for key, value in state.items():
        name = _flax_name(key)
        if name is None:
            continue
        if name not in expected:
            unknown.append(key)
            continue
        value = np.asarray(value, np.float32)
        if name[1] == "kernel":
            value = value.transpose(2, 3, 0, 1) if name[0] in deconvs else value.transpose(2, 3, 1, 0)
        if value.shape != expected[name].shape:
            raise PackageError(f"{key}: shape {value.shape} does not fit {arch} (expected {expected[name].shape})")
        params[name] = jnp.asarray(value)
    missing = sorted("/".join(k) for k in set(expected) - set(params))
    if unknown or missing:
        raise PackageError(
            f"state dict does not match {arch} (N={N}, M={M}): unexpected {unknown[:4]}, missing {missing[:4]}"
        )
    return build_tables(config, traverse_util.unflatten_dict(params), quantiles="keep",
                        scale_levels=COMPRESSAI_SCALE_LEVELS)


def import_compressai(path: str | Path, arch: str, quality: int | None = None) -> ModelPackage:
    """Read a CompressAI checkpoint (.pth, .pth.tar or .npz) into a package."""
    return from_state_dict(read_state_dict(path), arch, quality)
