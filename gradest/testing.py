"""Closed-form test problems: objectives whose expectation, and so whose gradient, is exact.

Each constructor returns a ``Problem`` with θ, the sampling distribution qθ, the objective f and
``value(θ) = E_{qθ}[f(θ, z)]`` written as a JAX expression, so the exact gradient is
``jax.grad(value)`` (``exact_grad``). Estimators are judged against it, not by trust.

For the one-dimensional Gaussian problems (Mohamed et al., 2020, §3: x ~ N(μ, σ²), θ = (μ, σ))
the variance of the per-sample score-function and pathwise estimates, E[f] and the optimal
baseline are also exact, by quadrature in float64 numpy over ε = (x − μ)/σ:

    E[g(x)] = ∫ g(μ + σε) φ(ε) dε ≈ h Σ_i g(μ + σ ε_i) φ(ε_i),   ε_i = −20 + i·h,

the trapezoidal rule on a uniform grid. For smooth integrands with Gaussian tails it converges
geometrically in 1/h (Trefethen & Weideman, SIAM Review 56(3), 2014) and, unlike Gauss–Hermite
(numpy's ``hermegauss`` overflows beyond ~300 nodes), it resolves any feature a few steps wide:
the variance integrand of exp(−kx²) is a peak of width 1/(2σ√k) in ε, on which 150
Gauss–Hermite nodes err by 1e-6 relative at k = 5, σ = 1, and 250 nodes by 15% at k = 10,
σ = 2. The default 8001 nodes (h = 0.005) agree with 4001 to 1e-8 relative on those cases.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, NamedTuple, Optional, Union

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma

from gradest._core import check_positive
from gradest.distributions import Bernoulli, StudentT, TanhNormal

_DEFAULT_NODES = 8001
# φ(20) ≈ 6e-88: the grid's ends contribute nothing even to polynomially growing integrands.
_HALF_WIDTH = 20.0


class Problem(NamedTuple):
    """A gradient-estimation problem with a closed-form objective.

    Attributes:
      name: short id, e.g. ``"gaussian/cos"``.
      params: θ, a dict of float32 arrays, at which gradients are taken.
      make_dist: θ ↦ qθ (a distrax distribution).
      f: (θ, z) ↦ scalar objective.
      value: θ ↦ exact E_{qθ}[f(θ, z)], a JAX expression, so ``jax.grad(value)`` is exact.
      kind: ``"continuous"`` or ``"discrete"``.
      reparameterizable: whether z = g(θ, ε) is differentiable in θ (pathwise applies).
      meta: static facts, e.g. ``{"family": "gaussian", "f": "cos", "k": 5.0}``.
    """

    name: str
    params: Any
    make_dist: Callable[[Any], Any]
    f: Callable[[Any, jax.Array], jax.Array]
    value: Callable[[Any], jax.Array]
    kind: str
    reparameterizable: bool
    meta: dict


def exact_grad(problem: Problem, params: Any = None) -> Any:
    """∇θ E_{qθ}[f(θ, z)]: ``jax.grad(problem.value)`` at ``params`` (default: problem.params)."""
    return jax.grad(problem.value)(problem.params if params is None else params)


def _f32(x: Any) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _pick(table: dict, f_name: str, family: str) -> Any:
    if f_name not in table:
        raise ValueError(f"{family}: unknown f_name {f_name!r}; choose one of {sorted(table)}")
    return table[f_name]


# --------------------------------------------------------------------------------------------
# Gaussian problems (Mohamed et al., 2020, §3).


class _GaussianF(NamedTuple):
    """One test function: ``f(xp, x, k)`` works for xp = jnp (the objective) and xp = np (float64
    quadrature); ``grad(x, k)`` is f'(x) in numpy; ``mean(μ, σ, k)`` is E[f(x)], x ~ N(μ, σ²)."""

    f: Callable
    grad: Callable
    mean: Callable


_GAUSSIAN_F = {
    "linear": _GaussianF(
        f=lambda xp, x, k: k * x,
        grad=lambda x, k: np.full_like(x, k),
        mean=lambda mu, sigma, k: k * mu),
    "quadratic": _GaussianF(
        f=lambda xp, x, k: x**2,
        grad=lambda x, k: 2.0 * x,
        mean=lambda mu, sigma, k: mu**2 + sigma**2),
    "shifted_square": _GaussianF(
        f=lambda xp, x, k: (x - k)**2,
        grad=lambda x, k: 2.0 * (x - k),
        mean=lambda mu, sigma, k: (mu - k)**2 + sigma**2),
    # E[exp(−kx²)] = (1 + 2kσ²)^(−1/2) exp(−kμ²/(1 + 2kσ²)): a Gaussian integral, finite for k ≥ 0.
    "exp": _GaussianF(
        f=lambda xp, x, k: xp.exp(-k * x**2),
        grad=lambda x, k: -2.0 * k * x * np.exp(-k * x**2),
        mean=lambda mu, sigma, k: (1.0 + 2.0 * k * sigma**2)**-0.5
        * jnp.exp(-k * mu**2 / (1.0 + 2.0 * k * sigma**2))),
    # E[cos kx] = Re E[e^{ikx}] = cos(kμ) exp(−k²σ²/2), the Gaussian characteristic function.
    "cos": _GaussianF(
        f=lambda xp, x, k: xp.cos(k * x),
        grad=lambda x, k: -k * np.sin(k * x),
        mean=lambda mu, sigma, k: jnp.cos(k * mu) * jnp.exp(-0.5 * k**2 * sigma**2)),
}


