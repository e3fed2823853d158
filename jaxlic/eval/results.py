"""Results files in CompressAI's format, so curves compare and plot alongside CompressAI's own.

A record is ``{"name": str, "description": str, "results": {key: [float, ...]}}`` with one entry
per rate point in every list. Keys used by CompressAI: ``bpp``, ``psnr-rgb``, ``ms-ssim-rgb``,
``encoding_time``, ``decoding_time``; jaxlic adds ``quality`` for codec sweeps. A file holds one
record (as CompressAI writes) or a list of records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from jaxlic.errors import DataError
from jaxlic.eval.evaluate import Evaluation
from jaxlic.images import PathLike, atomic_path

QUALITY_METRICS = ("psnr-rgb", "ms-ssim-rgb")
Record = dict[str, Any]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def validate_results(record: object, source: str = "results") -> Record:
    """Return `record` if it is a valid CompressAI-format record, else raise DataError saying why."""
    if not isinstance(record, dict):
        raise DataError(f"{source}: a results record must be a JSON object, got {type(record).__name__}")
    if not isinstance(record.get("name"), str) or not record["name"]:
        raise DataError(f"{source}: missing or empty 'name'")
    if not isinstance(record.get("description", ""), str):
        raise DataError(f"{source}: 'description' must be a string")
    results = record.get("results")
    if not isinstance(results, dict) or "bpp" not in results:
        raise DataError(f"{source} ({record['name']}): 'results' must be an object with at least 'bpp'")
    if not any(metric in results for metric in QUALITY_METRICS):
        raise DataError(f"{source} ({record['name']}): 'results' has none of {', '.join(QUALITY_METRICS)}")
    lengths = set()
    for key, values in results.items():
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise DataError(f"{source} ({record['name']}): results[{key!r}] must be a list of numbers (no NaN)")
        lengths.add(len(values))
    if len(lengths) != 1 or 0 in lengths:
        raise DataError(f"{source} ({record['name']}): every results list must have the same, non-zero length")
    if not all(math.isfinite(b) and b >= 0 for b in results["bpp"]):
        raise DataError(f"{source} ({record['name']}): bpp values must be finite and >= 0")
    return record


def make_record(name: str, description: str, evaluations: Sequence[Evaluation], qualities: Sequence[int] | None = None) -> Record:
    """A record from one Evaluation per rate point (means over images, as CompressAI reports)."""
    results: dict[str, list[float]] = {
        "bpp": [e.bpp for e in evaluations],
        "psnr-rgb": [e.psnr for e in evaluations],
        "ms-ssim-rgb": [e.ms_ssim for e in evaluations],
        "encoding_time": [e.mean("encode_time") for e in evaluations],
        "decoding_time": [e.mean("decode_time") for e in evaluations],
    }
    if qualities is not None:
        results["quality"] = [float(q) for q in qualities]
    return validate_results({"name": name, "description": description, "results": results}, name)


def save_results(path: PathLike, records: Record | Sequence[Record]) -> None:
    """Write one record (or a list of them) as JSON, atomically, after validating each."""
    many = not isinstance(records, dict)
    for record in records if many else [records]:
        validate_results(record, str(path))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(list(records) if many else records, indent=2) + "\n")


def parse_results(text: str, source: str = "results") -> list[Record]:
    """Records from JSON text holding one record or a list of them."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: not valid JSON ({exc})") from exc
    records = loaded if isinstance(loaded, list) else [loaded]
    if not records:
        raise DataError(f"{source}: holds no results records")
    return [validate_results(record, source) for record in records]


def load_results(path: PathLike) -> list[Record]:
    """Records from a results file (one record or a list)."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read results file ({exc.strerror})") from exc
    return parse_results(text, str(path))


def curve(record: Record, metric: str = "psnr-rgb") -> tuple[list[float], list[float]]:
    """(bpp, metric) lists of a record; DataError if it lacks `metric`."""
    results = record["results"]
    if metric not in results:
        raise DataError(f"{record['name']}: no {metric!r} results (has {', '.join(sorted(results))})")
    return list(results["bpp"]), list(results[metric])
