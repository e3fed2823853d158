"""Sandwiched compression: neural pre/post-processors around a standard codec (JPEG)."""
