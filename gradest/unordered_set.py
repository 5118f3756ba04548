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
Σ_s w_s ∇θ f(θ, s). One sample costs k evaluations of f. Permutations are enumerated (k! terms for
p(S)), so k is limited to ``MAX_SET_SIZE``; one categorical variable only (not a batch of them: the
set would be drawn from their product space).
"""

from __future__ import annotations

import itertools

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from gradest._core import (Array, EstimatorError, GradientEstimator, Traits, check_distribution,
                           check_scalar_objective, keep_state, no_state)

sg = jax.lax.stop_gradient

MAX_SET_SIZE = 6  # 720 orderings of the set for p(S)


def _log_set_probability(log_p_members: Array, log_rest: Array) -> Array:
    """log p^{D'}(A) for A with log-probabilities ``log_p_members`` (last axis), where D' ∖ A =
    D ∖ S has mass e^{log_rest}: the log of the sum over the orderings of A of the probability
    of drawing A in that order. Before the i-th draw the remaining mass is the rest's plus that
    of the members not drawn yet, Σ_{j ≥ i} p_{o_j} + m_rest, summed rather than subtracted from
    1, and everything is in logs, so a sharp p (members of mass ~1, or ~1e-30) stays finite."""
    n = log_p_members.shape[-1]
    if n == 0:
        return jnp.zeros(log_p_members.shape[:-1], log_p_members.dtype)
    orders = np.array(list(itertools.permutations(range(n))))   # [n!, n], static
    ordered = log_p_members[..., orders]                          # [..., n!, n]
    # log Σ_{j ≥ i} p_{o_j}: a reversed cumulative logsumexp.
    not_yet = jnp.flip(jax.lax.cumlogsumexp(jnp.flip(ordered, -1), axis=ordered.ndim - 1), -1)
    remaining = jnp.logaddexp(not_yet, log_rest[..., None, None])
    return jax.nn.logsumexp(jnp.sum(ordered - remaining, axis=-1), axis=-1)


def log_set_weights(log_p_set: Array, log_rest: Array) -> tuple[Array, Array]:
    """For the log-probabilities of the k members of S (any order) and the log of the mass of
    the categories outside S: the weights p(s) R(S, s), shape [k], and the baseline weights
    p(s') R^{D∖s}(S, s'), shape [k (s), k (s')]. Every domain below is D minus members of S, so
    its complement in the set is always D ∖ S, of mass e^{log_rest}."""
    k = log_p_set.shape[-1]
    others = np.array([[j for j in range(k) if j != i] for i in range(k)], dtype=np.int32)
    log_all = _log_set_probability(log_p_set, log_rest)
    # p^{D∖s}(S∖s) for each s: the other k − 1 members.
    log_loo = _log_set_probability(log_p_set[others], jnp.broadcast_to(log_rest, (k,)))   # [k]
    weights = jnp.exp(log_p_set + log_loo - log_all)
    # p^{D∖{s,s'}}(S∖{s,s'}) for each ordered pair s ≠ s'. (On the diagonal, s = s', the ratio
    # is 1 by definition; the entries computed there are placeholders: any k − 2 members.)
    diagonal = np.eye(k, dtype=bool)
    pair_rest = np.array([[[m for m in range(k) if m not in (i, j)][:k - 2] for j in range(k)]
                          for i in range(k)], dtype=np.int32).reshape(k, k, k - 2)
    log_pair = _log_set_probability(log_p_set[pair_rest], jnp.broadcast_to(log_rest, (k, k)))
    ratio = jnp.where(diagonal, 1.0, jnp.exp(log_pair - log_loo[:, None]))
    return weights, jnp.exp(log_p_set)[None, :] * ratio


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
