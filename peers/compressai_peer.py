"""CompressAI peer: drives compressai 1.2.8 (PyTorch) for jaxlic's parity tests and benchmarks.

Runs INSIDE the peer environment (.peer, Python 3.11, built by scripts/make_peer_env.sh); it
imports only numpy, PIL, torch and compressai, never jaxlic. Data goes in and out as files
(.npz arrays, .json metadata), so the jaxlic side only needs numpy to read them.

Subcommands (``python peers/compressai_peer.py SUBCOMMAND --help`` for all options):

  info    versions of python/torch/compressai/numpy as JSON on stdout.
  export  build a randomly initialized model, calibrate its entropy models (below), call
          ``update(force=True)`` and save every state_dict tensor under its exact key in
          ``--out`` (.npz) plus a JSON sidecar (same path, suffix .json).
  run     load an exported state and, for each image, save forward / compress / decompress
          results to ``--out`` (.npz; key layout below).
  bench   median compress / decompress seconds on CPU for one image (JSON).
  bench-train
          median seconds of one training step of FactorizedPrior(N, M) on random data of a
          given batch and crop, trained as CompressAI's examples/train.py does (Adam lr 1e-4 on
          every parameter but the quantiles, aux Adam lr 1e-3 on the quantiles, loss
          lambda * 255^2 * MSE + bpp, gradient norm clipped at 1.0); ``--mode infer`` times
          g_s(g_a(x)) without gradients instead (JSON).
  train   train FactorizedPrior(N, M) the same way on batches given as a uint8 .npy (so both
          libraries see identical crops), on jaxlic's schedule (Adam, linear warm-up then cosine
          decay to 5% of the peak, as optax.warmup_cosine_decay_schedule), optionally from a
          state (fine-tunes); then ``update(force=True, update_quantiles=True)`` and, with
          --eval-images, real compress/decompress of each image (bytes, 8-bit reconstruction).

Calibration done by ``export`` (deterministic for a given --seed and --threads; CPU only):
  1. ``torch.manual_seed(seed)``, then the CompressAI constructor (its own random init).
  2. Data-dependent rescaling (as in weight-norm style init) on a batch of synthetic images
     (smooth random fields + a little noise, from ``torch.Generator().manual_seed(seed+1)``):
     the last layer of g_a is scaled so that std(y) == --y-std; for the hyperprior models the
     last layer of h_a is scaled so that std(z) == --z-std and the last conv of h_s so that
     the predicted scales start near --y-std (means of mbt2018-mean near 0); the last layer
     of g_s is scaled and shifted so that x_hat has mean 0.5 and std 0.2. Without this, y of a freshly
     initialized network is ~0.1 and every symbol would be 0 (a trivial codec).
  3. --calib-steps Adam steps (lr --calib-lr; h_a/h_s at 1/100 of it) on the rate only (sum of -log2 likelihoods per
     pixel) over the entropy side: EntropyBottleneck density parameters, and h_a/h_s for the
     hyperprior models (g_a, g_s and the quantiles are frozen). Training-mode noise is drawn
     after ``torch.manual_seed(seed + 1000 + step)``. This gives channel-dependent densities,
     non-zero ``factors``, non-zero medians and scales that span the scale table.
  4. ``model.update(force=True, update_quantiles=True)``: CompressAI's own bisection puts the
     quantiles where the aux loss would converge, then the CDF tables are built.

Images for ``run`` and ``bench``: read with PIL, converted to RGB, scaled to float32 [0, 1]
(uint8 / 255), then zero-padded to a multiple of 64 exactly as CompressAI's eval_model does
(compressai.ops.compute_padding: the padding is split as evenly as possible, the odd pixel
going right/bottom; F.pad(..., mode="constant", value=0)). The model sees the padded image;
reconstructions are also returned cropped back to the original size.

Keys of ``run``'s npz, for image i (0-based, in the order given) with prefix ``{i}/``;
arrays are NCHW (batch 1) unless said otherwise:
  name (str), orig_hw (2,) int64, pad (left, right, top, bottom) int64, x (padded input)
  forward/x_hat (unclamped), forward/likelihoods/y, forward/likelihoods/z (hyperpriors)
  y (g_a output, before quantization), forward/y_hat (dequantized as forward does in eval)
  y_symbols int32 (what the coder sees before subtracting offsets), y_indexes int32 (CDF index)
  hyperpriors also: z, forward/z_hat, z_symbols, z_indexes, scales_hat;
  mbt2018-mean also: means_hat
  strings/y, strings/z: the coded bytes as uint8 arrays; nbytes/y, nbytes/z; nbytes_total
  compress_shape: the spatial shape returned by compress (y's for factorized, z's otherwise)
  escapes/y, escapes/z: number of symbols outside their CDF table (coded with bypass bits)
  decompress/x_hat (padded, clamped to [0, 1] by the model), decompress/x_hat_crop (cropped)
  bpp (nbytes_total * 8 / original pixels, as eval_model)
Top level: ``arch``, ``num_images``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

ARCHS = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")
PAD_MULTIPLE = 64  # 2**6: the hyperprior models downsample 6 times by 2
HYPERPRIORS = ("bmshj2018-hyperprior", "mbt2018-mean")
HYPER_LR_RATIO = 0.01  # calibration: lr of h_a/h_s relative to the EntropyBottleneck's


class PeerError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _torch():
    """Import torch and compressai lazily so that --help stays fast."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    import compressai  # noqa: F401  (fails early with a clear error if the env is broken)

    return torch


