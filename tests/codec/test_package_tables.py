"""The tables `build_tables` puts in a package: the default scale table and the shared tail mass."""

import jax.numpy as jnp
import numpy as np

from jaxlic.entropy.gaussian import default_scale_table
from jaxlic.entropy.tables import TAIL_MASS


def test_packages_use_the_default_scale_table(packages):
    """`default_scale_table()` is the table packages get (it defaulted to CompressAI's 64 while
    build_tables used 256)."""
    np.testing.assert_array_equal(packages["bmshj2018-hyperprior"].scale_table, default_scale_table())


def test_solved_quantiles_leave_the_shared_tail_mass(packages):
    """One tail mass (`jaxlic.entropy.tables.TAIL_MASS`) sizes the factorized tables: the
    cumulative at the solved lower and upper quantiles is TAIL_MASS / 2 and 1 - TAIL_MASS / 2."""
    package = packages["bmshj2018-factorized"]
    quantiles = np.asarray(package.params["entropy_bottleneck"]["quantiles"])
    logits = package.model.apply({"params": package.params}, jnp.asarray(quantiles, jnp.float32),
                                 method=lambda m, x: m.entropy_bottleneck.logits_cumulative(x))
    logits = np.asarray(logits, np.float64)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[..., 0])), TAIL_MASS / 2, rtol=1e-2)
    np.testing.assert_allclose(1 / (1 + np.exp(logits[..., 2])), TAIL_MASS / 2, rtol=1e-2)
