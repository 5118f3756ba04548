"""Actor heads and critics (flax linen), orthogonally initialized.

* ``CategoricalActor``: π(·|s) = Categorical(logits(s)) for discrete actions (``Categorical``).
* ``GaussianActor``: π(·|s) = N(μ(s), diag σ²), σ state-dependent (a second head) or a free
  parameter (state-independent log-std, the usual choice for PPO).
* ``TanhGaussianActor``: a = tanh(u), u ~ N(μ(s), diag σ(s)²) (``gradest.TanhNormal``), the
  reparameterizable SAC actor of seeds 000 and 002.
* ``ValueCritic``: V(s); ``QCritic``: Q(s, a) for continuous actions; ``DiscreteQCritic``:
  Q(s, ·), one output per action.

Widths and the activation are configurable. Initialization follows the PPO implementation
details (Huang et al., 2022): orthogonal hidden layers with gain √2, a policy output with gain
0.01 (so the initial policy is near uniform / near the zero mean), a value output with gain 1.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import distrax
import flax
import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gradest.distributions import TanhNormal

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": nn.relu,
    "swish": nn.swish,
    "silu": nn.silu,
    "gelu": nn.gelu,
    "elu": nn.elu,
}


def activation(name: str) -> Callable[[Array], Array]:
    """The activation function called ``name`` (one of ``ACTIVATIONS``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def orthonormalize(a: Array, num_columns: Array) -> Array:
    """Gram–Schmidt, applied twice, on the first ``num_columns[l]`` columns of each ``a[l]``.

    ``a``: ``[L, n, m]``; columns at and past ``num_columns[l]`` come out zero, and so do rows
    that are zero in ``a[l]``, so matrices of different shapes can share one padded stack (and
    one loop). Column j of the result depends on columns ≤ j of ``a`` only.

    The Q factor of a Gaussian matrix whose R has a positive diagonal is Haar-distributed, as
    with ``flax.linen.initializers.orthogonal``; Gram–Schmidt computes exactly that Q, and a
    second pass ("twice is enough") restores orthogonality to rounding error. Why not LAPACK:
    under ``vmap`` over seeds the QR becomes a batched LAPACK custom call that fans out over
    XLA's CPU thread pool and waits for it, and two of them scheduled concurrently on a 2-core
    machine deadlock (jaxlib 0.10.2). This uses matrix-vector products only.
    """
    num_columns = jnp.asarray(num_columns)

    def column(j, q):
        v = a[:, :, j]
        for _ in range(2):
            # Columns of q not yet filled are zero.
            v = v - jnp.einsum("lnk,lk->ln", q, jnp.einsum("lnk,ln->lk", q, v))
        active = (j < num_columns)[:, None]
        norm = jnp.linalg.norm(v, axis=1, keepdims=True)
        return q.at[:, :, j].set(jnp.where(active, v / jnp.where(active, norm, 1.0), 0.0))

    return jax.lax.fori_loop(0, a.shape[2], column, jnp.zeros_like(a))


def _kernel_dims(shape) -> tuple[int, int, int, int]:
    # (rows, cols) of the kernel as a matrix; (n, m) = (max, min): Gram–Schmidt runs on n × m.
    rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
    return rows, cols, max(rows, cols), min(rows, cols)


def orthogonal_kernels(key, shapes: Sequence[tuple[int, ...]], gains: Sequence[Any],
                       dtype=jnp.float32) -> list[Array]:
    """``gain · Q`` for each kernel shape, Q orthonormal (its rows where rows ≤ cols, else its
    columns, with the kernel read as a matrix ``[prod(shape[:-1]), shape[-1]]``).

    All kernels come from one Gaussian draw ``[L, n_max, m_max]`` (each kernel's n × m corner of
    its slice, zero-padded) and one ``orthonormalize`` loop: a network costs one random-number
    and one Gram–Schmidt program to compile, not one of each per layer.
    """
    dims = [_kernel_dims(shape) for shape in shapes]
    n_max = max(d[2] for d in dims)
    m_max = max(d[3] for d in dims)
    n = np.array([d[2] for d in dims])[:, None, None]
    m = np.array([d[3] for d in dims])
    a = jax.random.normal(key, (len(dims), n_max, m_max), jnp.float32)
    # Rows past n are zero (Q's rows there too); columns past m are left out by orthonormalize.
    q = orthonormalize(jnp.where(np.arange(n_max)[None, :, None] < n, a, 0.0), m)
    out = []
    for i, (shape, (rows, cols, ni, mi)) in enumerate(zip(shapes, dims)):
        qi = q[i, :ni, :mi]
        qi = qi if rows >= cols else qi.T
        out.append((gains[i] * qi).reshape(shape).astype(dtype))
    return out


def orthogonal(gain: float = 1.0) -> Callable:
    """Orthogonal initializer (Saxe et al., 2014) of the given gain, a flax ``kernel_init``."""

    def init(key, shape, dtype=jnp.float32):
        return orthogonal_kernels(key, [shape], [gain], dtype)[0]

    return init


# The variable collection in which ``Dense`` records each kernel's gain while initializing.
_GAINS = "orthogonal_gains"


class Dense(nn.Module):
    """y = x W + b (as ``flax.linen.Dense``), W orthogonal of gain ``gain``, b = 0 at init.

    Inside a ``Network``, the network's ``init`` draws all its kernels at once
    (``orthogonal_kernels``); on its own, ``orthogonal(gain)`` draws this one.
    """

    features: int
    gain: float = 1.0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", orthogonal(self.gain), (jnp.shape(x)[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.is_initializing():
            self.variable(_GAINS, "kernel", lambda: jnp.float32(self.gain))
        y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
        return y + jnp.broadcast_to(bias, y.shape)


class Network(nn.Module):
    """A module whose ``init`` draws the kernels of all its ``Dense`` layers together, from the
    init key, in one ``orthogonal_kernels`` call (the per-layer draws are then dead code, which
    XLA removes before compiling)."""

    @nn.nowrap
    def init_with_output(self, rngs, *args, method=None, **kwargs):
        # flax's ``init`` calls this one. The output is computed again with the parameters
        # returned: the network's kernels are drawn after flax's init.
        _, variables = super().init_with_output(rngs, *args, method=method, **kwargs)
        variables = self._orthogonalize(rngs, variables)
        return self.apply(variables, *args, method=method), variables

    @nn.nowrap
    def _orthogonalize(self, rngs, variables):
        variables = dict(variables)
        gains = variables.pop(_GAINS, None)
        if gains is None:
            return variables
        key = rngs["params"] if isinstance(rngs, Mapping) else rngs
        flat_gains = flax.traverse_util.flatten_dict(gains)
        flat_params = flax.traverse_util.flatten_dict(variables["params"])
        paths = list(flat_gains)
        kernels = orthogonal_kernels(key, [flat_params[p].shape for p in paths],
                                     [flat_gains[p] for p in paths])
        flat_params.update(zip(paths, kernels))
        variables["params"] = flax.traverse_util.unflatten_dict(flat_params)
        return variables


def dense(features: int, gain: float) -> Dense:
    """A dense layer with orthogonal weights of the given gain and zero bias."""
    return Dense(features, gain)


class MLP(Network):
    """Hidden layers only: x → act(W_k … act(W_1 x)). Inputs are flattened past the batch axes."""

    widths: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        act = activation(self.activation)
        for width in self.widths:
            x = act(dense(width, np.sqrt(2.0))(x))
        return x


def _flatten_obs(obs: Array, obs_ndim: int) -> Array:
    """Flattens the trailing ``obs_ndim`` axes (image-like observations such as MinAtar's)."""
    return obs.reshape(obs.shape[:obs.ndim - obs_ndim] + (-1,)) if obs_ndim != 1 else obs


@struct.dataclass
class Categorical:
    """π(·|s) = softmax(logits) over the last axis: the few methods the agents call, as direct
    jnp expressions (log-softmax once, an index gather, Gumbel-max sampling), the same values
    as ``distrax.Categorical`` with less to trace and compile in every rollout and loss."""

    logits: Array

    @property
    def log_probs(self) -> Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    @property
    def probs(self) -> Array:
        return jax.nn.softmax(self.logits, axis=-1)

    def log_prob(self, value: Array) -> Array:
        index = jnp.asarray(value).astype(jnp.int32)[..., None]
        return jnp.take_along_axis(self.log_probs, index, axis=-1)[..., 0]

    def entropy(self) -> Array:
        log_probs = self.log_probs
        probs = jnp.exp(log_probs)
        return -jnp.sum(jnp.where(probs == 0, 0.0, probs * log_probs), axis=-1)

    def sample(self, *, seed) -> Array:
        return jax.random.categorical(seed, self.logits, axis=-1)

    def sample_and_log_prob(self, *, seed) -> tuple[Array, Array]:
        action = self.sample(seed=seed)
        return action, self.log_prob(action)

    def mode(self) -> Array:
        return jnp.argmax(self.logits, axis=-1)


class CategoricalActor(Network):
    """π(·|s) = Categorical(softmax(logits(s)))."""

    num_actions: int
    widths: Sequence[int] = (64, 64)
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> Categorical:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        return Categorical(dense(self.num_actions, 0.01)(h))


class GaussianActor(Network):
    """π(·|s) = N(μ(s), diag σ²) over unbounded actions (the environment clips).

    Attributes:
      state_dependent_std: σ(s) from a second head (True) or a learned vector independent of s.
      log_std_init: initial log σ.
      log_std_min, log_std_max: bounds on a state-dependent log σ (a free vector is unbounded).
    """

    action_dim: int
    widths: Sequence[int] = (64, 64)
    activation: str = "tanh"
    state_dependent_std: bool = False
    log_std_init: float = 0.0
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> distrax.MultivariateNormalDiag:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        mean = dense(self.action_dim, 0.01)(h)
        if self.state_dependent_std:
            raw = dense(self.action_dim, 0.01)(h) + self.log_std_init
            log_std = jnp.clip(raw, self.log_std_min, self.log_std_max)
        else:
            log_std = self.param("log_std", nn.initializers.constant(self.log_std_init),
                                 (self.action_dim,))
            log_std = jnp.broadcast_to(log_std, mean.shape)
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))


