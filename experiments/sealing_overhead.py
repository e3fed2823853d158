"""Sealing overhead for one file: extra bytes, and time to seal and to open (median of runs).

    python experiments/sealing_overhead.py MODEL.pkg [--recipients 3] [--runs 7]
    python experiments/sealing_overhead.py --random-mb 10

Keys are generated in memory; "open (file)" includes reading the blob and the atomic write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jaxlic.secure.keys import generate_key
from jaxlic.secure.sealing import open_file, open_sealed, seal, verify_sealed


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(payload: bytes, recipients: int = 1, runs: int = 7) -> dict[str, float]:
    """Size overhead (bytes) and median seconds to seal, verify and open `payload`."""
    owner = generate_key("ed25519")
    keys = [generate_key("x25519") for _ in range(recipients)]
    publics = [k.public_key() for k in keys]
    blob = seal(payload, publics, owner)
    assert open_sealed(blob, keys[0], owner.public_key()).payload == payload
    with tempfile.TemporaryDirectory() as tmp:
        sealed_path, out_path = Path(tmp, "blob.sealed"), Path(tmp, "out.bin")
        sealed_path.write_bytes(blob)
        open_file_s = _median_seconds(lambda: open_file(sealed_path, out_path, keys[0], owner.public_key()), runs)
    return {
        "payload_bytes": len(payload),
        "sealed_bytes": len(blob),
        "overhead_bytes": len(blob) - len(payload),
        "seal_s": _median_seconds(lambda: seal(payload, publics, owner), runs),
        "verify_s": _median_seconds(lambda: verify_sealed(blob, owner.public_key()), runs),
        "open_s": _median_seconds(lambda: open_sealed(blob, keys[0], owner.public_key()), runs),
        "open_file_s": open_file_s,
    }


def format_table(r: dict[str, float], recipients: int, runs: int) -> str:
    """The measurements as a plain-text table."""
    mb = r["payload_bytes"] / 1e6
    overhead = f"{r['overhead_bytes']:,} B ({100 * r['overhead_bytes'] / max(r['payload_bytes'], 1):.4f} %)"
    rows = [
        ("payload", f"{r['payload_bytes']:,} B"),
        ("sealed", f"{r['sealed_bytes']:,} B"),
        (f"overhead ({recipients} recipient(s))", overhead),
        *(
            (label, f"{1e3 * r[key]:9.2f} ms  ({mb / r[key]:8.1f} MB/s)")
            for label, key in (
                ("seal", "seal_s"),
                ("verify signature only", "verify_s"),
                ("open (in memory)", "open_s"),
                ("open (file to file)", "open_file_s"),
            )
        ),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'quantity':<{width}}  value (median of {runs} runs)", "-" * (width + 40)]
    return "\n".join([*lines, *(f"{label:<{width}}  {value}" for label, value in rows)])


def main() -> None:
    """Parse arguments, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="the file to seal (e.g. a model package)")
    source.add_argument("--random-mb", type=float, help="measure on this many MB of random bytes instead")
    parser.add_argument("--recipients", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    payload = os.urandom(int(args.random_mb * 1e6)) if args.random_mb else Path(args.file).read_bytes()
    print(format_table(measure(payload, args.recipients, args.runs), args.recipients, args.runs))


if __name__ == "__main__":
    main()
