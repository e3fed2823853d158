"""Model packages: one file holding a model's config, parameters and coding tables.

Layout: magic `JXLMPKG\\0`, format version (u16), header length (u32), a JSON header (config and
an index of arrays), the raw little-endian arrays, and a SHA-256 of everything before it.
The fingerprint that bitstreams carry is a hash of config, parameters and tables. Integer-mode
packages add the integer decoder graph (header key `integer`, arrays `integer/<constant>`);
float hyperprior packages add the integer graph of their hyper phase, which gives the entropy
parameters (header key `entropy`, arrays `entropy/<constant>`; derived when a package without
it is first coded). Both graphs enter the fingerprint. Context-model packages (ELIC) add the
calibration of their integer context networks (header key `context`, derived when a package
without it is first coded; `jaxlic.quant.context_params`), which enters the fingerprint too.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxlic.entropy.coder import SymbolCoder
from jaxlic.entropy.factorized import bottleneck_medians, solve_quantiles, table_ranges
from jaxlic.entropy.gaussian import SCALE_LEVELS, default_scale_table, gaussian_table_pmfs
from jaxlic.entropy.tables import CodingTables
from jaxlic.errors import ConfigError, IntegerizationError, PackageError
from jaxlic.framing import frame, unframe
from jaxlic.images import atomic_path
from jaxlic.models import ModelConfig, build_model, init_params

if TYPE_CHECKING:
    from jaxlic.quant.context_params import ContextParams
    from jaxlic.quant.graph import IntegerGraph
    from jaxlic.quant.rwkv_context import RwkvContextParams

MAGIC = b"JXLMPKG\0"
VERSION = 1


@dataclass
class ModelPackage:
    """A trained model ready to code: config, parameters and its integer coding tables."""

    config: ModelConfig
    params: dict
    tables: dict[str, CodingTables] = field(default_factory=dict)
    scale_table: np.ndarray | None = None
    integer: "IntegerGraph | None" = None  # integer mode: the decoder runs this graph
    entropy: "IntegerGraph | None" = None  # float hyperprior: z symbols -> table indexes
    context: dict | None = None  # context model: exponents of its integer context networks

    @property
    def is_context_model(self) -> bool:
        return bool(getattr(self.model, "context_model", False))

    @functools.cached_property
    def model(self):
        return build_model(self.config)

    @functools.cached_property
    def transforms(self) -> "Transforms":
        """The model's networks, jitted once per package (and per input shape)."""
        return Transforms(self)

    @functools.cached_property
    def coders(self) -> dict[str, SymbolCoder]:
        """A range coder per table set, built from the stored integer tables."""
        if not self.tables:
            raise ConfigError(f"this {self.config.arch} package holds parameters only; build its coding tables "
                              "with jaxlic.codec.build_tables")
        return {name: SymbolCoder(tables) for name, tables in self.tables.items()}

    @functools.cached_property
    def hyper_graph(self) -> "IntegerGraph | None":
        """The integer graph that gives a hyperprior's table indexes: the decoder graph in
        integer mode, else the entropy graph (derived once if the package has none)."""
        if not self.model.hyper or self.is_context_model:
            return None
        if self.integer is not None:
            return self.integer
        if self.entropy is None:
            from jaxlic.quant.entropy_params import entropy_graph

            self.entropy = entropy_graph(self.config, self.params, self.tables["bottleneck"], self.scale_table)
        return self.entropy

    @functools.cached_property
    def context_params(self) -> "ContextParams | RwkvContextParams":
        """The integer context networks of a context model (its calibration derived once if the
        package has none)."""
        self.coders  # the ConfigError of a parameters-only package
        calibrate, _, derive = _context_networks(self.model)
        if self.context is None:
            self.context = calibrate(self.config, self.params, self.tables["bottleneck"])
        return derive(self.config, self.params, self.context, self.scale_table)

    def _context_spec(self) -> dict | None:
        if not self.is_context_model:
            return None
        self.context_params  # derives the calibration when missing
        from jaxlic.quant.context_params import FORMAT, VERSION

        return {"format": FORMAT, "version": VERSION,
                "exponents": {name: list(e) for name, e in sorted(self.context.items())}}

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """SHA-256 (first 8 bytes) of config, parameters, tables and integer graphs: what a
        bitstream names."""
        digest = hashlib.sha256(self.config.to_json().encode())
        graph = self.integer or self.hyper_graph
        if graph is not None:
            digest.update(graph.spec_json().encode())
        context = self._context_spec()
        if context is not None:
            digest.update(json.dumps(context, sort_keys=True, separators=(",", ":")).encode())
        for name, array in sorted(self._arrays().items()):
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.digest()[:8]

    def _arrays(self) -> dict[str, np.ndarray]:
        flat = traverse_util.flatten_dict(self.params, sep="/")
        arrays = {f"params/{k}": np.asarray(v) for k, v in flat.items()}
        for name, tables in self.tables.items():
            arrays.update(tables.to_arrays(f"tables/{name}"))
        if self.scale_table is not None:
            arrays["tables/scale_table"] = np.asarray(self.scale_table, np.float64)
        if self.integer is not None:
            arrays.update(self.integer.to_arrays("integer"))
        elif self.hyper_graph is not None:
            arrays.update(self.hyper_graph.to_arrays("entropy"))
        return arrays

    def save(self, path: str | Path) -> None:
        """Write the package atomically (no partial file on failure)."""
        arrays = self._arrays()
        index, offset, blobs = [], 0, []
        for name, array in sorted(arrays.items()):
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            index.append({"name": name, "dtype": array.dtype.newbyteorder("<").str,
                          "shape": list(array.shape), "offset": offset, "nbytes": len(data)})
            blobs.append(data)
            offset += len(data)
        header = {"config": json.loads(self.config.to_json()), "arrays": index}
        if self.integer is not None:
            header["integer"] = self.integer.spec()
        elif self.hyper_graph is not None:
            header["entropy"] = self.hyper_graph.spec()
        context = self._context_spec()
        if context is not None:
            header["context"] = context
        with atomic_path(path) as tmp:
            tmp.write_bytes(frame(MAGIC, VERSION, json.dumps(header).encode(), b"".join(blobs)))

    @classmethod
    def load(cls, path: str | Path) -> "ModelPackage":
        """Read and verify a package file; PackageError if it is not one or is damaged."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PackageError(f"cannot read model package {path}: {exc.strerror}") from None
        return cls.from_bytes(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<bytes>") -> "ModelPackage":
        """Parse and verify package bytes; anything malformed, however crafted, is a PackageError."""
        header, body = unframe(data, MAGIC, VERSION, name, "jaxlic model package")
        try:
            header = json.loads(header)
            if not isinstance(header, dict) or not isinstance(header.get("config"), dict):
                raise PackageError("the header is not an object with a config")
            config = _checked_config(ModelConfig.from_json(header["config"]))
            arrays = _read_arrays(header.get("arrays"), body)
            package = cls._from_arrays(config, arrays, header.get("integer"), header.get("entropy"))
            package.context = _context(header.get("context"), package)
        except (ValueError, RecursionError) as exc:  # includes PackageError and ConfigError
            raise PackageError(f"{name}: malformed model package ({exc})") from None
        return package

    @classmethod
    def _from_arrays(cls, config: ModelConfig, arrays: dict[str, np.ndarray],
                     integer_spec: dict | None = None, entropy_spec: dict | None = None) -> "ModelPackage":
        """Build and validate a package; the parameters are checked against the model before
        any table is expanded, so table sizes are bounded by the model's."""
        params = traverse_util.unflatten_dict(
            {k[len("params/"):]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("params/")},
            sep="/",
        )
        hyper = _check_params(config, params)
        scale_table = arrays.get("tables/scale_table")
        counts = {"bottleneck": params["entropy_bottleneck"]["quantiles"].shape[0]}
        if hyper:
            if scale_table is None:
                raise PackageError("model package has no scale table; run build_tables first")
            _check_scale_table(scale_table)
            counts["gaussian"] = scale_table.size
        names = {k.split("/")[1] for k in arrays if k.startswith("tables/") and k.count("/") == 2}
        if names != set(counts):
            raise PackageError(f"model package has coding tables {sorted(names)}, the model needs {sorted(counts)}; "
                               "run build_tables first")
        tables = {n: CodingTables.from_arrays(arrays, f"tables/{n}", counts[n]) for n in sorted(names)}
        if entropy_spec is not None and (integer_spec is not None or not hyper):
            raise PackageError("only float hyperprior packages carry an entropy graph")
        integer = _graph(integer_spec, arrays, "integer")
        entropy = _graph(entropy_spec, arrays, "entropy")
        if entropy is not None:
            from jaxlic.quant.entropy_params import check_entropy_graph

            try:
                check_entropy_graph(entropy, config)
            except IntegerizationError as exc:
                raise PackageError(f"model package has a bad entropy graph: {exc}") from None
        return cls(config, params, tables, scale_table, integer, entropy)


