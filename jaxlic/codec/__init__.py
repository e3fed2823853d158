"""Real bitstreams: model packages, the bitstream container, compress/decompress."""

from jaxlic.codec.api import Latents, compress, decode_latents, decompress
from jaxlic.codec.bitstream import Bitstream
from jaxlic.codec.package import ModelPackage, build_tables


def load(path) -> ModelPackage:
    """Open a model package file (config, parameters and coding tables)."""
    return ModelPackage.load(path)


__all__ = [
    "Bitstream", "Latents", "ModelPackage", "build_tables", "compress", "decode_latents", "decompress", "load",
]
