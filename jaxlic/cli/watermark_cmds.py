"""`jaxlic watermark | verify | trace`: quantization-aware watermarks from the command line.

Watermark keys are made with `jaxlic keygen watermark PREFIX`; only their public fingerprint is
ever printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jaxlic.cli import model_spec

from jaxlic.cli.quant_cmds import add_quantize_options, quantize_recipe, write_integer


def add_watermark_options(p: argparse.ArgumentParser) -> None:
    """The licensee's id and the watermark loss weight (watermark and train)."""
    p.add_argument("--user-id", type=int, default=0, help="the licensee's id (0: the owner's own copy)")
    p.add_argument("--strength", type=float, default=1.0, help="weight of the watermark loss")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "watermark", help="QAT with a watermark: an integer-mode package carrying the owner code and a user id")
    add_quantize_options(p, steps=300, learning_rate=1e-4, crop=128, checkpoint_every=100)
    p.add_argument("--key", type=Path, required=True, help="the owner's watermark key (from `jaxlic keygen watermark`)")
    add_watermark_options(p)
    p.set_defaults(func=_watermark)

    p = subparsers.add_parser("verify", help="is the owner's watermark in this integer-mode package?")
    p.add_argument("--model", type=model_spec, required=True)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_verify)

    p = subparsers.add_parser("trace", help="which licensee's copy is this integer-mode package?")
    p.add_argument("--model", type=model_spec, required=True)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--users", type=Path, required=True, help='JSON {"name": user id, ...}')
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_trace)


def _watermark(args: argparse.Namespace) -> int:
    from jaxlic.pretrained import load_model
    from jaxlic.errors import ConfigError
    from jaxlic.quant.pipeline import quantize
    from jaxlic.secure.watermark import CarrierLayout, WatermarkKey, WatermarkTerm

    if args.steps < 1:
        raise ConfigError("a watermark is embedded by QAT: --qat-steps must be >= 1")
    key = WatermarkKey.load(args.key)
    package = load_model(args.model)
    # A user id the key cannot carry, or a model too small for the key, fails before training.
    key.message(args.user_id)
    key.carrier_positions(CarrierLayout.of_params(package.params))
    batches, qat, run_dir = quantize_recipe(args)
    term = WatermarkTerm(key, args.user_id, args.strength)
    write_integer(quantize(package, batches, qat, run_dir, extra_terms=[term], from_integer=True), args, batches)
    report(args.out, key, args.user_id)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from jaxlic.secure.watermark import WatermarkKey

    return 0 if report(args.model, WatermarkKey.load(args.key), as_json=args.json) else 1


def report(model: Path, key, user_id: int | None = None, as_json: bool = False) -> bool:
    """Print what the model's integer weights say under `key` (with the BER for `user_id`);
    True when the owner's watermark is there."""
    from jaxlic.pretrained import load_model
    from jaxlic.secure.watermark import extract

    result = extract(load_model(model), key)
    summary = result.summary() | ({"ber": result.bit_error_rate(user_id)} if user_id is not None else {})
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        verdict = "watermark FOUND" if result.is_owner else "watermark not found"
        print(f"{model}: {verdict} (key {key.fingerprint}): {result.owner_errors}/{key.owner_bits} owner-code "
              f"errors, accepted up to {result.owner_threshold}; chance for an unmarked model "
              f"{result.p_value:.1e}, false positive bound {result.false_positive_probability:.1e}"
              + (f"; BER {summary['ber']:.4f} for user {user_id}" if user_id is not None else ""))
    return result.is_owner


def _trace(args: argparse.Namespace) -> int:
    from jaxlic.pretrained import load_model
    from jaxlic.secure.watermark import WatermarkKey, read_users, trace

    key = WatermarkKey.load(args.key)
    result = trace(load_model(args.model), key, read_users(args.users))
    if args.json:
        print(json.dumps(result.summary(), indent=2))
    elif result.user is not None:
        print(f"{args.model}: the copy of {result.user} (user-id distance {result.distances[result.user]}, "
              f"accepted up to {result.threshold}; owner code {result.extraction.owner_errors} errors)")
    else:
        reason = "no owner watermark" if not result.extraction.is_owner else "no user matches"
        print(f"{args.model}: traced to no user ({reason}; nearest distances "
              f"{dict(sorted(result.distances.items(), key=lambda kv: kv[1])[:3])})")
    return 0 if result.user is not None else 1
