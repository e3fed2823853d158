"""Hostile inputs: decompression bombs, crafted streams and packages (CLI misuse: tests/cli).

Every case must end in a typed jaxlic error, quickly, without allocating for the declared size.
"""

import json
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from jaxlic.codec import Bitstream, ModelPackage, compress, decompress
from jaxlic.codec.package import MAGIC, VERSION
from jaxlic.errors import BitstreamError, ImageError, JaxlicError, PackageError
from jaxlic.framing import frame, unframe
from jaxlic.images import MAX_PIXELS

from small_packages import smooth_image

HYPER = "bmshj2018-hyperprior"
FACTORIZED = "bmshj2018-factorized"


def _stream(package, height, width, streams):
    return Bitstream(package.fingerprint, height, width, streams).to_bytes()


@pytest.mark.parametrize("side", [4096, 65535])
def test_a_tiny_stream_declaring_a_huge_image_is_refused_at_once(packages, side):
    # 24 bytes: header, two empty streams, CRC. Before: 4096^2 decoded (8 s, 2.2 GB), 65535^2 died in bad_alloc.
    data = _stream(packages[HYPER], side, side, (b"", b""))
    assert len(data) == 24
    with pytest.raises(BitstreamError if side * side <= MAX_PIXELS else ImageError):
        decompress(packages[HYPER], data)


def test_the_pixel_limit_applies_both_ways_and_can_be_raised(packages, rng):
    package = packages[FACTORIZED]
    pixels = smooth_image(rng, 40, 50)
    with pytest.raises(ImageError, match="max_pixels"):
        compress(package, pixels, max_pixels=1999)
    data = compress(package, pixels, max_pixels=2000)
    with pytest.raises(ImageError):
        decompress(package, data, max_pixels=1999)
    assert decompress(package, data, max_pixels=2000).shape == (40, 50, 3)


def test_an_image_file_above_the_limit_is_refused_from_its_header(packages, tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (6000, 6000)).save(path)  # 36 M pixels in a few kilobytes
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageError, match="above the limit"):
        compress(packages[FACTORIZED], path)


@pytest.fixture(scope="module")
def streams(packages):
    package = packages[HYPER]
    data = compress(package, smooth_image(np.random.default_rng(7), 64, 64))
    return package, Bitstream.from_bytes(data)


@pytest.mark.parametrize("change", ["trailing word", "missing word", "third stream", "one stream"])
def test_entropy_streams_must_be_consumed_exactly(streams, change):
    package, parsed = streams
    z, y = parsed.streams
    altered = {"trailing word": (z, y + bytes(4)), "missing word": (z, y[:-4]),
               "third stream": (z, y, b""), "one stream": (z,)}[change]
    with pytest.raises(BitstreamError):
        decompress(package, _stream(package, parsed.height, parsed.width, altered))


def test_escapes_that_overflow_the_synthesis_are_a_bitstream_error(packages):
    package = packages[FACTORIZED]
    y_shape = (1, 1, 1, package.config.M)
    channels = np.arange(package.config.M)
    y = package.coders["bottleneck"].encode(np.full(y_shape, 2**31 - 1 - 2**16), channels)
    with pytest.raises(BitstreamError, match="non-finite"):
        decompress(package, _stream(package, 16, 16, (y,)))


def test_non_finite_latents_are_a_package_error_not_an_endless_loop(packages, rng):
    good = packages[FACTORIZED]
    params = {**good.params, "g_a_6": {**good.params["g_a_6"], "bias": good.params["g_a_6"]["bias"] * np.nan}}
    diverged = ModelPackage(good.config, params, good.tables, good.scale_table)
    with pytest.raises(PackageError, match="non-finite"):
        compress(diverged, smooth_image(rng, 16, 16))


# -- crafted packages (the SHA-256 recomputed, so only validation stands in the way) ----------

@pytest.fixture(scope="module")
def package_parts(packages, tmp_path_factory):
    path = tmp_path_factory.mktemp("pkg") / "m.jxlm"
    packages[HYPER].save(path)
    header, body = unframe(path.read_bytes(), MAGIC, VERSION, "m", "package")
    return json.loads(header), body


def _entry(header, name):
    return next(e for e in header["arrays"] if e["name"] == name)


def _crafted(header, body, edit):
    header = json.loads(json.dumps(header))
    body = bytearray(body)
    text = edit(header, body)
    return frame(MAGIC, VERSION, (text or json.dumps(header)).encode(), bytes(body))


def _set_config(key, value):
    def edit(header, body):
        header["config"][key] = value
    return edit


def _set_entry(name, key, value):
    def edit(header, body):
        _entry(header, name)[key] = value
    return edit


def _poke(name, value):
    def edit(header, body):
        e = _entry(header, name)
        array = np.frombuffer(body, np.dtype(e["dtype"]), int(np.prod(e["shape"])), e["offset"]).copy()
        array.flat[0] = value
        body[e["offset"]:e["offset"] + e["nbytes"]] = array.tobytes()
    return edit