def versions() -> dict:
    """Versions of everything that can change the numbers."""
    torch = _torch()
    import compressai

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "compressai": compressai.__version__,
        "numpy": np.__version__,
        "entropy_coder": compressai.get_entropy_coder(),
    }


# ----------------------------------------------------------------------------- models


def build_model(arch: str, quality: int, n: int | None = None, m: int | None = None):
    """A freshly constructed CompressAI model; N and M default to the zoo's for the quality."""
    _torch()
    from compressai.zoo.image import cfgs, model_architectures

    if arch not in ARCHS:
        raise PeerError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    if quality not in cfgs[arch]:
        raise PeerError(f"quality {quality} not in {sorted(cfgs[arch])} for {arch}")
    zoo_n, zoo_m = cfgs[arch][quality]
    n, m = n or zoo_n, m or zoo_m
    return model_architectures[arch](n, m), n, m


def load_state(path: Path) -> dict:
    """Read an exported npz back into a {key: torch.Tensor} state_dict."""
    torch = _torch()
    if not path.is_file():
        raise PeerError(f"state file not found: {path}")
    with np.load(path) as data:
        return {k: torch.from_numpy(np.array(data[k])) for k in data.files}


def load_model(arch: str, state_path: Path):
    """Rebuild the model from an exported state, using its stored CDF tables (no update())."""
    _torch()
    from compressai.zoo.image import model_architectures

    if arch not in ARCHS:
        raise PeerError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    sidecar = state_path.with_suffix(".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text())
        if meta.get("arch") != arch:
            raise PeerError(f"{state_path} was exported for {meta.get('arch')}, not {arch}")
    state = load_state(state_path)
    try:
        # from_state_dict reads N and M from g_a.0 / g_a.6 and resizes the CDF buffers.
        model = model_architectures[arch].from_state_dict(state)
    except (RuntimeError, KeyError) as err:
        raise PeerError(f"{state_path} does not hold a {arch} state_dict: {err}") from err
    return model.eval()


# ----------------------------------------------------------------------------- images


def read_image(path: Path):
    """RGB float32 tensor (1, 3, H, W) in [0, 1], as CompressAI's eval (ToTensor) makes it."""
    torch = _torch()
    from PIL import Image

    if not path.is_file():
        raise PeerError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except OSError as err:
        raise PeerError(f"cannot read image {path}: {err}") from err
    x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255)
    return x.unsqueeze(0)


