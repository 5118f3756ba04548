"""Returns over one trajectory: λ-returns, GAE and discounted reward-to-go.

All functions are unbatched over time: every argument has shape ``[T]`` (one environment's
trajectory); callers ``jax.vmap`` over environments. The recursion runs backwards with
``lax.scan(reverse=True)``.

Conventions (gymnax 1.x; DESIGN.md §4). For step t:

* ``rewards[t]``: r_t, received after acting in s_t;
* ``terminated[t]``: s_{t+1} is terminal, so nothing follows it: no bootstrap;
* ``truncated[t]``: the time limit cut the episode after step t. s_{t+1} is *not* terminal, so its
  value still counts, but the following step belongs to a new episode: bootstrap from the value of
  the pre-reset observation and cut the recursion;
* ``next_values[t]``: V(s_{t+1}) where s_{t+1} is the observation that step t produced *before*
  any auto-reset (gymnax's ``info["final_observation"]``), so at a truncation it is the value of
  the final observation, and at t = T − 1 it bootstraps the cut-off end of the rollout.

Termination wins over truncation when both hold (the state is terminal, its value is 0).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array


def lambda_returns(rewards: Array, next_values: Array, terminated: Array, truncated: Array,
                   gamma: float | Array, lam: float | Array) -> Array:
    """TD(λ) returns with termination and truncation.

        G_t = r_t + γ (1 − term_t) [ V(s_{t+1}) + λ (1 − done_t) (G_{t+1} − V(s_{t+1})) ],

    with done_t = term_t ∨ trunc_t (the recursion never crosses an episode boundary) and, past the
    end of the rollout, G_T = V(s_T) (the λ-term vanishes there). λ = 0 gives the one-step TD
    target r + γ V(s'); λ = 1 the Monte Carlo reward-to-go bootstrapped only where the trajectory
    was cut (seed 004's R_t when the cut values are 0).
    """
    chex.assert_rank([rewards, next_values, terminated, truncated], 1)
    chex.assert_equal_shape([rewards, next_values, terminated, truncated])
    not_term = 1.0 - terminated.astype(rewards.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(rewards.dtype)
    # Past the rollout's end G_T = V(s_T): the λ-term of step T − 1 is then zero.
    last = next_values[-1]

    def step(next_return, xs):
        r, v_next, nt, nd = xs
        g = r + gamma * nt * (v_next + lam * nd * (next_return - v_next))
        return g, g

    _, returns = jax.lax.scan(step, last, (rewards, next_values, not_term, not_done),
                              reverse=True)
    return returns


def td_target(reward: Array, next_value: Array, terminated: Array, gamma: float | Array) -> Array:
    """One-step TD target r + γ (1 − term) V(s') for one transition (seed 004's estimate of
    Q(s, a)); ``lambda_returns`` with λ = 0. A truncation needs no flag: V(s') is already the
    value of the pre-reset observation."""
    chex.assert_rank([reward, next_value, terminated], 0)
    return reward + gamma * (1.0 - terminated.astype(reward.dtype)) * next_value


def gae(rewards: Array, values: Array, next_values: Array, terminated: Array, truncated: Array,
        gamma: float | Array, lam: float | Array) -> tuple[Array, Array]:
    """Generalized advantage estimation (Schulman et al., 2016) and its value targets.

        δ_t = r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t),
        Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},

    which equals G^λ_t − V(s_t) (``lambda_returns``); the targets for the critic are G^λ_t.

    Returns:
      ``(advantages, targets)``, each ``[T]``.
    """
    chex.assert_equal_shape([rewards, values])
    targets = lambda_returns(rewards, next_values, terminated, truncated, gamma, lam)
    return targets - values, targets


def discounted_returns(rewards: Array, terminated: Array, truncated: Array,
                       cut_values: Array, gamma: float | Array) -> Array:
    """Discounted reward-to-go R_t = Σ_{t' ≥ t} γ^{t'−t} r_{t'} within each episode (seed 004).

    At a truncation (and at the end of the rollout) the sum continues with γ ``cut_values[t]``,
    the value of the observation where the trajectory was cut; pass zeros for the pure Monte Carlo
    return of the played game (REINFORCE without a critic). Termination contributes nothing.
    """
    return lambda_returns(rewards, cut_values, terminated, truncated, gamma, 1.0)


def complete_episode_mask(terminated: Array, truncated: Array) -> Array:
    """Whether step t's episode ends within the rollout (at or after t).

    Reward-to-go is an exact Monte Carlo return only for those steps; the unfinished tail of each
    rollout continues in the next one, where its remaining steps are complete.
    """
    chex.assert_rank([terminated, truncated], 1)
    done = jnp.logical_or(terminated, truncated)

    def step(later_done, d):
        complete = jnp.logical_or(d, later_done)
        return complete, complete

    _, mask = jax.lax.scan(step, jnp.zeros((), bool), done, reverse=True)
    return mask
