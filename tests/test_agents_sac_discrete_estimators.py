"""Discrete SAC trains with the categorical estimators of gradest chosen by name on the command
line (``experiments/configs/estimators.py``): REBAR, RELAX, Gumbel-Rao, the unordered set and
measure-valued derivatives, each through the same ``--config.actor_estimator`` as the others.
(Their gradients agree with exact enumeration: ``test_agents_sac_gradients.py``.)"""

import chex
import jax
import numpy as np
import pytest

from agents import rollout, sac
from experiments import configs
from experiments.configs import sac as sac_config

NEW_CATEGORICAL = ("rebar", "relax", "gumbel_rao", "unordered_set", "measure_valued")
# Two train in the fast suite (a stateful estimator and one that draws k actions per call); the
# other three, whose gradients the agreement test checks fast, train in the slow suite.
FAST = ("rebar", "unordered_set")
TINY = dict(actor_widths=(8,), critic_widths=(8,), batch_size=8, warmup_steps=16,
            buffer_size=64, total_steps=64, num_envs=1, updates_per_step=1, log_interval=24,
            eval_episodes=2)


pytestmark = pytest.mark.usefixtures("fast_compiles")


def _stages(name, **overrides):
    entry, config = configs.make_config("sac", "CartPole-v1",
                                        {**TINY, "actor_estimator": name, **overrides}, quiet=True)
    env, env_params = configs.make_env(entry, "sac", "CartPole-v1")
    return config, configs.make_stages(entry, config, env, env_params)


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in NEW_CATEGORICAL])
def test_discrete_sac_trains_with_each_categorical_estimator_by_name(name):
    config, stages = _stages(name)
    carry = jax.jit(stages.init)(jax.random.key(0))
    initial = carry.state.estimator_state
    carry, metrics = jax.jit(stages.run, static_argnums=2)(carry, 0, stages.num_logs)
    chex.assert_tree_all_finite(metrics)
    chex.assert_tree_all_finite(stages.output(carry)[0])
    state = carry.state.estimator_state
    chex.assert_tree_all_finite(state)
    updates = int(carry.state.num_updates)
    assert updates == sac.sizes(config).num_updates * config.updates_per_step > 0
    if name in ("rebar", "relax"):
        # update ran: the control variate's φ took a step on its variance gradient each update
        # (Adam's step counter counts them), and moved.
        assert int(state.opt_state[0].count) == updates
        moved = jax.tree.map(lambda a, b: np.any(np.asarray(a) != np.asarray(b)),
                             initial.phi, state.phi)
        assert all(jax.tree.leaves(moved)), moved
    if name == "gumbel_rao":
        assert int(state.step) == updates   # its temperature schedule's step


def test_unordered_set_draws_num_action_samples_sets_of_k_actions():
    a = sac_config.actor(sac_config.SACRunConfig(actor_estimator="unordered_set",
                                                 unordered_set_samples=3,
                                                 num_action_samples=2),
                         rollout.ActionSpec(True, 3))
    assert a.num_action_samples == 6 and a.estimator.traits.samples_per_call == 3