def pad_to_multiple(x, multiple: int = PAD_MULTIPLE):
    """Zero-pad like compressai eval_model; returns (padded, (left, right, top, bottom))."""
    import torch.nn.functional as F
    from compressai.ops import compute_padding

    h, w = x.shape[-2:]
    pad, _unpad = compute_padding(h, w, min_div=multiple)
    return F.pad(x, pad, mode="constant", value=0), tuple(int(p) for p in pad)


def crop(x, pad):
    """Undo pad_to_multiple."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def synthetic_batch(batch: int, size: int, generator):
    """Image-like calibration data: smooth random colour fields plus a little noise."""
    torch = _torch()
    import torch.nn.functional as F

    coarse = torch.rand(batch, 3, max(size // 16, 2), max(size // 16, 2), generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    noise = 0.05 * torch.randn(batch, 3, size, size, generator=generator)
    return (smooth + noise).clamp(0, 1)


# ----------------------------------------------------------------------------- export


def _last_conv(seq):
    import torch.nn as nn

    convs = [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    return convs[-1]


def _rescale_output(layer, out, target_std: float) -> None:
    """Scale a layer's weights and bias so that its output (here `out`) gets target_std."""
    torch = _torch()
    std = float(out.std())
    if not math.isfinite(std) or std <= 0:
        raise PeerError("calibration failed: a layer's output is constant or not finite")
    with torch.no_grad():
        layer.weight.mul_(target_std / std)
        layer.bias.mul_(target_std / std)


def calibrate(model, arch: str, seed: int, steps: int, lr: float, y_std: float, z_std: float,
              size: int, batch: int) -> dict:
    """Give a random model realistic latent scales and fitted entropy models (see module doc)."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed + 1)
    x = synthetic_batch(batch, size, gen)
    hyper = arch in HYPERPRIORS
    with torch.no_grad():
        y = model.g_a(x)
        _rescale_output(_last_conv(model.g_a), y, y_std)
        y = model.g_a(x)
        if hyper:
            z = model.h_a(torch.abs(y) if arch == "bmshj2018-hyperprior" else y)
            _rescale_output(_last_conv(model.h_a), z, z_std)
            z = model.h_a(torch.abs(y) if arch == "bmshj2018-hyperprior" else y)
            # h_s's last conv: the scale channels start around std(y) (so the ReLU of
            # bmshj2018-hyperprior passes them and the 0.11 lower bound is not hit), the
            # mean channels of mbt2018-mean around 0 with a spread of std(y) / 2.
            last = _last_conv(model.h_s)
            h_s_pre = model.h_s[: list(model.h_s).index(last) + 1]
            pre = h_s_pre(torch.round(z))
            _rescale_output(last, pre, y_std / 2)
            pre = h_s_pre(torch.round(z))
            m = model.M
            last.bias[:m].add_(y_std - pre[:, :m].mean(dim=(0, 2, 3)))
            if pre.shape[1] > m:
                last.bias[m:].sub_(pre[:, m:].mean(dim=(0, 2, 3)))
        g_s_last = _last_conv(model.g_s)
        _rescale_output(g_s_last, model.g_s(torch.round(y)), 0.2)
        g_s_last.bias.add_(0.5 - float(model.g_s(torch.round(y)).mean()))

    frozen = ("g_a.", "g_s.")
    params = [p for name, p in model.named_parameters()
              if not name.startswith(frozen) and not name.endswith("quantiles")]
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(frozen) and not name.endswith("quantiles"))
    # The density MLPs tolerate a large step; the hyper networks' convolutions do not.
    eb_params = [p for p in params if any(p is q for q in model.entropy_bottleneck.parameters())]
    net_params = [p for p in params if not any(p is q for q in eb_params)]
    groups = [{"params": eb_params, "lr": lr}]
    if net_params:
        groups.append({"params": net_params, "lr": lr * HYPER_LR_RATIO})
    opt = torch.optim.Adam(groups)
    num_pixels = batch * size * size
    model.train()
    history = []
    for step in range(steps):
        torch.manual_seed(seed + 1000 + step)
        out = model(x)
        bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
        loss = bits / num_pixels
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    model.update(force=True, update_quantiles=True)
    return {"calib_bpp_first": history[0] if history else None,
            "calib_bpp_last": history[-1] if history else None}


def cmd_export(args) -> None:
    """Export a calibrated random model's state_dict as npz + JSON sidecar."""
    torch = _torch()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, n, m = build_model(args.arch, args.quality, args.N, args.M)
    calib = calibrate(model, args.arch, args.seed, args.calib_steps, args.calib_lr,
                      args.y_std, args.z_std, args.calib_size, args.calib_batch)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial.npz")
    np.savez(tmp, **state)
    os.replace(tmp, out)
    meta = {
        "arch": args.arch, "quality": args.quality, "N": n, "M": m, "seed": args.seed,
        "calibration": {"steps": args.calib_steps, "lr": args.calib_lr, "y_std": args.y_std,
                        "z_std": args.z_std, "size": args.calib_size, "batch": args.calib_batch,
                        "threads": args.threads, **calib},
        "versions": versions(),
        "keys": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in state.items()},
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(json.dumps({"out": str(out), "N": n, "M": m, "num_keys": len(state), **calib}))


