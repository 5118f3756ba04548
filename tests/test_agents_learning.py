"""Short learning tests with the tuned configs of ``experiments/configs`` (``pytest -m slow``).

Thresholds sit below the targets measured with 8 seeds (see the experiments' summaries), so that
4 seeds pass reliably; each test states what it checks.
"""

import gymnax
import jax
import numpy as np
import pytest

from experiments import configs

pytestmark = pytest.mark.slow

NUM_SEEDS = 4


def _train(agent, env_id, total_steps, num_seeds=NUM_SEEDS, **overrides):
    entry = configs.REGISTRY[agent]
    config = entry.get_config(env_id)
    config.total_steps = total_steps
    config.verbose = False
    for k, v in overrides.items():
        config[k] = v
    env, params = gymnax.make(env_id)
    # Plain jax.jit: learning does not depend on the launcher's opt-in compiler options.
    train = jax.jit(jax.vmap(entry.make_train(configs.build(entry, config), env, params)))
    out = train(jax.random.split(jax.random.key(42), num_seeds))
    return jax.tree.map(np.asarray, out.metrics)


def test_ppo_solves_cartpole_in_100k_steps():
    # 8 seeds, as the target: a few seeds in 100 are still short of 500 at 10⁵ steps (96 seeds
    # of the tuned config through experiments.train: mean 494.2, the lowest 414.9; key 42 under
    # plain jax.jit: 497.3, the lowest 490.6), and with 4 seeds one such seed weighs twice.
    metrics = _train("ppo", "CartPole-v1", 100_000, num_seeds=8)
    assert metrics["eval_return"][:, -1].mean() >= 450.0


def test_actor_critic_learns_cartpole():
    metrics = _train("actor_critic", "CartPole-v1", 500_000)
    # 8 seeds of the target run all reach ≥ 498; with 4 seeds one slow seed can pull the mean
    # down to ~440, hence the margin.
    assert metrics["eval_return"][:, -1].mean() >= 400.0


def test_reinforce_learned_baseline_beats_no_baseline():
    """Seed 004: b(s) = V(s) lowers the actor gradient's variance and speeds up learning."""
    budget = 200_000
    learned = _train("reinforce", "CartPole-v1", budget, baseline="learned")
    plain = _train("reinforce", "CartPole-v1", budget, baseline="none")
    # Paired: on the same batches, (R − V(s)) ∇log π has a smaller variance than R ∇log π.
    assert learned["grad_variance"].mean() < 0.5 * learned["grad_variance_no_baseline"].mean()
    # Faster learning: a larger area under the evaluation curve.
    assert learned["eval_return"].mean() > plain["eval_return"].mean()