def _context_networks(model) -> tuple[Callable, Callable, Callable]:
    """(calibrate, check_calibration, derive) of a context model's integer networks: LALIC's
    RWKV ones (jaxlic.quant.rwkv_context) or ELIC's convolutions (jaxlic.quant.context_params)."""
    if getattr(model, "rwkv_context", False):
        from jaxlic.quant import rwkv_context

        return rwkv_context.calibrate, rwkv_context.check_calibration, rwkv_context.RwkvContextParams
    from jaxlic.quant import context_params

    return context_params.calibrate, context_params.check_calibration, context_params.ContextParams.derive


def _context(spec, package: ModelPackage) -> dict | None:
    """The validated context calibration of a context-model package (PackageError if it is bad,
    missing from a context model or present in another model)."""
    if not package.is_context_model:
        if spec is not None:
            raise PackageError("only context-model packages carry a context calibration")
        return None
    from jaxlic.quant.context_params import FORMAT, VERSION

    _, check_calibration, _ = _context_networks(package.model)
    if not isinstance(spec, dict) or spec.get("format") != FORMAT or spec.get("version") != VERSION:
        raise PackageError(f"a {package.config.arch} package needs a {FORMAT} version {VERSION} context calibration")
    try:
        return check_calibration(spec.get("exponents"), package.config, package.params)
    except IntegerizationError as exc:
        raise PackageError(f"model package has a bad context calibration: {exc}") from None