# ----------------------------------------------------------------------------- run


def _escapes(symbols, indexes, entropy_model) -> int:
    """How many symbols fall outside their CDF table, i.e. go through bypass coding."""
    offsets = entropy_model._offset.numpy()[indexes]
    max_value = entropy_model._cdf_length.numpy()[indexes] - 2
    value = symbols - offsets
    return int(np.count_nonzero((value < 0) | (value >= max_value)))


def _eb_symbols(eb, latent):
    """Symbols and indexes the EntropyBottleneck codes for a latent (as its compress does)."""
    indexes = eb._build_indexes(latent.size())
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
    symbols = eb.quantize(latent, "symbols", medians)
    return symbols.numpy().astype(np.int32), indexes.numpy().astype(np.int32)


def run_one(model, arch: str, x, prefix: str, out: dict) -> None:
    """Forward, compress and decompress one padded image, storing everything under prefix."""
    torch = _torch()
    captured: dict = {}

    def keep(name):
        def hook(_module, args, kwargs, output):
            captured[name] = (args, kwargs, output)
        return hook

    handles = [model.g_a.register_forward_hook(keep("g_a"), with_kwargs=True),
               model.entropy_bottleneck.register_forward_hook(keep("eb"), with_kwargs=True)]
    if arch in HYPERPRIORS:
        handles += [model.h_a.register_forward_hook(keep("h_a"), with_kwargs=True),
                    model.gaussian_conditional.register_forward_hook(keep("gc"), with_kwargs=True)]
    try:
        fwd = model(x)
    finally:
        for h in handles:
            h.remove()

    def put(key, value):
        out[prefix + key] = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)

    put("forward/x_hat", fwd["x_hat"])
    for name, lik in fwd["likelihoods"].items():
        put(f"forward/likelihoods/{name}", lik)
    y = captured["g_a"][2]
    put("y", y)
    eb_out = captured["eb"][2][0]
    if arch in HYPERPRIORS:
        z = captured["h_a"][2]
        put("z", z)
        put("forward/z_hat", eb_out)
        z_sym, z_idx = _eb_symbols(model.entropy_bottleneck, z)
        put("z_symbols", z_sym)
        put("z_indexes", z_idx)
        out[prefix + "escapes/z"] = np.int64(_escapes(z_sym, z_idx, model.entropy_bottleneck))
        gc_args, gc_kwargs, gc_out = captured["gc"]
        scales = gc_args[1] if len(gc_args) > 1 else gc_kwargs["scales"]
        means = gc_kwargs.get("means", gc_args[2] if len(gc_args) > 2 else None)
        put("scales_hat", scales)
        if means is not None:
            put("means_hat", means)
        put("forward/y_hat", gc_out[0])
        gc = model.gaussian_conditional
        y_idx = gc.build_indexes(scales).numpy().astype(np.int32)
        y_sym = gc.quantize(y, "symbols", means).numpy().astype(np.int32)
        put("y_indexes", y_idx)
        put("y_symbols", y_sym)
        out[prefix + "escapes/y"] = np.int64(_escapes(y_sym, y_idx, gc))
    else:
        put("forward/y_hat", eb_out)
        y_sym, y_idx = _eb_symbols(model.entropy_bottleneck, y)
        put("y_symbols", y_sym)
        put("y_indexes", y_idx)
        out[prefix + "escapes/y"] = np.int64(_escapes(y_sym, y_idx, model.entropy_bottleneck))

    enc = model.compress(x)
    names = ["y", "z"][: len(enc["strings"])]
    total = 0
    for name, strings in zip(names, enc["strings"]):
        data = strings[0]  # batch of one
        out[prefix + f"strings/{name}"] = np.frombuffer(data, dtype=np.uint8).copy()
        out[prefix + f"nbytes/{name}"] = np.int64(len(data))
        total += len(data)
    out[prefix + "nbytes_total"] = np.int64(total)
    out[prefix + "compress_shape"] = np.asarray(tuple(enc["shape"]), dtype=np.int64)
    dec = model.decompress(enc["strings"], enc["shape"])
    put("decompress/x_hat", dec["x_hat"])


