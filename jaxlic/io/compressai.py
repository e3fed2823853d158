"""Import CompressAI models (bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean, and
ELIC as Elic2022Official / Elic2022Chandelier) and LALIC checkpoints (sjtu-medialab/RwkvCompress,
a CompressAI ELIC subclass).

A CompressAI state dict (a `.pth`/`.pth.tar` checkpoint, read with torch where torch is
installed, or a NumPy `.npz` of it, which the peer environment writes) becomes a jaxlic
package. Parameters map one to one: the Flax parameter names mirror CompressAI's module paths
with each index joined to its container (`g_a.8.conv_a.0.conv.2.weight` is
`g_a_8/conv_a_0/conv_2/kernel`); ELIC's latent codec modules are renamed first (`_RENAMES`).
Convolution kernels are transposed from (out, in, kh, kw), transposed convolutions from
(in, out, kh, kw), to (kh, kw, in, out). GDN and entropy-bottleneck parameters share
CompressAI's reparametrization and shapes. Buffers (CDF tables, bounds, checkerboard masks) are
not imported: jaxlic builds its own tables from the parameters, keeping CompressAI's learned
quantiles, and its checkerboard context needs no mask (jaxlic.models.elic).

LALIC adds token-wise linear maps (weights (out, in), transposed to (in, out)), LayerNorms
(`weight` is Flax's `scale`) and OmniShift, whose depthwise branches are imported as they are
(jaxlic folds them into one 5x5 kernel at every call); the checkpoint's `conv5x5_reparam` is
dropped: only an eval-mode forward refreshes it, so a training checkpoint holds a stale one.
A `module.` prefix (DataParallel) is stripped, and the entropy bottleneck's `_matrixN`,
`_biasN`, `_factorN` (older CompressAI) are read as `matrices.N`, `biases.N`, `factors.N`.
"""

from __future__ import annotations

import re
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
    "scale_bound", "entropy_bottleneck.target", ".mask", "conv5x5_reparam.weight",
)
# ELIC's latent codecs, as the modules jaxlic.models.elic names them.
_ELIC_RENAMES = (
    (r"^latent_codec\.hyper\.", ""),
    (r"^latent_codec\.y\.channel_context\.y(\d+)\.", r"scctx.\1.channel_context."),
    (r"^latent_codec\.y\.latent_codec\.y(\d+)\.", r"scctx.\1."),
)
_LALIC_RENAMES = _ELIC_RENAMES + (
    (r"\._matrix(\d+)$", r".matrices.\1"), (r"\._bias(\d+)$", r".biases.\1"), (r"\._factor(\d+)$", r".factors.\1"),
    (r"\.(ln1|ln2|norm)\.weight$", r".\1.scale"),
    (r"\.omni_shift\.(conv\dx\d)\.weight$", r".omni_shift.\1"),
)
_RENAMES = {"elic2022": _ELIC_RENAMES, "elic2022-chandelier": _ELIC_RENAMES, "lalic": _LALIC_RENAMES}
# The state dict entry whose output channels are M (the last convolution of g_a), and the one
# whose output channels are N where it is not g_a.0 (LALIC: z's channels, the last of h_a).
_LATENT_KEYS = {"elic2022": "g_a.13.weight", "elic2022-chandelier": "g_a.13.weight", "lalic": "g_a.15.weight"}
_N_KEYS = {"lalic": "h_a.7.weight"}


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


def _flax_name(key: str, arch: str) -> tuple[str, ...] | None:
    """('g_s_0', 'kernel') for 'g_s.0.weight', ('entropy_bottleneck', 'matrices_0') for
    'entropy_bottleneck.matrices.0'; None for buffers jaxlic does not import."""
    if key.endswith(_IGNORED_SUFFIXES):
        return None
    for pattern, replacement in _RENAMES.get(arch, ()):
        key = re.sub(pattern, replacement, key)
    path: list[str] = []
    for part in key.split("."):
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    path[-1] = {"weight": "kernel"}.get(path[-1], path[-1])
    return tuple(path)


def from_state_dict(state: Mapping[str, np.ndarray], arch: str, quality: int | None = None) -> ModelPackage:
    """A jaxlic package from a CompressAI state dict of architecture `arch`."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    latent_key, n_key = _LATENT_KEYS.get(arch, "g_a.6.weight"), _N_KEYS.get(arch, "g_a.0.weight")
    try:
        N, M = int(state[n_key].shape[0]), int(state[latent_key].shape[0])
    except KeyError:
        raise PackageError(f"not a CompressAI state dict of {arch} (no {n_key.removesuffix('.weight')} or "
                           f"{latent_key.removesuffix('.weight')} weights)") from None
    zoo_quality, width = _zoo_quality(arch, N, M)
    quality = quality or zoo_quality
    config = ModelConfig(arch=arch, quality=quality, N=N, M=M, width=width,
                         lmbda=model_config(arch, quality).lmbda)
    model = build_model(config)
    expected = traverse_util.flatten_dict(jax.eval_shape(lambda: init_params(model, 0)))  # shapes only
    deconvs = _deconv_layers(model, traverse_util.unflatten_dict(expected))

    params, unknown = {}, []
    for key, value in state.items():
        name = _flax_name(key, arch)
        if name is None:
            continue
        if name not in expected:
            unknown.append(key)
            continue
        value = np.asarray(value, np.float32)
        if value.ndim == 4:  # convolution kernels and OmniShift's branches
            value = value.transpose(2, 3, 0, 1) if name[0] in deconvs else value.transpose(2, 3, 1, 0)
        elif name[-1] == "kernel":  # dense layers
            value = value.T
        if value.shape != expected[name].shape:
            raise PackageError(f"{key}: shape {value.shape} does not fit {arch} (expected {expected[name].shape})")
        params[name] = jnp.asarray(value)
    missing = sorted("/".join(k) for k in set(expected) - set(params))
    if unknown or missing:
        raise PackageError(
            f"state dict does not match {arch} (N={N}, M={M}): unexpected {unknown[:4]}, missing {missing[:4]}"
        )
    params = traverse_util.unflatten_dict(params)
    return build_tables(config, params, quantiles="keep", scale_levels=COMPRESSAI_SCALE_LEVELS)


def import_compressai(path: str | Path, arch: str, quality: int | None = None) -> ModelPackage:
    """Read a CompressAI checkpoint (.pth, .pth.tar or .npz) into a package."""
    return from_state_dict(read_state_dict(path), arch, quality)