def _graph(spec: dict | None, arrays: dict[str, np.ndarray], prefix: str) -> "IntegerGraph | None":
    """The validated integer graph stored under `prefix`, or None; PackageError if it is bad."""
    if spec is None:
        return None
    from jaxlic.quant.graph import IntegerGraph

    try:
        return IntegerGraph.from_arrays(spec, arrays, prefix)
    except IntegerizationError as exc:
        raise PackageError(f"model package has a bad {prefix} graph: {exc}") from None


def _check_params(config: ModelConfig, params: dict) -> bool:
    """PackageError unless the parameters fit the config's model (shapes, finite float32);
    returns whether the model is a hyperprior."""
    try:
        model = build_model(config)
        expected = jax.eval_shape(lambda: init_params(model, 0))
    except ConfigError as exc:
        raise PackageError(f"model package config cannot be built: {exc}") from None
    want = {k: v.shape for k, v in traverse_util.flatten_dict(expected, sep="/").items()}
    flat = traverse_util.flatten_dict(params, sep="/")
    have = {k: tuple(v.shape) for k, v in flat.items()}
    if want != have:
        missing = sorted(set(want) - set(have))[:3]
        wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])[:3]
        raise PackageError(
            f"parameters do not fit {config.arch} (N={config.N}, M={config.M}): "
            f"missing {missing}, wrong shape {wrong}"
        )
    bad = sorted(k for k, v in flat.items() if v.dtype != jnp.float32 or not bool(jnp.all(jnp.isfinite(v))))
    if bad:
        raise PackageError(f"parameters must be finite float32; {bad[:3]} are not")
    return model.hyper


def _checked_config(config: ModelConfig) -> ModelConfig:
    """The config, if its fields have the types and ranges a model can be built from."""
    def is_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    ok = (isinstance(config.arch, str) and all(is_int(v) for v in (config.quality, config.N, config.M))
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in (config.width, config.lmbda))
          and config.width > 0 and config.lmbda >= 0)
    if not ok:
        raise PackageError(f"model config has a field of the wrong type or range: {config}")
    return config


# Far above CompressAI's 64 and jaxlic's 256; bounds what a package can make the loader allocate.
MAX_SCALE_LEVELS = 4096


def _check_scale_table(scale_table: np.ndarray) -> None:
    """PackageError unless the scale table is 1..MAX_SCALE_LEVELS positive, finite, increasing
    float64 scales."""
    ok = (scale_table.dtype == np.float64 and scale_table.ndim == 1 and 1 <= scale_table.size <= MAX_SCALE_LEVELS
          and bool(np.all(np.isfinite(scale_table)) and np.all(scale_table > 0)
                   and np.all(np.diff(scale_table) > 0)))
    if not ok:
        raise PackageError(f"the scale table must be 1..{MAX_SCALE_LEVELS} increasing positive float64 scales")


# Array dtypes a package may hold: numbers only, little-endian (no objects, strings, records).
_ARRAY_KINDS = "iuf"


def _dtype(text) -> np.dtype | None:
    """The numpy dtype a header names, or None for anything that is not a dtype name."""
    try:
        return np.dtype(text) if isinstance(text, str) else None
    except TypeError:
        return None


