r"""Measure-valued derivatives (weak derivatives; Mohamed, Rosca, Figurnov & Mnih, 2020, §6).

The derivative of a density with respect to one of its parameters θ_j is a signed measure, and it
can be written as a constant times the difference of two probability densities,

    ∂_{θ_j} qθ(z) = c_j (q_j⁺(z) − q_j⁻(z)),   so   ∂_{θ_j} E_{qθ}[f(z)] = c_j (E_{q_j⁺}[f] − E_{q_j⁻}[f]).

One Monte Carlo sample of each part gives an unbiased estimate that evaluates f twice and never
differentiates it: f may be a black box, non-differentiable, or defined on a discrete set.

Diagonal Gaussian, x = μ + σ ε, one coordinate i at a time (the others keep the shared base draw
x ~ qθ, since the derivative of a product density touches one factor only):

* mean: ∂_μ N(x; μ, σ²) = (ε/σ) N(x; μ, σ²), whose positive and negative halves are, in ε, the
  Rayleigh density ε e^{−ε²/2} (a Weibull with scale √2 and shape 2) reflected to either side.
  Their mass is ∫₀^∞ ε φ(ε) dε = 1/√(2π), so
      ĝ_μ = (f(μ + σW) − f(μ − σW′)) / (σ √(2π)),   W, W′ ~ Weibull(√2, 2);
* scale: ∂_σ N(x; μ, σ²) = ((ε² − 1)/σ) N(x; μ, σ²), and ε² φ(ε) is the double-sided Maxwell
  density, so
      ĝ_σ = (f(μ + σM) − f(μ + σN)) / σ,          M ~ double-sided Maxwell, N ~ N(0, 1).

Coupling by common random numbers (``coupled=True``) lets both terms of a difference share their
randomness, which leaves each term's law, and so the expectation, unchanged while the difference
varies less: W′ = W for the mean, and N = M·U with U ~ Uniform(0, 1) for the scale (if M is
double-sided Maxwell, |MU| has density ∫_{|y|}^∞ 2m φ(m) dm = 2φ(y), so MU ~ N(0, 1)).
Uncoupled, W′ and N are independent draws.

Bernoulli(p) and Categorical(p): the derivative of a probability mass function with respect to
its probabilities is a point mass, ∂_{p_k} Σ_c p_c f(c) = f(e_k); for a Bernoulli, as a function
of p alone, ∂_p E f = f(1) − f(0), the difference of the point masses at 1 and 0. For logits the
chain rule through softmax gives ∂_{ℓ_j} E f = p_j (f(e_j) − Σ_k p_k f(e_k)), which is the weak
derivative p_j (δ_{e_j} − Cat(p)) of Mohamed et al. with the negative part's expectation taken
exactly from the same K evaluations rather than from one draw. For a vector of independent
variables, coordinate i varies variable i over its classes and keeps the others at the draw.

A tanh-squashed Gaussian (``gradest.TanhNormal``, a = tanh(u), u ~ N(μ, diag σ²), SAC's policy)
is the diagonal Gaussian case for the objective f ∘ tanh: E_a[f(a)] = E_u[f(tanh u)], so the
same decompositions apply to u and every evaluation point is squashed before f sees it.

The estimate is injected through the distribution's own parameters, (loc, scale) or probs, as
produced by ``make_dist(params)``, so the gradient reaches ``params`` by the chain rule:

    f(θ, sg(z)) + Σ_j ⟨sg(ĝ_j), φ_j(θ) − sg(φ_j(θ))⟩,     φ = (loc, scale) or probs,

with value f(θ, z) at the base draw z and gradient ∇θ f(θ, z) + Σ_j ĝ_j ∂φ_j/∂θ.

Cost in evaluations of f per sample, for n coordinates (n independent variables):
Gaussian and tanh-Gaussian 4n + 1 (2 per parameter coordinate, for 2n parameters, and the value
at the base draw);
Bernoulli 2n and Categorical with K classes Kn (the value is one of them).
"""

from __future__ import annotations

import math

import distrax
import jax
import jax.numpy as jnp

from gradest._core import (
    EstimatorError,
    GradientEstimator,
    Traits,
    check_scalar_objective,
    keep_state,
    linear_term,
    no_state,
)
from gradest.distributions import TanhNormal

sg = jax.lax.stop_gradient

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _gaussian_parameters(dist):
    """(loc, scale, squash) of a diagonal Gaussian u, each parameter shaped like a sample, where
    the distribution's sample is squash(u) (tanh for ``TanhNormal``, else the identity); or
    None."""
    if isinstance(dist, distrax.MultivariateNormalDiag):
        return dist.loc, dist.scale_diag, None
    if isinstance(dist, distrax.Normal):
        return dist.loc, dist.scale, None
    if isinstance(dist, TanhNormal):
        return dist.loc, dist.scale, jnp.tanh
    return None


def _replace_each(base, new):
    """points[p, i] = base (flat, n coordinates) with coordinate i set to new[p, i]; [P, n, n]."""
    n = base.shape[0]
    return jnp.where(jnp.eye(n, dtype=bool)[None], new[:, :, None], base[None, None, :])


