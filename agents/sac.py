r"""Soft actor-critic (Haarnoja et al., 2018) whose actor gradient is any gradest estimator.

Continuous actions: a = tanh(u), u ~ N(μθ(s), diag σθ(s)²) (``gradest.TanhNormal``, |μ| bounded,
see ``MEAN_BOUND``), with the log-det correction of seed 000,
log π(a|s) = log p(u|s) − Σ_d log(1 − tanh²(u_d)). Discrete
actions: π(·|s) = Categorical(logitsθ(s)), acted on as one-hot vectors (so one objective serves
the exact, Gumbel and score-function estimators).

The pieces, each a small pure function below (seed 000, "double Q-trick"; seed 002):

* soft value      V(s) = E_{a~π}[min_j Q̄_j(s, a) − α log π(a|s)]          (``soft_value``)
                  by one reparameterized sample (continuous) or exactly over actions (discrete);
* critic target   y = r + γ (1 − terminated) V(s'),  s' the *pre-reset* observation, so a time
                  limit (truncation) is bootstrapped and only a termination stops
                  (``returns.td_target``);
* critic loss     Σ_j ½ (Q_j(s, a) − sg(y))², twin Q vmapped over stacked parameters
                  (``critic_loss``);
* actor           min_θ E_s E_{a~πθ(·|s)}[f_θ(s, a)],  f_θ(s, a) = α log πθ(a|s) − min_j Q_j(s, a),
                  its gradient taken by the gradest estimator passed to ``make_train``: pathwise
                  (seed 000), score function (seed 002: ∇ = E[∇log π (log π − Q/α + 1)] up to the
                  factor α, the +1 being the direct term ∇θ α log πθ), zeroth order in action
                  space, Gumbel-Softmax / straight-through (seed 001), exact enumeration over
                  discrete actions, or one of the caller's own;
* baseline        any b(s) free of a leaves the gradient's mean unchanged (seed 002): f − b(s) is
                  passed to the estimator, b a ``Baseline`` value (``no_baseline``,
                  ``learned_value``: b = −V̂(s) with V̂ regressed on the soft value,
                  ``monte_carlo_value``: V̂ from K fresh actions). It matters to the score
                  function only; a constant shift changes no other estimator's gradient, so the
                  agent holds no estimator-specific code;
* temperature     min_{log α} log α · sg(H(π(·|s)) − H̄): α grows while the entropy is below the
                  target H̄ (default −|A|, or 0.98 log|A| for discrete actions)  (``alpha_loss``);
* targets         φ̄ ← ρ φ̄ + (1 − ρ) φ (Polyak averaging, ρ = ``polyak``, ``optax``).

SAC runs in the shared loop (``agents.loop``): ``init`` fills the replay buffer with uniform
random actions (the warm-up), and each ``update`` steps the environments once and takes
``updates_per_step`` gradient steps (``learn``).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

import gradest
from agents import loop, networks, optim, replay, returns, rollout, validation
from agents.config import static

Array = jax.Array
PRNGKey = jax.Array
sg = jax.lax.stop_gradient


@struct.dataclass
class SACConfig:
    """SAC hyperparameters (field names shared with the on-policy agents where they mean the
    same). Static fields fix shapes and the program; the rest are traced, so configs that differ
    only in them can be vmapped: ``jax.vmap(train)(keys, stacked_configs)``. The actor's
    estimator and its baseline are not fields: they are values passed to ``make_train``."""

    # --- static ---
    total_steps: int = static(10_000)  # environment steps per seed, warm-up included
    num_envs: int = static(1)  # environments stepped side by side
    buffer_size: int = static(10_000)  # replay capacity (transitions)
    warmup_steps: int = static(256)  # uniform random actions before learning (≥ batch_size)
    batch_size: int = static(256)  # transitions per gradient step
    updates_per_step: int = static(1)  # gradient steps per vector step (UTD = this / num_envs)
    log_interval: int = static(500)  # vector steps between evaluations / diagnostics / prints
    eval_episodes: int = static(32)  # greedy episodes per evaluation
    eval_every: int = static(1)  # log intervals per evaluation (the last is always evaluated)
    actor_widths: Sequence[int] = static((64, 64))  # hidden layer widths of the actor
    critic_widths: Sequence[int] = static((64, 64))  # of each Q critic and the V baseline
    activation: str = static("swish")  # hidden activation (networks.ACTIVATIONS)
    normalize_obs: bool = static(True)  # running mean/std observation normalization
    # Actions per state whose actor-gradient estimates are averaged: the estimator is called
    # num_action_samples / samples_per_call times per state (a leave-one-out score function
    # over K actions is one call of K).
    num_action_samples: int = static(1)
    verbose: bool = static(True)  # print one line per log interval from inside jit
    # --- traced ---
    learning_rate: float = 3e-4  # Adam step size of actor, critics, V baseline and α
    # The step sizes decay linearly over the run's gradient updates to learning_rate × this
    # (1: constant). A large step learns fast early on; a smaller one late settles the policy.
    final_lr_fraction: float = 1.0
    actor_lr_scale: float = 1.0  # the actor's step size is learning_rate × this (per estimator)
    # Global-norm clip of each network's gradient (actor, critics, V; not α) before Adam; inf: off.
    max_grad_norm: float = float("inf")
    # α ≤ max_alpha. Where the actor cannot follow (a saturated policy whose gradient vanishes),
    # log α would otherwise grow linearly under Adam until −α log π overflows the critic targets.
    max_alpha: float = 1e3
    gamma: float = 0.99  # discount γ
    polyak: float = 0.995  # target weight ρ in φ̄ ← ρ φ̄ + (1 − ρ) φ
    init_alpha: float = 1.0  # initial entropy temperature α
    target_entropy_scale: float = 1.0  # continuous: H̄ = −scale · |A| (Haarnoja et al., 2018b)
    target_entropy_ratio: float = 0.98  # discrete: H̄ = ratio · log|A| (Christodoulou, 2019)

    def field_checks(self) -> dict[str, validation.Check]:
        """Field name → its check (``agents.validation``); a subclass adds its own fields'."""
        v = validation
        counts = ("total_steps", "num_envs", "buffer_size", "warmup_steps", "batch_size",
                  "updates_per_step", "log_interval", "eval_episodes", "eval_every",
                  "num_action_samples")
        return {
            **{name: v.positive_int for name in counts},
            "actor_widths": v.widths, "critic_widths": v.widths,
            "activation": v.one_of(networks.ACTIVATIONS), "normalize_obs": v.boolean,
            "verbose": v.boolean, "learning_rate": v.positive,
            "final_lr_fraction": v.unit_interval, "actor_lr_scale": v.positive,
            "max_grad_norm": v.positive_or_inf, "max_alpha": v.positive_or_inf,
            "gamma": v.unit_interval, "polyak": v.unit_interval, "init_alpha": v.positive,
            "target_entropy_scale": v.finite, "target_entropy_ratio": v.unit_interval,
        }

    def validate(self) -> None:
        """``ValueError`` in one line for a value no run can use (every field; a warm-up that
        covers a batch; training left after the warm-up), before anything is traced."""
        validation.check_fields(self, self.field_checks())
        if self.batch_size > self.warmup_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must cover one batch "
                             f"(batch_size={self.batch_size})")
        sizes(self)


