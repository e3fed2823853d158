"""ELIC peer: CompressAI 1.2.8's Elic2022Official and Elic2022Chandelier for jaxlic's parity tests.

Runs INSIDE the peer environment (.peer), like compressai_peer.py (whose helpers it reuses); it
imports only numpy, torch and compressai, never jaxlic.

Subcommands:

  params  parameter counts of a model at --N/--M/--groups as JSON on stdout.
  macs    multiply-accumulates per pixel of the convolutions in a --size x --size eval forward,
          summed per module (g_a, g_s, h_a, h_s, channel_context, context_prediction,
          entropy_parameters) as JSON: output positions x k x k x C_in x C_out for a conv,
          input positions for a transposed conv, every call counted.
  export  a random model (``torch.manual_seed(--seed)``, then CompressAI's own init), rescaled
          (below) and with one eval-mode forward done (so the checkerboard convolutions hold
          CompressAI's masked weights); every state_dict tensor to --out (.npz).
  run     eval-mode forward of an exported state on the NCHW float32 images of --images (.npz,
          keys 0, 1, ...); to --out (.npz): ``{i}/x_hat``, ``{i}/likelihoods/y``,
          ``{i}/likelihoods/z`` (NCHW).
  serve   a worker for side-by-side benchmarks: JSON requests on stdin, one JSON reply line each
          on stdout. ``{"load": state.npz, "arch", "groups", "threads"}`` builds the model (CDF
          tables from ``update()``); ``{"image": png, "out": npy}`` times ``model.compress`` and
          ``model.decompress`` of that image (CPU, no grad) and replies the seconds, the bytes of
          every string, whether the decoded y_hat equals the encoder's, and writes the decoded
          uint8 H x W x 3 image to ``out``. The caller's clock never sees torch start up.

Rescaling (deterministic; eval mode, on compressai_peer.synthetic_batch images): the last conv
of g_a is scaled until std(y) == --y-std and the last conv of h_a until std(z) == --z-std; then,
group by group, the last layer of each parameter aggregation is made to output scales of mean
--y-std and means of mean 0, each with unit spread, and the last layer of g_s to give x_hat of
mean 0.5, std 0.2. A fresh random model has latents near 0.1 that all round to zero; this gives
non-zero symbols, means between the integers and scales that span the Gaussian's range.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from compressai_peer import (PeerError, _torch, crop, load_state, pad_to_multiple, read_image, run_command,
                             synthetic_batch)

ARCHS = ("elic2022", "elic2022-chandelier")


def build_model(arch: str, n: int, m: int, groups: list[int]):
    """A freshly constructed CompressAI ELIC model."""
    _torch()
    from compressai.models.sensetime import Elic2022Chandelier, Elic2022Official

    if sum(groups) != m:
        raise PeerError(f"groups {groups} do not add up to M={m}")
    return {"elic2022": Elic2022Official, "elic2022-chandelier": Elic2022Chandelier}[arch](n, m, groups=groups)


def _standardize(layer, outputs, targets) -> None:
    """Affinely rescale a conv's output channels to unit spread around `targets` (per channel),
    from outputs it produced (N, C, H, W tensors)."""
    torch = _torch()
    flat = torch.cat([o.transpose(0, 1).reshape(o.shape[1], -1) for o in outputs], dim=1)
    mean, std = flat.mean(dim=1), flat.std(dim=1)
    if not bool(torch.isfinite(std).all()) or bool((std <= 0).any()):
        raise PeerError("rescaling failed: an output channel is constant or not finite")
    with torch.no_grad():
        weight = layer.weight
        # Conv2d weight is (out, in, ...); ConvTranspose2d weight is (in, out, ...).
        out_dim = 1 if isinstance(layer, torch.nn.ConvTranspose2d) else 0
        shape = [1] * weight.dim()
        shape[out_dim] = -1
        weight.div_(std.view(shape))
        layer.bias.copy_((layer.bias - mean) / std + targets)


def _recorded(layer, run):
    """Outputs of `layer` while `run()` executes."""
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        run()
    finally:
        handle.remove()
    return seen


def rescale(model, arch: str, x, y_std: float, z_std: float) -> None:
    """Give the random model realistic latents, entropy parameters and output (module doc)."""
    torch = _torch()
    hyper = model.latent_codec["hyper"]
    for layer, source, target in ((model.g_a[13], lambda: model.g_a(x), y_std),
                                  (hyper.h_a[4], lambda: hyper.h_a(model.g_a(x)), z_std)):
        for _ in range(4):  # the blocks after the conv are not linear: iterate to the target
            std = float(source().std())
            with torch.no_grad():
                layer.weight.mul_(target / std)
                layer.bias.mul_(target / std)
    groups = model.latent_codec["y"].latent_codec
    for k in range(len(model.groups)):
        last = groups[f"y{k}"].entropy_parameters[-1]
        g = model.groups[k]
        scales, means = torch.full((g,), y_std), torch.zeros(g)
        targets = torch.cat([means, scales] if arch == "elic2022-chandelier" else [scales, means])
        _standardize(last, _recorded(last, lambda: model(x)), targets)
    _standardize(model.g_s[14], _recorded(model.g_s[14], lambda: model(x)), torch.full((3,), 0.5))
    with torch.no_grad():
        model.g_s[14].weight.mul_(0.2)
        model.g_s[14].bias.sub_(0.5).mul_(0.2).add_(0.5)


def cmd_params(args) -> None:
    model = build_model(args.arch, args.N, args.M, args.groups)
    print(json.dumps({"params": sum(p.numel() for p in model.parameters())}))


def cmd_macs(args) -> None:
    torch = _torch()
    model = build_model(args.arch, args.N, args.M, args.groups).eval()
    parts = ("g_a", "g_s", "h_a", "h_s", "channel_context", "context_prediction", "entropy_parameters")
    macs = dict.fromkeys(parts, 0)

    def count(part):
        def hook(module, inputs, output):
            k = module.kernel_size[0] * module.kernel_size[1]
            cin, cout = module.in_channels, module.out_channels
            positions = (inputs[0] if isinstance(module, torch.nn.ConvTranspose2d) else output)[0, 0].numel()
            macs[part] += positions * k * cin * cout
        return hook

    for name, module in model.named_modules():
        part = next((p for p in parts if f"{p}." in f"{name}." or name.startswith(f"{p}.")), None)
        if part and isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.register_forward_hook(count(part))
    with torch.no_grad():
        model(torch.zeros(1, 3, args.size, args.size))
    print(json.dumps({part: value / args.size**2 for part, value in macs.items()}))


def cmd_export(args) -> None:
    torch = _torch()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = build_model(args.arch, args.N, args.M, args.groups).eval()
    x = synthetic_batch(args.batch, args.size, torch.Generator().manual_seed(args.seed + 1))
    with torch.no_grad():
        rescale(model, args.arch, x, args.y_std, args.z_std)
        model(x)  # applies the checkerboard masks to the stored weights, as any CompressAI forward does
    np.savez(args.out, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
    print(json.dumps({"out": str(args.out), "tensors": len(model.state_dict())}))


def _load(arch: str, groups: list[int], path: Path):
    """An exported state in an eval-mode model of its N and M."""
    state = load_state(path)
    model = build_model(arch, state["g_a.0.weight"].shape[0], state["g_a.13.weight"].shape[0], groups).eval()
    model.load_state_dict(state)
    return model


def cmd_run(args) -> None:
    torch = _torch()
    torch.set_num_threads(1)
    model = _load(args.arch, args.groups, args.state)
    out = {}
    with np.load(args.images) as images, torch.no_grad():
        for i in range(len(images.files)):
            result = model(torch.from_numpy(images[str(i)]))
            out[f"{i}/x_hat"] = result["x_hat"].numpy()
            for name, likelihoods in result["likelihoods"].items():
                out[f"{i}/likelihoods/{name}"] = likelihoods.numpy()
    np.savez(args.out, **out)
    print(json.dumps({"out": str(args.out), "images": len(out) // 3}))


def _code_timed(model, request: dict) -> dict:
    """One image through model.compress / model.decompress, timed (see `serve`)."""
    torch = _torch()
    x, pad = pad_to_multiple(read_image(Path(request["image"])))
    seen = []  # the y_hat that decompress feeds g_s
    handle = model.g_s.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].clone()))
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            encoded = model.compress(x)
            t1 = time.perf_counter()
            decoded = model.decompress(encoded["strings"], encoded["shape"])
            t2 = time.perf_counter()
    finally:
        handle.remove()
    pixels = crop(decoded["x_hat"], pad)[0].permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    np.save(request["out"], pixels)
    return {"encode_s": t1 - t0, "decode_s": t2 - t1, "bytes": sum(len(s[0]) for s in encoded["strings"]),
            "y_hat_exact": bool(torch.equal(seen[0], encoded["y_hat"]))}


def cmd_serve(args) -> None:
    torch = _torch()
    model = None
    for line in sys.stdin:
        request = json.loads(line)
        if "load" in request:
            torch.set_num_threads(int(request["threads"]))
            model = _load(request["arch"], request["groups"], Path(request["load"]))
            model.update(force=True)
            reply = {"threads": torch.get_num_threads(), "torch": torch.__version__}
        else:
            reply = _code_timed(model, request)
        print(json.dumps(reply), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="elic_peer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--arch", required=True, choices=ARCHS)
        p.add_argument("--groups", type=int, nargs=5, required=True, help="channels of the five groups")
        p.set_defaults(handler=handler)
        return p

    p = add("params", cmd_params, "parameter count (JSON)")
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--M", type=int, required=True)
    p = add("macs", cmd_macs, "MACs per pixel per module (JSON)")
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--M", type=int, required=True)
    p.add_argument("--size", type=int, default=256)
    p = add("export", cmd_export, "random rescaled model -> .npz state")
    p.add_argument("--N", type=int, required=True)
    p.add_argument("--M", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--y-std", type=float, default=4.0)
    p.add_argument("--z-std", type=float, default=2.0)
    p = add("run", cmd_run, "eval forward of a state on images")
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--images", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("serve", help="benchmark worker (JSON lines on stdin/stdout)")
    p.set_defaults(handler=cmd_serve)
    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