def cmd_run(args) -> None:
    """Forward / compress / decompress each image with an exported model."""
    torch = _torch()
    torch.set_num_threads(args.threads)
    model = load_model(args.arch, Path(args.state))
    out: dict = {"arch": np.asarray(args.arch), "num_images": np.int64(len(args.images))}
    with torch.no_grad():
        for i, image in enumerate(args.images):
            x0 = read_image(Path(image))
            x, pad = pad_to_multiple(x0)
            prefix = f"{i}/"
            out[prefix + "name"] = np.asarray(Path(image).name)
            out[prefix + "orig_hw"] = np.asarray(x0.shape[-2:], dtype=np.int64)
            out[prefix + "pad"] = np.asarray(pad, dtype=np.int64)
            out[prefix + "x"] = x.numpy()
            run_one(model, args.arch, x, prefix, out)
            out[prefix + "decompress/x_hat_crop"] = crop(out[prefix + "decompress/x_hat"], pad)
            h, w = x0.shape[-2:]
            out[prefix + "bpp"] = np.float64(int(out[prefix + "nbytes_total"]) * 8.0 / (h * w))
    dest = Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial.npz")
    np.savez(tmp, **out)
    os.replace(tmp, dest)
    summary = [{"image": str(args.images[i]), "nbytes": int(out[f"{i}/nbytes_total"]),
                "bpp": float(out[f"{i}/bpp"])} for i in range(len(args.images))]
    print(json.dumps({"out": str(dest), "images": summary}))


# ----------------------------------------------------------------------------- bench


