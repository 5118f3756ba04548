"""The unordered set estimator with its built-in baseline (Kool, van Hoof & Welling, 2020).

Draw k distinct categories S = {s_1, …, s_k} without replacement from Categorical(p) by
Gumbel-top-k: the k largest of log p + G, G ~ Gumbel(0, 1) i.i.d. (Kool et al., 2019, "Stochastic
beams"). For a subset A of a domain D' ⊆ D of total mass m = Σ_{d ∈ D'} p_d, the probability that
sampling |A| elements without replacement from p restricted to D' gives the set A (in any order) is

    p^{D'}(A) = Σ_{orderings o of A} Π_i p_{o_i} / (m − Σ_{j<i} p_{o_j}),

and with the leave-one-out ratios R(S, s) = p^{D∖s}(S∖s) / p(S),
R^{D∖s}(S, s') = p^{D∖{s,s'}}(S∖{s,s'}) / p^{D∖s}(S∖s) (and R^{D∖s}(S, s) = 1) the estimator is

    ĝ = Σ_{s ∈ S} p(s) R(S, s) ∇θ log p(s) (f(s) − B(s)),    B(s) = Σ_{s' ∈ S} p(s') R^{D∖s}(S, s') f(s').

Why it is unbiased: E_S[Σ_{s∈S} p(s) R(S, s) h(s, S∖s)] = Σ_s p(s) E_{S'~p^{D∖s}}[h(s, S')], i.e.
the weights turn the set into "s first, then k − 1 more from the rest"; B(s) = p(s) f(s) +
(1 − p(s)) · (the unordered set estimate of E_{p^{D∖s}}[f] from S∖s), whose expectation given s
is E_p[f] for every s, so it is a valid baseline (Kool et al., 2020, Theorem 2). It needs k ≥ 2.
With k = K every category is drawn, every R is 1, and ĝ is the exact gradient Σ_s ∇p(s) f(s).

The surrogate, with weights w_s = sg(p(s) R(S, s)),

    Σ_{s ∈ S} w_s [ f(θ, s) + sg(f(s) − B(s)) (log p_θ(s) − sg(log p_θ(s))) ],

has as value the unordered set estimate Σ_s w_s f(s) of E[f] (unbiased) and as gradient ĝ plus
Σ_s w_s ∇θ f(θ, s). One sample costs k evaluations of f. Every p^{D'}(·) above is the probability
of a subset of S, computed for all 2^k subsets at once by a recursion over subsets
(``_log_subset_probabilities``), so k is limited to ``MAX_SET_SIZE``; one categorical variable
only (not a batch of them: the set would be drawn from their product space).
"""

from __future__ import annotations

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from gradest._core import (Array, EstimatorError, GradientEstimator, Traits, check_distribution,
                           check_scalar_objective, keep_state, no_state)

sg = jax.lax.stop_gradient

MAX_SET_SIZE = 6  # 64 subsets of the set, 192 terms


def _log_subset_probabilities(log_p_set: Array, log_rest: Array) -> Array:
    """log Q(U) for every subset U of the set S, indexed by bit mask (bit i: member i), shape
    [2^k]: Q(U) = p^{U ∪ (D∖S)}(U), the probability that |U| draws without replacement from U
    and the classes outside S give U, in any order. Drawing U means drawing some a ∈ U first,
    then U ∖ a from what is left, so

        Q(∅) = 1,    Q(U) = Σ_{a ∈ U} p_a / (Σ_{b ∈ U} p_b + m_rest) · Q(U ∖ a),

    one term per member, 2^k subsets in all (k·2^{k−1} terms, not the k!·k of summing over
    orderings). Every probability the estimator needs is one of these: p(S) = Q(S),
    p^{D∖s}(S∖s) = Q(S∖s), p^{D∖{s,s'}}(S∖{s,s'}) = Q(S∖{s,s'}), since each of those domains
    is the set's members plus D ∖ S. The remaining mass is summed (never 1 − Σ p) and
    everything is in logs, so a sharp p (members of mass ~1, or ~e^-100) stays finite."""
    k = log_p_set.shape[-1]
    log_q = jnp.zeros(log_p_set.shape[:-1] + (2 ** k,), log_p_set.dtype)
    by_size = [[u for u in range(2 ** k) if bin(u).count("1") == n] for n in range(k + 1)]
    for n in range(1, k + 1):      # Q of the subsets of size n from those of size n − 1
        masks = np.array(by_size[n])                                              # [m]
        members = np.array([[i for i in range(k) if u >> i & 1] for u in masks])  # [m, n]
        without = masks[:, None] ^ (1 << members)                                 # [m, n]
        x = log_p_set[..., members]                                               # [..., m, n]
        log_mass = jnp.logaddexp(jax.nn.logsumexp(x, axis=-1), log_rest[..., None])
        log_q = log_q.at[..., masks].set(
            jax.nn.logsumexp(x + log_q[..., without], axis=-1) - log_mass)
    return log_q


