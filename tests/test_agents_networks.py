"""``agents.networks.orthogonal`` is flax's orthogonal initializer computed without LAPACK: the
same matrices for the same key (the call it replaces, ``jax.nn.initializers.orthogonal``), with
orthonormal columns or rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import networks

# Tall, wide, square, a single column, and the sizes the agents use.
SHAPES = [(4, 64), (64, 64), (64, 2), (256, 256), (3, 1), (17, 5)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_orthogonal_equals_flax_initializer(shape, seed):
    key = jax.random.key(seed)
    ours = networks.orthogonal(1.5)(key, shape)
    theirs = jax.nn.initializers.orthogonal(1.5)(key, shape)
    # float32 QRs by two algorithms: agreement to ~10 ulp of the entries, far below the entries'
    # own size (≥ 1/√256 on average), so a sign flip or another column order would fail.
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    w = networks.orthogonal(2.0)(jax.random.key(7), shape) / 2.0
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, jnp.eye(gram.shape[0]), atol=1e-5)


def test_orthogonal_rejects_a_vector_shape():
    with pytest.raises(ValueError, match="rank"):
        networks.orthogonal()(jax.random.key(0), (5,))