# --------------------------------------------------------------------------------------------
# Losses and targets: pure functions of one transition (vmap over the batch at the call site).


def soft_value(q_twin: Array, log_prob: Array, weights: Array, alpha: Array) -> Array:
    """V(s) = Σ_n w_n (min_j Q_j(s, a_n) − α log π(a_n|s)) over N weighted actions.

    One sampled action with weight 1 gives the continuous SAC estimate; all actions weighted by
    π(a|s) give the exact discrete value (seed 000's soft value function).

    Args:
      q_twin: ``[J, N]`` critics' values of the N actions.
      log_prob: ``[N]`` log π(a_n|s).
      weights: ``[N]``, summing to 1.
      alpha: the temperature α.
    """
    chex.assert_rank([q_twin, log_prob, weights], [2, 1, 1])
    return jnp.sum(weights * (jnp.min(q_twin, axis=0) - alpha * log_prob))


def critic_loss(q_twin: Array, target: Array) -> Array:
    """Σ_j ½ (Q_j(s, a) − sg(y))²: each critic regresses the shared target (``q_twin``: ``[J]``)."""
    chex.assert_rank(q_twin, 1)
    return 0.5 * jnp.sum((q_twin - sg(target)) ** 2)


def alpha_loss(log_alpha: Array, entropy: Array, target_entropy: Array) -> Array:
    """log α · sg(H − H̄): its gradient H − H̄ is negative while the policy's entropy H is below
    the target, so gradient descent raises α (Haarnoja et al., 2018b, eq. 18 in log α)."""
    return log_alpha * sg(entropy - target_entropy)



# --------------------------------------------------------------------------------------------
# Networks: the policy as a distribution over agent actions (in (−1, 1)ᴰ, or one-hot), twin Q
# vmapped over stacked parameters.


class Networks(NamedTuple):
    spec: rollout.ActionSpec
    actor: nn.Module
    critic: nn.Module
    value: nn.Module


