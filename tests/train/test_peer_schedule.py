"""The CompressAI peer trains on exactly jaxlic's learning-rate schedule (same recipe, both sides)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jaxlic.train.step import make_schedule

PEER_SCRIPT = Path(__file__).resolve().parents[2] / "peers" / "compressai_peer.py"


def _peer_module():
    """The peer script imports only numpy at module level, so it loads here without torch."""
    spec = importlib.util.spec_from_file_location("compressai_peer", PEER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("steps, warmup", [(50, 0), (50, 10), (7, 7), (1, 0)])
def test_peer_schedule_matches_optax_warmup_cosine(steps, warmup):
    peak = 3e-4
    jaxlic_schedule = make_schedule(peak, steps, warmup)
    factor = _peer_module().warmup_cosine(steps, warmup)
    ours = [float(jaxlic_schedule(t)) for t in range(steps + 3)]
    peer = [peak * factor(t) for t in range(steps + 3)]
    np.testing.assert_allclose(peer, ours, rtol=1e-5, atol=1e-12)
