"""Diagnostics of a gradient estimator from its per-sample gradients.

Given S per-sample gradients g_1..g_S (a pytree whose leaves carry a leading sample axis), with
ĝ = (1/S) Σ g_s the estimate:

* variance (per coordinate)  v_j = 1/(S−1) Σ_s (g_sj − ĝ_j)²       (the per-sample variance)
* total variance             tr V = Σ_j v_j
* standard error of ĝ_j      se_j = sqrt(v_j / S)
* signal-to-noise ratio      SNR = ‖ĝ‖ / sqrt(tr V)                (Rainforth et al., 2018)
* against an exact gradient g*: bias b = ĝ − g*, its z-scores b_j / se_j, the relative error
  ‖b‖/‖g*‖ and the cosine ⟨ĝ, g*⟩ / (‖ĝ‖‖g*‖).

Everything is pure and jit-compatible, so agents can log it from inside ``lax.scan``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradest._core import Array, tree_vdot

_TINY = 1e-30


class GradientStats(NamedTuple):
    """Summary of S per-sample gradients; per-coordinate fields are pytrees shaped like θ."""

    mean: Any
    variance: Any
    stderr: Any
    total_variance: Array
    mean_norm: Array
    snr: Array
    num_samples: int


class Comparison(NamedTuple):
    """How far an estimate lies from an exact gradient, in units of its own standard error."""

    bias: Any
    zscore: Any
    max_abs_zscore: Array
    relative_error: Array
    cosine: Array


def _num_samples(per_sample_grads: Any) -> int:
    leaves = jax.tree.leaves(per_sample_grads)
    if not leaves:
        raise ValueError("per_sample_grads is an empty pytree")
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "every leaf of per_sample_grads needs the same leading sample axis, got leading sizes "
            f"{sorted(str(s) for s in sizes)}"
        )
    (num,) = sizes
    if num < 2:
        raise ValueError(f"a variance needs at least 2 per-sample gradients, got {num}")
    return num


def gradient_stats(per_sample_grads: Any) -> GradientStats:
    """Mean, per-sample variance, standard error and SNR of per-sample gradients.

    Args:
      per_sample_grads: pytree whose leaves have shape ``[S, ...]`` (e.g. from
        ``jax.vmap(jax.grad(surrogate))``), S ≥ 2.
    """
    num = _num_samples(per_sample_grads)
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_sample_grads)
    variance = jax.tree.map(lambda g: jnp.var(g, axis=0, ddof=1), per_sample_grads)
    stderr = jax.tree.map(lambda v: jnp.sqrt(v / num), variance)
    total_variance = sum(jax.tree.leaves(jax.tree.map(jnp.sum, variance)), jnp.zeros(()))
    mean_norm = jnp.sqrt(tree_vdot(mean, mean))
    snr = mean_norm / jnp.sqrt(total_variance + _TINY)
    return GradientStats(mean, variance, stderr, total_variance, mean_norm, snr, num)


def compare(stats: GradientStats, exact: Any) -> Comparison:
    """Bias, z-scores, relative error and cosine of ``stats.mean`` against ``exact``."""
    bias = jax.tree.map(lambda m, e: m - e, stats.mean, exact)
    zscore = jax.tree.map(lambda b, se: b / (se + _TINY), bias, stats.stderr)
    max_abs = jnp.max(jnp.stack([jnp.max(jnp.abs(z)) for z in jax.tree.leaves(zscore)]))
    exact_norm = jnp.sqrt(tree_vdot(exact, exact))
    relative_error = jnp.sqrt(tree_vdot(bias, bias)) / (exact_norm + _TINY)
    cosine = tree_vdot(stats.mean, exact) / (stats.mean_norm * exact_norm + _TINY)
    return Comparison(bias, zscore, max_abs, relative_error, cosine)


def summarize(per_sample_grads: Any, exact: Optional[Any] = None) -> dict:
    """Flat dict of scalar diagnostics (for logging): total variance, SNR, mean norm and, when an
    exact gradient is given, relative error, cosine and the largest |z-score|."""
    stats = gradient_stats(per_sample_grads)
    out = {
        "total_variance": stats.total_variance,
        "snr": stats.snr,
        "mean_norm": stats.mean_norm,
    }
    if exact is not None:
        cmp = compare(stats, exact)
        out.update(
            relative_error=cmp.relative_error,
            cosine=cmp.cosine,
            max_abs_zscore=cmp.max_abs_zscore,
        )
    return out