def make_networks(config: SACConfig, spec: rollout.ActionSpec) -> Networks:
    actor_kw = dict(widths=tuple(config.actor_widths), activation=config.activation)
    critic_kw = dict(widths=tuple(config.critic_widths), activation=config.activation)
    if spec.discrete:
        actor = networks.CategoricalActor(spec.num_actions, **actor_kw)
        critic = networks.DiscreteQCritic(spec.num_actions, **critic_kw)
    else:
        actor = networks.TanhGaussianActor(spec.num_actions, **actor_kw)
        critic = networks.QCritic(**critic_kw)
    return Networks(spec, actor, critic, networks.ValueCritic(**critic_kw))


# Bound on the pre-tanh mean |μ(s)|. The actor objective f(θ, a) evaluates log πθ(a|s) of the
# action a = tanh(u) it is given, which inverts tanh; where tanh(u) rounds to ±1 (|u| ≳ 9 in
# float32) the inversion is clipped and the path a ← θ cut, and what is left of ∇θ α log πθ(a|s),
# α (u_clip − μ)/σ² ∇μ, pushes μ further out once μ is past u_clip: a runaway (observed: μ, log π
# and α diverge after a few thousand updates). μ = 5 tanh(μ_raw / 5) keeps μ inside, where that
# same term pulls it back; tanh(5) = 0.99991, so no action is out of reach.
MEAN_BOUND = 5.0
# The largest float32 below 1: clipping an action to ±_A_MAX is the identity on (−1, 1).
_A_MAX = float(jnp.nextafter(jnp.float32(1.0), jnp.float32(0.0)))


def policy(nets: Networks, actor_params: Any, obs: Array):
    """π(·|s): ``TanhNormal`` over (−1, 1)ᴰ, or ``OneHotCategorical`` over one-hot actions."""
    dist = nets.actor.apply(actor_params, obs)
    if nets.spec.discrete:
        return distrax.OneHotCategorical(logits=dist.logits, dtype=jnp.float32)
    return gradest.TanhNormal(MEAN_BOUND * jnp.tanh(dist.loc / MEAN_BOUND), dist.scale)


def twin_q(nets: Networks, critic_params: Any, obs: Array, action: Array) -> Array:
    """[Q_1(s, a), Q_2(s, a)]: both critics, vmapped over their stacked parameters ``[2, ...]``.
    A discrete action is a (possibly relaxed) one-hot vector y and Q(s, y) = ⟨Q(s, ·), y⟩."""
    if nets.spec.discrete:
        q_all = jax.vmap(lambda p: nets.critic.apply(p, obs))(critic_params)
        return jnp.sum(q_all * action[None], axis=-1)                       # [2, ...]
    return jax.vmap(lambda p: nets.critic.apply(p, obs, action))(critic_params)


def policy_support(nets: Networks, key: PRNGKey, dist) -> tuple[Array, Array, Array]:
    """Weighted actions (a_n, log π(a_n|s), w_n) of one state for ``soft_value``: one
    reparameterized sample (continuous) or every action with its probability (discrete)."""
    if nets.spec.discrete:
        num_actions = nets.spec.num_actions
        log_probs = jax.nn.log_softmax(dist.logits)
        return jnp.eye(num_actions, dtype=jnp.float32), log_probs, jnp.exp(log_probs)
    # sample_and_log_prob evaluates log π at the pre-tanh sample: exact even where tanh rounds
    # to ±1.
    action, log_prob = dist.sample_and_log_prob(seed=key)
    return action[None], log_prob[None], jnp.ones((1,))


def state_value(nets: Networks, key: PRNGKey, actor_params: Any, critic_params: Any, obs: Array,
                alpha: Array) -> tuple[Array, Array]:
    """(soft value V(s) with the given critics, policy entropy estimate H(π(·|s)))."""
    actions, log_probs, weights = policy_support(nets, key, policy(nets, actor_params, obs))
    q = jax.vmap(lambda a: twin_q(nets, critic_params, obs, a))(actions).T
    return soft_value(q, log_probs, weights, alpha), -jnp.sum(weights * log_probs)


def batch_state_value(nets: Networks, key: PRNGKey, actor_params: Any, critic_params: Any,
                      obs: Array, alpha: Array) -> tuple[Array, Array]:
    """``state_value`` of a batch of states ``[n, ...]`` → (V ``[n]``, H ``[n]``): the same
    estimates (an independent reparameterized action per state, or the exact sum over
    actions), computed with one policy pass and one noise draw for the whole batch."""
    dist = policy(nets, actor_params, obs)
    if nets.spec.discrete:
        log_probs = jax.nn.log_softmax(dist.logits)                        # [n, A]
        weights = jnp.exp(log_probs)
        q_all = jax.vmap(lambda p: nets.critic.apply(p, obs))(critic_params)  # [2, n, A]
        value = jnp.sum(weights * (jnp.min(q_all, axis=0) - alpha * log_probs), axis=-1)
        return value, -jnp.sum(weights * log_probs, axis=-1)
    action, log_prob = dist.sample_and_log_prob(seed=key)                  # [n, D], [n]
    q = jnp.min(twin_q(nets, critic_params, obs, action), axis=0)
    return q - alpha * log_prob, -log_prob


