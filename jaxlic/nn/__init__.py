"""Layers of the Balle transforms: GDN family and fast strided convolutions."""

from jaxlic.nn.bound import lower_bound
from jaxlic.nn.conv import Conv, ConvTranspose
from jaxlic.nn.gdn import GDN

__all__ = ["Conv", "ConvTranspose", "GDN", "lower_bound"]
