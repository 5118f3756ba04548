"""Optimizers: global-norm clipping then Adam on each network's parameters raveled into one
vector, with linearly decaying step sizes (optax)."""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

Array = jax.Array


def linear_decay(learning_rate: float | Array, num_steps: int,
                 final_fraction: float | Array = 0.0) -> optax.Schedule:
    """η_t = η (1 − (1 − f) min(t, T) / T): from η down to f η over T = ``num_steps`` steps."""
    return optax.linear_schedule(learning_rate, learning_rate * final_fraction,
                                 max(1, num_steps))


def _network_labels(params: dict) -> dict:
    return {name: jax.tree.map(lambda _, n=name: n, tree) for name, tree in params.items()}


def clipped_adam(learning_rate: float | Array | optax.Schedule, max_grad_norm: float | Array,
                 *, eps: float = 1e-8, per_network: bool = False) -> optax.GradientTransformation:
    """Global-norm clipping to ``max_grad_norm``, then Adam; ``flat_per_network``.

    With ``per_network`` the parameters are a dict of networks ({"actor", "critic"}) and each is
    clipped to its own norm, so that a large critic gradient (a regression on unnormalized
    returns) cannot shrink the actor's step. Clipping to a known infinite norm is the identity
    and is left out (a traced bound, e.g. vmapped over configs, is always applied).
    """
    adam = optax.adam(learning_rate, eps=eps)
    if isinstance(max_grad_norm, (int, float)) and math.isinf(max_grad_norm):
        return flat_per_network(adam)
    clip = optax.clip_by_global_norm(max_grad_norm)
    if per_network:
        clip = optax.multi_transform({"actor": clip, "critic": clip}, _network_labels)
    return flat_per_network(optax.chain(clip, adam))


def _ravel_networks(tree: Any) -> Any:
    """{"actor": θ, "critic": φ} → {"actor": vec(θ), "critic": vec(φ)} (one vector per network,
    so per-network labels still apply); any other pytree → one vector."""
    if isinstance(tree, dict):
        return {name: jax.flatten_util.ravel_pytree(sub)[0] for name, sub in tree.items()}
    return jax.flatten_util.ravel_pytree(tree)[0]


def flat_per_network(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner`` applied to each network's parameters raveled into one vector.

    The same arithmetic as ``inner`` on the pytree for element-wise transformations (Adam) and
    norms over whole networks (global-norm clipping; only the order of the squared-norm sum
    changes), but the compiled program has a handful of kernels per step instead of several per
    parameter leaf (a PPO minibatch step: 145 → 96 XLA fusions, ~15% less compile time).
    """
    def init(params):
        return inner.init(_ravel_networks(params))

    def update(updates, state, params=None):
        _, unravel = jax.flatten_util.ravel_pytree(updates)
        flat_params = None if params is None else _ravel_networks(params)
        flat, state = inner.update(_ravel_networks(updates), state, flat_params)
        # Unravel with the pytree's own structure (dict keys are raveled in sorted order on
        # both sides, so concatenating the per-network vectors restores ravel_pytree's layout).
        if isinstance(flat, dict):
            flat = jnp.concatenate([flat[name] for name in sorted(flat)])
        return unravel(flat), state

    return optax.GradientTransformation(init, update)


class Learner(NamedTuple):
    """What a gradient step changes."""

    params: Any
    opt_state: Any


def apply_gradients(opt: optax.GradientTransformation, learner: Learner, grads: Any) -> Learner:
    """One optimizer step with ``grads``."""
    updates, opt_state = opt.update(grads, learner.opt_state, learner.params)
    return Learner(optax.apply_updates(learner.params, updates), opt_state)


def gradient_step(opt: optax.GradientTransformation, loss_fn: Callable[..., tuple[Array, dict]],
                  learner: Learner, *args) -> tuple[Learner, dict]:
    """One optimizer step on ``loss_fn(params, *args) -> (loss, metrics)``; returns the metrics."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(learner.params, *args)
    return apply_gradients(opt, learner, grads), metrics