def actor_surrogate(nets: Networks, estimator: gradest.GradientEstimator, actor_params: Any,
                    key: PRNGKey, obs: Array, critic_params: Any, alpha: Array, baseline: Array,
                    estimator_state: Any, num_draws: int = 1) -> tuple[Array, dict]:
    """The estimator's per-state surrogate of E_{a~πθ(·|s)}[α log πθ(a|s) − min_j Q_j(s, a) − b(s)].

    ``baseline`` b(s) is free of a and θ: it changes only a score-function gradient (by a control
    variate, seed 002); the critics and α are constants here. ``num_draws`` independent calls of
    the estimator are averaged.
    """
    def make_dist(params):
        return policy(nets, params, obs)

    def f(params, action):
        if not nets.spec.discrete:
            # f must be defined for any real a an estimator probes: zeroth order evaluates
            # a + εu, which leaves (−1, 1)ᴰ near the boundary. Outside it log π has no density
            # and Q is an extrapolation of a critic never trained there (it would pull the
            # actor out to the boundary, into saturation). Clipping to the largest float32
            # inside the box is the identity on every tanh sample, so the pathwise and score-
            # function gradients are unchanged.
            action = jnp.clip(action, -_A_MAX, _A_MAX)
        q = jnp.min(twin_q(nets, critic_params, obs, action))
        return alpha * make_dist(params).log_prob(action) - q - baseline

    if num_draws == 1:
        return estimator.surrogate(key, actor_params, make_dist, f, estimator_state)
    # Several independent surrogate calls per state: their mean is the estimate from
    # num_draws · samples_per_call actions.
    values, aux = jax.vmap(lambda k: estimator.surrogate(k, actor_params, make_dist, f,
                                                         estimator_state))(
        jax.random.split(key, num_draws))
    return jnp.mean(values), jax.tree.map(lambda x: jnp.reshape(x, (-1,) + x.shape[2:]), aux)


# --------------------------------------------------------------------------------------------
# Training state and the pieces fixed when the agent is built.


class Experience(NamedTuple):
    """A stored transition; ``next_obs`` is the pre-reset observation and ``action`` the agent's
    (in (−1, 1)ᴰ, or one-hot)."""

    obs: Array
    action: Array
    reward: Array
    terminated: Array
    next_obs: Array


@struct.dataclass
class SACState:
    actor_params: Any
    critic_params: Any  # twin critics, leaves stacked on a leading axis of 2
    target_critic_params: Any
    log_alpha: Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    baseline: Any  # the baseline's own state (a learned V(s): its Learner), else None
    estimator_state: Any
    obs_stats: rollout.RunningStats
    buffer: replay.ReplayBuffer
    env: rollout.RolloutState
    num_updates: Array


class Optimizers(NamedTuple):
    actor: optax.GradientTransformation
    critic: optax.GradientTransformation  # also the learned V baseline's
    alpha: optax.GradientTransformation


class Setup(NamedTuple):
    """Everything static the agent's functions need (``make_setup``), so the loop bodies are
    plain module-level functions of (setup, state, key)."""

    config: SACConfig
    env: Any
    env_params: Any
    nets: Networks
    estimator: gradest.GradientEstimator
    baseline: "Baseline"
    optimizers: Optimizers
    target_entropy: Array
    actor_draws: int  # surrogate calls per state: num_action_samples / samples_per_call


# --------------------------------------------------------------------------------------------
# Baselines b(s) of the actor objective: values passed to ``make_train``.


class Baseline(NamedTuple):
    """An action-free baseline b(s), subtracted from the actor objective f(s, a) (a control
    variate for the score function, seed 002). Pure functions of the agent's pieces:

    * ``init(key, setup, obs) -> state``: its own state in ``SACState.baseline`` (or None);
    * ``value(setup, state, key, obs, critic_params, alpha) -> b`` ``[n]`` for a batch of
      (normalized) observations, without gradient;
    * ``fit(setup, baseline_state, obs, soft_value) -> (baseline_state, loss)``: learns from the
      soft value E_a[min Q − α log π] the actor saw on the batch (``soft_value`` ``[n]``).
    """

    name: str
    init: Callable[..., Any]
    value: Callable[..., Array]
    fit: Callable[..., tuple[Any, Array]]


def _no_fit(setup: Setup, baseline_state: Any, obs: Array, soft_value: Array):
    return baseline_state, jnp.zeros(())


