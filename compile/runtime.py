"""The board runtime: open a deployment bundle and decode jaxlic bitstreams with it.

Entropy decoding runs on the host CPU (jaxlic's range coder with the package's tables); the
integer graph's host ops run in the bundle's TVM host library, or in the NumPy integer reference
where no TVM runtime exists (armv7 boards: apache-tvm ships no armv7 wheel); the VTA layers run
on a device: the functional simulator here, the board's VTA through the PYNQ driver there. They
are reached through one registered packed function, `jaxlic.vta_layer(x, index, out)`.

A sealed payload is opened in memory only. The host library, which TVM loads from a file, is
written to a private temporary folder and holds code only: weights are passed in as parameters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from compile.bundle import Bundle, read_bundle
from compile.vta.config import config_from_dict
from compile.vta.offload import VTALayer, run_layer
from compile.vta.program import Program
from jaxlic.codec.bitstream import Bitstream
from jaxlic.codec.package import ModelPackage
from jaxlic.errors import BundleError, IntegerizationError
from jaxlic.codec.decoders import check_integer_package

HOSTS = ("tvm", "numpy")
DEVICES = ("sim", "pynq")


class BundleDecoder:
    """Decodes the bitstreams of one model at one resolution with a bundle (a `GraphRunner`)."""

    def __init__(self, bundle: Bundle | str | Path, key=None, owner=None, device: str = "sim", host: str = "tvm"):
        bundle = bundle if isinstance(bundle, Bundle) else read_bundle(bundle)
        if device not in DEVICES or host not in HOSTS:
            raise BundleError(f"device must be one of {DEVICES} and host one of {HOSTS}, got {device!r}, {host!r}")
        payload = bundle.open_payload(key, owner)
        manifest = self.manifest = bundle.manifest
        try:
            self.package = ModelPackage.from_bytes(payload.package, f"{bundle.name} (payload)")
            self.graph = check_integer_package(self.package)
        except IntegerizationError as exc:
            raise BundleError(f"{bundle.name}: its model is not an integer decoder ({exc})") from None
        if self.package.fingerprint.hex() != manifest["package_fingerprint"]:
            raise BundleError(f"{bundle.name}: the payload's model is not the one the manifest names")
        self.config = config_from_dict(manifest["vta_config"], manifest["board"])
        self.layers = [_layer(entry, payload.programs, bundle.name) for entry in manifest["vta_layers"]]
        self.device, self._devices = device, {}
        self.resolution = tuple(manifest["resolution"])
        self._host = _TVMHost(bundle, self) if host == "tvm" else _ReferenceHost(self)

    def vta_layer(self, index: int, x: np.ndarray) -> np.ndarray:
        """Run offloaded layer `index` on the device (a fresh simulator, or the board's VTA)."""
        layer = self.layers[index]
        if self.device == "sim":
            return run_layer(layer, x)
        if index not in self._devices:  # one contiguous buffer per layer, allocated once
            from compile.vta.driver import open_device

            self._devices[index] = open_device(self.device, self.config, layer.program.dram_bytes)
        return run_layer(layer, x, self._devices[index])

    def run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Compute `outputs` of the integer graph (one decoder phase) from `inputs`."""
        return self._host.run(dict(inputs), tuple(outputs))

    def decode(self, data: bytes) -> np.ndarray:
        """The uint8 H x W x 3 image of a bitstream of this bundle's model and resolution."""
        from jaxlic.codec.api import decompress

        stream = Bitstream.from_bytes(bytes(data), self.package.fingerprint)
        if (stream.width, stream.height) != self.resolution:
            raise BundleError(f"the stream is {stream.width}x{stream.height}, this bundle decodes "
                              f"{self.resolution[0]}x{self.resolution[1]}; build a bundle with --resolution "
                              f"{stream.width}x{stream.height}")
        return decompress(self.package, data, backend=self)


def _layer(entry: dict, programs: dict[str, bytes], name: str) -> VTALayer:
    if entry["conv"] not in programs:
        raise BundleError(f"{name}: no VTA program for layer {entry['conv']}")
    program = Program.from_bytes(programs[entry["conv"]], f"{name}:{entry['conv']}")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
    return VTALayer(**fields, program=program)


class _ReferenceHost:
    """Host ops in the NumPy integer reference, VTA layers on the device."""

    def __init__(self, decoder: BundleDecoder):
        self.decoder = decoder

    def run(self, inputs: dict, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        from compile.vta.offload import run_graph

        return run_graph(self.decoder.graph, self.decoder.layers, inputs, outputs, self.decoder.vta_layer)


class _TVMHost:
    """Host ops in the bundle's TVM library; VTA layers through the registered packed function."""

    def __init__(self, bundle: Bundle, decoder: BundleDecoder):
        from compile.tvm import VTA_FUNCTION, HostModule, register_vta_function

        name = "host/x86_64.so"
        if name not in bundle.libraries:
            raise BundleError(f"{bundle.name} has no x86-64 host library ({sorted(bundle.libraries)})")
        register_vta_function(VTA_FUNCTION, decoder.vta_layer)  # the VM resolves it when created
        params = {n: decoder.graph.constants[n] for n in decoder.manifest["params"]}
        with tempfile.TemporaryDirectory(prefix="jaxlic-bundle-") as folder:
            library = Path(folder) / "host.so"
            library.write_bytes(bundle.libraries[name])
            self.module = HostModule(library, decoder.manifest["params"], params)

    def run(self, inputs: dict, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        return self.module.run(inputs, outputs)
