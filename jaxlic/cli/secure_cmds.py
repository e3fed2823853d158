"""`jaxlic keygen | seal | open | inspect`: sealed parameter blobs from the command line.

Only paths, fingerprints and public headers are ever printed; private keys and passphrases
never are. Passphrases come from an environment variable or a prompt, never from argv
(which other users can read in the process list).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path

from jaxlic.cli import add_force_option, check_paths
from jaxlic.errors import SecurityError
from jaxlic.secure.keys import (
    fingerprint,
    generate_key,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from jaxlic.secure.sealing import open_file, read_header, seal_file, verify_sealed

_ROLES = {"owner": "ed25519", "recipient": "x25519"}


def _add_passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--passphrase-env", metavar="VAR", help="read the private key's passphrase from $VAR")
    group.add_argument("--ask-passphrase", action="store_true", help="prompt for the private key's passphrase")


def _passphrase(args: argparse.Namespace, confirm: bool = False) -> bytes | None:
    """The passphrase the options point to, or None when the key is not encrypted."""
    if args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if not value:
            raise SecurityError(f"environment variable {args.passphrase_env} is unset or empty")
        return value.encode()
    if args.ask_passphrase:
        value = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("passphrase again: ") != value:
            raise SecurityError("the two passphrases differ; nothing was written")
        return value.encode()
    return None


def _meta_item(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _cmd_keygen(args: argparse.Namespace) -> int:
    if args.role == "watermark":
        return _watermark_keygen(args)
    private_path, public_path = Path(f"{args.prefix}.key"), Path(f"{args.prefix}.pub")
    if not args.force:
        for path in (private_path, public_path):
            if path.exists():
                raise SecurityError(f"{path} already exists; refusing to overwrite it (use --force to replace it)")
    key = generate_key(_ROLES[args.role])
    save_private_key(key, private_path, _passphrase(args, confirm=True), overwrite=args.force)
    save_public_key(key, public_path, overwrite=args.force)
    print(f"{args.role} key ({_ROLES[args.role]}) fingerprint {fingerprint(key)}")
    print(f"private: {private_path} (mode 0600; keep it secret)")
    print(f"public:  {public_path} (share it)")
    return 0


def _watermark_keygen(args: argparse.Namespace) -> int:
    from jaxlic.secure.watermark import WatermarkKey

    if args.passphrase_env or args.ask_passphrase:
        raise SecurityError("watermark keys are secrets stored with mode 0600; they take no passphrase")
    key = WatermarkKey.generate()
    path = key.save(f"{args.prefix}.wmkey", overwrite=args.force)
    print(f"watermark key {key.fingerprint} ({key.owner_bits} owner bits, {key.user_bits} user bits)")
    print(f"secret: {path} (mode 0600; keep it secret: it proves ownership and traces users)")
    return 0


def _cmd_seal(args: argparse.Namespace) -> int:
    check_paths([Path(args.input), Path(args.owner_key), *map(Path, args.to)], [Path(args.output)], args.force)
    owner = load_private_key(args.owner_key, _passphrase(args), kind="ed25519")
    recipients = [load_public_key(path, kind="x25519") for path in args.to]
    out = seal_file(args.input, args.output, recipients, owner, dict(args.meta))
    kids = ", ".join(dict.fromkeys(fingerprint(key) for key in recipients))
    print(f"sealed {args.input} for {kids}, signed by owner {fingerprint(owner)}")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


def _cmd_open(args: argparse.Namespace) -> int:
    check_paths([Path(args.input), Path(args.key), Path(args.owner)], [Path(args.output)], args.force)
    recipient = load_private_key(args.key, _passphrase(args), kind="x25519")
    owner = load_public_key(args.owner, kind="ed25519")
    contents = open_file(args.input, args.output, recipient, owner)
    print(f"signature of owner {fingerprint(owner)} verified; metadata {json.dumps(contents.metadata)}")
    print(f"wrote {args.output} ({len(contents.payload)} bytes, mode 0600)")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    try:
        blob = Path(args.input).read_bytes()
    except OSError as exc:
        raise SecurityError(f"cannot read {args.input}: {exc.strerror}") from None
    if args.owner:
        summary = verify_sealed(blob, load_public_key(args.owner, kind="ed25519")) | {"signature": "valid"}
    else:
        summary = read_header(blob) | {"signature": "not checked (pass --owner OWNER.pub)"}
    print(json.dumps(summary, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `keygen`, `seal`, `open` and `inspect` to the `jaxlic` command."""
    p = subparsers.add_parser("keygen", help="create an owner (signing) or recipient (decryption) key pair, "
                                             "or a watermark key")
    p.add_argument("role", choices=sorted(_ROLES) + ["watermark"],
                   help="owner: Ed25519 signer; recipient: X25519 decrypter; watermark: a secret for jaxlic watermark")
    p.add_argument("prefix", help="writes PREFIX.key (private, 0600) and PREFIX.pub; watermark: PREFIX.wmkey (0600)")
    p.add_argument("--force", action="store_true", help="replace existing key files")
    _add_passphrase_options(p)
    p.set_defaults(func=_cmd_keygen)

    p = subparsers.add_parser("seal", help="encrypt a file for recipients and sign it as its owner")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--owner-key", required=True, help="the owner's private key (Ed25519 PEM)")
    p.add_argument("--to", action="append", required=True, metavar="PUB", help="a recipient public key; repeat")
    p.add_argument("--meta", action="append", default=[], type=_meta_item, metavar="KEY=VALUE",
                   help="public metadata stored (authenticated, not encrypted) in the header; repeat")
    add_force_option(p)
    _add_passphrase_options(p)
    p.set_defaults(func=_cmd_seal)

    p = subparsers.add_parser("open", help="verify and decrypt a sealed file")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--key", required=True, help="your private recipient key (X25519 PEM)")
    p.add_argument("--owner", required=True, help="the owner's public key (Ed25519 PEM) to verify against")
    add_force_option(p)
    _add_passphrase_options(p)
    p.set_defaults(func=_cmd_open)

    p = subparsers.add_parser("inspect", help="show a sealed file's public header")
    p.add_argument("input")
    p.add_argument("--owner", help="also verify the signature with this owner public key")
    p.set_defaults(func=_cmd_inspect)
