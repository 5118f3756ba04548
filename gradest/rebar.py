"""REBAR (Tucker et al., 2017) and RELAX (Grathwohl et al., 2018) for Bernoulli and categorical
variables: the score function with a control variate built from a continuous relaxation, whose
parameters are trained to minimize the estimator's variance.

With b = H(z), z ~ p(z | θ) reparameterized and z̃ ~ p(z | b, θ) drawn by conditional
reparameterization (``gradest._relaxed``), for any differentiable c_φ,

    ĝ = ∇θ f(θ, b) + [f(b) − c_φ(z̃)] ∇θ log p(b | θ) + ∇θ c_φ(z) − ∇θ c_φ(z̃)

is unbiased for ∇θ E[f(θ, b)] (Grathwohl et al., 2018, eq. 8): E[c_φ(z̃) ∇ log p(b)] + E[∇ c_φ(z̃)]
= ∇ E_b E_{z̃|b}[c_φ(z̃)] = ∇ E_z[c_φ(z)] = E[∇ c_φ(z)]. The control variate sees θ only
through z and z̃ (f inside it is called at sg(θ)), so its gradient is a pathwise one.

z̃ is drawn from the noise that made z (``_relaxed.tied_conditional_perturb``, as the papers'
reference implementations do): z̃ = z in value, only its derivative in θ differs. So c_φ is
evaluated once, at z, and ∇c_φ(z) − ∇c_φ(z̃) = c′_φ(z)(∂z − ∂z̃).

* REBAR: c_φ(z) = η f(σ_λ(z)), the relaxation σ(z/λ) (Bernoulli) or softmax(z/λ) (categorical)
  at temperature λ with scale η; φ = (η, log λ). 2 evaluations of f per sample: at b and σ_λ(z).
* RELAX: any c_φ; ``relax_control_variate`` gives the one of Grathwohl et al. (2018, §6.1) for
  discrete variables, REBAR's term plus a small network, c_φ(z) = η f(σ_λ(z)) + r_ρ(σ_λ(z)).

Since E[ĝ] does not depend on φ, ∂/∂φ Var[ĝ] = ∂/∂φ E[‖ĝ‖²] (Tucker et al., 2017, §3.3), and
the surrogate returns, per sample, ∂/∂φ ‖ĝ‖² in its aux; ``update`` averages it over the batch
and takes one optimizer step on φ, which lives in the estimator's state. Because ĝ is the
gradient of the surrogate, this is a second derivative: one more backward pass through f and its
derivative with respect to φ, on top of the caller's.

Surrogate (value f(θ, b); z, z̃ differentiable in θ; φ from the state), with
z_path = z + (sg z̃ − z̃) (z in value, derivative ∂z − ∂z̃):

    f(θ, b) + (sg f(b) − c_φ(z_path)) (log p(b) − sg log p(b)) + c_φ(z_path) − sg c_φ(z_path).

The coefficient keeps its dependence on φ, so that ∂ĝ/∂φ is right; its θ-derivative drops out,
multiplied by log p(b) − sg log p(b) = 0.

What REBAR can do is limited for one Bernoulli b and an f of b alone. Write REBAR's
ĝ = A + η B, A = f(b) ∇log p(b) plain REINFORCE. Then E[B | b] = ∓ f(σ_λ(0)) ρ(−θ) / p(b),
− for b = 1 (integrate c(z) 1[z > 0] by parts: only c at the threshold z = 0 is left, and σ_λ(0) = ½ for
every λ; ρ(−θ) = σ(θ)σ(−θ) is z's density there), so

    Cov(A, B) = −f(½) σ(θ)σ(−θ) [f(1)(1 − σ(θ)) + f(0) σ(θ)],

and the best η for a given λ removes Cov²/Var B from Var A: nothing when f(½) ≈ 0, as on the
RELAX paper's toy f(b) = (b − 0.499)², where f(½) = 10⁻⁶ (``experiments.discrete_estimators``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradest import _relaxed
from gradest._core import (Array, EstimatorError, GradientEstimator, PRNGKey, Traits,
                           check_distribution, check_positive, check_scalar_objective, tree_vdot)

sg = jax.lax.stop_gradient

Relax = Callable[[Array, Array], Array]      # (z, temperature) -> relaxed sample
FAt = Callable[[Array], Array]               # relaxed sample -> f(sg θ, ·)


class ControlVariate(NamedTuple):
    """c_φ(z) for RELAX.

    Attributes:
      params: the initial φ, a pytree of float arrays (trained by the estimator's ``update``).
      apply: ``apply(phi, z, relax, f_at) -> scalar``: z the perturbed logits (shape of the
        distribution's logits), ``relax(z, temperature)`` the distribution's relaxation,
        ``f_at(y)`` the objective at a relaxed sample y (with θ held fixed).
      evaluations: calls of ``f_at`` per ``apply`` (for the cost count).
    """

    params: Any
    apply: Callable[[Any, Array, Relax, FAt], Array]
    evaluations: int


def rebar_control_variate(temperature: float = 0.5, scale: float = 1.0) -> ControlVariate:
    """REBAR's c_φ(z) = η f(σ_λ(z)), φ = {"scale": η, "log_temperature": log λ}."""
    lam = check_positive("temperature λ", temperature)
    eta = float(scale)
    if not math.isfinite(eta):
        raise EstimatorError(f"scale η must be finite, got {scale!r}")
    params = {"scale": jnp.asarray(eta, jnp.float32),
              "log_temperature": jnp.asarray(math.log(lam), jnp.float32)}

    def apply(phi, z, relax, f_at):
        return phi["scale"] * f_at(relax(z, jnp.exp(phi["log_temperature"])))

    return ControlVariate(params, apply, 1)


def relax_control_variate(key: PRNGKey, num_inputs: int, hidden: int = 32,
                          temperature: float = 0.5, scale: float = 1.0) -> ControlVariate:
    """RELAX's c_φ(z) = η f(σ_λ(z)) + r_ρ(σ_λ(z)) with r_ρ(y) = w₂ᵀ tanh(W₁ y + b₁) + b₂ on the
    flattened relaxed sample (``num_inputs`` numbers: the size of the logits).

    W₁ is drawn from N(0, 1/num_inputs) with ``key``; w₂ = 0 and b₂ = 0, so training starts from
    REBAR. b₂ cancels in c(z) − c(z̃) and acts as a learned constant baseline in f(b) − c(z̃).
    """
    if not isinstance(num_inputs, int) or isinstance(num_inputs, bool) or num_inputs < 1:
        raise EstimatorError(f"num_inputs must be an int ≥ 1, got {num_inputs!r}")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise EstimatorError(f"hidden must be an int ≥ 1, got {hidden!r}")
    rebar_cv = rebar_control_variate(temperature, scale)
    net = {"w1": jax.random.normal(key, (num_inputs, hidden)) / math.sqrt(num_inputs),
           "b1": jnp.zeros((hidden,)), "w2": jnp.zeros((hidden,)), "b2": jnp.zeros(())}

    def apply(phi, z, relax, f_at):
        y = relax(z, jnp.exp(phi["rebar"]["log_temperature"]))
        if y.size != num_inputs:
            raise EstimatorError(f"relax_control_variate was built for {num_inputs} inputs, got "
                                 f"logits of shape {z.shape}")
        n = phi["net"]
        r = jnp.dot(jnp.tanh(jnp.reshape(y, (-1,)) @ n["w1"] + n["b1"]), n["w2"]) + n["b2"]
        return rebar_cv.apply(phi["rebar"], z, relax, f_at) + r

    return ControlVariate({"rebar": rebar_cv.params, "net": net}, apply, rebar_cv.evaluations)


class Optimizer(NamedTuple):
    """An optax-style gradient transformation: ``init(params)``, ``update(grads, state, params)
    -> (updates, state)``. Any optax ``GradientTransformation`` has this shape."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


def sgd(learning_rate: float) -> Optimizer:
    """Plain gradient descent, φ ← φ − η ∂/∂φ E[‖ĝ‖²] (gradest depends on no optimizer library;
    pass e.g. ``optax.adam(1e-2)`` to ``rebar`` / ``relax`` for an adaptive one)."""
    lr = check_positive("learning_rate", learning_rate)

    def update(grads, state, params=None):
        del params
        return jax.tree.map(lambda g: -lr * g, grads), state

    return Optimizer(lambda params: (), update)


class RelaxState(NamedTuple):
    """φ, the control variate's parameters, and the optimizer's state."""

    phi: Any
    opt_state: Any


def relax(control_variate: ControlVariate, optimizer: Optional[Any] = None,
          name: str = "relax") -> GradientEstimator:
    """RELAX with control variate c_φ, φ trained on ∂/∂φ E[‖ĝ‖²] by ``optimizer`` at each
    ``update`` (module docstring). 1 + ``control_variate.evaluations`` evaluations of f per
    sample.

    Args:
      control_variate: a ``ControlVariate`` (``rebar_control_variate``, ``relax_control_variate``
        or your own).
      optimizer: an optax-style transformation for φ; default ``sgd(1e-3)``.
      name: the traits' name.
    """
    cv = _checked_control_variate(control_variate)
    optimizer = _checked_optimizer(optimizer)
    traits = Traits(name=name, unbiased=True, needs_differentiable_f=True, supports="discrete",
                    evaluations_per_call=1 + cv.evaluations)

    def init():
        return RelaxState(cv.params, optimizer.init(cv.params))

    def surrogate(key, params, make_dist, f, state):
        def value(theta, phi):
            return _surrogate_value(key, traits, cv, make_dist, f, theta, phi)

        def second_moment(phi):
            g = jax.grad(lambda theta: value(theta, phi)[0])(sg(params))
            return tree_vdot(g, g)

        out, f_b = value(params, state.phi)
        return out, {"f": f_b, "phi_grad": jax.grad(second_moment)(state.phi)}

    def update(state, aux):
        return _train_phi(optimizer, state, aux)

    return GradientEstimator(init, surrogate, update, traits)


def _checked_control_variate(control_variate: Any) -> ControlVariate:
    if not isinstance(control_variate, ControlVariate):
        raise EstimatorError(f"control_variate must be a gradest.rebar.ControlVariate, got "
                             f"{control_variate!r}")
    return control_variate


def _checked_optimizer(optimizer: Optional[Any]) -> Any:
    optimizer = sgd(1e-3) if optimizer is None else optimizer
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise EstimatorError(f"optimizer needs init(params) and update(grads, state, params), got "
                             f"{optimizer!r}")
    return optimizer


def _surrogate_value(key: PRNGKey, traits: Traits, cv: ControlVariate, make_dist, f,
                     theta: Any, phi: Any) -> tuple[Array, Array]:
    """(the surrogate of the module docstring at θ, φ; f(θ, b)), with z̃ tied to z.

    z̃ = z in value, so c_φ(z) − c_φ(z̃) is one call of c_φ at z_path = z + (sg z̃ − z̃): z in
    value, derivative ∂z − ∂z̃, hence gradient c′_φ(z)(∂z − ∂z̃) = ∇c_φ(z) − ∇c_φ(z̃). The same
    call gives the score term's coefficient f(b) − c_φ(z̃); it needs no stop-gradient in θ, since
    it multiplies log q(b) − sg log q(b), which is 0 in value, so its θ-derivative (and that
    derivative's φ-derivative) drops out, while ∂ĝ/∂φ keeps its dependence on φ.
    """
    dist = make_dist(theta)
    check_distribution(traits, dist)
    kind, logits = _relaxed.kind_and_logits(traits.name, dist)
    z = _relaxed.perturb(key, kind, logits)
    b = _relaxed.harden(kind, z)
    z_cond = _relaxed.tied_conditional_perturb(kind, logits, z)
    f_b = check_scalar_objective(f(theta, b))

    def f_at(y):
        # θ held fixed: the control variate's gradient flows through z only.
        return check_scalar_objective(f(sg(theta), y))

    c_path = cv.apply(phi, z + (sg(z_cond) - z_cond),
                      lambda x, t: _relaxed.relax(kind, x, t), f_at)
    log_q = _relaxed.log_prob(kind, logits, b)
    score = (sg(f_b) - c_path) * (log_q - sg(log_q))
    return f_b + score + c_path - sg(c_path), f_b


def _train_phi(optimizer: Any, state: RelaxState, aux: dict) -> RelaxState:
    """One optimizer step on φ along the batch mean of the per-sample ∂‖ĝ‖²/∂φ."""
    # Mean over every leading (sample, group, batch …) axis.
    grads = jax.tree.map(lambda g, p: jnp.mean(jnp.reshape(g, (-1,) + jnp.shape(p)), axis=0),
                         aux["phi_grad"], state.phi)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.phi)
    return RelaxState(jax.tree.map(jnp.add, state.phi, updates), opt_state)


def rebar(temperature: float = 0.5, scale: float = 1.0,
          optimizer: Optional[Any] = None) -> GradientEstimator:
    """REBAR: ``relax`` with c_φ(z) = η f(σ_λ(z)), η and λ trained on the variance; 2 evaluations
    of f per sample.

    Args:
      temperature: the initial λ > 0 (Tucker et al., 2017 start at 0.5).
      scale: the initial η (1: the relaxed f itself).
      optimizer: optax-style transformation for (η, log λ); default ``sgd(1e-3)``.
    """
    return relax(rebar_control_variate(temperature, scale), optimizer, name="rebar")
