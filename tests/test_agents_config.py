"""Each agent's config validates itself: every field has a check, and values no run can use are a
``ValueError`` with one line naming the field (and, for a choice, the allowed values)."""

import pytest
from flax import struct

import agents
from agents import sac
from experiments.configs.sac import SACRunConfig

CONFIGS = [agents.PPOConfig, agents.ReinforceConfig, agents.ActorCriticConfig, sac.SACConfig,
           SACRunConfig]


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_are_valid(config_cls):
    config_cls().validate()


@pytest.mark.parametrize("config_cls,overrides,message", [
    # Fields every on-policy agent shares (CommonConfig).
    (agents.PPOConfig, {"num_envs": 0}, "num_envs must be a positive integer, got 0"),
    (agents.PPOConfig, {"eval_every": 2.5}, "eval_every must be a positive integer, got 2.5"),
    (agents.PPOConfig, {"actor_widths": (64, -1)}, "actor_widths must be positive layer widths"),
    (agents.PPOConfig, {"activation": "sigmoid"}, "unknown activation 'sigmoid'; choose one of "
     "['tanh', 'relu', 'swish', 'silu', 'gelu', 'elu']"),
    (agents.PPOConfig, {"normalize_obs": "yes"}, "normalize_obs must be true or false"),
    (agents.PPOConfig, {"log_std_init": float("inf")}, "log_std_init must be a finite number"),
    (agents.PPOConfig, {"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
    (agents.PPOConfig, {"gamma": -0.1}, "gamma must lie in [0, 1], got -0.1"),
    (agents.PPOConfig, {"ent_coef": -0.01}, "ent_coef must be a finite number ≥ 0"),
    (agents.PPOConfig, {"max_grad_norm": float("nan")}, "max_grad_norm must be > 0 (inf: off)"),
    (agents.PPOConfig, {"reward_scale": 0.0}, "reward_scale must be a finite number > 0"),
    (agents.PPOConfig, {"total_steps": 100}, "less than one update"),
    # PPO's own.
    (agents.PPOConfig, {"clip_epsilon": 0.0}, "clip_epsilon must lie in (0, 1), got 0"),
    (agents.PPOConfig, {"clip_epsilon": 1.5}, "clip_epsilon must lie in (0, 1), got 1.5"),
    (agents.PPOConfig, {"gae_lambda": 2.0}, "gae_lambda must lie in [0, 1]"),
    (agents.PPOConfig, {"value_clip_epsilon": 0.0}, "value_clip_epsilon must be > 0"),
    (agents.PPOConfig, {"num_epochs": 0}, "num_epochs must be a positive integer"),
    (agents.PPOConfig, {"num_minibatches": 3}, "num_envs · num_steps = 512 is not divisible by "
     "num_minibatches = 3"),
    (agents.PPOConfig, {"vf_coef": float("nan")}, "vf_coef must be a finite number ≥ 0"),
    # REINFORCE's.
    (agents.ReinforceConfig, {"baseline": "optimal"}, "unknown baseline 'optimal'; choose one "
     "of ['none', 'moving_average', 'learned']"),
    (agents.ReinforceConfig, {"baseline_decay": 1.5}, "baseline_decay must lie in [0, 1]"),
    (agents.ReinforceConfig, {"num_steps": -1}, "num_steps must be a positive integer"),
    # Actor-critic's.
    (agents.ActorCriticConfig, {"vf_coef": -1.0}, "vf_coef must be a finite number ≥ 0"),
    (agents.ActorCriticConfig, {"normalize_advantages": 1}, "normalize_advantages must be true"),
    # SAC's.
    (sac.SACConfig, {"buffer_size": 0}, "buffer_size must be a positive integer"),
    (sac.SACConfig, {"batch_size": 512}, "warmup_steps=256 must cover one batch "
     "(batch_size=512)"),
    (SACRunConfig, {"actor_estimator": "reinforce"}, "unknown actor_estimator 'reinforce'; "
     "choose one of ['pathwise', 'score_function', 'zeroth_order', 'gumbel_softmax', "
     "'straight_through', 'gumbel_rao', 'exact', 'rebar', 'relax', 'unordered_set', "
     "'measure_valued']"),
    (SACRunConfig, {"actor_baseline": "mean"}, "unknown actor_baseline 'mean'; choose one of"),
    (sac.SACConfig, {"polyak": 1.01}, "polyak must lie in [0, 1]"),
    (sac.SACConfig, {"max_alpha": 0.0}, "max_alpha must be > 0 (inf: off), got 0"),
    (sac.SACConfig, {"init_alpha": -1.0}, "init_alpha must be a finite number > 0"),
    (SACRunConfig, {"zeroth_order_epsilon": 0.0}, "zeroth_order_epsilon must be a finite"),
    (SACRunConfig, {"gumbel_anneal_rate": -1e-4}, "gumbel_anneal_rate must be a finite number"),
    (SACRunConfig, {"rebar_temperature": 0.0}, "rebar_temperature must be a finite number > 0, "
     "got 0"),
    (SACRunConfig, {"rebar_scale": float("nan")}, "rebar_scale must be a finite number"),
    (SACRunConfig, {"control_variate_lr": -3e-3}, "control_variate_lr must be a finite number > 0"),
    (SACRunConfig, {"relax_hidden": 0}, "relax_hidden must be a positive integer, got 0"),
    (SACRunConfig, {"gumbel_rao_samples": 2.5}, "gumbel_rao_samples must be a positive integer"),
    (SACRunConfig, {"unordered_set_samples": 1}, "unordered_set_samples=1: unordered_set needs "
     "2 ≤ num_samples ≤ 6"),
    (SACRunConfig, {"unordered_set_samples": 7}, "unordered_set_samples=7: unordered_set needs "
     "2 ≤ num_samples ≤ 6"),
    (sac.SACConfig, {"target_entropy_ratio": 2.0}, "target_entropy_ratio must lie in [0, 1]"),
    (sac.SACConfig, {"total_steps": 100}, "leaves no update of 1 env steps after warmup_steps=256"),
])
def test_bad_values_are_one_line_errors_naming_the_field(config_cls, overrides, message):
    with pytest.raises(ValueError) as info:
        config_cls(**overrides).validate()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("config_cls,overrides", [
    (agents.PPOConfig, {"max_grad_norm": float("inf"), "value_clip_epsilon": float("inf"),
                        "gamma": 1.0, "gae_lambda": 0.0, "ent_coef": 0.0, "actor_widths": ()}),
    (sac.SACConfig, {"max_grad_norm": float("inf"), "max_alpha": float("inf"),
                     "final_lr_fraction": 0.0, "batch_size": 256, "warmup_steps": 256}),
])
def test_edge_values_that_mean_something_are_accepted(config_cls, overrides):
    """inf means "off" for the clips and the α cap; the interval ends are settings."""
    config_cls(**overrides).validate()


def test_stacked_configs_are_checked_element_by_element():
    stacked = agents.stack_configs([agents.PPOConfig(), agents.PPOConfig(learning_rate=-1.0)])
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0, got "
                                         r"\[0.00025, -1\]"):
        stacked.validate()
    agents.stack_configs([agents.PPOConfig(), agents.PPOConfig(gamma=0.9)]).validate()


def test_a_field_without_a_check_is_a_bug_of_the_config_class():
    @struct.dataclass
    class Extended(agents.PPOConfig):
        new_knob: float = 1.0

    with pytest.raises(TypeError, match=r"fields without a check \['new_knob'\]"):
        Extended().validate()
