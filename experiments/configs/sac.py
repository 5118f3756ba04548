"""SAC configurations: ``agents.sac.SACConfig`` defaults and the actor's estimator by name
(``SACRunConfig``), then per-environment tuned values.

    python -m experiments.train --agent=sac --env=Pendulum-v1 --output_dir=/tmp/sac_pendulum
    python -m experiments.train --agent=sac --env=CartPole-v1 --output_dir=/tmp/sac_cartpole
    python -m experiments.train --agent=sac --env=Pendulum-v1 \
        --config.actor_estimator=score_function --config.actor_baseline=value ...
"""

from __future__ import annotations

import dataclasses

import ml_collections
from flax import struct

import gradest
from agents import rollout, sac, validation
from agents.config import static
from agents.sac import SACConfig
from experiments.configs import estimators
from experiments.configs._base import with_tuned


@struct.dataclass
class SACRunConfig(SACConfig):
    """``SACConfig`` and, by name, the actor's estimator and baseline with their
    hyperparameters (``experiments.configs.estimators``): what ``--config.<field>`` sets."""

    actor_estimator: str = static("pathwise")  # one of estimators.ESTIMATORS
    actor_baseline: str = static("none")  # score function only: one of estimators.BASELINES
    # K: actions scored per state by the score function (all baselines; the leave-one-out group)
    # and fresh actions averaged by the "mc_value" baseline (num_action_samples for the others).
    score_function_samples: int = static(4)
    zeroth_order_epsilon: float = static(0.01)  # smoothing scale ε in action space
    zeroth_order_directions: int = static(4)  # antithetic direction pairs per state
    gumbel_temperature: float = static(1.0)  # initial Gumbel-Softmax temperature τ₀ (seed 001)
    gumbel_anneal_rate: float = static(1e-4)  # τ_t = max(τ_min, τ₀ exp(−rate · updates))
    gumbel_min_temperature: float = static(0.5)  # τ_min
    # Gumbel-Rao: K conditional relaxations averaged in the backward pass (its τ: gumbel_*).
    gumbel_rao_samples: int = static(10)
    rebar_temperature: float = static(0.5)  # REBAR, RELAX: initial relaxation temperature λ
    rebar_scale: float = static(1.0)  # REBAR, RELAX: initial scale η of the relaxed f
    relax_hidden: int = static(16)  # RELAX: hidden units of the control variate's network r_ρ
    control_variate_lr: float = static(3e-3)  # REBAR, RELAX: Adam step size on φ (the variance)
    # Unordered set: k distinct actions per set, drawn without replacement (2 ≤ k ≤ 6 and at
    # most the number of actions); num_action_samples sets per state.
    unordered_set_samples: int = static(2)

    def field_checks(self) -> dict[str, validation.Check]:
        """``SACConfig``'s checks and those of the estimator fields."""
        v = validation
        return {
            **super().field_checks(),
            "actor_estimator": v.one_of(estimators.ESTIMATORS),
            "actor_baseline": v.one_of(estimators.BASELINES),
            "score_function_samples": v.positive_int, "zeroth_order_epsilon": v.positive,
            "zeroth_order_directions": v.positive_int, "gumbel_temperature": v.positive,
            "gumbel_anneal_rate": v.non_negative, "gumbel_min_temperature": v.positive,
            "gumbel_rao_samples": v.positive_int, "rebar_temperature": v.positive,
            "rebar_scale": v.finite, "relax_hidden": v.positive_int,
            "control_variate_lr": v.positive,
            "unordered_set_samples": _accepted_by(gradest.unordered_set),
        }


def _accepted_by(build) -> validation.Check:
    """The value must be one ``build(value)`` accepts: the estimator's own check, with its
    message."""
    def check(name, value):
        try:
            build(value)
        except gradest.EstimatorError as e:
            raise ValueError(f"{name}={value!r}: {e}") from None
    return check


def actor(config: SACRunConfig, spec: rollout.ActionSpec) -> estimators.Actor:
    """The estimator, baseline and actions per state that ``config`` names, for the action space
    ``spec`` (``agents.rollout.action_spec``)."""
    settings = estimators.EstimatorSettings(
        num_samples=config.score_function_samples,
        **{name: getattr(config, name) for name in estimators.EstimatorSettings._fields
           if name != "num_samples"})
    return estimators.make_actor(config.actor_estimator, spec, config.actor_baseline,
                                 config.num_action_samples, settings)


