"""Score-function (REINFORCE, likelihood-ratio) estimators.

By the log-derivative trick ∇θ qθ = qθ ∇θ log qθ (seed 000, I₂), for an objective that may also
depend on θ directly,

    ∇θ E_{qθ}[f(θ, z)] = E_{qθ}[ ∇θ f(θ, z) + (f(θ, z) − b) ∇θ log qθ(z) ],

with any baseline b independent of z (``gradest.baselines``). f need not be differentiable in z,
and z may be discrete. The per-sample surrogate (DiCE / magic box) is

    f(θ, z) + sg(f(θ, z) − b) · (log qθ(z) − sg(log qθ(z))),     z = sg(sample),

whose value is f(θ, z) and whose gradient is the bracket above.

``likelihood_ratio_loss`` is the same idea for logged samples drawn from an older policy
(seed 000, PPO): ρ A with ρ = πθ(a|s) / π_old(a|s), optionally clipped.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradest import baselines as baselines_lib
from gradest._core import (Array, EstimatorError, GradientEstimator, Traits, check_distribution,
                           check_scalar_objective, linear_term)
from gradest.distributions import log_prob_from_latent, sample_with_latent

sg = jax.lax.stop_gradient


def _check_shaped_like(b, scores):
    """A per-coordinate baseline must have θ's structure and shapes (with the group axis)."""
    b_struct, s_struct = jax.tree.structure(b), jax.tree.structure(scores)
    shapes_b = [jnp.shape(x) for x in jax.tree.leaves(b)]
    shapes_s = [jnp.shape(x) for x in jax.tree.leaves(scores)]
    if b_struct != s_struct or shapes_b != shapes_s:
        raise EstimatorError(
            "a per-coordinate baseline must be shaped like params: got structure "
            f"{b_struct} with shapes {shapes_b} for params {s_struct} with shapes {shapes_s} "
            "(leading axis: draws per group)"
        )


def score_function(baseline: Optional[baselines_lib.Baseline] = None) -> GradientEstimator:
    """The score-function estimator with a baseline (default: none).

    One surrogate call draws K = ``baseline.group_size`` samples (K = 1 unless the baseline is
    leave-one-out) and returns the mean of their surrogates, so its value is the mean of f over
    the K draws and its gradient an unbiased estimate of ∇θ E_q[f].

    Args:
      baseline: a ``gradest.baselines.Baseline``; ``None`` means ``baselines.none()``.
    """
    baseline = baselines_lib.none() if baseline is None else baseline
    if not isinstance(baseline, baselines_lib.Baseline):
        raise EstimatorError(f"baseline must be a gradest.baselines.Baseline, got {baseline!r}")
    k = baseline.group_size
    traits = Traits(name=f"score_function[{baseline.name}]", unbiased=True,
                    needs_differentiable_f=False, supports="any", samples_per_call=k)

    def surrogate(key, params, make_dist, f, state):
        dist = make_dist(params)
        check_distribution(traits, dist)
        # The sample carries no gradient: θ enters only through log qθ(z) and f's own θ. log q is
        # taken from the draw's latent form, finite where z rounds onto the edge of the support
        # (Beta to 1, Gamma to 0, tanh to ±1) and log q(z) would be ±inf: inf − inf in the
        # magic box below.
        z, latent = sg(jax.vmap(lambda kk: sample_with_latent(dist, kk))(jax.random.split(key, k)))
        fz = jax.vmap(lambda zi: check_scalar_objective(f(params, zi)))(z)
        log_q = jax.vmap(lambda li: log_prob_from_latent(dist, li))(latent)
        # The log-prob of each draw, with its value subtracted: zero forward, ∇ log q backward.
        magic = log_q - sg(log_q)
        scores = None
        if baseline.needs_scores or baseline.per_coordinate:
            scores = sg(jax.vmap(jax.grad(lambda p, li: log_prob_from_latent(make_dist(p), li)),
                                 in_axes=(None, 0))(params, latent))
        b = baseline.value(sg(fz), scores, state)
        if baseline.per_coordinate:
            # Gradient f ∇log q − b ⊙ ∇log q: the first part by the magic box, the second
            # injected with a zero-valued linear term (b is per coordinate, so it cannot
            # multiply the scalar log q).
            _check_shaped_like(b, scores)
            control = jax.tree.map(lambda bj, sj: jnp.mean(bj * sj, axis=0), b, scores)
            value = jnp.mean(fz + sg(fz) * magic) - linear_term(control, params)
        else:
            value = jnp.mean(fz + sg(fz - b) * magic)
        aux = {"f": fz}
        if baseline.stats is not None:
            aux["baseline"] = baseline.stats(sg(fz), scores)
        return value, aux

    def update(state, aux):
        return baseline.update(state, aux["baseline"] if baseline.stats is not None else aux["f"])

    return GradientEstimator(baseline.init, surrogate, update, traits)


class LikelihoodRatioStats(NamedTuple):
    """Per-sample statistics of a likelihood-ratio loss (PPO logs their means)."""

    ratio: Array
    clipped: Array
    approx_kl: Array


def likelihood_ratio_loss(log_prob: Array, old_log_prob: Array, advantage: Array,
                          clip_epsilon: Optional[float | Array] = None
                          ) -> tuple[Array, LikelihoodRatioStats]:
    """Per-sample likelihood-ratio surrogate *objective* for samples logged under an old policy.

    With ρ = exp(log πθ(a|s) − sg(log π_old(a|s))) and a fixed advantage Â (seed 000: the data,
    the advantage and the old log-prob carry no gradient),

        unclipped:  ρ Â                                   (∇ = ρ Â ∇θ log πθ(a|s))
        clipped:    min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)       (PPO, Schulman et al., 2017)

    At θ = θ_old the value is Â and the gradient the score-function estimate Â ∇θ log πθ.
    Maximize its mean (agents minimize its negative). Also returns ρ, whether the clip was
    active (|ρ − 1| > ε) and the k3 estimate of KL(π_old ‖ πθ), (ρ − 1) − log ρ.

    Args:
      log_prob: log πθ(a|s), differentiable.
      old_log_prob: log π_old(a|s) recorded when acting.
      advantage: Â, same shape.
      clip_epsilon: ε > 0, or None for the unclipped ratio; may be a traced array.
    """
    log_prob, old_log_prob, advantage = map(jnp.asarray, (log_prob, old_log_prob, advantage))
    if not (log_prob.shape == old_log_prob.shape == advantage.shape):
        raise EstimatorError(
            "log_prob, old_log_prob and advantage must have one shape, got "
            f"{log_prob.shape}, {old_log_prob.shape}, {advantage.shape}"
        )
    if clip_epsilon is not None and not isinstance(clip_epsilon, jax.core.Tracer):
        if not float(clip_epsilon) > 0:
            raise EstimatorError(f"clip_epsilon must be > 0, got {clip_epsilon!r}")
    log_ratio = log_prob - sg(old_log_prob)
    ratio = jnp.exp(log_ratio)
    adv = sg(advantage)
    objective = ratio * adv
    if clip_epsilon is None:
        clipped = jnp.zeros(ratio.shape, bool)
    else:
        objective = jnp.minimum(objective, jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon) * adv)
        clipped = jnp.abs(ratio - 1.0) > clip_epsilon
    approx_kl = sg((ratio - 1.0) - log_ratio)
    return objective, LikelihoodRatioStats(sg(ratio), clipped, approx_kl)
