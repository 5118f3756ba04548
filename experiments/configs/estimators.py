"""The command line's names for SAC's actor-gradient estimators and baselines.

``agents.sac`` takes its actor's estimator and baseline as values (a
``gradest.GradientEstimator`` and an ``agents.sac.Baseline``); this table turns the names and
hyperparameters given on the command line (``--config.actor_estimator=score_function``, ...) into
them. A new estimator needs an entry here, nothing in ``agents/``.

Which fit which actions: continuous (SAC's tanh-squashed Gaussian) ``pathwise``,
``score_function``, ``zeroth_order``, ``measure_valued``; discrete (SAC's one-hot categorical)
``score_function``, the Gumbel estimators ``gumbel_softmax``, ``straight_through``,
``gumbel_rao`` (all three biased), ``exact``, and the unbiased categorical ones ``rebar``,
``relax``, ``unordered_set``, ``measure_valued``. ``gradest.arm`` and ``gradest.disarm`` are for Bernoulli variables only: no
SAC policy is one, so they have no entry.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import optax

import gradest
from agents import rollout, sac


class EstimatorSettings(NamedTuple):
    """The estimators' hyperparameters, as the command line sets them."""

    num_samples: int = 4               # K: actions per state of the score function
    zeroth_order_epsilon: float = 0.01       # smoothing scale ε in action space
    zeroth_order_directions: int = 4         # antithetic direction pairs per state
    gumbel_temperature: float = 1.0          # initial Gumbel-Softmax temperature τ₀ (seed 001)
    gumbel_anneal_rate: float = 1e-4         # τ_t = max(τ_min, τ₀ exp(−rate · updates))
    gumbel_min_temperature: float = 0.5      # τ_min
    gumbel_rao_samples: int = 10             # K conditional relaxations per sample (Gumbel-Rao)
    rebar_temperature: float = 0.5           # initial relaxation temperature λ (REBAR, RELAX)
    rebar_scale: float = 1.0                 # initial scale η of the relaxed f (REBAR, RELAX)
    relax_hidden: int = 16                   # hidden units of RELAX's network r_ρ
    control_variate_lr: float = 3e-3         # Adam step size on REBAR's / RELAX's φ
    unordered_set_samples: int = 2           # k distinct actions per set (unordered set)


# RELAX's network starts from W₁ drawn with jax.random.key(_RELAX_INIT_SEED), the same in
# every training seed: an estimator's init takes no key. Its output weights start at 0, so c_φ
# starts as REBAR's whatever W₁ is.
_RELAX_INIT_SEED = 0


def _temperature(s: EstimatorSettings) -> gradest.gumbel.Schedule:
    return gradest.exponential_anneal(s.gumbel_temperature, s.gumbel_anneal_rate,
                                      s.gumbel_min_temperature)


def _rebar(s: EstimatorSettings, spec: rollout.ActionSpec) -> gradest.GradientEstimator:
    return gradest.rebar(s.rebar_temperature, s.rebar_scale, optax.adam(s.control_variate_lr))


def _relax(s: EstimatorSettings, spec: rollout.ActionSpec) -> gradest.GradientEstimator:
    # The network reads the relaxed one-hot action: one input per action.
    control_variate = gradest.relax_control_variate(
        jax.random.key(_RELAX_INIT_SEED), spec.num_actions, s.relax_hidden, s.rebar_temperature,
        s.rebar_scale)
    return gradest.relax(control_variate, optax.adam(s.control_variate_lr))


def _unordered_set(s: EstimatorSettings, spec: rollout.ActionSpec) -> gradest.GradientEstimator:
    k = s.unordered_set_samples
    # gradest finds this only when the surrogate is traced; here it is one line before that.
    if spec.discrete and k > spec.num_actions:
        raise gradest.EstimatorError(f"unordered_set_samples={k} exceeds the {spec.num_actions} "
                                     f"actions: the set is drawn without replacement")
    return gradest.unordered_set(k)


# name -> estimator from the settings and the agent's action space; the score function's
# baseline is chosen apart.
ESTIMATORS: dict[str, Callable[[EstimatorSettings, rollout.ActionSpec],
                               gradest.GradientEstimator]] = {
    "pathwise": lambda s, n: gradest.pathwise(),
    "score_function": lambda s, n: gradest.score_function(),
    "zeroth_order": lambda s, n: gradest.zeroth_order(
        s.zeroth_order_epsilon, s.zeroth_order_directions, antithetic=True),
    "gumbel_softmax": lambda s, n: gradest.gumbel_softmax(_temperature(s)),
    "straight_through": lambda s, n: gradest.straight_through(_temperature(s)),
    "gumbel_rao": lambda s, n: gradest.gumbel_rao(_temperature(s), s.gumbel_rao_samples),
    "exact": lambda s, n: gradest.exact_enumeration(),
    "rebar": _rebar,
    "relax": _relax,
    "unordered_set": _unordered_set,
    "measure_valued": lambda s, n: gradest.measure_valued(),
}
BASELINES = ("none", "value", "mc_value", "leave_one_out")


class Actor(NamedTuple):
    """What ``agents.sac.make_train`` takes for its actor, and the actions per state it averages
    (``SACConfig.num_action_samples``)."""

    estimator: gradest.GradientEstimator
    baseline: sac.Baseline
    num_action_samples: int


def _score_function(baseline: str, k: int) -> Actor:
    """The score function over K actions per state: K calls, or one leave-one-out group of K."""
    if baseline == "leave_one_out":
        return Actor(gradest.score_function(gradest.baselines.leave_one_out(k)),
                     sac.no_baseline(), k)
    state_baseline = {"none": sac.no_baseline, "value": sac.learned_value,
                      "mc_value": lambda: sac.monte_carlo_value(k)}[baseline]()
    return Actor(gradest.score_function(), state_baseline, k)


DEFAULT_SETTINGS = EstimatorSettings()


def make_actor(name: str, spec: rollout.ActionSpec, baseline: str = "none",
               num_action_samples: int = 1, settings: EstimatorSettings = DEFAULT_SETTINGS
               ) -> Actor:
    """The actor of ``--config.actor_estimator=name --config.actor_baseline=baseline`` for the
    action space ``spec`` (``agents.rollout.action_spec``).

    ``gradest.EstimatorError`` for an unknown name, a hyperparameter the estimator refuses, or a
    baseline with an estimator other than the score function (any b(s) changes the others'
    gradients by nothing). The score function scores ``settings.num_samples`` actions per state;
    the others are called ``num_action_samples`` times per state, each call drawing
    ``traits.samples_per_call`` actions (one, or the unordered set's k).
    """
    if name not in ESTIMATORS:
        raise gradest.EstimatorError(
            f"unknown actor_estimator {name!r}; choose one of {tuple(ESTIMATORS)}")
    if baseline not in BASELINES:
        raise gradest.EstimatorError(
            f"unknown actor_baseline {baseline!r}; choose one of {BASELINES}")
    if name == "score_function":
        return _score_function(baseline, settings.num_samples)
    if baseline != "none":
        raise gradest.EstimatorError(
            f"actor_baseline={baseline!r} is a control variate for the score function; "
            f"{name} ignores it, so leave it 'none'")
    estimator = ESTIMATORS[name](settings, spec)
    return Actor(estimator, sac.no_baseline(),
                 num_action_samples * estimator.traits.samples_per_call)
