"""Published Kodak curves as results records: CompressAI's (MSE models, JPEG, BPG, VTM-9.1) and
the context models LALIC and ELIC.

Figures as quoted in the project's references (CompressAI, results/image/kodak; LALIC's official
results; ELIC's paper): bpp from real byte counts and PSNR-RGB averaged over the 24 images.
Stored in ``jaxlic/data/reference_curves.json``.
"""

from __future__ import annotations

import functools
from importlib import resources

from jaxlic.errors import DataError
from jaxlic.eval.results import Record, parse_results


@functools.cache
def _all_curves() -> tuple[Record, ...]:
    text = resources.files("jaxlic").joinpath("data", "reference_curves.json").read_text(encoding="utf-8")
    return tuple(parse_results(text, "jaxlic/data/reference_curves.json"))


def reference_names() -> list[str]:
    """Names of the stored reference curves."""
    return [record["name"] for record in _all_curves()]


def reference_curve(name: str) -> Record:
    """One reference curve by name (case-insensitive), as a fresh copy."""
    for record in _all_curves():
        if record["name"].lower() == name.lower():
            return {**record, "results": {key: list(values) for key, values in record["results"].items()}}
    raise DataError(f"no reference curve {name!r}; available: {', '.join(reference_names())}")


def reference_curves() -> list[Record]:
    """Every stored reference curve."""
    return [reference_curve(name) for name in reference_names()]
