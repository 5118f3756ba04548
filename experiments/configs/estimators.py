"""The command line's names for SAC's actor-gradient estimators and baselines.

``agents.sac`` takes its actor's estimator and baseline as values (a
``gradest.GradientEstimator`` and an ``agents.sac.Baseline``); this table turns the names and
hyperparameters given on the command line (``--config.actor_estimator=score_function``, ...) into
them. A new estimator needs an entry here, nothing in ``agents/``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import gradest
from agents import sac


class EstimatorSettings(NamedTuple):
    """The estimators' hyperparameters, as the command line sets them."""

    num_samples: int = 4               # K: actions per state of the score function
    zeroth_order_epsilon: float = 0.01       # smoothing scale ε in action space
    zeroth_order_directions: int = 4         # antithetic direction pairs per state
    gumbel_temperature: float = 1.0          # initial Gumbel-Softmax temperature τ₀ (seed 001)
    gumbel_anneal_rate: float = 1e-4         # τ_t = max(τ_min, τ₀ exp(−rate · updates))
    gumbel_min_temperature: float = 0.5      # τ_min


def _temperature(s: EstimatorSettings) -> gradest.gumbel.Schedule:
    return gradest.exponential_anneal(s.gumbel_temperature, s.gumbel_anneal_rate,
                                      s.gumbel_min_temperature)


# name -> estimator from the settings (the score function's baseline is chosen apart).
ESTIMATORS: dict[str, Callable[[EstimatorSettings], gradest.GradientEstimator]] = {
    "pathwise": lambda s: gradest.pathwise(),
    "score_function": lambda s: gradest.score_function(),
    "zeroth_order": lambda s: gradest.zeroth_order(
        s.zeroth_order_epsilon, s.zeroth_order_directions, antithetic=True),
    "gumbel_softmax": lambda s: gradest.gumbel_softmax(_temperature(s)),
    "straight_through": lambda s: gradest.straight_through(_temperature(s)),
    "exact": lambda s: gradest.exact_enumeration(),
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


def make_actor(name: str, baseline: str = "none", num_action_samples: int = 1,
               settings: EstimatorSettings = DEFAULT_SETTINGS) -> Actor:
    """The actor of ``--config.actor_estimator=name --config.actor_baseline=baseline``.

    ``gradest.EstimatorError`` for an unknown name, or a baseline with an estimator other than
    the score function (any b(s) changes the others' gradients by nothing). The score function
    scores ``settings.num_samples`` actions per state; the others ``num_action_samples``.
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
    return Actor(ESTIMATORS[name](settings), sac.no_baseline(), num_action_samples)
