"""Variance and SNR of the actor's gradient estimator during training (``gradest.diagnostics``).

Every agent hands the loop per-sample actor gradients, once per log interval
(``loop.Agent.actor_gradients``): a dict from a metric suffix to a pytree whose leaves carry a
leading sample axis. ``gradient_metrics`` turns each into ``grad_variance<suffix>``,
``grad_snr<suffix>`` and ``grad_norm<suffix>``. The on-policy agents also report the same samples
without their baseline (suffix ``_no_baseline``, ``score_gradients``).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

import gradest

Array = jax.Array


def gradient_metrics(per_sample: dict[str, Any]) -> dict[str, Array]:
    """{"grad_variance<s>", "grad_snr<s>", "grad_norm<s>"} for each suffix s of ``per_sample``:
    the total per-sample variance tr V, ‖ĝ‖ / sqrt(tr V) and ‖ĝ‖ of the gradients' mean ĝ."""
    out = {}
    for suffix, grads in per_sample.items():
        stats = gradest.gradient_stats(grads)
        out.update({f"grad_variance{suffix}": stats.total_variance,
                    f"grad_snr{suffix}": stats.snr, f"grad_norm{suffix}": stats.mean_norm})
    return out


class PolicyBatch(NamedTuple):
    """Logged samples and their advantages, flattened to one axis: what the actor is fit to."""

    obs: Array
    action: Array
    log_prob: Array
    advantage: Array


class DiagInput(NamedTuple):
    """The actor parameters θ_old of the latest update, the batch it used and the baseline b
    per sample that the advantages subtract (advantage + baseline is the return estimate)."""

    actor_params: Any
    batch: PolicyBatch
    baseline: Array


def score_gradients(log_prob: Callable[[Any, Array, Array], Array], diag: DiagInput
                    ) -> dict[str, Any]:
    """Per-sample gradients of the policy-gradient loss −ρ_i Â_i at θ_old, with the baseline
    (suffix "") and, on the same samples, without it (−ρ_i (Â_i + b_i), suffix
    ``_no_baseline``): a paired measure of what the baseline buys (seed 004), free of the
    confound that different runs reach different policies.

    ∇θ(−ρ_i Â_i) = −ρ_i Â_i ∇θ log πθ(a_i|s_i), so one vmapped backward pass of
    ``log_prob(params, obs, action)`` serves both advantage vectors.
    """
    batch = diag.batch
    log_probs, score = jax.vmap(jax.value_and_grad(log_prob), in_axes=(None, 0, 0))(
        diag.actor_params, batch.obs, batch.action)
    ratio = jnp.exp(log_probs - batch.log_prob)

    def weighted(advantage):
        weights = -ratio * advantage
        return jax.tree.map(lambda g: weights.reshape(weights.shape + (1,) * (g.ndim - 1)) * g,
                            score)

    return {"": weighted(batch.advantage),
            "_no_baseline": weighted(batch.advantage + diag.baseline)}
