"""Per-sample losses the on-policy agents draw on (rlax style: one sample, ``vmap`` at the call
site), and the batch statistics their advantages pass through."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

import gradest

Array = jax.Array


def policy_gradient_loss(log_prob: Array, old_log_prob: Array, advantage: Array,
                         clip_epsilon: float | Array | None = None) -> tuple[Array, Any]:
    """−ρ Â (optionally PPO-clipped) for one logged sample, from ``gradest.likelihood_ratio_loss``.

    ρ = πθ(a|s) / π_old(a|s) = exp(log_prob − old_log_prob). At θ = θ_old, ρ = 1 and the gradient
    is −Â ∇θ log πθ(a|s): the score-function (REINFORCE) estimate of seeds 000 and 004. Returns
    the loss and the ``LikelihoodRatioStats`` (ratio, clip indicator, approximate KL).
    """
    chex.assert_rank([log_prob, old_log_prob, advantage], 0)
    objective, stats = gradest.likelihood_ratio_loss(log_prob, old_log_prob, advantage,
                                                     clip_epsilon)
    return -objective, stats


def standardize(x: Array) -> Array:
    """(x − mean) / std over the batch: advantage normalization (a batch baseline and scale)."""
    return (x - jnp.mean(x)) / (jnp.std(x) + 1e-8)


def masked_mean(x: Array, mask: Array) -> Array:
    """Mean of ``x`` over the entries where ``mask`` holds (0 if none does)."""
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1)