def log_set_weights(log_p_set: Array, log_rest: Array) -> tuple[Array, Array]:
    """For the log-probabilities of the k members of S (any order) and the log of the mass of
    the categories outside S: the weights p(s) R(S, s), shape [k], and the baseline weights
    p(s') R^{D∖s}(S, s'), shape [k (s), k (s')], from the subset probabilities Q of
    ``_log_subset_probabilities``: R(S, s) = Q(S∖s) / Q(S) and, for s' ≠ s,
    R^{D∖s}(S, s') = Q(S∖{s,s'}) / Q(S∖s) (1 on the diagonal, by definition)."""
    k = log_p_set.shape[-1]
    log_q = _log_subset_probabilities(log_p_set, log_rest)
    full = 2 ** k - 1
    bit = 1 << np.arange(k)
    log_loo = log_q[..., full ^ bit]                                   # [..., k]: Q(S ∖ s)
    weights = jnp.exp(log_p_set + log_loo - log_q[..., full][..., None])
    log_pair = log_q[..., full ^ (bit[:, None] | bit[None, :])]        # [..., k, k]
    ratio = jnp.where(np.eye(k, dtype=bool), 1.0, jnp.exp(log_pair - log_loo[..., :, None]))
    return weights, jnp.exp(log_p_set)[..., None, :] * ratio


def set_weights(p_set: Array) -> tuple[Array, Array]:
    """``log_set_weights`` from the members' probabilities, the rest's mass being 1 − Σ p(s)."""
    return log_set_weights(jnp.log(p_set), jnp.log1p(-jnp.sum(p_set)))


def unordered_set(num_samples: int) -> GradientEstimator:
    """The unordered set estimator with built-in baseline over k = ``num_samples`` categories
    drawn without replacement (module docstring); k evaluations of f per sample.

    Args:
      num_samples: k, 2 ≤ k ≤ ``MAX_SET_SIZE`` and at most the number of categories.
    """
    k = num_samples
    if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= MAX_SET_SIZE:
        raise EstimatorError(
            f"unordered_set needs 2 ≤ num_samples ≤ {MAX_SET_SIZE} (an int; k ≥ 2 for the "
            f"built-in baseline), got {num_samples!r}")
    traits = Traits(name="unordered_set", unbiased=True, needs_differentiable_f=False,
                    supports="discrete", samples_per_call=k)

    def surrogate(key, params, make_dist, f, state):
        del state
        dist = make_dist(params)
        check_distribution(traits, dist)
        if not isinstance(dist, (distrax.Categorical, distrax.OneHotCategorical)):
            raise EstimatorError(
                f"unordered_set needs a distrax Categorical or OneHotCategorical, got "
                f"{type(dist).__name__}")
        logits = dist.logits
        if logits.ndim != 1:
            raise EstimatorError(
                "unordered_set samples one categorical variable without replacement; got logits "
                f"of shape {logits.shape} (a batch of variables)")
        num_classes = logits.shape[0]
        if k > num_classes:
            raise EstimatorError(f"unordered_set: num_samples {k} exceeds the {num_classes} classes")
        log_p = jax.nn.log_softmax(logits)
        # Gumbel-top-k: the k largest perturbed log-probabilities, without replacement.
        _, idx = jax.lax.top_k(sg(log_p) + jax.random.gumbel(key, log_p.shape, log_p.dtype), k)
        if isinstance(dist, distrax.OneHotCategorical):
            samples = jax.nn.one_hot(idx, num_classes, dtype=dist.dtype)
        else:
            samples = idx.astype(dist.dtype)
        fs = jax.vmap(lambda s: check_scalar_objective(f(params, s)))(samples)
        # The weights are evaluated at θ, not differentiated: only log p(s) carries the score.
        # The rest's mass is summed over the classes outside S, never 1 − Σ_S p (which rounds
        # to 0 or below once the set holds almost all the mass).
        outside = jnp.ones(num_classes, bool).at[idx].set(False)
        log_rest = jax.nn.logsumexp(jnp.where(outside, sg(log_p), -jnp.inf))
        weights, base_weights = log_set_weights(sg(log_p)[idx], log_rest)
        baseline = base_weights @ sg(fs)
        log_q = log_p[idx]
        value = jnp.sum(weights * (fs + sg(fs - baseline) * (log_q - sg(log_q))))
        return value, {"f": jnp.sum(weights * fs)}

    return GradientEstimator(no_state, surrogate, keep_state, traits)
