"""jaxlic: learned image compression in JAX, from training to FPGA deployment.

    import jaxlic
    package = jaxlic.load("model.jxlm")        # or jaxlic.load_pretrained("ref-hyperprior", 3)
    data = jaxlic.compress(package, image)      # uint8 H x W x 3 -> bytes
    image = jaxlic.decompress(package, data)
"""

import os
import sys

__version__ = "0.1.0"

# XLA CPU sends convolutions to YNNPACK by default, which is 2-4x slower than Eigen for the
# weight gradients of these models; the flag must be set before jax starts.
_XLA_CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
if "jax" not in sys.modules and _XLA_CPU_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_CPU_FLAG}".strip()

_LAZY = {
    "load": ("jaxlic.codec", "load"),
    "compress": ("jaxlic.codec", "compress"),
    "decompress": ("jaxlic.codec", "decompress"),
    "get_model": ("jaxlic.models", "get_model"),
    "ModelPackage": ("jaxlic.codec", "ModelPackage"),
    "load_pretrained": ("jaxlic.pretrained", "load_pretrained"),
}


def __getattr__(name):
    """Import the heavy parts (jax, flax) only when they are first used."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'jaxlic' has no attribute {name!r}")
