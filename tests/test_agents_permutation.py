"""``agents._common.permutation``: a permutation of range(n), uniformly distributed (fixed seeds;
tolerances from the sampling distribution, stated at each assert)."""

import itertools
import math

import jax
import numpy as np
import pytest
import scipy.stats

from agents import _common, prng_key


@pytest.mark.parametrize("n", [1, 2, 5, 128, 512, 1000, 70_000])
def test_is_a_permutation(n):
    perm = np.asarray(jax.jit(_common.permutation, static_argnums=1)(prng_key(n), n))
    assert perm.dtype == np.int32 and perm.shape == (n,)
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_small_n_is_uniform_over_all_permutations():
    # n = 4: 24 permutations, 48,000 draws (2,000 expected each). Pearson's χ² with 23 degrees
    # of freedom; a uniform sampler falls below the 1 − 10⁻⁴ quantile but once in 10⁴ seeds.
    n, draws = 4, 48_000
    perms = np.asarray(jax.jit(jax.vmap(lambda k: _common.permutation(k, n)))(
        jax.random.split(prng_key(0), draws)))
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    counts = np.bincount([index[tuple(p)] for p in perms], minlength=math.factorial(n))
    chi2 = np.sum((counts - draws / 24) ** 2 / (draws / 24))
    assert chi2 < scipy.stats.chi2.ppf(1 - 1e-4, 23), counts


def test_rollout_sized_positions_are_uniform():
    # n = 512 (PPO's CartPole rollout), 4,000 draws. Where element 0 and element 511 land is
    # uniform on 0..511: mean 255.5, standard error √((n² − 1)/12 / draws) ≈ 2.3; 5 SE allowed.
    # Elements 0 and 1 swap order half the time: standard error 0.5/√draws ≈ 0.008; 5 SE.
    n, draws = 512, 4_000
    perms = np.asarray(jax.jit(jax.vmap(lambda k: _common.permutation(k, n)))(
        jax.random.split(prng_key(1), draws)))
    where = np.argsort(perms, axis=1)   # where[d, i]: the position of element i in draw d
    se = math.sqrt((n * n - 1) / 12 / draws)
    for element in (0, n - 1):
        assert abs(where[:, element].mean() - (n - 1) / 2) < 5 * se
    assert abs(np.mean(where[:, 0] < where[:, 1]) - 0.5) < 5 * 0.5 / math.sqrt(draws)


def test_bad_size():
    with pytest.raises(ValueError, match="positive"):
        _common.permutation(prng_key(0), 0)