def no_baseline() -> Baseline:
    """b = 0."""
    return Baseline("none", lambda key, setup, obs: None,
                    lambda setup, state, key, obs, critic_params, alpha: jnp.zeros(obs.shape[:1]),
                    _no_fit)


def learned_value() -> Baseline:
    """b(s) = −V̂(s), V̂ a network regressed on the soft value the actor sees (E[f] = −V(s), so
    f − b is centred); it shares the critics' optimizer settings."""

    def init(key, setup, obs):
        params = setup.nets.value.init(key, obs)
        return optim.Learner(params, setup.optimizers.critic.init(params))

    def value(setup, state, key, obs, critic_params, alpha):
        return -sg(jax.vmap(lambda o: setup.nets.value.apply(state.baseline.params, o))(obs))

    def fit(setup, learner, obs, soft_value):
        def objective(params):
            v = jax.vmap(lambda o: setup.nets.value.apply(params, o))(obs)
            return 0.5 * jnp.mean((v - sg(soft_value)) ** 2)

        loss, grads = jax.value_and_grad(objective)(learner.params)
        return optim.apply_gradients(setup.optimizers.critic, learner, grads), loss

    return Baseline("value", init, value, fit)


def monte_carlo_value(num_actions: int) -> Baseline:
    """b(s) = −V̂(s), V̂ the soft value averaged over ``num_actions`` fresh actions per state
    (continuous; exact over the actions for discrete ones), drawn independently of the actions
    the estimator scores, so the estimator stays unbiased."""
    if not isinstance(num_actions, int) or num_actions < 1:
        raise ValueError(f"num_actions must be a positive integer, got {num_actions!r}")

    def value(setup, state, key, obs, critic_params, alpha):
        def one(k, o):
            values, _ = jax.vmap(lambda kk: state_value(
                setup.nets, kk, state.actor_params, critic_params, o, alpha))(
                    jax.random.split(k, num_actions))
            return jnp.mean(values)

        return -sg(jax.vmap(one)(jax.random.split(key, obs.shape[0]), obs))

    return Baseline("mc_value", lambda key, setup, obs: None, value, _no_fit)


def sizes(config: SACConfig) -> loop.LoopSizes:
    """One update is one step of all ``num_envs`` environments; the warm-up takes at least
    ``warmup_steps`` environment steps and absorbs the rounding (``loop.loop_sizes``)."""
    return loop.loop_sizes(config.total_steps, config.num_envs, config.log_interval,
                           config.warmup_steps)


def make_optimizers(config: SACConfig) -> Optimizers:
    """Adam per parameter group; the networks' gradients first clipped to ``max_grad_norm``.
    Every step size follows η_t = η (1 − (1 − f) t / T) over the T gradient updates of the run,
    f = ``final_lr_fraction``."""
    num_updates = sizes(config).num_updates * config.updates_per_step

    def decaying(lr):
        return optim.linear_decay(lr, num_updates, config.final_lr_fraction)

    return Optimizers(
        optim.clipped_adam(decaying(config.learning_rate * config.actor_lr_scale),
                           config.max_grad_norm),
        optim.clipped_adam(decaying(config.learning_rate), config.max_grad_norm),
        optax.adam(decaying(config.learning_rate)))


def target_entropy(config: SACConfig, spec: rollout.ActionSpec) -> Array:
    """H̄ = −scale · |A| for a box, ratio · log|A| for discrete actions (see ``SACConfig``)."""
    if spec.discrete:
        return jnp.asarray(config.target_entropy_ratio * math.log(spec.num_actions), jnp.float32)
    return jnp.asarray(-config.target_entropy_scale * spec.num_actions, jnp.float32)


def _normalize(setup: Setup, stats: rollout.RunningStats, obs: Array) -> Array:
    return rollout.normalize(stats, obs) if setup.config.normalize_obs else obs


def init_state(setup: Setup, key: PRNGKey) -> SACState:
    """Fresh networks, optimizer states, an empty replay buffer and reset environments."""
    config, nets = setup.config, setup.nets
    k_env, k_actor, k_critic, k_baseline = jax.random.split(key, 4)
    env_state = rollout.reset(k_env, setup.env, setup.env_params, config.num_envs)
    obs = env_state.obs[0]
    example_action = jnp.zeros((nets.spec.num_actions,), jnp.float32)
    actor_params = nets.actor.init(k_actor, obs)
    critic_init = (lambda k: nets.critic.init(k, obs)) if nets.spec.discrete else (
        lambda k: nets.critic.init(k, obs, example_action))
    critic_params = jax.vmap(critic_init)(jax.random.split(k_critic, 2))
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    example = Experience(obs, example_action, jnp.zeros(()), jnp.zeros((), bool), obs)
    return SACState(
        actor_params=actor_params, critic_params=critic_params, target_critic_params=critic_params,
        log_alpha=log_alpha,
        actor_opt=setup.optimizers.actor.init(actor_params),
        critic_opt=setup.optimizers.critic.init(critic_params),
        alpha_opt=setup.optimizers.alpha.init(log_alpha),
        baseline=setup.baseline.init(k_baseline, setup, obs),
        estimator_state=setup.estimator.init(), obs_stats=rollout.init_stats(obs.shape),
        buffer=replay.init(example, config.buffer_size), env=env_state,
        num_updates=jnp.zeros((), jnp.int32))