def agent_config(config: SACRunConfig, num_action_samples: int) -> SACConfig:
    """The agent's own fields of ``config``, with the actor's actions per state."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(SACConfig)}
    return SACConfig(**{**fields, "num_action_samples": num_action_samples})


def make_stages(config: SACRunConfig, env, env_params):
    """``agents.sac.make_stages`` with the actor ``config`` names."""
    a = actor(config, rollout.action_spec(env, env_params))
    return sac.make_stages(agent_config(config, a.num_action_samples), env, env_params,
                           a.estimator, a.baseline)


def make_train(config: SACRunConfig, env, env_params):
    """``agents.sac.make_train`` with the actor ``config`` names."""
    a = actor(config, rollout.action_spec(env, env_params))
    return sac.make_train(agent_config(config, a.num_action_samples), env, env_params,
                          a.estimator, a.baseline)

# Every other field keeps the SACConfig default.
TUNED = {
    # rejax's tuned configuration (../shared/peers/configs/rejax_pendulum.yaml).
    "Pendulum-v1": dict(
        total_steps=10_000,         # the target budget (−160 at 10k, −150 at 20k)
        num_envs=1,                 # one environment, one gradient step per env step (UTD 1)
        buffer_size=10_000,         # rejax's; the whole 10k run fits
        warmup_steps=256,           # rejax's fill_buffer: one batch of random actions
        batch_size=256,
        updates_per_step=1,
        log_interval=500,           # 19 evaluations over 10k steps
        eval_episodes=128,          # as rejax: a Pendulum return varies by ±100 with the start
                                    # state, and 32 episodes leave ±15 of noise on each seed
        actor_widths=(64, 64),      # rejax's default MLP
        critic_widths=(64, 64),
        activation="swish",
        normalize_obs=True,         # θ̇ ∈ [−8, 8] next to cos/sin ∈ [−1, 1]
        actor_estimator="pathwise", # seed 000's reparameterized tanh-Gaussian actor
        learning_rate=1e-2,         # rejax's large step size, tuned for this short budget
        final_lr_fraction=0.1,      # decays linearly to 1e-3 by the end of the run: at 20k
                                    # steps, 8-seed means −145.0/−159.3/−144.4 (3 seed sets)
                                    # against −143.4/−161.1/−175.0 constant (32-episode
                                    # evaluations, threefry keys); 10k about the same
        actor_lr_scale=1.0,         # pathwise; experiments/sac_estimators.py tunes it per
                                    # estimator (score function + V(s), zeroth order: 0.1)
        max_grad_norm=float("inf"), # no clip: pathwise needs none; set e.g. 10 for safety
        max_alpha=1e3,              # α cap: keeps a saturated (dead) actor from overflowing Q
        gamma=0.99,
        polyak=0.98,                # fast targets: the critics get 10k updates in all
        target_entropy_scale=1.0,   # H̄ = −|A| = −1
    ),
    # rejax's tuned discrete SAC (../shared/peers/configs/rejax_cartpole.yaml, ``sac:``).
    "CartPole-v1": dict(
        total_steps=50_000,         # the target budget (≥ 475)
        num_envs=5,                 # 5 environments per vector step
        buffer_size=10_000,
        warmup_steps=1_000,         # rejax's fill_buffer
        batch_size=256,
        updates_per_step=2,         # rejax's num_epochs: 2 gradient steps per 5 env steps
        log_interval=500,           # 20 evaluations of 32 greedy episodes
        actor_widths=(64, 64),
        critic_widths=(64, 64),
        activation="tanh",
        normalize_obs=False,
        actor_estimator="exact",    # gradest.exact_enumeration: Σ_a π(a|s)(α log π(a|s) −
                                    # min_j Q_j(s, a)) and its exact gradient; or
                                    # straight_through, gumbel_softmax, score_function
        learning_rate=1e-3,
        gamma=0.99,
        polyak=0.95,
        target_entropy_ratio=0.7,   # H̄ = 0.7 log 2 (rejax's)
    ),
}


def get_config(env_id: str) -> ml_collections.ConfigDict:
    """SAC's config for ``env_id`` (the defaults where it has no tuned entry; the default actor
    estimator, pathwise, needs continuous actions: pass --config.actor_estimator=exact, say, for
    an untuned discrete environment)."""
    return with_tuned(SACRunConfig, TUNED, env_id)


def usable_estimators(config: SACRunConfig, discrete: bool) -> tuple[str, list[str]]:
    """("actor_estimator", the estimators of the table that fit discrete or continuous actions),
    for the message that rejects one that does not."""
    kind = "discrete" if discrete else "continuous"
    usable = []
    for name, build in estimators.ESTIMATORS.items():
        try:
            # What fits is the traits' business; 2, the fewest actions of a discrete space, is
            # a count the default settings fit.
            spec = rollout.ActionSpec(discrete, 2)
            gradest.check_compatible(build(estimators.DEFAULT_SETTINGS, spec), kind=kind,
                                     differentiable_f=True)
        except gradest.EstimatorError:
            continue
        usable.append(name)
    return "actor_estimator", usable