def cmd_bench(args) -> None:
    """Median compress and decompress wall time on CPU (JSON)."""
    torch = _torch()
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        raise PeerError("--threads and --repeats must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    model = load_model(args.arch, Path(args.state))
    x0 = read_image(Path(args.image))
    x, pad = pad_to_multiple(x0)
    enc_times, dec_times = [], []
    with torch.no_grad():
        for i in range(args.warmup + args.repeats):
            t0 = time.perf_counter()
            enc = model.compress(x)
            t1 = time.perf_counter()
            model.decompress(enc["strings"], enc["shape"])
            t2 = time.perf_counter()
            if i >= args.warmup:
                enc_times.append(t1 - t0)
                dec_times.append(t2 - t1)
    nbytes = sum(len(s[0]) for s in enc["strings"])
    h, w = x0.shape[-2:]
    result = {
        "arch": args.arch, "state": str(args.state), "image": str(args.image),
        "orig_hw": [int(h), int(w)], "padded_hw": list(x.shape[-2:]), "threads": args.threads,
        "repeats": args.repeats, "warmup": args.warmup,
        "encode_s": statistics.median(enc_times), "decode_s": statistics.median(dec_times),
        "encode_all_s": enc_times, "decode_all_s": dec_times,
        "nbytes": nbytes, "bpp": nbytes * 8.0 / (h * w), "device": "cpu",
        "cpu": platform.processor() or platform.machine(), "versions": versions(),
    }
    dest = Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("encode_s", "decode_s", "nbytes", "threads")}))


def _train_step_fn(model, lmbda: float, clip: float, lr: float = 1e-4, schedule=None):
    """One step of CompressAI's examples/train.py (train_one_epoch's body): `step(x) -> loss`.

    `schedule(t)` multiplies `lr` at optimizer step t (torch LambdaLR); None keeps it constant.
    """
    torch = _torch()
    params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    optimizer = torch.optim.Adam(params, lr=lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule) if schedule else None

    def step(x) -> float:
        n, _, h, w = x.shape
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        out = model(x)
        bpp = sum(torch.log(lik).sum() / (-math.log(2) * n * h * w)
                  for lik in out["likelihoods"].values())
        mse = torch.nn.functional.mse_loss(out["x_hat"], x)
        loss = lmbda * 255**2 * mse + bpp
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if scheduler:
            scheduler.step()
        aux_loss = model.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()
        return float(loss)

    return step


def warmup_cosine(steps: int, warmup: int, end_fraction: float = 0.05) -> Callable[[int], float]:
    """Learning-rate multiplier of optax.warmup_cosine_decay_schedule(0 or peak, peak, warmup,
    max(steps, warmup + 1), end=end_fraction * peak), jaxlic's default schedule."""
    decay = max(steps, warmup + 1) - warmup

    def factor(t: int) -> float:
        if t < warmup:
            return t / warmup
        cosine = 0.5 * (1 + math.cos(math.pi * min(t - warmup, decay) / decay))
        return (1 - end_fraction) * cosine + end_fraction

    return factor


def cmd_bench_train(args) -> None:
    """Median seconds of a FactorizedPrior training step (or of g_s(g_a(x))) on CPU (JSON)."""
    torch = _torch()
    if args.threads < 1 or args.steps < 1 or args.warmup < 0 or args.batch < 1 or args.size < 16:
        raise PeerError("--threads, --steps, --batch must be >= 1, --warmup >= 0, --size >= 16")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from compressai.models import FactorizedPrior

    model = FactorizedPrior(args.N, args.M)
    gen = torch.Generator().manual_seed(args.seed + 1)
    height, width = (args.height or args.size), args.size
    x = torch.rand(args.batch, 3, height, width, generator=gen)
    if args.mode == "train":
        model.train()
        train_step = _train_step_fn(model, args.lmbda, args.clip)

        def step() -> float:
            return train_step(x)
    else:
        model.eval()

        def step() -> float:
            with torch.no_grad():
                return float(model.g_s(model.g_a(x)).mean())

    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        value = step()
        t1 = time.perf_counter()
        if not math.isfinite(value):
            raise PeerError(f"step {i} gave a non-finite loss")
        if i >= args.warmup:
            times.append(t1 - t0)
    result = {
        "mode": args.mode, "model": "FactorizedPrior", "N": args.N, "M": args.M,
        "batch": args.batch, "height": height, "width": width, "threads": args.threads,
        "steps": args.steps, "warmup": args.warmup, "lmbda": args.lmbda, "clip": args.clip,
        "step_s": statistics.median(times), "all_s": times, "device": "cpu",
        "cpu": platform.processor() or platform.machine(), "versions": versions(),
    }
    if args.out:
        dest = Path(args.out)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("mode", "step_s", "all_s", "threads", "batch")}))


