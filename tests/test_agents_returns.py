"""Returns, GAE and λ-returns against hand-computed cases, a plain-loop reference and rlax.

rlax (an independent implementation, a test dependency) has no episode boundaries inside a
trajectory: its discount_t = γ (1 − terminated) ends an episode at a termination, and the value it
bootstraps from is that of the next step's state. So the reference cuts each trajectory into its
episodes and calls rlax once per episode, bootstrapping a truncated episode (and the rollout's
unfinished tail) from V of its final, pre-reset observation, as DESIGN.md §4 asks.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from agents import returns

# Behaviour, not speed: small programs compiled once each, where XLA's optimizations cost more
# time than they save.
pytestmark = pytest.mark.usefixtures("fast_compiles")


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
    # λ = 0: the one-step TD target r + γ (1 − term) V(s'), step by step:
    # [1 + ½·10, 1 (terminated), 1 + ½·30, 1 + ½·40].
    td = returns.lambda_returns(REWARDS, NEXT_VALUES, TERMINATED, TRUNCATED, GAMMA, 0.0)
    chex.assert_trees_all_close(td, jnp.array([6.0, 1.0, 16.0, 21.0]))
    one_step = jax.vmap(returns.td_target, in_axes=(0, 0, 0, None))(
        REWARDS, NEXT_VALUES, TERMINATED, GAMMA)
    chex.assert_trees_all_close(one_step, jnp.array([6.0, 1.0, 16.0, 21.0]))
    # λ = 1: the reward-to-go, bootstrapped only where the trajectory was cut. G3 = 21 and
    # G2 = 16 as above (their episodes end there), G1 = 1, G0 = 1 + ½·G1 = 1.5: V(s_1) = 10
    # no longer enters G0.
    mc = returns.lambda_returns(REWARDS, NEXT_VALUES, TERMINATED, TRUNCATED, GAMMA, 1.0)
    chex.assert_trees_all_close(mc, jnp.array([1.5, 1.0, 16.0, 21.0]))


def test_termination_wins_over_truncation():
    # A terminal state reached exactly at the time limit has value 0: no bootstrap.
    got = returns.discounted_returns(jnp.array([1.0]), jnp.array([True]), jnp.array([True]),
                                     jnp.array([100.0]), 0.9)
    chex.assert_trees_all_close(got, jnp.array([1.0]))


def _random_trajectories(seed, num_envs=4, t_len=40):
    """Rewards, V(s_t), V of each step's pre-reset next observation, terminations and
    truncations (never both) of ``num_envs`` trajectories, time-major."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(t_len, num_envs)).astype(np.float32)
    v = rng.normal(size=(t_len + 1, num_envs)).astype(np.float32)
    term = rng.random((t_len, num_envs)) < 0.1
    trunc = (rng.random((t_len, num_envs)) < 0.1) & ~term
    final = rng.normal(size=(t_len, num_envs)).astype(np.float32)
    # The next step's value unless the episode ended (then the pre-reset observation's value).
    nv = np.where(term | trunc, final, v[1:])
    return r, v[:-1], nv, term, trunc


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
    r, v, nv, term, trunc = _random_trajectories(0)
    adv, _ = jax.vmap(returns.gae, in_axes=(1, 1, 1, 1, 1, None, None), out_axes=1)(
        r, v, nv, term, trunc, 0.9, 0.8)
    ref = np.stack([_reference_gae(r[:, i], v[:, i], nv[:, i], term[:, i], trunc[:, i], 0.9, 0.8)
                    for i in range(r.shape[1])], axis=1)
    np.testing.assert_allclose(adv, ref, rtol=1e-5, atol=1e-5)


def _episodes(terminated, truncated):
    """(first, last) step of each episode of a trajectory; the last one may be unfinished."""
    ends = np.flatnonzero(terminated | truncated).tolist()
    if not ends or ends[-1] != terminated.size - 1:
        ends.append(terminated.size - 1)
    starts = [0] + [e + 1 for e in ends[:-1]]
    return list(zip(starts, ends))


