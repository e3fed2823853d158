"""jaxlic: learned image compression in JAX."""
