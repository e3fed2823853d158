"""Quantization: fake quantization, pruning, the integer graph and its NumPy reference."""