def _read_arrays(index, body: bytes) -> dict[str, np.ndarray]:
    """The arrays the header's index names, each checked to lie inside the body exactly."""
    if not isinstance(index, list):
        raise PackageError("the array index is not a list")
    arrays = {}
    for entry in index:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or entry["name"] in arrays:
            raise PackageError(f"bad or repeated array entry {str(entry)[:80]}")
        dtype = _dtype(entry.get("dtype"))
        shape, offset, nbytes = entry.get("shape"), entry.get("offset"), entry.get("nbytes")
        sizes = shape + [offset, nbytes] if isinstance(shape, list) else None
        if (dtype is None or dtype.kind not in _ARRAY_KINDS or dtype.byteorder == ">"
                or sizes is None or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes)
                or math.prod(shape) * dtype.itemsize != nbytes or offset + nbytes > len(body)):
            raise PackageError(f"array {entry['name']!r} does not lie in the package as its entry says")
        arrays[entry["name"]] = np.frombuffer(body, dtype, nbytes // dtype.itemsize, offset).reshape(shape).copy()
    return arrays


class Transforms:
    """Jitted analysis/synthesis (and hyper) networks of one package, parameters bound."""

    def __init__(self, package: ModelPackage):
        model, params = package.model, package.params

        def bound(method):
            fn = jax.jit(lambda p, x: model.apply({"params": p}, x, method=method))
            return lambda x: fn(params, x)

        self.analysis = bound("analysis")
        self.synthesis = bound("synthesis")
        self.medians = np.asarray(bottleneck_medians(params), np.float32)
        if model.hyper:
            self.hyper_analysis = bound("hyper_analysis")
            self.hyper_synthesis = bound("hyper_synthesis")


# Context models: 256 table scales cost +1.0% over the estimate on Kodak, 1024 +0.29% (docs/codec.md).
CONTEXT_SCALE_LEVELS = 1024


def build_tables(config: ModelConfig, params: dict, quantiles: str = "solve",
                 scale_levels: int | None = None) -> ModelPackage:
    """Freeze a trained model into a package: integer coding tables built once.

    quantiles="solve" finds the factorized prior's quantiles exactly from its cumulative (for
    models trained without CompressAI's auxiliary loss); "keep" uses the stored ones (imported
    CompressAI models, whose medians their bitstreams depend on). `scale_levels` sizes the
    Gaussian scale table of hyperprior models (CompressAI uses 64); default SCALE_LEVELS, and
    CONTEXT_SCALE_LEVELS for context models.
    """
    if quantiles not in ("solve", "keep"):
        raise ConfigError(f"quantiles must be 'solve' or 'keep', got {quantiles!r}")
    model = build_model(config)
    if scale_levels is None:
        scale_levels = CONTEXT_SCALE_LEVELS if getattr(model, "context_model", False) else SCALE_LEVELS

    def logits(points: np.ndarray) -> np.ndarray:
        out = model.apply({"params": params}, jnp.asarray(points, jnp.float32),
                          method=lambda m, x: m.entropy_bottleneck.logits_cumulative(x))
        return np.asarray(out, np.float64)

    if quantiles == "solve":
        bottleneck = dict(params["entropy_bottleneck"])
        solved = solve_quantiles(logits, bottleneck["quantiles"].shape[0])
        bottleneck["quantiles"] = jnp.asarray(solved, jnp.float32)
        params = {**params, "entropy_bottleneck": bottleneck}
    medians, below, above = table_ranges(np.asarray(params["entropy_bottleneck"]["quantiles"], np.float64))
    lengths = below + above + 1
    samples = np.arange(lengths.max())[None, :] + (medians - below)[:, None]
    pmf, tail = model.apply(
        {"params": params}, jnp.asarray(samples[:, None, :], jnp.float32),
        method=lambda m, s: m.entropy_bottleneck.table_pmfs(s),
    )
    pmf, tail = np.asarray(pmf, np.float64), np.asarray(tail, np.float64)
    if not np.all(np.isfinite(pmf)):
        raise ConfigError("the factorized prior produced non-finite probabilities (diverged model?)")
    tables = {
        "bottleneck": CodingTables.from_pmfs(
            [pmf[c, : lengths[c]] for c in range(len(lengths))], tail, -below
        )
    }
    scale_table = None
    if model.hyper:
        scale_table = default_scale_table(levels=scale_levels)
        tables["gaussian"] = CodingTables.from_pmfs(*gaussian_table_pmfs(scale_table))
    return ModelPackage(config, params, tables, scale_table)
