"""Reference models shipped with jaxlic: `load_pretrained("ref-hyperprior", 3)`, and `NAME:QUALITY`
(or `NAME` for a sandwich) wherever the CLI takes a model package.

Each shipped file is an ordinary package (`.jxlm` codec or `.jxls` sandwich) compressed with xz.
Its float weights are rounded to float16 values (stored as float32; the prior's parameters and a
sandwich's codec tables stay exact), so xz halves them; the shipped model *is* the rounded one,
and every figure in docs/pretrained.md is measured on it. `manifest.json` lists each file with
its SHA-256 (of the package bytes), fingerprint, size and Kodak figures; a file that does not
match its manifest entry is a PackageError.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import lzma
import re
from pathlib import Path

import jax
import numpy as np

from jaxlic.codec import ModelPackage, load
from jaxlic.errors import PackageError

SHIPPED = Path(__file__).resolve().parent / "models"
MANIFEST_NAME = "manifest.json"
SPEC = re.compile(r"^(?P<name>[a-z][a-z0-9-]*)(?::(?P<quality>[0-9]+))?$")
KEPT_EXACT = ("entropy_bottleneck", "codec")  # the prior's CDF parameters, a sandwich's JPEG tables


def manifest(directory: Path | None = None) -> list[dict]:
    """The shipped packages' entries (name, quality, kind, file, sha256, fingerprint, bytes, ...)."""
    path = Path(directory or SHIPPED) / MANIFEST_NAME
    if not path.is_file():
        return []
    return json.loads(path.read_text())["packages"]


def spec_of(entry: dict) -> str:
    """How a command line names a shipped package: NAME:QUALITY, or NAME for a sandwich."""
    return entry["name"] if entry["quality"] is None else f"{entry['name']}:{entry['quality']}"


def available(directory: Path | None = None) -> list[str]:
    """The command-line names of every shipped package."""
    return [spec_of(e) for e in manifest(directory)]


def shipped_name(spec: str | Path) -> bool:
    """Whether `spec` reads as a shipped model's name rather than a file (a file that exists wins)."""
    return bool(SPEC.match(str(spec))) and not Path(spec).exists()


def load_pretrained(name: str, quality: int | None = None, directory: Path | None = None):
    """The shipped package `name` (at `quality` for codec models; "NAME:QUALITY" works too),
    verified against its manifest entry: a ModelPackage, or a SandwichPackage for a sandwich."""
    match = SPEC.match(name)
    if match and match["quality"] is not None and quality is None:
        name, quality = match["name"], int(match["quality"])
    wanted = (name, None if quality is None else int(quality))
    entries = [e for e in manifest(directory) if (e["name"], e["quality"]) == wanted]
    spec = name if quality is None else f"{name}:{quality}"
    if not entries:
        raise PackageError(f"no package file or shipped model {spec}; shipped: "
                           f"{', '.join(available(directory)) or 'none'}")
    entry = entries[0]
    try:
        data = lzma.decompress((Path(directory or SHIPPED) / entry["file"]).read_bytes())
    except (OSError, lzma.LZMAError) as exc:
        raise PackageError(f"shipped model {spec} ({entry['file']}) cannot be read: {exc}") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise PackageError(f"shipped model {spec} does not match its manifest (SHA-256 differs)")
    return _package_class(entry["kind"]).from_bytes(data, entry["file"])


def load_model(spec: str | Path) -> ModelPackage:
    """A codec package file, or a shipped codec model named NAME:QUALITY (a path that exists wins)."""
    if not shipped_name(spec):
        return load(spec)
    package = load_pretrained(str(spec))
    if not isinstance(package, ModelPackage):
        raise PackageError(f"{spec} is a sandwich, not a codec model (use it with `jaxlic sandwich`)")
    return package


def _package_class(kind: str):
    from jaxlic.sandwich.model import SandwichPackage

    return {"model": ModelPackage, "sandwich": SandwichPackage}[kind]


def half_precision(package):
    """The package (codec or sandwich) with its float weights rounded to float16 values (stored as
    float32), the prior and codec tables left exact; a float hyperprior's entropy graph is derived
    again from the rounded weights, an integer package's decoder graph is kept as it is."""
    def rounded(array):
        return jax.numpy.asarray(np.asarray(array, np.float32).astype(np.float16).astype(np.float32))

    params = {k: (v if k in KEPT_EXACT else jax.tree_util.tree_map(rounded, v)) for k, v in package.params.items()}
    if not all(bool(np.all(np.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(params)):
        raise PackageError("a weight overflows float16; this package cannot ship at half precision")
    if isinstance(package, ModelPackage):
        return dataclasses.replace(package, params=params, entropy=None)
    return dataclasses.replace(package, params=params)


def ship(package, name: str, quality: int | None, directory: Path | None = None, **facts) -> dict:
    """Write `package` (a ModelPackage, or a SandwichPackage with quality None) at half precision
    as NAME[-qQUALITY].EXT.xz into `directory` and record it in the manifest (replacing an entry
    of the same name and quality); returns the entry."""
    from jaxlic.sandwich.model import SandwichPackage

    kind = "sandwich" if isinstance(package, SandwichPackage) else "model"
    spec = name if quality is None else f"{name}:{quality}"
    if not SPEC.match(spec) or (kind == "model") != (quality is not None):
        raise PackageError(f"{spec} cannot name a shipped {kind} (codec models: NAME:QUALITY, sandwiches: NAME)")
    directory = Path(directory or SHIPPED)
    directory.mkdir(parents=True, exist_ok=True)
    shipped = half_precision(package)
    stem = name if quality is None else f"{name}-q{quality}"
    tmp = directory / f".{stem}.tmp"
    shipped.save(tmp)
    data = tmp.read_bytes()
    tmp.unlink()
    file = f"{stem}.{'jxls' if kind == 'sandwich' else 'jxlm'}.xz"
    (directory / file).write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
    fingerprint = shipped.fingerprint
    entry = {"name": name, "quality": quality, "kind": kind, "file": file,
             "sha256": hashlib.sha256(data).hexdigest(),
             "fingerprint": fingerprint if isinstance(fingerprint, str) else fingerprint.hex(),
             "bytes": (directory / file).stat().st_size, **_describe(shipped), **facts}
    entries = [e for e in manifest(directory) if (e["name"], e["quality"]) != (name, quality)]
    entries = sorted([*entries, entry], key=lambda e: (e["name"], e["quality"] or 0))
    (directory / MANIFEST_NAME).write_text(json.dumps({"version": 1, "packages": entries}, indent=1) + "\n")
    return entry


def _describe(package) -> dict:
    """Manifest facts read off the package itself."""
    if isinstance(package, ModelPackage):
        c = package.config
        return {"arch": c.arch, "width": c.width, "lambda": c.lmbda, "integer": package.integer is not None}
    return {"scenario": package.config.scenario}