def _evaluate(model, images: list[str]) -> dict:
    """Compress and decompress each image for real: bytes, 8-bit reconstruction and times."""
    torch = _torch()
    out: dict = {}
    with torch.no_grad():
        for i, image in enumerate(images):
            x0 = read_image(Path(image))
            x, pad = pad_to_multiple(x0)
            t0 = time.perf_counter()
            enc = model.compress(x)
            t1 = time.perf_counter()
            dec = model.decompress(enc["strings"], enc["shape"])
            t2 = time.perf_counter()
            x_hat = crop(dec["x_hat"], pad)[0].clamp(0, 1).mul(255).round().to(torch.uint8)
            out[f"{i}/name"] = np.asarray(Path(image).name)
            out[f"{i}/nbytes"] = np.int64(sum(len(s[0]) for s in enc["strings"]))
            out[f"{i}/x_hat"] = x_hat.permute(1, 2, 0).numpy()  # HWC uint8, original size
            out[f"{i}/times"] = np.asarray([t1 - t0, t2 - t1])  # encode, decode seconds
    out["num_images"] = np.int64(len(images))
    return out


def cmd_train(args) -> None:
    """Train FactorizedPrior(N, M) on given batches, build its tables, optionally evaluate."""
    if args.threads < 1 or args.steps < 1 or args.log_every < 1:
        raise PeerError("--threads, --steps and --log-every must be >= 1")
    if not Path(args.batches).is_file():
        raise PeerError(f"batches file not found: {args.batches}")
    try:
        batches = np.load(args.batches, mmap_mode="r")
    except ValueError as err:
        raise PeerError(f"{args.batches} is not a .npy array: {err}") from err
    if batches.dtype != np.uint8 or batches.ndim != 5 or batches.shape[-1] != 3:
        raise PeerError(f"{args.batches}: expected uint8 (steps, batch, H, W, 3), got {batches.dtype} {batches.shape}")
    if len(batches) < args.steps:
        raise PeerError(f"{args.batches} holds {len(batches)} batches, fewer than --steps {args.steps}")
    torch = _torch()  # after the cheap checks: importing torch takes seconds
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from compressai.models import FactorizedPrior

    if args.init_state:
        model = FactorizedPrior.from_state_dict(load_state(Path(args.init_state)))
    else:
        model = FactorizedPrior(args.N, args.M)
    model.train()
    step = _train_step_fn(model, args.lmbda, args.clip, args.lr, warmup_cosine(args.steps, args.warmup))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out_dir / "metrics.jsonl", "w") as log:
        for t in range(args.steps):
            x = torch.from_numpy(np.array(batches[t])).permute(0, 3, 1, 2).float().div(255)
            loss = step(x)
            if not math.isfinite(loss):
                raise PeerError(f"step {t} gave a non-finite loss")
            if (t + 1) % args.log_every == 0 or t + 1 == args.steps:
                elapsed = time.perf_counter() - start
                log.write(json.dumps({"step": t + 1, "loss": loss, "elapsed_s": elapsed}) + "\n")
                log.flush()
                eta = elapsed / (t + 1) * (args.steps - t - 1)
                print(f"step {t + 1}/{args.steps} loss {loss:.4f} ({elapsed / (t + 1):.3f} s/step, ETA {eta:.0f} s)",
                      file=sys.stderr, flush=True)
    train_s = time.perf_counter() - start
    model.eval()
    model.update(force=True, update_quantiles=True)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(out_dir / "state.npz", **state)
    summary = {"N": model.N, "M": model.M, "steps": args.steps, "lmbda": args.lmbda, "lr": args.lr,
               "warmup": args.warmup, "clip": args.clip, "seed": args.seed, "threads": args.threads,
               "train_s": train_s, "versions": versions()}
    if args.eval_images:
        result = _evaluate(model, args.eval_images)
        np.savez(out_dir / "eval.npz", **result)
    (out_dir / "train.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({"out": str(out_dir), "train_s": train_s}))


def cmd_info(_args) -> None:
    """Print versions as JSON."""
    print(json.dumps(versions()))


# ----------------------------------------------------------------------------- CLI

# name -> (help, add_arguments, handler). A new subcommand (e.g. "train") is one more entry.
Subcommand = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], None]]