def _normal(params: Any) -> distrax.Normal:
    return distrax.Normal(params["mu"], params["sigma"])


def gaussian(f_name: str = "cos", k: float = 1.0, mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """x ~ N(μ, σ²) with θ = {"mu": μ, "sigma": σ} (σ itself, not log σ; Mohamed et al. 2020 §3).

    f_name (k is its constant):
      "linear" k·x: E = kμ;  "quadratic" x²: E = μ² + σ²;  "shifted_square" (x − k)²:
      E = (μ − k)² + σ²;  "exp" exp(−kx²): E = (1 + 2kσ²)^(−1/2) exp(−kμ²/(1 + 2kσ²)), k ≥ 0;
      "cos" cos(kx): E = cos(kμ) exp(−k²σ²/2).
    """
    fn = _pick(_GAUSSIAN_F, f_name, "gaussian")
    check_positive("sigma", sigma)
    if f_name == "exp" and k < 0:
        raise ValueError(f"gaussian 'exp': E[exp(-k x^2)] can be infinite unless k ≥ 0, got {k}")
    k = float(k)
    return Problem(
        name=f"gaussian/{f_name}",
        params={"mu": _f32(mu), "sigma": _f32(sigma)},
        make_dist=_normal,
        f=lambda params, x: fn.f(jnp, x, k),
        value=lambda params: fn.mean(params["mu"], params["sigma"], k),
        kind="continuous",
        reparameterizable=True,
        meta={"family": "gaussian", "f": f_name, "k": k},
    )


def gaussian_direct(mu: float = 1.0, sigma: float = 1.0) -> Problem:
    """An objective that depends on θ directly: f(θ, x) = (x − μ)², x ~ N(μ, σ²).

    E = σ², so ∇θ E = (0, 2σ): the ∂f/∂μ term and the score term cancel in μ exactly, which an
    estimator that drops ∇θ f gets wrong.
    """
    check_positive("sigma", sigma)
    return Problem(
        name="gaussian_direct",
        params={"mu": _f32(mu), "sigma": _f32(sigma)},
        make_dist=_normal,
        f=lambda params, x: (x - params["mu"])**2,
        value=lambda params: params["sigma"]**2,
        kind="continuous",
        reparameterizable=True,
        meta={"family": "gaussian_direct", "f": "(x - mu)^2"},
    )


def gaussian_diag(dim: int = 3, seed: int = 0) -> Problem:
    """x ~ N(μ, diag σ²) in ``dim`` dimensions, f(x) = Σ_i c_i x_i² + aᵀx with fixed c > 0, a.

    E = Σ_i c_i (μ_i² + σ_i²) + aᵀμ. μ, σ, c, a are drawn once from ``numpy`` with ``seed``.
    """
    rng = np.random.default_rng(seed)
    mu, sigma = rng.normal(size=dim), rng.uniform(0.5, 1.5, size=dim)
    c, a = rng.uniform(0.5, 2.0, size=dim), rng.normal(size=dim)
    return Problem(
        name="gaussian_diag",
        params={"mu": _f32(mu), "sigma": _f32(sigma)},
        make_dist=lambda params: distrax.MultivariateNormalDiag(params["mu"], params["sigma"]),
        f=lambda params, x: jnp.sum(c * x**2) + jnp.dot(a, x),
        value=lambda params: jnp.sum(c * (params["mu"]**2 + params["sigma"]**2))
        + jnp.dot(a, params["mu"]),
        kind="continuous",
        reparameterizable=True,
        meta={"family": "gaussian_diag", "f": "sum c x^2 + a.x", "dim": dim},
    )


def mvn_quadratic(dim: int = 3, seed: int = 0) -> Problem:
    """x = μ + Lε, ε ~ N(0, I), L lower triangular (seed 000), f(x) = xᵀAx + bᵀx.

    θ = {"mu": μ, "L": L}; ``make_dist`` uses tril(L), so entries above the diagonal have zero
    gradient. With Σ = LLᵀ: E = μᵀAμ + bᵀμ + tr(AΣ). A (symmetric), b, μ and L (positive
    diagonal) are drawn once from ``numpy`` with ``seed``.
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=dim)
    chol = np.tril(0.3 * rng.normal(size=(dim, dim)), -1) + np.diag(rng.uniform(0.5, 1.5, dim))
    m = rng.normal(size=(dim, dim))
    a_mat, b_vec = 0.5 * (m + m.T), rng.normal(size=dim)

    def value(params):
        loc, tri = params["mu"], jnp.tril(params["L"])
        return loc @ a_mat @ loc + jnp.dot(b_vec, loc) + jnp.trace(a_mat @ tri @ tri.T)

    return Problem(
        name="mvn_quadratic",
        params={"mu": _f32(mu), "L": _f32(chol)},
        make_dist=lambda params: distrax.MultivariateNormalTri(params["mu"], jnp.tril(params["L"])),
        f=lambda params, x: x @ a_mat @ x + jnp.dot(b_vec, x),
        value=value,
        kind="continuous",
        reparameterizable=True,
        meta={"family": "mvn_quadratic", "f": "x'Ax + b'x", "dim": dim},
    )


# --------------------------------------------------------------------------------------------
# Discrete problems: exact by enumeration, for any f.


def categorical(values: Optional[Any] = None, logits: Optional[Any] = None,
                f: Optional[Callable] = None) -> Problem:
    """y ~ OneHotCategorical(softmax(θ["logits"])), y a one-hot float32 vector.

    f(θ, y) = y·values, or any given f of (θ, one-hot y); not both. Defaults: logits
    (0.5, −1, 1.5, 0) and values_k = (−1)^k (k + 1). Exact by enumeration over the K classes e_k:
    E = Σ_k softmax(logits)_k f(θ, e_k).
    """
    if values is not None and f is not None:
        raise ValueError("categorical: pass values (f = y·values) or f, not both")
    logits = np.array([0.5, -1.0, 1.5, 0.0]) if logits is None else np.asarray(logits, float)
    if logits.ndim != 1:
        raise ValueError(f"categorical: logits must be a vector, got shape {logits.shape}")
    num_classes = logits.shape[0]
    if f is None:
        k = np.arange(num_classes)
        values = (-1.0)**k * (k + 1.0) if values is None else np.asarray(values, float)
        if values.shape != (num_classes,):
            raise ValueError(f"categorical: values need shape ({num_classes},), got {values.shape}")
        def f(params, y):
            del params
            return jnp.dot(y, values)

        f_label = "dot"
    else:
        f_label = getattr(f, "__name__", "custom")
    return _one_hot_problem("categorical", logits, f, np.eye(num_classes),
                            {"f": f_label, "num_classes": num_classes})


def bernoulli(logit: float = 0.3, f0: Optional[float] = None, f1: Optional[float] = None,
              f: Optional[Callable] = None) -> Problem:
    """y ~ Bernoulli(sigmoid(θ["logit"])), y ∈ {0., 1.} (float32).

    f(θ, y) = f0 (y = 0) or f1 (y = 1), defaults 1 and 3, or any given f of (θ, y); not both.
    Exact by enumeration: E = (1 − p) f(θ, 0) + p f(θ, 1), p = sigmoid(logit).
    """
    if f is not None and (f0 is not None or f1 is not None):
        raise ValueError("bernoulli: pass f0/f1 or f, not both")
    if f is None:
        f0 = 1.0 if f0 is None else float(f0)
        f1 = 3.0 if f1 is None else float(f1)
        def f(params, y):
            del params
            return f0 + (f1 - f0) * y

        f_label = "table"
    else:
        f_label = getattr(f, "__name__", "custom")

    def value(params):
        p = jax.nn.sigmoid(params["logit"])
        zero = jnp.zeros((), params["logit"].dtype)
        return (1.0 - p) * f(params, zero) + p * f(params, zero + 1.0)

    return Problem(
        name="bernoulli",
        params={"logit": _f32(logit)},
        make_dist=lambda params: distrax.Bernoulli(logits=params["logit"], dtype=jnp.float32),
        f=f,
        value=value,
        kind="discrete",
        reparameterizable=False,
        meta={"family": "bernoulli", "f": f_label},
    )


def bernoulli_vector(dim: int = 3, seed: int = 0) -> Problem:
    """b ~ Π_i Bernoulli(sigmoid(θ["logits"]_i)), b ∈ {0., 1.}^dim, with an f that couples the
    coordinates: f(b) = (c·b − t)² + a b_0 b_1 (c, t, a and the logits drawn once from ``numpy``
    with ``seed``). Exact by enumeration over the 2^dim vectors:
    E = Σ_b Π_i p_i^{b_i} (1 − p_i)^{1 − b_i} f(b).
    """
    if dim < 2:
        raise ValueError(f"bernoulli_vector: dim must be at least 2, got {dim}")
    rng = np.random.default_rng(seed)
    logits, c = rng.normal(size=dim), rng.uniform(0.5, 2.0, size=dim)
    t, a = float(rng.uniform(0.5, 1.5)), float(rng.normal())
    corners = np.array(list(itertools.product((0.0, 1.0), repeat=dim)), np.float32)

    def f(params, b):
        del params
        return (jnp.dot(b, c) - t)**2 + a * b[0] * b[1]

    def value(params):
        p = jax.nn.sigmoid(params["logits"])
        probs = jnp.prod(jnp.where(corners > 0.5, p[None], 1.0 - p[None]), axis=1)
        return jnp.dot(probs, jax.vmap(lambda b: f(params, b))(corners))

    return Problem(
        name="bernoulli_vector",
        params={"logits": _f32(logits)},
        make_dist=lambda params: Bernoulli(logits=params["logits"], dtype=jnp.float32),
        f=f,
        value=value,
        kind="discrete",
        reparameterizable=False,
        meta={"family": "bernoulli_vector", "f": "(c.b - t)^2 + a b0 b1", "dim": dim},
    )


def categorical_vector(num_vars: int = 2, num_classes: int = 3, seed: int = 0) -> Problem:
    """L = ``num_vars`` independent categoricals, y ~ Π_l OneHotCategorical(softmax(θ["logits"]_l)),
    y one-hot of shape [L, K], with f(y) = (Σ_l y_l·v_l − t)² coupling the variables (v, t and the
    logits drawn once from ``numpy`` with ``seed``). Exact by enumeration over the K^L outcomes.
    """
    if num_vars < 1 or num_classes < 2:
        raise ValueError(f"categorical_vector: need num_vars ≥ 1 and num_classes ≥ 2, got "
                         f"{num_vars}, {num_classes}")
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(num_vars, num_classes))
    v, t = rng.normal(size=(num_vars, num_classes)), float(rng.normal())
    outcomes = np.array(list(itertools.product(range(num_classes), repeat=num_vars)))

    def f(params, y):
        del params
        return (jnp.sum(y * v) - t)**2

    return _one_hot_problem("categorical_vector", logits, f,
                            np.eye(num_classes)[outcomes],          # [K^L, L, K]
                            {"f": "(sum y.v - t)^2", "num_vars": num_vars,
                             "num_classes": num_classes})


def _one_hot_problem(name: str, logits: np.ndarray, f: Callable, onehots: np.ndarray,
                     meta: dict) -> Problem:
    """y ~ Π OneHotCategorical(softmax(θ["logits"])) over the last axis of ``logits``, with the
    exact E_q[f] by enumeration over ``onehots`` (every outcome y, stacked on a leading axis):
    E = Σ_y q(y) f(θ, y), log q(y) = Σ y · log_softmax(logits)."""
    def value(params):
        log_q = jax.nn.log_softmax(params["logits"], axis=-1)
        y = jnp.asarray(onehots, log_q.dtype)
        probs = jnp.exp(jnp.sum(y * log_q[None], axis=tuple(range(1, y.ndim))))
        return jnp.dot(probs, jax.vmap(lambda yi: f(params, yi))(y))

    return Problem(
        name=name,
        params={"logits": _f32(logits)},
        make_dist=lambda params: distrax.OneHotCategorical(logits=params["logits"],
                                                           dtype=jnp.float32),
        f=f,
        value=value,
        kind="discrete",
        reparameterizable=False,
        meta={"family": name, **meta},
    )


# --------------------------------------------------------------------------------------------
# Implicitly reparameterized families (Gamma, Beta, Student-t; seed 000).


def _closed_form_problem(family: str, table: dict, f_name: str, make: Callable,
                         **params: float) -> Problem:
    """x ~ ``make(*θ)`` with positive parameters θ (given in ``make``'s order), sampled by
    implicit reparameterization, and f(x) from ``table[f_name]`` = (f, its mean as a function of
    the same parameters in the same order)."""
    fx, mean = _pick(table, f_name, family)
    for name, v in params.items():
        check_positive(name, v)
    names = tuple(params)
    return Problem(
        name=f"{family}/{f_name}",
        params={n: _f32(v) for n, v in params.items()},
        make_dist=lambda theta: make(*(theta[n] for n in names)),
        f=lambda theta, x: fx(x),
        value=lambda theta: mean(*(theta[n] for n in names)),
        kind="continuous",
        reparameterizable=True,
        meta={"family": family, "f": f_name},
    )


_GAMMA_F = {
    "identity": (lambda x: x, lambda a, b: a / b),
    "square": (lambda x: x**2, lambda a, b: a * (a + 1.0) / b**2),
    "log": (jnp.log, lambda a, b: digamma(a) - jnp.log(b)),
    # The Laplace transform E[e^(−x)] = (β/(β + 1))^α: f(0) = 1, so a score that is wrong
    # where a small-shape draw underflows to 0 shows in the gradient.
    "exp_neg": (lambda x: jnp.exp(-x), lambda a, b: (b / (b + 1.0))**a),
}


def gamma(concentration: float = 2.0, rate: float = 1.5, f_name: str = "square") -> Problem:
    """x ~ Gamma(α, β) (rate β), θ = {"concentration": α, "rate": β}.

    f_name: "identity" E[x] = α/β; "square" E[x²] = α(α+1)/β²; "log" E[log x] = ψ(α) − log β;
    "exp_neg" E[e^(−x)] = (β/(β + 1))^α.
    """
    return _closed_form_problem("gamma", _GAMMA_F, f_name, distrax.Gamma,
                                concentration=concentration, rate=rate)


_BETA_F = {
    "identity": (lambda x: x, lambda a, b: a / (a + b)),
    "square": (lambda x: x**2, lambda a, b: a * (a + 1.0) / ((a + b) * (a + b + 1.0))),
}


def beta(a: float = 2.0, b: float = 3.0, f_name: str = "square") -> Problem:
    """x ~ Beta(a, b), θ = {"a": a, "b": b}.

    f_name: "identity" E[x] = a/(a+b); "square" E[x²] = a(a+1)/((a+b)(a+b+1)).
    """
    return _closed_form_problem("beta", _BETA_F, f_name, distrax.Beta, a=a, b=b)


def student_t(df: float = 5.0, loc: float = 0.5, scale: float = 1.2,
              f_name: str = "square") -> Problem:
    """x ~ StudentT(ν, μ, σ), θ = {"df": ν, "loc": μ, "scale": σ}.

    f_name:

    * "square": f(x) = x², E[x²] = μ² + σ² ν/(ν − 2), finite for ν > 2 (the gradient w.r.t. ν
      is pathwise through the implicitly reparameterized Gamma draw inside ``StudentT``);
    * "ratio": f(θ, x) = z²/(ν + z²), z = (x − μ)/σ, bounded, for any ν > 0: z²/(ν + z²) ~
      Beta(½, ν/2) when z is standard Student-t, so E = 1/(1 + ν). With small ν the draws reach
      past the float range, which tests the estimators there. f depends on θ directly.
    """
    df = check_positive("df", df)
    if f_name == "square" and df <= 2.0:
        raise ValueError(f"student_t: E[x^2] is infinite unless df > 2, got {df}")
    check_positive("scale", scale)
    if f_name == "square":
        def f(params, x):
            del params
            return x**2

        def value(params):
            return params["loc"]**2 + params["scale"]**2 * params["df"] / (params["df"] - 2.0)
    elif f_name == "ratio":
        def f(params, x):
            z = (x - params["loc"]) / params["scale"]
            # 1 − ν/(ν + z²) rather than z²/(ν + z²): z² may overflow to inf, inf/inf is NaN.
            return 1.0 - params["df"] / (params["df"] + z * z)

        def value(params):
            return 1.0 / (1.0 + params["df"])
    else:
        raise ValueError(f"student_t: unknown f_name {f_name!r}; choose one of ['ratio', 'square']")
    return Problem(
        name=f"student_t/{f_name}" if f_name != "square" else "student_t",
        params={"df": _f32(df), "loc": _f32(loc), "scale": _f32(scale)},
        make_dist=lambda params: StudentT(params["df"], params["loc"], params["scale"]),
        f=f,
        value=value,
        kind="continuous",
        reparameterizable=True,
        meta={"family": "student_t", "f": f_name},
    )


def tanh_normal(loc: float = 6.0, scale: float = 2.0, num_nodes: int = _DEFAULT_NODES) -> Problem:
    """a = tanh(u), u ~ N(μ, σ²) (``gradest.TanhNormal``, one action), θ = {"loc", "scale"},
    f(a) = a.

    E[tanh(u)] has no closed form; ``value`` is the trapezoidal rule of the module docstring
    written in JAX, Σ_i w_i tanh(μ + σε_i), so ``jax.grad(value)`` = Σ_i w_i sech²(u_i)(1, ε_i)
    is the exact gradient up to the rule's (geometrically small) error and float32 rounding. The
    defaults saturate: tanh(u) rounds to 1 in float32 for u ≳ 9, about 9% of the draws.
    """
    check_positive("scale", scale)
    eps = np.linspace(-_HALF_WIDTH, _HALF_WIDTH, num_nodes)
    weights = (eps[1] - eps[0]) * np.exp(-0.5 * eps**2) / math.sqrt(2.0 * math.pi)
    eps, weights = _f32(eps)[:, None], _f32(weights)[:, None]
    return Problem(
        name="tanh_normal",
        params={"loc": _f32([loc]), "scale": _f32([scale])},
        make_dist=lambda params: TanhNormal(params["loc"], params["scale"]),
        f=lambda params, a: jnp.sum(a),
        value=lambda params: jnp.sum(
            weights * jnp.tanh(params["loc"][None, :] + params["scale"][None, :] * eps)),
        kind="continuous",
        reparameterizable=True,
        meta={"family": "tanh_normal", "f": "identity"},
    )


def all_problems() -> list[Problem]:
    """One representative problem of every family, with default settings."""
    return [gaussian("cos"), gaussian_direct(), gaussian_diag(), mvn_quadratic(), categorical(),
            bernoulli(), bernoulli_vector(), categorical_vector(), gamma(), beta(), student_t(),
            tanh_normal()]


# --------------------------------------------------------------------------------------------
# Exact moments of per-sample estimates for the 1-D Gaussian problems, by quadrature.


class _Quadrature(NamedTuple):
    """A float64 quadrature rule for x = μ + σε, ε ~ N(0, 1), with f, f' and the score at the nodes.

    The score of N(μ, σ²) in θ = (μ, σ): ∂_μ log q = (x − μ)/σ² = ε/σ and
    ∂_σ log q = ((x − μ)² − σ²)/σ³ = (ε² − 1)/σ.
    """

    eps: np.ndarray
    weights: np.ndarray  # Σ_i w_i g(x_i) ≈ E[g(x)]
    f: np.ndarray
    grad_f: np.ndarray
    score: dict

    def mean(self, g: np.ndarray) -> float:
        return float(np.dot(self.weights, g))

    def variance(self, g: np.ndarray) -> float:
        # Two passes, E[(g − E g)²] rather than E[g²] − (E g)²: no cancellation, and exactly
        # zero for a constant g.
        return self.mean((g - self.mean(g))**2)


def _quadrature(problem: Problem, num_nodes: int) -> _Quadrature:
    if problem.meta.get("family") != "gaussian":
        raise ValueError(
            f"exact moments by quadrature exist for the 1-D testing.gaussian problems only, got "
            f"{problem.name!r}"
        )
    if num_nodes < 2:
        raise ValueError(f"num_nodes must be at least 2, got {num_nodes}")
    fn, k = _GAUSSIAN_F[problem.meta["f"]], problem.meta["k"]
    mu, sigma = float(problem.params["mu"]), float(problem.params["sigma"])
    eps = np.linspace(-_HALF_WIDTH, _HALF_WIDTH, num_nodes)
    # Trapezoidal weights h·φ(ε_i); the end corrections (halving w_0, w_n) are below 1e-87.
    weights = (eps[1] - eps[0]) * np.exp(-0.5 * eps**2) / math.sqrt(2.0 * math.pi)
    x = mu + sigma * eps
    return _Quadrature(
        eps=eps,
        weights=weights,
        f=fn.f(np, x, k),
        grad_f=fn.grad(x, k),
        score={"mu": eps / sigma, "sigma": (eps**2 - 1.0) / sigma},
    )


def exact_variance(problem: Problem, estimator: str, baseline: Union[float, dict] = 0.0,
                   num_nodes: int = _DEFAULT_NODES) -> dict:
    """Variance of the per-sample gradient estimate, per coordinate {"mu": ..., "sigma": ...}.

    For a 1-D ``gaussian`` problem (``ValueError`` otherwise), with s the score and x = μ + σε:

    * ``"score_function"``: g_j = (f(x) − b_j) s_j(x), b a scalar or {"mu": b_μ, "sigma": b_σ};
    * ``"pathwise"``: g_μ = f'(x), g_σ = f'(x) ε (the baseline is ignored).

    Var g_j = E[(g_j − E g_j)²], by ``num_nodes``-point quadrature in float64 (module doc).
    """
    quad = _quadrature(problem, num_nodes)
    if estimator == "score_function":
        b = baseline if isinstance(baseline, dict) else {"mu": baseline, "sigma": baseline}
        g = {j: (quad.f - float(b[j])) * quad.score[j] for j in ("mu", "sigma")}
    elif estimator == "pathwise":
        g = {"mu": quad.grad_f, "sigma": quad.grad_f * quad.eps}
    else:
        raise ValueError(f"estimator must be 'score_function' or 'pathwise', got {estimator!r}")
    return {j: quad.variance(gj) for j, gj in g.items()}


def exact_mean_value(problem: Problem, num_nodes: int = _DEFAULT_NODES) -> float:
    """E_{qθ}[f(x)] by quadrature, for a 1-D ``gaussian`` problem (checks ``problem.value``)."""
    quad = _quadrature(problem, num_nodes)
    return quad.mean(quad.f)


def exact_optimal_baseline(problem: Problem, per_coordinate: bool = False,
                           num_nodes: int = _DEFAULT_NODES) -> Union[float, dict]:
    """The variance-minimizing constant baseline of the score-function estimator (seed 003).

    Since E[s] = 0, Var[(f − b) s_j] = E[(f − b)² s_j²] − E[f s_j]², a parabola in b:

    * one b for all coordinates (minimizes Σ_j Var): b* = E[f ‖s‖²] / E[‖s‖²], a float;
    * ``per_coordinate``: b*_j = E[f s_j²] / E[s_j²], a dict {"mu": ..., "sigma": ...} that
      ``gradest.baselines.constant`` accepts as a per-coordinate baseline.

    For a 1-D ``gaussian`` problem, by quadrature.
    """
    quad = _quadrature(problem, num_nodes)
    sq = {j: s**2 for j, s in quad.score.items()}
    if per_coordinate:
        return {j: quad.mean(quad.f * s2) / quad.mean(s2) for j, s2 in sq.items()}
    norm_sq = sq["mu"] + sq["sigma"]
    return quad.mean(quad.f * norm_sq) / quad.mean(norm_sq)


# --------------------------------------------------------------------------------------------
# Exact variances of the measure-valued and delta-method estimators (1-D Gaussian problems).


def _half_line_mean(quad: _Quadrature, g: Callable[[np.ndarray], np.ndarray]) -> float:
    """E[g(W)] for W ~ Weibull(√2, 2) (the Rayleigh law, density w e^{−w²/2} on w > 0).

    The trapezoidal rule on w_i = i·h, i ≥ 1, plus the Euler–Maclaurin end correction
    (h²/12)·F′(0) of the integrand F(w) = w e^{−w²/2} g(w), whose F′(0) = g(0): without it the
    rule's error at the end w = 0 is O(h²) (about 2e-6 at h = 0.005), with it O(h⁴).
    """
    h = quad.eps[1] - quad.eps[0]
    w = quad.eps[quad.eps > 0.5 * h]
    return float(h * np.sum(w * np.exp(-0.5 * w**2) * g(w)) + h**2 / 12.0 * g(np.zeros(1))[0])


def _half_line_variance(quad: _Quadrature, g: Callable[[np.ndarray], np.ndarray]) -> float:
    mean = _half_line_mean(quad, g)
    return _half_line_mean(quad, lambda w: (g(w) - mean)**2)


# Gauss–Legendre nodes on (0, 1) for the uniform U of the coupled scale estimator; the integrand
# f(μ + σmU) oscillates at most kσ|m| ≈ 80 radians over U where the Maxwell weight m²φ(m) is
# above 1e-12 (k ≤ 8, σ ≤ 1), which 256 nodes (exact to degree 511) resolve.
_UNIFORM_NODES = 256


def exact_measure_valued_variance(problem: Problem, coupled: bool = True,
                                  num_nodes: int = _DEFAULT_NODES) -> dict:
    """Variance of the per-sample measure-valued derivative (``gradest.measure_valued``),
    {"mu": ..., "sigma": ...}, for a 1-D ``gaussian`` problem, by quadrature in float64.

    With c = 1/(σ√(2π)), W, W′ ~ Weibull(√2, 2), M ~ double-sided Maxwell, N ~ N(0, 1):

    * mean: g_μ = c (f(μ + σW) − f(μ − σW′)); uncoupled Var = c² (Var f(μ + σW) + Var f(μ − σW′)),
      coupled (W′ = W) Var = c² Var[f(μ + σW) − f(μ − σW)], both over the Rayleigh density;
    * scale: g_σ = (f(μ + σM) − f(μ + σN))/σ; uncoupled Var = (Var f(μ + σM) + Var f(μ + σN))/σ²,
      coupled (N = MU, U ~ Uniform(0, 1)) a double integral over the Maxwell density m²φ(m) and
      U, by the trapezoidal rule in m and Gauss–Legendre in U.
    """
    quad = _quadrature(problem, num_nodes)
    fn, k = _GAUSSIAN_F[problem.meta["f"]], problem.meta["k"]
    mu, sigma = float(problem.params["mu"]), float(problem.params["sigma"])

    def f(x):
        return fn.f(np, x, k)

    c = 1.0 / (sigma * math.sqrt(2.0 * math.pi))
    if coupled:
        var_mu = _half_line_variance(quad, lambda w: f(mu + sigma * w) - f(mu - sigma * w))
    else:
        var_mu = (_half_line_variance(quad, lambda w: f(mu + sigma * w))
                  + _half_line_variance(quad, lambda w: f(mu - sigma * w)))
    maxwell = quad.weights * quad.eps**2  # E[g(M)] = Σ_i w_i ε_i² g(ε_i): the density ε²φ(ε)
    f_m = f(mu + sigma * quad.eps)
    if coupled:
        u, u_weights = np.polynomial.legendre.leggauss(_UNIFORM_NODES)
        u, u_weights = 0.5 * (u + 1.0), 0.5 * u_weights
        diff = f_m[:, None] - f(mu + sigma * quad.eps[:, None] * u[None, :])
        mean = float(np.sum(maxwell[:, None] * u_weights[None, :] * diff))
        var_sigma = float(np.sum(maxwell[:, None] * u_weights[None, :] * (diff - mean)**2))
    else:
        mean_m = float(np.dot(maxwell, f_m))
        var_sigma = float(np.dot(maxwell, (f_m - mean_m)**2)) + quad.variance(quad.f)
    return {"mu": c**2 * var_mu, "sigma": var_sigma / sigma**2}


# f'' of each 1-D test function, for the delta method's Taylor expansion.
_GAUSSIAN_F_SECOND = {
    "linear": lambda x, k: 0.0 * x,
    "quadratic": lambda x, k: 2.0 + 0.0 * x,
    "shifted_square": lambda x, k: 2.0 + 0.0 * x,
    "exp": lambda x, k: (4.0 * k**2 * x**2 - 2.0 * k) * np.exp(-k * x**2),
    "cos": lambda x, k: -k**2 * np.cos(k * x),
}


def _delta_method_grads(problem: Problem, estimator: str, num_nodes: int):
    """Per-node gradients of f and of the delta-method control variate h, per coordinate.

    h(x) = f(μ) + f′(μ)(x − μ) + ½ f″(μ)(x − μ)², expanded at the (fixed) mean; its gradient
    samples under the score function are h s_j, under pathwise h′(x) and h′(x) ε.
    """
    quad = _quadrature(problem, num_nodes)
    fn, k = _GAUSSIAN_F[problem.meta["f"]], problem.meta["k"]
    mu, sigma = float(problem.params["mu"]), float(problem.params["sigma"])
    mu_arr = np.array([mu])
    f0, f1 = float(fn.f(np, mu_arr, k)[0]), float(fn.grad(mu_arr, k)[0])
    f2 = float(_GAUSSIAN_F_SECOND[problem.meta["f"]](mu_arr, k)[0])
    dx = sigma * quad.eps
    if estimator == "score_function":
        h = f0 + f1 * dx + 0.5 * f2 * dx**2
        g_f = {j: quad.f * s for j, s in quad.score.items()}
        g_h = {j: h * s for j, s in quad.score.items()}
    elif estimator == "pathwise":
        h_prime = f1 + f2 * dx
        g_f = {"mu": quad.grad_f, "sigma": quad.grad_f * quad.eps}
        g_h = {"mu": h_prime, "sigma": h_prime * quad.eps}
    else:
        raise ValueError(f"estimator must be 'score_function' or 'pathwise', got {estimator!r}")
    return quad, g_f, g_h


def exact_delta_method_coefficient(problem: Problem, estimator: str,
                                   num_nodes: int = _DEFAULT_NODES) -> dict:
    """The variance-minimizing coefficient β*_j = Cov(g_f, g_h)/Var(g_h) of the delta-method
    control variate under ``estimator`` ("score_function" or "pathwise"), per coordinate
    (0 where g_h does not vary), for a 1-D ``gaussian`` problem, by quadrature."""
    quad, g_f, g_h = _delta_method_grads(problem, estimator, num_nodes)
    out = {}
    for j in ("mu", "sigma"):
        var_h = quad.variance(g_h[j])
        cov = quad.mean((g_f[j] - quad.mean(g_f[j])) * (g_h[j] - quad.mean(g_h[j])))
        out[j] = cov / var_h if var_h > 0 else 0.0
    return out


def exact_delta_method_variance(problem: Problem, estimator: str,
                                coefficient: float | dict | str = 1.0,
                                num_nodes: int = _DEFAULT_NODES) -> dict:
    """Variance of the per-draw gradient g_f − β (g_h − ∇E[h]) of ``estimator`` ("score_function"
    or "pathwise") with the delta-method control variate (``gradest.delta_method``), per
    coordinate, for a 1-D ``gaussian`` problem, by quadrature.

    ``coefficient``: a fixed β (a float, or {"mu": ..., "sigma": ...}), or "optimal" for β*
    (``exact_delta_method_coefficient``), the limit of the leave-one-out coefficient as the
    group grows. ∇E[h] is a constant and does not enter the variance.
    """
    quad, g_f, g_h = _delta_method_grads(problem, estimator, num_nodes)
    if coefficient == "optimal":
        coefficient = exact_delta_method_coefficient(problem, estimator, num_nodes)
    beta = coefficient if isinstance(coefficient, dict) else {"mu": coefficient, "sigma": coefficient}
    return {j: quad.variance(g_f[j] - float(beta[j]) * g_h[j]) for j in ("mu", "sigma")}
