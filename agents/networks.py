"""Actor heads and critics (flax linen), orthogonally initialized.

* ``CategoricalActor``: π(·|s) = Categorical(logits(s)) for discrete actions (``distrax.Categorical``).
* ``GaussianActor``: π(·|s) = N(μ(s), diag σ²), σ state-dependent (a second head) or a free
  parameter (state-independent log-std, the usual choice for PPO).
* ``TanhGaussianActor``: a = tanh(u), u ~ N(μ(s), diag σ(s)²) (``gradest.TanhNormal``), the
  reparameterizable SAC actor of seeds 000 and 002.
* ``ValueCritic``: V(s); ``QCritic``: Q(s, a) for continuous actions; ``DiscreteQCritic``:
  Q(s, ·), one output per action.

Widths and the activation are configurable. Initialization follows the PPO implementation
details (Huang et al., 2022): orthogonal hidden layers with gain √2, a policy output with gain
0.01 (so the initial policy is near uniform / near the zero mean), a value output with gain 1,
zero biases. The orthogonal weights are ``orthogonal``'s: the same matrices as flax's
initializer, computed without LAPACK (its docstring says why).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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


def _orthonormal_columns(z: Array) -> Array:
    """Q of the QR factorization z = QR with diag(R) > 0, for z of shape [m, n], m ≥ n.

    Classical Gram–Schmidt, each column orthogonalized twice (“twice is enough”: the second pass
    brings ‖QᵀQ − I‖ down to rounding, as Householder QR does). Gram–Schmidt makes
    R_jj = ‖v_j‖ > 0, the sign convention of ``jax.random.orthogonal``.
    """
    def column(j, q):
        v = z[:, j]
        for _ in range(2):
            v = v - q @ (q.T @ v)        # q's columns ≥ j are still zero
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, z.shape[1], column, jnp.zeros_like(z))


def orthogonal(scale: float = 1.0) -> Callable[..., Array]:
    """flax's ``orthogonal(scale)`` initializer (Saxe et al., 2014) for dense kernels
    ``[inputs, outputs]``: the same matrices for the same key, up to rounding.

    jaxlib 0.10.2 on the CPU runs a batched LAPACK QR (the QR of ``jax.random.orthogonal`` under
    ``vmap`` over seeds) as tasks on XLA's intra-op thread pool and blocks its own pool thread
    until they finish. When the pool's threads all run such QRs at once, as the independent
    layer initializations of one ``jit(vmap(train))`` do on a 2-core machine, none is left to run
    the tasks and the program hangs for good. Drawing the same Gaussian matrix and
    orthonormalizing it with matrix products and a loop (``_orthonormal_columns``) calls no
    LAPACK kernel; it runs once per training, so its cost does not matter.
    """
    def init(key: Array, shape: Sequence[int], dtype=jnp.float32) -> Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal needs a shape of rank ≥ 2, got {tuple(shape)}")
        n_rows, n_cols = math.prod(shape[:-1]), shape[-1]
        z = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
        q = _orthonormal_columns(z)
        q = q.T if n_rows < n_cols else q
        return jnp.asarray(scale, dtype) * jnp.reshape(q, shape)

    return init


def dense(features: int, gain: float) -> nn.Dense:
    """A dense layer with orthogonal weights of the given gain (``orthogonal``) and zero
    bias."""
    return nn.Dense(features, kernel_init=orthogonal(gain), bias_init=nn.initializers.zeros)


class MLP(nn.Module):
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


class CategoricalActor(nn.Module):
    """π(·|s) = Categorical(softmax(logits(s)))."""

    num_actions: int
    widths: Sequence[int] = (64, 64)
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> distrax.Categorical:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        return distrax.Categorical(logits=dense(self.num_actions, 0.01)(h))


class GaussianActor(nn.Module):
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


class TanhGaussianActor(nn.Module):
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


class ValueCritic(nn.Module):
    """V(s), a scalar per observation."""

    widths: Sequence[int] = (64, 64)
    activation: str = "tanh"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        return jnp.squeeze(dense(1, 1.0)(h), -1)


class QCritic(nn.Module):
    """Q(s, a) for continuous actions: an MLP on the concatenation [s, a]."""

    widths: Sequence[int] = (256, 256)
    activation: str = "relu"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array, action: Array) -> Array:
        x = jnp.concatenate([_flatten_obs(obs, self.obs_ndim), action], axis=-1)
        h = MLP(self.widths, self.activation)(x)
        return jnp.squeeze(dense(1, 1.0)(h), -1)


class DiscreteQCritic(nn.Module):
    """Q(s, ·) for discrete actions: one output per action."""

    num_actions: int
    widths: Sequence[int] = (64, 64)
    activation: str = "relu"
    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        h = MLP(self.widths, self.activation)(_flatten_obs(obs, self.obs_ndim))
        return dense(self.num_actions, 1.0)(h)