def _gaussian_estimate(key, theta, dist, f, coupled):
    """Value f(θ, squash(x)) at the base draw and ĝ for (loc, scale), shaped like a sample."""
    loc, scale, squash = _gaussian_parameters(dist)
    key_x, key_w, key_w2, key_m, key_n = jax.random.split(key, 5)
    # The base draw carries no gradient: θ reaches the estimate only through the injected ĝ.
    x = sg(dist.sample_with_latent(key_x)[1] if squash else dist.sample(seed=key_x))
    squash = squash or (lambda u: u)
    shape, dtype = x.shape, x.dtype
    mu, sigma = jnp.ravel(sg(loc)), jnp.ravel(sg(scale))
    n = mu.shape[0]
    # Weibull(√2, 2) is the Rayleigh law with unit scale: density w e^{−w²/2}.
    w = jax.random.rayleigh(key_w, 1.0, (n,), dtype)
    w_neg = w if coupled else jax.random.rayleigh(key_w2, 1.0, (n,), dtype)
    m = jax.random.double_sided_maxwell(key_m, 0.0, 1.0, (n,), dtype)
    if coupled:
        normal = m * jax.random.uniform(key_n, (n,), dtype)
    else:
        normal = jax.random.normal(key_n, (n,), dtype)
    new = mu[None] + sigma[None] * jnp.stack([w, -w_neg, m, normal])
    points = _replace_each(jnp.ravel(x), new)
    f_points = jax.vmap(jax.vmap(lambda p: f(sg(theta), squash(jnp.reshape(p, shape)))))(points)
    g_loc = (f_points[0] - f_points[1]) / (sigma * _SQRT_2PI)
    g_scale = (f_points[2] - f_points[3]) / sigma
    value = check_scalar_objective(f(theta, squash(x)))
    ghat = (jnp.reshape(g_loc, jnp.shape(loc)), jnp.reshape(g_scale, jnp.shape(scale)))
    return value, ghat, (loc, scale)


def _discrete_estimate(key, theta, dist, f):
    """Value f(θ, z) and ĝ for the distribution's probs, from the point masses of each variable."""
    probs = dist.probs
    z = sg(dist.sample(seed=key))
    one_hot = isinstance(dist, distrax.OneHotCategorical)
    bernoulli = isinstance(dist, distrax.Bernoulli)
    num_classes = 2 if bernoulli else probs.shape[-1]
    flat = jnp.reshape(z, (-1, num_classes)) if one_hot else jnp.ravel(z)
    n = flat.shape[0]
    which = jnp.arange(n)
    classes = jnp.arange(num_classes)

    def point(c, i):
        # Variable i set to class c, every other variable at its draw.
        hit = which == i
        if one_hot:
            return jnp.where(hit[:, None], jax.nn.one_hot(c, num_classes, dtype=z.dtype), flat)
        return jnp.where(hit, jnp.asarray(c, z.dtype), flat)

    # f keeps θ here: the value below is one of these evaluations and must carry ∇θ f(θ, z).
    f_points = jax.vmap(lambda c: jax.vmap(
        lambda i: check_scalar_objective(f(theta, jnp.reshape(point(c, i), z.shape))))(which))(classes)
    drawn = jnp.argmax(flat[0]) if one_hot else flat[0].astype(jnp.int32)
    value = f_points[drawn, 0]
    if bernoulli:
        ghat = f_points[1] - f_points[0]
    else:
        ghat = jnp.transpose(f_points)
    return value, jnp.reshape(ghat, probs.shape), probs


_DISCRETE = (distrax.Bernoulli, distrax.Categorical, distrax.OneHotCategorical)


def measure_valued(coupled: bool = True) -> GradientEstimator:
    """The measure-valued derivative estimator (module doc) for diagonal Gaussians
    (``distrax.Normal``, ``MultivariateNormalDiag``), tanh-squashed ones (``TanhNormal``),
    Bernoulli and (one-hot) Categorical.

    Args:
      coupled: share the randomness of the two terms of each Gaussian difference (W′ = W for the
        mean, N = M·U for the scale); no effect on discrete distributions, whose parts are point
        masses.

    Raises ``EstimatorError`` on a non-bool ``coupled`` and, at trace time, on any other
    distribution.
    """
    if not isinstance(coupled, bool):
        raise EstimatorError(f"coupled must be a bool, got {coupled!r}")
    traits = Traits(name="measure_valued[coupled]" if coupled else "measure_valued", unbiased=True,
                    needs_differentiable_f=False, supports="any")

    def surrogate(key, params, make_dist, f, state):
        del state
        dist = make_dist(params)
        if _gaussian_parameters(dist) is not None:
            value, ghat, phi = _gaussian_estimate(key, params, dist, f, coupled)
        elif isinstance(dist, _DISCRETE):
            value, ghat, phi = _discrete_estimate(key, params, dist, f)
        else:
            raise EstimatorError(
                f"{traits.name} knows the weak derivative of Normal, MultivariateNormalDiag, "
                f"TanhNormal, Bernoulli, Categorical and OneHotCategorical, got "
                f"{type(dist).__name__}; use score_function."
            )
        # value carries ∇θ f(θ, z); the linear term injects ĝ through the distribution's
        # parameters φ(θ), so jax chains it into params.
        return value + linear_term(ghat, phi), {"f": sg(value)}

    return GradientEstimator(no_state, surrogate, keep_state, traits)
