"""The integer graph: a small, serializable op list that every integer backend executes.

A graph has named int32 inputs (the entropy-decoded symbols), a topologically ordered list of
ops, named integer constants (int8 weights, int32 biases, per-channel shifts, thresholds) and
named outputs. Every op reads tensors by name and writes one new tensor; all arithmetic is
integer with 32-bit two's-complement semantics. `validate` proves statically, from the constants,
that no accumulator, sum or product can leave int32, so backends need no overflow checks.

Ops (x: first input, c: channel = last axis, shifts and constants per output channel):

| op | inputs -> output | meaning | placement |
| --- | --- | --- | --- |
| conv2d | int8 -> int32 | sum x*weight (HWIO int8) + bias (int32), stride, zero padding | vta |
| conv2d_transpose | int8 -> int32 | PyTorch ConvTranspose2d rule, weight HWIO | vta |
| requantize | int -> int8/uint8/int16/int32 | clamp((x + 2^(n-1)) >> n, lo, hi), n = shift[c]; n < 0: x << -n | vta |
| leaky_relu | int32 -> int32 | max(x, x >> shift) | vta |
| abs | int8 -> int8 | min(abs(x), 127) | host |
| square | int8 -> int32 | x * x | host |
| isqrt | int16/int32 -> int32 | floor(sqrt(max(x, 0) << pre_shift[c])) | host |
| mul | (a, b) -> int32 | a * b | host |
| add | (a, b) -> int32 | a + b | host |
| add_channel | int -> int32 | x + addend[c] | host |
| scale_index | int32 -> int32 | number of thresholds[c, j] < x | host |

`placement` says where a VTA deployment runs each op (VTA's ALU has MIN, MAX, ADD and SHR but no
multiply, no table lookup and 8-bit stores); a conv and the requantize that reads it fuse into
one VTA layer. `exponents` record what the integers mean: real value = integer * 2^-exponent
(one exponent per channel).

Files: an uncompressed NumPy .npz holding `graph.json` (the spec, UTF-8 bytes as uint8) and one
array per constant. Inside a model package the spec sits in the header and the constants are
arrays named `integer/<constant>`.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from jaxlic.errors import IntegerizationError
from jaxlic.images import atomic_path
from jaxlic.quant.intops import output_dtype

FORMAT = "jaxlic-integer-graph"
VERSION = 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
SPEC_ENTRY = "graph.json"


@dataclass(frozen=True)
class OpKind:
    """What an op takes: tensor inputs, constant roles, integer attributes, where it runs."""

    inputs: int
    consts: tuple[str, ...]
    attrs: tuple[str, ...]
    placement: str


OP_KINDS: dict[str, OpKind] = {
    "conv2d": OpKind(1, ("weight", "bias"), ("stride", "padding"), "vta"),
    "conv2d_transpose": OpKind(1, ("weight", "bias"), ("stride", "padding", "output_padding"), "vta"),
    "requantize": OpKind(1, ("shift",), ("lo", "hi"), "vta"),
    "leaky_relu": OpKind(1, (), ("shift",), "vta"),
    "abs": OpKind(1, (), (), "host"),
    "square": OpKind(1, (), (), "host"),
    "isqrt": OpKind(1, ("pre_shift",), (), "host"),
    "mul": OpKind(2, (), (), "host"),
    "add": OpKind(2, (), (), "host"),
    "add_channel": OpKind(1, ("addend",), (), "host"),
    "scale_index": OpKind(1, ("thresholds",), (), "host"),
}
_CONST_DTYPES = {"weight": np.int8}  # every other constant is int32


@dataclass(frozen=True)
class Op:
    """One node: `output = kind(inputs..., constants, attributes)`."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    attrs: Mapping[str, int] = field(default_factory=dict)
    consts: Mapping[str, str] = field(default_factory=dict)

    @property
    def placement(self) -> str:
        return OP_KINDS[self.kind].placement

    def spec(self) -> dict:
        return {"name": self.name, "op": self.kind, "inputs": list(self.inputs), "output": self.output,
                "attrs": dict(self.attrs), "consts": dict(self.consts), "placement": self.placement}


@dataclass(frozen=True)
class TensorInfo:
    """Static facts about a tensor: dtype, channel count and a value range that always holds."""

    dtype: np.dtype
    channels: int
    lo: int
    hi: int


def output_dtype_of(op: Op) -> np.dtype:
    """The dtype an op writes."""
    if op.kind == "requantize":
        return output_dtype(op.attrs["lo"], op.attrs["hi"])
    return np.dtype(np.int8) if op.kind == "abs" else np.dtype(np.int32)