class TanhGaussianActor(Network):
    """π(·|s): a = tanh(u), u ~ N(μ(s), diag σ(s)²), a ∈ (−1, 1)ᴰ (``gradest.TanhNormal``).

    log σ(s) is squashed smoothly into [log_std_min, log_std_max] so its gradient never vanishes
    at a hard clip.
    """

    action_dim: int
    widths: Sequence[int] = (256, 256)
    activation: str = "relu"
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> TanhNormal:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        mean = dense(self.action_dim, 0.01)(h)
        squashed = jnp.tanh(dense(self.action_dim, 0.01)(h))
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (squashed + 1.0)
        return TanhNormal(mean, jnp.exp(log_std))


class ValueCritic(Network):
    """V(s), a scalar per observation."""

    widths: Sequence[int] = (64, 64)
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        return jnp.squeeze(dense(1, 1.0)(h), -1)


class QCritic(Network):
    """Q(s, a) for continuous actions: an MLP on the concatenation [s, a]."""

    widths: Sequence[int] = (256, 256)
    activation: str = "relu"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array, action: Array) -> Array:
        x = jnp.concatenate([_flatten_obs(obs, self.obs_ndim), action], axis=-1)
        h = MLP(self.widths, self.activation)(x)
        return jnp.squeeze(dense(1, 1.0)(h), -1)


class DiscreteQCritic(Network):
    """Q(s, ·) for discrete actions: one output per action."""

    num_actions: int
    widths: Sequence[int] = (64, 64)
    activation: str = "relu"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        return dense(self.num_actions, 1.0)(h)
