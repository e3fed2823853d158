"""Helpers for tests that talk to the CompressAI peer (peers/compressai_peer.py in .peer/).

The peer runs in its own Python 3.11 environment (built by `make peer`), so tests reach it
only through subprocesses and files. Tests in tests/ import this as `from peer_utils import
...`; tests in a sub-folder without __init__.py first put tests/ on sys.path:
`sys.path.insert(0, str(Path(__file__).resolve().parents[1]))`.

Set JAXLIC_PEER_DIR to use a peer environment somewhere other than <repo>/.peer.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO_ROOT / "peers" / "compressai_peer.py"
BUILD_HINT = "build it with `make peer` (bash scripts/make_peer_env.sh .peer)"


class PeerCallError(RuntimeError):
    """The peer CLI failed, timed out or printed something unexpected."""


def peer_dir() -> Path:
    """Where the peer environment lives."""
    return Path(os.environ.get("JAXLIC_PEER_DIR", REPO_ROOT / ".peer"))


def peer_python() -> Path:
    """The peer environment's interpreter (may not exist)."""
    return peer_dir() / "bin" / "python"


def peer_unavailable_reason() -> str | None:
    """Why the peer cannot be used, or None when it can."""
    marker = peer_dir() / "UNAVAILABLE"
    if marker.is_file():
        first = marker.read_text(errors="replace").strip().splitlines()
        why = first[0] if first else "no reason recorded"
        return f"CompressAI peer unavailable: {why} (marker {marker})"
    if not peer_python().exists():
        return f"CompressAI peer not built: {peer_python()} is missing; {BUILD_HINT}"
    if not (peer_dir() / ".stamp").is_file():
        return f"CompressAI peer in {peer_dir()} is incomplete (no .stamp); {BUILD_HINT}"
    if not PEER_SCRIPT.is_file():
        return f"peer script missing: {PEER_SCRIPT}"
    return None


def require_peer() -> Path:
    """Skip the calling test (with the reason) unless the peer is usable; else its python."""
    reason = peer_unavailable_reason()
    if reason:
        pytest.skip(reason)
    return peer_python()


# Decorator form: `@requires_peer` on a test or class (also marks it `peer`).
requires_peer = pytest.mark.skipif(
    peer_unavailable_reason() is not None, reason=peer_unavailable_reason() or ""
)


def _peer_env() -> dict[str, str]:
    env = dict(os.environ)
    # The jaxlic venv's settings must not leak into the Python 3.11 peer.
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(var, None)
    env["PYTHONNOUSERSITE"] = "1"
    # torch in the peer is a CUDA build; the peer is a CPU reference, so hide any GPU.
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_peer(args: list[str], timeout: float = 600, show_progress: bool = False,
             script: Path = PEER_SCRIPT) -> subprocess.CompletedProcess:
    """Run `python peers/compressai_peer.py *args` (or another peer `script`) in the peer env;
    raise PeerCallError on failure.

    With `show_progress`, the peer's stderr (its progress lines) goes straight to ours instead
    of being captured, for long runs.
    """
    python = require_peer()
    cmd = [str(python), str(script), *[str(a) for a in args]]
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, env=_peer_env(), stdout=subprocess.PIPE,
            stderr=None if show_progress else subprocess.PIPE, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as err:
        tail = (err.stderr or b"")[-2000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        raise PeerCallError(
            f"peer timed out after {timeout:.0f}s: {' '.join(cmd)}\nstderr tail:\n{tail}"
        ) from err
    if proc.returncode != 0:
        raise PeerCallError(
            f"peer failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"stderr:\n{(proc.stderr or '(shown above)')[-4000:]}\nstdout:\n{proc.stdout[-1000:]}"
        )
    return proc


def run_peer_json(args: list[str], timeout: float = 600, show_progress: bool = False,
                  script: Path = PEER_SCRIPT) -> Any:
    """run_peer, then parse the JSON summary the peer prints as its last stdout line."""
    proc = run_peer(args, timeout, show_progress, script)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise PeerCallError(f"peer printed nothing on stdout for {args}; stderr:\n{(proc.stderr or '')[-2000:]}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as err:
        raise PeerCallError(f"peer's last stdout line is not JSON: {lines[-1][:500]!r}") from err