@dataclass
class IntegerGraph:
    """A validated integer graph (see the module docstring for the op set)."""

    inputs: dict[str, int]  # name -> channels; inputs are int32
    ops: tuple[Op, ...]
    constants: dict[str, np.ndarray]
    outputs: tuple[str, ...]
    exponents: dict[str, tuple[int, ...]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.info = self.validate()

    # --- validation -----------------------------------------------------------------------
    def validate(self) -> dict[str, TensorInfo]:
        """Check names, dtypes, shapes and that every value provably fits int32; returns the
        facts of every tensor. IntegerizationError names the offending op."""
        info = {name: TensorInfo(np.dtype(np.int32), _positive(c, f"input {name!r}"), INT32_MIN, INT32_MAX)
                for name, c in self.inputs.items()}
        for index, op in enumerate(self.ops):
            where = f"integer graph op {index} {op.name!r} ({op.kind})"
            kind = OP_KINDS.get(op.kind)
            if kind is None:
                raise IntegerizationError(f"{where}: unknown op; known ops: {', '.join(OP_KINDS)}")
            if len(op.inputs) != kind.inputs:
                raise IntegerizationError(f"{where}: takes {kind.inputs} inputs, got {len(op.inputs)}")
            for name in op.inputs:
                if name not in info:
                    raise IntegerizationError(f"{where}: input {name!r} is not defined by an earlier op or graph input")
            if op.output in info:
                raise IntegerizationError(f"{where}: output {op.output!r} is already defined")
            if set(op.attrs) != set(kind.attrs) or not all(_is_int(v) for v in op.attrs.values()):
                raise IntegerizationError(f"{where}: needs integer attributes {list(kind.attrs)}, got {dict(op.attrs)}")
            if set(op.consts) != set(kind.consts):
                raise IntegerizationError(f"{where}: needs constants {list(kind.consts)}, got {list(op.consts)}")
            consts = {}
            for role, cname in op.consts.items():
                array = self.constants.get(cname)
                if array is None:
                    raise IntegerizationError(f"{where}: constant {cname!r} is missing")
                want = np.dtype(_CONST_DTYPES.get(role, np.int32))
                if array.dtype != want:
                    raise IntegerizationError(f"{where}: constant {cname!r} must be {want}, got {array.dtype}")
                consts[role] = array
            try:
                info[op.output] = _infer(op, [info[n] for n in op.inputs], consts)
            except _Invalid as exc:
                raise IntegerizationError(f"{where}: {exc}") from None
        for name in self.outputs:
            if name not in info:
                raise IntegerizationError(f"integer graph output {name!r} is not computed by any op")
        for name, exps in self.exponents.items():
            if name not in info or len(exps) != info[name].channels or not all(_is_int(e) for e in exps):
                raise IntegerizationError(f"integer graph exponents of {name!r} do not match a tensor's channels")
        return info

    # --- execution helpers ------------------------------------------------------------------
    def ops_for(self, outputs: Iterable[str], available: Iterable[str]) -> list[Op]:
        """The ops needed to compute `outputs` from the tensors in `available`, in order."""
        return needed_ops(self.ops, outputs, available)

    def check_inputs(self, values: Mapping[str, np.ndarray]) -> None:
        """IntegerizationError unless each provided tensor has the graph's dtype and channels."""
        for name, value in values.items():
            if name not in self.info:
                raise IntegerizationError(f"{name!r} is not a tensor of this integer graph")
            want = self.info[name]
            if value.dtype != want.dtype or value.ndim != 4 or value.shape[-1] != want.channels:
                raise IntegerizationError(
                    f"tensor {name!r} must be NHWC {want.dtype} with {want.channels} channels, got "
                    f"{value.dtype} {tuple(value.shape)}")

    # --- serialization -------------------------------------------------------------------------
    def spec(self) -> dict:
        """The JSON-ready description (everything but the constants' values)."""
        return {
            "format": FORMAT, "version": VERSION,
            "inputs": [{"name": n, "dtype": "int32", "channels": c} for n, c in self.inputs.items()],
            "outputs": list(self.outputs),
            "ops": [op.spec() for op in self.ops],
            "constants": {n: {"dtype": a.dtype.str, "shape": list(a.shape)} for n, a in sorted(self.constants.items())},
            "exponents": {n: list(e) for n, e in self.exponents.items()},
            "meta": self.meta,
        }

    def spec_json(self) -> str:
        """Canonical JSON of the spec (what fingerprints hash)."""
        return json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_spec(cls, spec: Any, constants: Mapping[str, np.ndarray]) -> "IntegerGraph":
        """Rebuild (and validate) a graph from its spec and constant arrays."""
        try:
            if not isinstance(spec, dict) or spec.get("format") != FORMAT:
                raise IntegerizationError("not a jaxlic integer graph (format field missing or wrong)")
            if spec.get("version") != VERSION:
                raise IntegerizationError(f"integer graph version {spec.get('version')} is not supported (expected {VERSION})")
            ops = []
            for index, entry in enumerate(spec["ops"]):
                try:
                    ops.append(Op(str(entry["name"]), str(entry["op"]), tuple(map(str, entry["inputs"])),
                                  str(entry["output"]), dict(entry["attrs"]), {str(k): str(v) for k, v in entry["consts"].items()}))
                except (KeyError, TypeError, ValueError, AttributeError) as exc:
                    name = entry.get("name", "?") if isinstance(entry, dict) else "?"
                    raise IntegerizationError(f"integer graph op {index} {name!r} is malformed: {exc!r}") from None
            declared = spec["constants"]
            arrays = {}
            for name, desc in declared.items():
                if name not in constants:
                    raise IntegerizationError(f"integer graph constant {name!r} is missing from the file")
                array = np.asarray(constants[name])
                if array.dtype.str != desc["dtype"] or list(array.shape) != list(desc["shape"]):
                    raise IntegerizationError(
                        f"integer graph constant {name!r} is {array.dtype.str} {list(array.shape)}, "
                        f"the spec says {desc['dtype']} {desc['shape']}")
                arrays[name] = array
            inputs = {str(e["name"]): e["channels"] for e in spec["inputs"]}
            exponents = {str(k): tuple(v) for k, v in spec.get("exponents", {}).items()}
            return cls(inputs, tuple(ops), arrays, tuple(map(str, spec["outputs"])), exponents, dict(spec.get("meta", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, IntegerizationError):
                raise
            raise IntegerizationError(f"malformed integer graph spec: {exc!r}") from None

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Constants under `prefix/` (for model packages)."""
        return {f"{prefix}/{name}": array for name, array in self.constants.items()}

    @classmethod
    def from_arrays(cls, spec: Any, arrays: Mapping[str, np.ndarray], prefix: str) -> "IntegerGraph":
        """Inverse of `spec()` + `to_arrays(prefix)`."""
        cut = len(prefix) + 1
        return cls.from_spec(spec, {k[cut:]: v for k, v in arrays.items() if k.startswith(prefix + "/")})

    def save(self, path: str | Path) -> None:
        """Write the graph file atomically (.npz: graph.json + constants)."""
        buffer = io.BytesIO()
        entries = {SPEC_ENTRY: np.frombuffer(self.spec_json().encode(), np.uint8)}
        entries.update(self.constants)
        np.savez(buffer, **entries)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "IntegerGraph":
        """Read a graph file; IntegerizationError for anything that is not a valid graph."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError:
            raise IntegerizationError(f"integer graph file {path} does not exist") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise IntegerizationError(f"{path} is not a readable integer graph file ({exc})") from None
        spec_bytes = arrays.pop(SPEC_ENTRY, None)
        if spec_bytes is None or spec_bytes.dtype != np.uint8:
            raise IntegerizationError(f"{path} has no {SPEC_ENTRY} entry: not an integer graph file")
        try:
            spec = json.loads(spec_bytes.tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegerizationError(f"{path}: {SPEC_ENTRY} is not valid JSON ({exc})") from None
        return cls.from_spec(spec, arrays)


def needed_ops(ops: Iterable[Op], outputs: Iterable[str], available: Iterable[str]) -> list[Op]:
    """The ops of `ops` needed to compute `outputs` from the tensors in `available`, in order."""
    ops = list(ops)
    available, producers = set(available), {op.output: op for op in ops}
    needed, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        if name in available or name in needed:
            continue
        if name not in producers:
            raise IntegerizationError(f"tensor {name!r} is neither provided nor computed by the graph")
        needed.add(name)
        stack.extend(producers[name].inputs)
    return [op for op in ops if op.output in needed]


class _Invalid(Exception):
    pass


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _positive(value: Any, what: str) -> int:
    if not _is_int(value) or value < 1:
        raise IntegerizationError(f"integer graph {what} needs a positive channel count, got {value!r}")
    return int(value)


def _fits(lo: int, hi: int, what: str) -> tuple[int, int]:
    if lo < INT32_MIN or hi > INT32_MAX:
        raise _Invalid(f"{what} can reach [{lo}, {hi}], outside int32")
    return lo, hi


def _per_channel(array: np.ndarray, channels: int, role: str) -> np.ndarray:
    if array.shape != (channels,):
        raise _Invalid(f"{role} must have shape ({channels},), got {array.shape}")
    return array.astype(np.int64)


def _infer(op: Op, ins: list[TensorInfo], consts: dict[str, np.ndarray]) -> TensorInfo:
    """Output facts of one op, with the static bounds that prove it stays inside int32."""
    x = ins[0]
    magnitude = max(abs(x.lo), abs(x.hi))
    int32 = np.dtype(np.int32)
    if op.kind in ("conv2d", "conv2d_transpose"):
        if x.dtype != np.int8:
            raise _Invalid(f"input must be int8, got {x.dtype}")
        weight, bias = consts["weight"], consts["bias"]
        if weight.ndim != 4 or weight.shape[2] != x.channels:
            raise _Invalid(f"weight must be HWIO with {x.channels} input channels, got shape {weight.shape}")
        cout = weight.shape[3]
        bias = _per_channel(bias, cout, "bias")
        if op.attrs["stride"] < 1 or op.attrs["padding"] < 0:
            raise _Invalid("stride must be >= 1 and padding >= 0")
        if op.kind == "conv2d_transpose" and not 0 <= op.attrs["output_padding"] < op.attrs["stride"]:
            raise _Invalid("output_padding must be in [0, stride)")
        reach = np.abs(weight.astype(np.int64)).sum(axis=(0, 1, 2)) * magnitude
        return TensorInfo(int32, cout, *_fits(int((bias - reach).min()), int((bias + reach).max()), "the accumulator"))
    if op.kind == "requantize":
        shift = _per_channel(consts["shift"], x.channels, "shift")
        lo, hi = op.attrs["lo"], op.attrs["hi"]
        if not (INT32_MIN <= lo <= hi <= INT32_MAX) or shift.min() < -31 or shift.max() > 31:
            raise _Invalid(f"needs INT32_MIN <= lo <= hi <= INT32_MAX and shifts in [-31, 31], got [{lo}, {hi}] and "
                           f"{shift.min()}..{shift.max()}")
        left, right = int(max(-shift.min(), 0)), int(max(shift.max(), 0))
        _fits(x.lo << left, (x.hi << left) + (1 << right >> 1), "the shifted or rounded input")
        return TensorInfo(output_dtype(lo, hi), x.channels, lo, hi)
    if op.kind == "leaky_relu":
        if x.dtype != np.int32 or not 0 <= op.attrs["shift"] <= 31:
            raise _Invalid("needs an int32 input and a shift in [0, 31]")
        return TensorInfo(int32, x.channels, x.lo >> op.attrs["shift"] if x.lo < 0 else x.lo, x.hi)
    if op.kind in ("abs", "square"):
        if x.dtype != np.int8:
            raise _Invalid(f"input must be int8, got {x.dtype}")
        top = min(magnitude, 127)
        return TensorInfo(np.dtype(np.int8), x.channels, 0, top) if op.kind == "abs" else TensorInfo(int32, x.channels, 0, magnitude ** 2)
    if op.kind == "isqrt":
        pre = _per_channel(consts["pre_shift"], x.channels, "pre_shift")
        if pre.min() < 0:
            raise _Invalid("pre_shift must be >= 0")
        _, hi = _fits(0, max(x.hi, 0) << int(pre.max()), "the pre-shifted input")
        return TensorInfo(int32, x.channels, 0, int(np.sqrt(hi)))
    if op.kind in ("mul", "add"):
        y = ins[1]
        if x.channels != y.channels:
            raise _Invalid(f"inputs have {x.channels} and {y.channels} channels")
        if op.kind == "add":
            return TensorInfo(int32, x.channels, *_fits(x.lo + y.lo, x.hi + y.hi, "the sum"))
        corners = [a * b for a in (x.lo, x.hi) for b in (y.lo, y.hi)]
        return TensorInfo(int32, x.channels, *_fits(min(corners), max(corners), "the product"))
    if op.kind == "add_channel":
        addend = _per_channel(consts["addend"], x.channels, "addend")
        return TensorInfo(int32, x.channels, *_fits(x.lo + int(addend.min()), x.hi + int(addend.max()), "the sum"))
    # scale_index
    thresholds = consts["thresholds"]
    if thresholds.ndim != 2 or thresholds.shape[0] != x.channels:
        raise _Invalid(f"thresholds must have shape ({x.channels}, levels - 1), got {thresholds.shape}")
    return TensorInfo(int32, x.channels, 0, thresholds.shape[1])
