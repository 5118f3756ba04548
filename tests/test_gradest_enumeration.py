"""``gradest.exact_enumeration``: the exact expectation over a categorical's support.

Its gradient is compared with closed forms (``gradest.testing.categorical``'s ``jax.grad`` of the
exact value, and softmax(l) ⊙ (v − E v) by hand), so the tolerances are float32 rounding only: the
estimator has no Monte Carlo error. It also keeps the contract of every estimator (DESIGN.md §3):
a scalar surrogate whose value is E_q[f], batched with ``vmap``, the same under ``jit``, and a
clear ``EstimatorError`` where it does not apply.
"""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradest
from gradest import testing


def _theta_dependent_problem():
    """f(θ, y) = y·v + ‖θ‖² · (y·w): the objective depends on θ directly *and* through y, so both
    gradient parts (∇π · f and π · ∇f) must be right."""
    v, w = jnp.array([1.0, -2.0, 0.5, 3.0]), jnp.array([0.3, -1.0, 2.0, 0.1])

    def f(params, y):
        return jnp.dot(y, v) + jnp.sum(params["logits"] ** 2) * jnp.dot(y, w)

    return testing.categorical(logits=[0.2, -0.7, 1.1, 0.0], f=f)


@pytest.mark.parametrize("use_jit", [False, True])
def test_gradient_and_value_are_exact(use_jit):
    problem = _theta_dependent_problem()
    est = gradest.exact_enumeration()

    def surrogate(params, key):
        return est.surrogate(key, params, problem.make_dist, problem.f, est.init())[0]

    fn = jax.jit(jax.value_and_grad(surrogate)) if use_jit else jax.value_and_grad(surrogate)
    value, grad = fn(problem.params, jax.random.key(0))
    np.testing.assert_allclose(value, problem.value(problem.params), rtol=1e-6)
    chex.assert_trees_all_close(grad, testing.exact_grad(problem), rtol=1e-5, atol=1e-6)
    # No Monte Carlo error: another key gives the same numbers.
    value_2, grad_2 = fn(problem.params, jax.random.key(7))
    np.testing.assert_array_equal(value, value_2)
    chex.assert_trees_all_equal(grad, grad_2)


def test_index_categorical_matches_the_softmax_gradient_by_hand():
    """Categorical over indices: ∇_l Σ_k softmax(l)_k v_k = softmax(l) ⊙ (v − Σ_k softmax(l)_k v_k)."""
    logits, values = jnp.array([0.5, -1.0, 2.0]), jnp.array([4.0, -1.0, 0.5])
    est = gradest.exact_enumeration()
    grad = jax.grad(lambda lg: est.surrogate(jax.random.key(0), lg,
                                             lambda p: distrax.Categorical(logits=p),
                                             lambda p, k: values[k], est.init())[0])(logits)
    p = np.exp(logits) / np.sum(np.exp(logits))
    np.testing.assert_allclose(grad, p * (values - np.dot(p, values)), rtol=1e-5)


def test_batched_by_estimate_grad_is_exact_with_zero_variance():
    problem = testing.categorical()
    out = gradest.estimate_grad(gradest.exact_enumeration(), jax.random.key(1), problem.params,
                                problem.make_dist, problem.f, num_samples=16, diagnostics=True)
    chex.assert_trees_all_close(out.grad, testing.exact_grad(problem), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.diagnostics.total_variance, 0.0, atol=1e-10)


def test_where_it_does_not_apply_it_raises():
    est = gradest.exact_enumeration()
    def normal(p):
        return distrax.Normal(p, 1.0)
    with pytest.raises(gradest.EstimatorError):
        est.surrogate(jax.random.key(0), jnp.zeros(()), normal, lambda p, z: z, est.init())
    def batched(p):
        return distrax.Categorical(logits=p)
    with pytest.raises(gradest.EstimatorError, match="one categorical"):
        est.surrogate(jax.random.key(0), jnp.zeros((2, 3)), batched, lambda p, z: 0.0, est.init())
    with pytest.raises(gradest.EstimatorError):
        gradest.check_compatible(est, kind="continuous", differentiable_f=False)
    gradest.check_compatible(est, kind="discrete", differentiable_f=False)