def _rlax_by_episode(kind, r, v, nv, term, trunc, gamma, lam):
    """``kind`` (gae advantages, lambda_returns or discounted_returns) of one trajectory, from
    rlax, one episode at a time. Inside an episode V(s_{t+1}) = nv[t] = v[t + 1]; its last step
    bootstraps from nv[last] with discount γ, or with 0 if it terminated."""
    out = np.zeros_like(r)
    for a, b in _episodes(term, trunc):
        seg = slice(a, b + 1)
        discount = jnp.asarray(gamma * (1.0 - term[seg]), jnp.float32)
        if kind == "gae":
            values = jnp.asarray(np.append(v[seg], nv[b]))
            out[seg] = rlax.truncated_generalized_advantage_estimation(r[seg], discount, lam,
                                                                        values)
        elif kind == "lambda_returns":
            out[seg] = rlax.lambda_returns(r[seg], discount, nv[seg], lam)
        else:
            out[seg] = rlax.discounted_returns(r[seg], discount, nv[b])
    return out


def _ours(kind, r, v, nv, term, trunc, gamma, lam):
    if kind == "gae":
        return returns.gae(r, v, nv, term, trunc, gamma, lam)[0]
    if kind == "lambda_returns":
        return returns.lambda_returns(r, nv, term, trunc, gamma, lam)
    return returns.discounted_returns(r, term, trunc, nv, gamma)


@pytest.mark.parametrize("kind", ["gae", "lambda_returns", "discounted_returns"])
@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (0.5, 1.0)])
@pytest.mark.parametrize("use_jit", [False, True], ids=["nojit", "jit"])
def test_agrees_with_rlax_across_episode_boundaries(kind, gamma, lam, use_jit):
    r, v, nv, term, trunc = _random_trajectories(int(gamma * 100) + int(lam * 10))
    assert term.any() and trunc.any() and not (term & trunc).any()
    fn = jax.vmap(lambda *xs: _ours(kind, *xs, gamma, lam), in_axes=1, out_axes=1)
    got = _jit_or_not(fn, use_jit)(r, v, nv, term, trunc)
    ref = np.stack([_rlax_by_episode(kind, r[:, i], v[:, i], nv[:, i], term[:, i], trunc[:, i],
                                     gamma, lam) for i in range(r.shape[1])], axis=1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_lambda_returns_with_rlax_per_step_lambda():
    """One rlax call over a whole trajectory: rlax's Gₜ = rₜ + γₜ ((1 − λₜ) V(sₜ₊₁) + λₜ Gₜ₊₁) with
    γₜ = γ (1 − term_t) and λₜ = λ (1 − trunc_t) is our recursion, a truncation being the one step
    whose return stops at its bootstrap value."""
    r, _, nv, term, trunc = _random_trajectories(7, num_envs=1)
    r, nv, term, trunc = r[:, 0], nv[:, 0], term[:, 0], trunc[:, 0]
    ours = returns.lambda_returns(r, nv, term, trunc, 0.95, 0.7)
    ref = rlax.lambda_returns(r, jnp.asarray(0.95 * (1.0 - term), jnp.float32), nv,
                              jnp.asarray(0.7 * (1.0 - trunc), jnp.float32))
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_complete_episode_mask():
    done_term = jnp.array([False, True, False, False, False, False])
    done_trunc = jnp.array([False, False, False, False, True, False])
    got = returns.complete_episode_mask(done_term, done_trunc)
    np.testing.assert_array_equal(got, [True, True, True, True, True, False])


def test_shapes_are_checked():
    with pytest.raises(AssertionError):
        returns.lambda_returns(jnp.zeros(3), jnp.zeros(4), jnp.zeros(3, bool), jnp.zeros(3, bool),
                               0.9, 0.9)