# --------------------------------------------------------------------------------------------
# One gradient step: critics, actor (against the updated critics), baseline, α, targets.


class Metrics(NamedTuple):
    """Per-update metrics (averaged over a log interval)."""

    critic_loss: Array
    actor_loss: Array
    alpha: Array
    entropy: Array
    q_mean: Array
    value_loss: Array


def _critic_step(setup: Setup, state: SACState, key: PRNGKey, batch: Experience, obs: Array,
                 alpha: Array) -> tuple[optim.Learner, Array, Array, Array]:
    """(critics after one step, their loss, the mean Q, the policy's entropy at s')."""
    next_obs = _normalize(setup, state.obs_stats, batch.next_obs)
    # The entropy estimate for α comes from the same policy evaluation at s' (also a replay
    # state), saving an actor pass.
    next_value, entropy = batch_state_value(setup.nets, key, state.actor_params,
                                            state.target_critic_params, next_obs, alpha)
    target = jax.vmap(returns.td_target, in_axes=(0, 0, 0, None))(
        batch.reward, next_value, batch.terminated, setup.config.gamma)

    def objective(params):
        # Both critics on the whole batch at once ([2, n] → [n, 2]).
        q = twin_q(setup.nets, params, obs, batch.action).T
        return jnp.mean(jax.vmap(critic_loss)(q, target)), q

    (loss, q), grads = jax.value_and_grad(objective, has_aux=True)(state.critic_params)
    critics = optim.apply_gradients(setup.optimizers.critic,
                                    optim.Learner(state.critic_params, state.critic_opt), grads)
    return critics, loss, jnp.mean(q), entropy


def _actor_loss(setup: Setup, actor_params: Any, keys: PRNGKey, obs: Array, critic_params: Any,
                alpha: Array, baseline: Array, estimator_state: Any) -> tuple[Array, dict]:
    """Mean over batch states of the per-state surrogate."""
    values, aux = jax.vmap(
        lambda k, o, b: actor_surrogate(setup.nets, setup.estimator, actor_params, k, o,
                                        critic_params, alpha, b, estimator_state,
                                        setup.actor_draws))(keys, obs, baseline)
    return jnp.mean(values), aux


def learn(setup: Setup, state: SACState, key: PRNGKey) -> tuple[SACState, Metrics]:
    """One gradient step of critics, actor, baseline and α on a replay batch; Polyak targets."""
    config = setup.config
    k_batch, k_next, k_base, k_actor = jax.random.split(key, 4)
    batch = replay.sample(k_batch, state.buffer, config.batch_size)
    obs = _normalize(setup, state.obs_stats, batch.obs)
    alpha = jnp.exp(state.log_alpha)
    n = config.batch_size
    critics, c_loss, q_mean, entropy = _critic_step(setup, state, k_next, batch, obs, alpha)

    baseline = setup.baseline.value(setup, state, k_base, obs, critics.params, alpha)
    (a_loss, aux), a_grads = jax.value_and_grad(
        functools.partial(_actor_loss, setup), has_aux=True)(
            state.actor_params, jax.random.split(k_actor, n), obs, critics.params, alpha,
            baseline, state.estimator_state)
    actor = optim.apply_gradients(setup.optimizers.actor,
                                  optim.Learner(state.actor_params, state.actor_opt), a_grads)
    # The soft value the actor saw: −E[f] with f = surrogate sample + b (averaged over the
    # draws of each state).
    soft_value = -(jnp.mean(jnp.reshape(aux["f"], (n, -1)), axis=1) + baseline)
    baseline_state, v_loss = setup.baseline.fit(setup, state.baseline, obs, soft_value)

    al_grad = jax.grad(alpha_loss)(state.log_alpha, jnp.mean(entropy), setup.target_entropy)
    temperature = optim.apply_gradients(setup.optimizers.alpha,
                                        optim.Learner(state.log_alpha, state.alpha_opt), al_grad)
    state = state.replace(
        actor_params=actor.params, critic_params=critics.params,
        target_critic_params=optax.incremental_update(critics.params, state.target_critic_params,
                                                      1.0 - config.polyak),
        log_alpha=jnp.minimum(temperature.params, jnp.log(config.max_alpha)),
        actor_opt=actor.opt_state, critic_opt=critics.opt_state,
        alpha_opt=temperature.opt_state, baseline=baseline_state,
        estimator_state=setup.estimator.update(state.estimator_state, aux),
        num_updates=state.num_updates + 1)
    # The actor loss is reported without the baseline, as E[α log π − min Q].
    return state, Metrics(c_loss, a_loss + jnp.mean(baseline), alpha, jnp.mean(entropy), q_mean,
                          v_loss)


