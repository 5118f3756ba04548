"""Every agent's update, and the loop's resumable run, trace once across repeated calls
(``chex.assert_max_traces``): nothing that changes between calls (a key, a state, a log-interval
index) is baked into the program, so a long run or a resumed one never recompiles."""

import chex
import gymnax
import jax
import jax.numpy as jnp
import pytest

import gradest
from agents import actor_critic, ppo, reinforce, sac

ON_POLICY = dict(num_envs=2, num_steps=8, total_steps=2 * 8 * 4, log_interval=2, eval_episodes=2,
                 actor_widths=(8,), critic_widths=(8,), verbose=False)
SAC = dict(actor_widths=(8,), critic_widths=(8,), batch_size=8, warmup_steps=16, buffer_size=64,
           total_steps=16 + 4 * 4, log_interval=4, eval_episodes=2, verbose=False)


# Tiny programs compiled once each: XLA's optimizations would cost more than they save.
pytestmark = pytest.mark.usefixtures("fast_compiles")


def _build(name):
    """(make_agent, make_stages) of one agent with tiny sizes, as functions of nothing."""
    if name == "sac":
        env, params = gymnax.make("Pendulum-v1")
        config = sac.SACConfig(**SAC)
        return (lambda: sac.make_agent(config, env, params, gradest.pathwise()),
                lambda: sac.make_stages(config, env, params, gradest.pathwise()))
    env, params = gymnax.make("CartPole-v1")
    module, config = {"ppo": (ppo, ppo.PPOConfig(num_minibatches=2, **ON_POLICY)),
                      "reinforce": (reinforce, reinforce.ReinforceConfig(**ON_POLICY)),
                      "actor_critic": (actor_critic,
                                       actor_critic.ActorCriticConfig(**ON_POLICY))}[name]
    return (lambda: module.make_agent(config, env, params),
            lambda: module.make_stages(config, env, params))


@pytest.mark.parametrize("name", ["ppo", "reinforce", "actor_critic", "sac"])
def test_update_and_stages_trace_once(name):
    chex.clear_trace_counter()   # the wrappers below share their source across the cases
    make_agent, make_stages = _build(name)
    agent = make_agent()

    def agent_update(state, key):
        return agent.update(state, key)

    update = jax.jit(chex.assert_max_traces(agent_update, n=1))
    state = jax.jit(agent.init)(jax.random.key(0))
    for i in range(3):
        state, metrics = update(state, jax.random.key(i + 1))
    chex.assert_tree_all_finite(metrics)

    stages = make_stages()

    def run_one_interval(carry, start):
        return stages.run(carry, start, 1)

    run = jax.jit(chex.assert_max_traces(run_one_interval, n=1))
    carry = jax.jit(stages.init)(jax.random.key(0))
    for start in range(stages.num_logs):
        carry, _ = run(carry, jnp.asarray(start))
