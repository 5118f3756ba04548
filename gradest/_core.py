"""The surrogate contract shared by every estimator (DESIGN.md §3).

We want ∇θ E_{z ~ qθ}[f(θ, z)]. An estimator is a bundle of pure functions whose ``surrogate``
returns, for one Monte Carlo sample, a scalar whose

* forward value is that sample of the objective, f(θ, z), and whose
* gradient w.r.t. θ is that sample's gradient estimate.

The mean of the per-sample gradients is the estimator; callers batch with ``jax.vmap`` over split
keys, so ``jax.grad`` of the mean surrogate is the estimate and ``jax.vmap(jax.grad(...))`` gives
per-sample gradients for variance diagnostics.

Calling convention of every surrogate::

    surrogate(key, params, make_dist, f, state) -> (scalar, aux)

* ``key``: a typed PRNG key (``jax.random.key``), split by the caller, never reused;
* ``params``: the pytree θ we differentiate with respect to;
* ``make_dist(params)``: builds the sampling distribution qθ (a distrax distribution or anything
  with ``sample(seed=...)`` / ``log_prob``); ``None`` for zeroth order in parameter space;
* ``f(params, z)``: the objective, a scalar; it may depend on θ directly;
* ``state``: the estimator's state (e.g. a running-mean baseline), from ``init()``;
* ``aux``: a dict of per-sample quantities that ``update(state, aux)`` consumes once per batch
  (with a leading sample axis added by ``vmap``).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PRNGKey = jax.Array
Params = Any
State = Any
Aux = dict
Objective = Callable[[Params, Array], Array]
DistBuilder = Callable[[Params], Any]


class EstimatorError(ValueError):
    """An estimator was built with bad hyperparameters or applied to a problem it does not fit."""


class Traits(NamedTuple):
    """Static facts about an estimator, used to check compatibility before anything runs.

    Attributes:
      name: short name, e.g. ``"score_function"``.
      unbiased: whether E[per-sample gradient] equals ∇θ E_q[f] exactly (Gumbel-Softmax does not;
        zeroth order is unbiased for the Gaussian-smoothed objective only).
      needs_differentiable_f: whether the estimator differentiates f with respect to the sample.
      supports: ``"continuous"``, ``"discrete"`` or ``"any"``: which distributions it accepts.
      samples_per_call: how many draws of qθ one surrogate call uses (a leave-one-out baseline over
        K draws makes one estimator sample out of K draws).
      evaluations_per_call: how many times one surrogate call evaluates f (at exact or relaxed
        samples, or at perturbed points); ``None`` means one per draw, ``samples_per_call``. Read
        it as ``function_evaluations``: estimators are compared at an equal number of them.
    """

    name: str
    unbiased: bool
    needs_differentiable_f: bool
    supports: str
    samples_per_call: int = 1
    evaluations_per_call: Optional[int] = None

    @property
    def function_evaluations(self) -> int:
        """Evaluations of f per surrogate call (the cost that estimators are compared at)."""
        if self.evaluations_per_call is None:
            return self.samples_per_call
        return self.evaluations_per_call


class _EstimatorFields(NamedTuple):
    init: Callable[[], State]
    surrogate: Callable[[PRNGKey, Params, DistBuilder, Objective, State], tuple[Array, Aux]]
    update: Callable[[State, Aux], State]
    traits: Traits


class GradientEstimator(_EstimatorFields):
    """An optax-style bundle of pure functions; see the module docstring for the contract.

    The surrogate it holds checks its key first (``check_key``), so a raw ``PRNGKey`` fails with
    one clear line however the surrogate is reached: called directly, under ``jax.grad``,
    ``vmap`` or ``jit`` (the key's dtype is known at trace time), or through ``estimate_grad``.
    """

    __slots__ = ()

    def __new__(cls, init, surrogate, update, traits):
        return super().__new__(cls, init, _checking_key(surrogate), update, traits)


def check_key(key: Any) -> None:
    """Raises ``EstimatorError`` unless ``key`` is a typed PRNG key (``jax.random.key``)."""
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise EstimatorError(
            "key must be a typed PRNG key from jax.random.key(seed), not the raw uint32 "
            "jax.random.PRNGKey(seed)"
        )


def _checking_key(surrogate: Callable) -> Callable:
    if getattr(surrogate, "_checks_key", False):
        return surrogate

    @functools.wraps(surrogate)
    def checked(key, *args, **kwargs):
        check_key(key)
        return surrogate(key, *args, **kwargs)

    checked._checks_key = True
    return checked


class EmptyState(NamedTuple):
    """State of estimators that keep none."""


def no_state() -> EmptyState:
    return EmptyState()


def keep_state(state: State, aux: Aux) -> State:
    del aux
    return state


# --------------------------------------------------------------------------------------------
# Checks shared by the estimators.

_DISCRETE_TYPES = (distrax.Categorical, distrax.OneHotCategorical, distrax.Bernoulli)


def is_discrete(dist: Any) -> bool:
    """Whether ``dist`` samples from a discrete set (by type, or by an integer sample dtype)."""
    if isinstance(dist, _DISCRETE_TYPES):
        return True
    dtype = getattr(dist, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.integer)


def check_distribution(traits: Traits, dist: Any) -> None:
    """Raises ``EstimatorError`` if an estimator with ``traits`` cannot sample from ``dist``."""
    discrete = is_discrete(dist)
    if traits.supports == "continuous" and discrete:
        raise EstimatorError(
            f"{traits.name} needs a continuous, reparameterizable distribution, got the discrete "
            f"{type(dist).__name__}; use score_function (or a Gumbel estimator for categoricals)."
        )
    if traits.supports == "discrete" and not discrete:
        raise EstimatorError(
            f"{traits.name} needs a categorical distribution, got the continuous "
            f"{type(dist).__name__}; use pathwise or score_function."
        )


def check_values(name: str, value: Any, positive: bool) -> None:
    """Raises ``EstimatorError`` if a concrete ``value`` is non-finite (or, if ``positive``, ≤ 0).

    Traced values (inside ``jit`` or ``grad``) cannot be inspected and are let through.
    """
    if isinstance(value, jax.core.Tracer):
        return
    # numpy, not jnp: inside jit even a Python float becomes a tracer once jnp touches it.
    value = np.asarray(value)
    bad = ~np.isfinite(value)
    if positive:
        bad = bad | (value <= 0)
    if np.any(bad):
        need = "positive and finite" if positive else "finite"
        raise EstimatorError(f"{name} must be {need} everywhere, got {value}")


# Parameters that must be positive, by distribution type; everything else must be finite.
_POSITIVE_PARAMETERS = {
    distrax.Normal: ("scale",),
    distrax.MultivariateNormalDiag: ("scale_diag",),
    distrax.Gamma: ("concentration", "rate"),
    distrax.Beta: ("alpha", "beta"),
}
_FINITE_PARAMETERS = {
    distrax.Normal: ("loc",),
    distrax.MultivariateNormalDiag: ("loc",),
    distrax.MultivariateNormalTri: ("loc", "scale_tri"),
    distrax.Categorical: ("logits",),
    distrax.OneHotCategorical: ("logits",),
    distrax.Bernoulli: ("logits",),
}


def check_distribution_parameters(dist: Any) -> None:
    """Raises ``EstimatorError`` if a distribution built from concrete parameters has a scale ≤ 0
    or a non-finite parameter, so that bad input fails loudly instead of giving NaN gradients."""
    name = type(dist).__name__
    for cls, attrs in _POSITIVE_PARAMETERS.items():
        if isinstance(dist, cls):
            for attr in attrs:
                check_values(f"{name}.{attr}", getattr(dist, attr), positive=True)
    for cls, attrs in _FINITE_PARAMETERS.items():
        if isinstance(dist, cls):
            for attr in attrs:
                check_values(f"{name}.{attr}", getattr(dist, attr), positive=False)
    if isinstance(dist, distrax.MultivariateNormalTri):
        diag = np.diagonal(np.asarray(dist.scale_tri), axis1=-2, axis2=-1)
        if np.any(diag == 0):
            raise EstimatorError(f"{name}.scale_tri must have a non-zero diagonal, got {diag}")


def check_compatible(estimator: GradientEstimator, *, kind: str, differentiable_f: bool) -> None:
    """Raises ``EstimatorError`` when ``estimator`` cannot serve a problem or an agent.

    Args:
      estimator: the estimator to check.
      kind: ``"continuous"`` or ``"discrete"``: the distribution the caller samples from.
      differentiable_f: whether the caller's objective can be differentiated w.r.t. the sample
        (an agent with a Q(s, a) critic can; one with only returns cannot).
    """
    if kind not in ("continuous", "discrete"):
        raise EstimatorError(f"kind must be 'continuous' or 'discrete', got {kind!r}")
    t = estimator.traits
    if t.supports not in ("any", kind):
        raise EstimatorError(f"{t.name} supports {t.supports} distributions, not {kind} ones")
    if t.needs_differentiable_f and not differentiable_f:
        raise EstimatorError(
            f"{t.name} differentiates the objective w.r.t. the sample, but this objective is not "
            "differentiable; use score_function or zeroth_order."
        )


def check_positive(name: str, value: Any) -> float:
    """Returns ``value`` as a float if it is a finite number > 0, else raises ``EstimatorError``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise EstimatorError(f"{name} must be a positive finite number, got {value!r}") from e
    # math, not jnp: inside a jit trace jnp.isfinite of a Python float is a tracer.
    if not math.isfinite(v) or v <= 0:
        raise EstimatorError(f"{name} must be a positive finite number, got {value!r}")
    return v


def check_hyperparameter(name: str, value: Any) -> Any:
    """``check_positive`` for a hyperparameter that may be traced (τ, ε): a concrete value must
    be a positive finite number and comes back as a float; a traced scalar, known only at run
    time, comes back as it is, so a sweep over it is one ``jit(vmap(...))`` (as optax's
    ``inject_hyperparams`` allows for step sizes)."""
    if isinstance(value, jax.core.Tracer):
        if value.shape != ():
            raise EstimatorError(f"{name} must be a scalar, got shape {value.shape}")
        return value
    return check_positive(name, value)


def positive_temperature(tau: Any) -> Array:
    """A schedule's τ, checked: ``EstimatorError`` if it is concrete and not a positive finite
    number; if traced (the step count is traced under ``jit``), τ ≤ 0 or NaN is taken as the
    limit τ → 0⁺, i.e. ``_MIN_TEMPERATURE``: the relaxed sample is then the Gumbel-Max one-hot
    and its gradient 0, NaN-free (|logits + g| / 1e-30 stays finite in float32)."""
    if not isinstance(tau, jax.core.Tracer):
        check_positive("temperature τ (from the schedule)", tau)
    tau = jnp.asarray(tau)
    return jnp.where(tau > _MIN_TEMPERATURE, tau, jnp.asarray(_MIN_TEMPERATURE, tau.dtype))


_MIN_TEMPERATURE = 1e-30


def check_scalar_objective(value: Array, name: str = "f") -> Array:
    """Checks (at trace time) that the objective returned a scalar."""
    value = jnp.asarray(value)
    if value.shape != ():
        raise EstimatorError(
            f"{name}(params, z) must return a scalar, got shape {value.shape}; sum or average "
            "inside f, and batch samples with jax.vmap outside."
        )
    return value


# --------------------------------------------------------------------------------------------
# Pytree arithmetic.


def tree_vdot(a: Any, b: Any) -> Array:
    """Σ over all leaves of Σ a ⊙ b: the inner product of two pytrees of equal structure."""
    leaves = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum(x * y), a, b))
    return sum(leaves, jnp.zeros(()))


def linear_term(direction: Any, x: Any) -> Array:
    """⟨sg(direction), x − sg(x)⟩: zero in value, gradient w.r.t. x equal to ``direction``.

    The building block of every surrogate whose gradient is computed by hand (zeroth order, a
    per-coordinate baseline): it injects a given vector into the backward pass without changing
    the forward value.
    """
    # stop_gradient on the direction: it is a fixed estimate, not a function of θ;
    # stop_gradient on the second x: makes the value exactly zero while d/dx = direction.
    return tree_vdot(jax.lax.stop_gradient(direction), jax.tree.map(lambda v: v - jax.lax.stop_gradient(v), x))


def joint_log_prob(dist: Any, z: Array) -> Array:
    """log q(z) summed over all axes: the joint log-density of a factorized sample."""
    return jnp.sum(dist.log_prob(z))