# --------------------------------------------------------------------------------------------
# Acting, the warm-up and the loop's functions.


def _env_action(spec: rollout.ActionSpec, action: Array) -> Array:
    return jnp.argmax(action, axis=-1) if spec.discrete else action


def random_actions(spec: rollout.ActionSpec, key: PRNGKey, num_envs: int) -> Array:
    """Uniform agent actions: in (−1, 1)ᴰ, or uniform one-hot vectors."""
    if spec.discrete:
        index = jax.random.randint(key, (num_envs,), 0, spec.num_actions)
        return jax.nn.one_hot(index, spec.num_actions, dtype=jnp.float32)
    return jax.random.uniform(key, (num_envs, spec.num_actions), minval=-1.0, maxval=1.0)


def _collect(setup: Setup, state: SACState, key: PRNGKey, action: Array
             ) -> tuple[SACState, dict]:
    """Steps the environments with ``action`` and stores the transitions; the returns of the
    episodes that ended (``return_sum``, ``episodes``)."""
    env, transition = rollout.step(key, setup.env, setup.env_params, setup.nets.spec, state.env,
                                   _env_action(setup.nets.spec, action))
    experience = Experience(transition.obs, action, transition.reward, transition.terminated,
                            transition.next_obs)
    state = state.replace(env=env, buffer=replay.add(state.buffer, experience),
                          obs_stats=rollout.update_stats(state.obs_stats, transition.obs))
    total, count = rollout.completed_episode_return(transition)
    return state, {"return_sum": total, "episodes": count}


def warmup_step(setup: Setup, state: SACState, key: PRNGKey) -> tuple[SACState, dict]:
    """One step of every environment with uniform random actions, stored."""
    k_act, k_env = jax.random.split(key)
    action = random_actions(setup.nets.spec, k_act, setup.config.num_envs)
    return _collect(setup, state, k_env, action)


def update(setup: Setup, state: SACState, key: PRNGKey) -> tuple[SACState, dict]:
    """The loop's update: one step of every environment under π, then ``updates_per_step``
    gradient steps (``learn``)."""
    num_envs = setup.config.num_envs
    keys = jax.random.split(key, 1 + num_envs + setup.config.updates_per_step)
    obs = _normalize(setup, state.obs_stats, state.env.obs)
    action = policy(setup.nets, state.actor_params, obs).sample(seed=keys[0])
    state, collected = _collect(setup, state, keys[1:1 + num_envs], action)
    state, metrics = jax.lax.scan(functools.partial(learn, setup), state, keys[1 + num_envs:])
    return state, {**{k: jnp.mean(v) for k, v in metrics._asdict().items()}, **collected}


def init(setup: Setup, key: PRNGKey) -> SACState:
    """A fresh state after the warm-up's random actions."""
    k_state, k_warm = jax.random.split(key)
    state, _ = jax.lax.scan(functools.partial(warmup_step, setup), init_state(setup, k_state),
                            jax.random.split(k_warm, sizes(setup.config).warmup_updates))
    return state


def greedy_action(setup: Setup, state: SACState, obs: Array) -> Array:
    """The deterministic action: tanh(μ(s)) (continuous) or argmax π(·|s), as env actions."""
    dist = policy(setup.nets, state.actor_params, _normalize(setup, state.obs_stats, obs))
    return _env_action(setup.nets.spec, dist.mode())


def evaluate(setup: Setup, state: SACState, key: PRNGKey) -> Array:
    """Undiscounted returns ``[eval_episodes]`` of the greedy policy."""
    # rollout.evaluate maps agent actions to env actions; for discrete ones that is the identity
    # on indices, which greedy_action already returns.
    return rollout.evaluate(key, setup.env, setup.env_params, setup.nets.spec,
                            functools.partial(greedy_action, setup, state),
                            setup.config.eval_episodes)


def actor_gradients(setup: Setup, state: SACState, key: PRNGKey) -> dict:
    """Per-state actor gradients over one replay batch (``diagnostics.gradient_metrics``)."""
    k_batch, k_base, k_actor = jax.random.split(key, 3)
    batch = replay.sample(k_batch, state.buffer, setup.config.batch_size)
    obs = _normalize(setup, state.obs_stats, batch.obs)
    alpha = jnp.exp(state.log_alpha)
    baseline = setup.baseline.value(setup, state, k_base, obs, state.critic_params, alpha)
    grad_fn = jax.grad(functools.partial(actor_surrogate, setup.nets, setup.estimator),
                       has_aux=True)
    grads, _ = jax.vmap(lambda k, o, b: grad_fn(state.actor_params, k, o, state.critic_params,
                                                alpha, b, state.estimator_state,
                                                setup.actor_draws))(
        jax.random.split(k_actor, obs.shape[0]), obs, baseline)
    return {"": grads}