def _drop(prefix):
    def edit(header, body):
        header["arrays"] = [e for e in header["arrays"] if not e["name"].startswith(prefix)]
    return edit


def _raw(replace):
    def edit(header, body):
        return json.dumps(header).replace(*replace, 1)
    return edit


def _huge_tables(header, body):
    # 20,000 tables, one of 20,002 symbols, lengths adding up to the packed entries: the loader
    # used to allocate the dense (tables x longest) array, 1.6 GB here, before any check.
    tables, packed = 20_000, 60_000
    lengths = np.full(tables, 2, np.int32)
    lengths[0] = packed - 2 * (tables - 1)
    for name, array in (("lengths", lengths), ("offsets", np.zeros(tables, np.int32)),
                        ("packed_freqs", np.ones(packed, np.uint16))):
        entry = _entry(header, f"tables/bottleneck/{name}")
        entry.update(shape=[array.size], offset=len(body), nbytes=array.nbytes)
        body.extend(array.tobytes())


CRAFTED = {
    "deep nesting": _raw(('"config": {', '"config": {"x": ' + "[" * 100_000 + "]" * 100_000 + ", ")),
    "huge integer": _raw(('"config": {', '"config": {"x": ' + "9" * 5000 + ", ")),
    "width 0": _set_config("width", 0),
    "width inf": _raw(('"width": 0.25', '"width": Infinity')),
    "N a string": _set_config("N", "32"),
    "unknown arch": _set_config("arch", "nope"),
    "shape overflow": _set_entry("tables/scale_table", "shape", [2**62, 2**62]),
    "negative offset": _set_entry("tables/scale_table", "offset", -8),
    "string dtype": _set_entry("params/g_s_0/bias", "dtype", "<U1"),
    "object dtype": _set_entry("params/g_s_0/bias", "dtype", "|O"),
    "not a dtype": _set_entry("params/g_s_0/bias", "dtype", "float128x"),
    "float64 params": _raw(('"<f4"', '"<f8"')),
    "name not a string": _set_entry("params/g_s_0/bias", "name", 1.5),
    "NaN parameter": _poke("params/g_s_0/bias", np.nan),
    "huge tables": _huge_tables,
    "too few tables": _drop("tables/gaussian"),
    "no scale table": _drop("tables/scale_table"),
    "decreasing scales": _poke("tables/scale_table", 1e9),
    "zero frequency": _poke("tables/bottleneck/packed_freqs", 0),
    "entropy graph without constants": _drop("entropy/"),
    "entropy graph of another model": _raw(('"channels": 32', '"channels": 31')),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_packages_are_package_errors(package_parts, case):
    blob = _crafted(*package_parts, CRAFTED[case])
    tracemalloc.start()
    try:
        with pytest.raises(PackageError):
            ModelPackage.from_bytes(blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(blob) + 2**24  # no allocation for what the header only claims


def _mutations(header, body, rng):
    """Random edits of one header field (to a hostile value) or of one array's first element."""
    values = [0, -1, 2**40, 1e308, None, "x", [], {}, [1, 2], True, "<f8", "|O", ">f4", "<i4", 2**63, 0.5]
    fields = [("config", k) for k in header["config"]]
    fields += [("arrays", i, k) for i in range(len(header["arrays"])) for k in header["arrays"][i]]
    while True:
        if rng.random() < 0.7:
            path = fields[rng.integers(len(fields))]
            value = values[rng.integers(len(values))]

            def edit(h, b, path=path, value=value):
                node = h
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = value
        else:
            entry = header["arrays"][rng.integers(len(header["arrays"]))]
            dtype = np.dtype(entry["dtype"])
            extremes = [np.iinfo(dtype).min, np.iinfo(dtype).max] if dtype.kind in "iu" else [np.nan, np.inf, 60000]
            value = [*extremes, -1 if dtype.kind != "u" else 1, 0][rng.integers(len(extremes) + 2)]
            edit = _poke(entry["name"], value)
        yield _crafted(header, body, edit)


def test_mutated_packages_load_and_code_or_are_package_errors(package_parts, rng):
    """A small mutation fuzzer: nothing but PackageError at load, nothing but typed errors after."""
    pixels = smooth_image(rng, 20, 30)
    outcomes = {"loaded": 0, "refused": 0}
    for _, blob in zip(range(60), _mutations(*package_parts, np.random.default_rng(0))):
        try:
            package = ModelPackage.from_bytes(blob)
        except PackageError:
            outcomes["refused"] += 1
            continue
        outcomes["loaded"] += 1
        if outcomes["loaded"] <= 4:  # coding compiles each package's networks: a few suffice
            try:
                decompress(package, compress(package, pixels))
            except JaxlicError:
                pass
    assert outcomes["refused"] > 20 and outcomes["loaded"] > 5, outcomes