def _add_arch(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True, choices=ARCHS)


def _args_export(p: argparse.ArgumentParser) -> None:
    _add_arch(p)
    p.add_argument("--quality", type=int, required=True, help="1..8; picks N, M like the zoo")
    p.add_argument("--N", type=int, default=None, help="override the zoo's N")
    p.add_argument("--M", type=int, default=None, help="override the zoo's M")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="state .npz (a .json sidecar goes beside it)")
    p.add_argument("--calib-steps", type=int, default=60, help="rate-only Adam steps (0: none)")
    p.add_argument("--calib-lr", type=float, default=1e-2)
    p.add_argument("--calib-size", type=int, default=128, help="side of the synthetic images")
    p.add_argument("--calib-batch", type=int, default=2)
    p.add_argument("--y-std", type=float, default=3.0, help="target std of the latent y")
    p.add_argument("--z-std", type=float, default=2.0, help="target std of the hyper-latent z")
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed for determinism)")


def _args_run(p: argparse.ArgumentParser) -> None:
    _add_arch(p)
    p.add_argument("--state", required=True, help="npz written by export")
    p.add_argument("--images", nargs="+", required=True)
    p.add_argument("--out", required=True, help="result .npz")
    p.add_argument("--threads", type=int, default=1)


def _args_bench(p: argparse.ArgumentParser) -> None:
    _add_arch(p)
    p.add_argument("--state", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", required=True, help="bench .json")


def _args_bench_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("train", "infer"), default="train",
                   help="train: one optimizer step; infer: g_s(g_a(x)) without gradients")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="crop side (the width with --height)")
    p.add_argument("--height", type=int, default=None, help="crop height when not square")
    p.add_argument("--lmbda", type=float, default=0.0067)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="bench .json (optional)")


def _args_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batches", required=True, help="uint8 .npy of shape (steps, batch, H, W, 3)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--init-state", default=None, help="start from this state .npz (a fine-tune)")
    p.add_argument("--lmbda", type=float, required=True)
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps before the cosine decay")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (0: none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval-images", nargs="*", default=[], help="compress/decompress these after training")
    p.add_argument("--out", required=True, help="directory: state.npz, metrics.jsonl, train.json, eval.npz")


SUBCOMMANDS: dict[str, Subcommand] = {
    "info": ("print versions as JSON", lambda p: None, cmd_info),
    "export": ("export a calibrated random model", _args_export, cmd_export),
    "run": ("forward/compress/decompress images", _args_run, cmd_run),
    "bench": ("time compress/decompress on CPU", _args_bench, cmd_bench),
    "bench-train": ("time a FactorizedPrior train step on CPU", _args_bench_train, cmd_bench_train),
    "train": ("train FactorizedPrior on given batches (and evaluate)", _args_train, cmd_train),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one subcommand."""
    parser = argparse.ArgumentParser(prog="compressai_peer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, handler) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_)
        add_args(p)
        p.set_defaults(handler=handler)
    return run_command(parser, argv)


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Run the parsed subcommand's handler; a PeerError is one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except PeerError as err:
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