def output(state: SACState) -> tuple[dict, rollout.RunningStats]:
    params = {"actor": state.actor_params, "critic": state.critic_params,
              "log_alpha": state.log_alpha}
    return params, state.obs_stats


# --------------------------------------------------------------------------------------------
# Building the agent.


def make_setup(config: SACConfig, env, env_params, estimator: gradest.GradientEstimator,
               baseline: Baseline | None = None) -> Setup:
    """The agent's static pieces. Raises ``gradest.EstimatorError`` for an estimator that does
    not fit the action space, ``ValueError`` for sizes that do not fit together."""
    baseline = no_baseline() if baseline is None else baseline
    if not isinstance(estimator, gradest.GradientEstimator):
        raise gradest.EstimatorError(f"estimator must be a gradest.GradientEstimator, got "
                                     f"{estimator!r}")
    if not isinstance(baseline, Baseline):
        raise ValueError(f"baseline must be an agents.sac.Baseline, got {baseline!r}")
    if config.eval_every < 1 or config.eval_episodes < 1:
        raise ValueError(f"eval_every and eval_episodes must be positive, got "
                         f"{config.eval_every} and {config.eval_episodes}")
    if config.batch_size > config.warmup_steps:
        raise ValueError(f"warmup_steps={config.warmup_steps} must cover one batch "
                         f"(batch_size={config.batch_size})")
    spec = rollout.action_spec(env, env_params)
    # The critic makes f differentiable in the action: every estimator that fits the action
    # space fits SAC.
    gradest.check_compatible(estimator, kind="discrete" if spec.discrete else "continuous",
                             differentiable_f=True)
    k, group = config.num_action_samples, estimator.traits.samples_per_call
    if not isinstance(k, int) or k < 1 or k % group:
        raise ValueError(f"num_action_samples={k!r} must be a positive multiple of the "
                         f"estimator's samples per call ({group}, {estimator.traits.name})")
    return Setup(config, env, env_params, make_networks(config, spec), estimator, baseline,
                 make_optimizers(config), target_entropy(config, spec), k // group)


def make_agent(config: SACConfig, env, env_params, estimator: gradest.GradientEstimator,
               baseline: Baseline | None = None) -> loop.Agent:
    """SAC on ``env`` as a ``loop.Agent`` whose actor gradient is ``estimator``'s, with
    ``baseline`` (default ``no_baseline()``) subtracted from the actor objective."""
    setup = make_setup(config, env, env_params, estimator, baseline)
    return loop.Agent(
        name="sac", sizes=sizes(config), eval_every=config.eval_every, verbose=config.verbose,
        progress_keys=("alpha", "q_mean", "grad_variance", "grad_snr"),
        init=functools.partial(init, setup), update=functools.partial(update, setup),
        evaluate=functools.partial(evaluate, setup),
        actor_gradients=functools.partial(actor_gradients, setup), output=output)


def make_stages(config: SACConfig, env, env_params, estimator: gradest.GradientEstimator,
                baseline: Baseline | None = None) -> loop.Stages:
    """SAC on ``env`` as resumable ``loop.Stages``: ``init`` builds the state and runs the
    warm-up, ``run`` runs log intervals; the carry holds the whole ``SACState`` (replay buffer,
    environments, optimizer states, update counter) and the loop key. Raises
    ``gradest.EstimatorError`` at once for an estimator that does not fit the action space."""
    return loop.make_stages(functools.partial(make_agent, env=env, env_params=env_params,
                                              estimator=estimator, baseline=baseline), config)


def make_train(config: SACConfig, env, env_params, estimator: gradest.GradientEstimator,
               baseline: Baseline | None = None):
    """``train(key, config=config) -> loop.TrainOutput`` for SAC on ``env``: one pure function,
    so ``jax.jit(jax.vmap(train))(keys)`` trains many seeds at once (and configs that differ in
    traced fields only). The actor's gradient is ``estimator``'s (e.g. ``gradest.pathwise()``,
    ``gradest.exact_enumeration()`` for discrete actions), ``baseline`` its b(s).

    The output's ``params`` are {"actor", "critic", "log_alpha"}; ``metrics`` have one entry
    per log interval (``eval_returns``: ``[num_logs, eval_episodes]``).
    """
    return loop.make_train(make_stages(config, env, env_params, estimator, baseline))
