"""Returns, GAE and λ-returns against hand-computed cases and a plain-loop reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import returns

# One trajectory of T = 4 steps, γ = 0.5: a termination after step 1, a truncation after step 2
# (the final observation's value is 30), and the rollout cut after step 3 (V(s_4) = 40).
REWARDS = jnp.array([1.0, 1.0, 1.0, 1.0])
VALUES = jnp.array([2.0, 10.0, 6.0, 8.0])
# V of each step's pre-reset next observation; next_values[0] = V(s_1) = VALUES[1].
NEXT_VALUES = jnp.array([10.0, 20.0, 30.0, 40.0])
TERMINATED = jnp.array([False, True, False, False])
TRUNCATED = jnp.array([False, False, True, False])
GAMMA = 0.5


def _jit_or_not(fn, use_jit):
    return jax.jit(fn) if use_jit else fn


@pytest.mark.parametrize("use_jit", [False, True])
def test_discounted_returns_hand_computed(use_jit):
    # G3 = 1 + ½·40 (rollout cut: bootstrap);  G2 = 1 + ½·30 (truncated: the final observation's
    # value, then the recursion stops);  G1 = 1 (terminated: nothing follows);  G0 = 1 + ½·G1.
    fn = _jit_or_not(returns.discounted_returns, use_jit)
    got = fn(REWARDS, TERMINATED, TRUNCATED, NEXT_VALUES, GAMMA)
    chex.assert_trees_all_close(got, jnp.array([1.5, 1.0, 16.0, 21.0]))


def test_discounted_returns_pure_monte_carlo():
    # Zero cut values: the return of the played game, Σ γ^k r within each episode.
    got = returns.discounted_returns(REWARDS, TERMINATED, TRUNCATED, jnp.zeros(4), GAMMA)
    chex.assert_trees_all_close(got, jnp.array([1.5, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize("use_jit", [False, True])
def test_gae_hand_computed(use_jit):
    # δ = r + γ (1 − term) V' − V = [1 + 5 − 2, 1 − 10, 1 + 15 − 6, 1 + 20 − 8] = [4, −9, 10, 13];
    # Â3 = 13, Â2 = 10 (truncated: cut), Â1 = −9 (terminated), Â0 = 4 + γλ·(−9) = 1.75 (λ = ½).
    fn = _jit_or_not(returns.gae, use_jit)
    adv, targets = fn(REWARDS, VALUES, NEXT_VALUES, TERMINATED, TRUNCATED, GAMMA, 0.5)
    chex.assert_trees_all_close(adv, jnp.array([1.75, -9.0, 10.0, 13.0]))
    chex.assert_trees_all_close(targets, jnp.array([3.75, 1.0, 16.0, 21.0]))


def test_lambda_returns_endpoints():
    # λ = 0: the one-step TD target; λ = 1: the bootstrapped reward-to-go.
    td = returns.lambda_returns(REWARDS, NEXT_VALUES, TERMINATED, TRUNCATED, GAMMA, 0.0)
    expected_td = jax.vmap(returns.td_target, in_axes=(0, 0, 0, None))(
        REWARDS, NEXT_VALUES, TERMINATED, GAMMA)
    chex.assert_trees_all_close(td, expected_td)
    chex.assert_trees_all_close(td, jnp.array([6.0, 1.0, 16.0, 21.0]))
    mc = returns.lambda_returns(REWARDS, NEXT_VALUES, TERMINATED, TRUNCATED, GAMMA, 1.0)
    chex.assert_trees_all_close(
        mc, returns.discounted_returns(REWARDS, TERMINATED, TRUNCATED, NEXT_VALUES, GAMMA))


def test_termination_wins_over_truncation():
    # A terminal state reached exactly at the time limit has value 0: no bootstrap.
    got = returns.discounted_returns(jnp.array([1.0]), jnp.array([True]), jnp.array([True]),
                                     jnp.array([100.0]), 0.9)
    chex.assert_trees_all_close(got, jnp.array([1.0]))


def _reference_gae(r, v, nv, term, trunc, gamma, lam):
    """Plain Python loop: δ-recursion of Schulman et al. with episode cuts."""
    adv = np.zeros_like(r)
    running = 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + gamma * (1.0 - term[t]) * nv[t] - v[t]
        cut = term[t] or trunc[t]
        running = delta + gamma * lam * (0.0 if cut else running)
        adv[t] = running
    return adv


def test_gae_matches_reference_on_random_trajectories():
    rng = np.random.default_rng(0)
    num_envs, t_len = 5, 30
    r = rng.normal(size=(t_len, num_envs)).astype(np.float32)
    v = rng.normal(size=(t_len + 1, num_envs)).astype(np.float32)
    term = rng.random((t_len, num_envs)) < 0.1
    trunc = (rng.random((t_len, num_envs)) < 0.1) & ~term
    final = rng.normal(size=(t_len, num_envs)).astype(np.float32)
    # V of the next observation: the next step's value unless the episode ended (then the
    # pre-reset observation's value).
    nv = np.where(term | trunc, final, v[1:])
    adv, _ = jax.vmap(returns.gae, in_axes=(1, 1, 1, 1, 1, None, None), out_axes=1)(
        r, v[:-1], nv, term, trunc, 0.9, 0.8)
    ref = np.stack([_reference_gae(r[:, i], v[:-1, i], nv[:, i], term[:, i], trunc[:, i], 0.9, 0.8)
                    for i in range(num_envs)], axis=1)
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-5)


def test_complete_episode_mask():
    done_term = jnp.array([False, True, False, False, False, False])
    done_trunc = jnp.array([False, False, False, False, True, False])
    got = returns.complete_episode_mask(done_term, done_trunc)
    np.testing.assert_array_equal(got, [True, True, True, True, True, False])


def test_shapes_are_checked():
    with pytest.raises(AssertionError):
        returns.lambda_returns(jnp.zeros(3), jnp.zeros(4), jnp.zeros(3, bool), jnp.zeros(3, bool),
                               0.9, 0.9)
