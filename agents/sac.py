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
                  limit (truncation) is bootstrapped and only a termination stops  (``td_target``);
* critic loss     Σ_j ½ (Q_j(s, a) − sg(y))², twin Q in one vmapped network (``critic_loss``);
* actor           min_θ E_s E_{a~πθ(·|s)}[f_θ(s, a)],  f_θ(s, a) = α log πθ(a|s) − min_j Q_j(s, a),
                  its gradient taken by the configured gradest estimator: pathwise (seed 000),
                  score function (seed 002: ∇ = E[∇log π (log π − Q/α + 1)] up to the factor α,
                  the +1 being the direct term ∇θ α log πθ), zeroth order in action space,
                  Gumbel-Softmax / straight-through (seed 001) or the exact sum over actions;
* baseline        for the score function, any b(s) free of a leaves the gradient's mean unchanged
                  (seed 002). We pass f − b(s) with b(s) = −V̂(s), V̂ learned (``"value"``) or
                  estimated from K fresh actions (``"mc_value"``), or the gradest leave-one-out
                  baseline over K actions per state. Subtracting a constant from f changes no other
                  estimator, so the agent stays free of estimator-specific code;
* temperature     min_{log α} log α · sg(H(π(·|s)) − H̄): α grows while the entropy is below the
                  target H̄ (default −|A|, or 0.98 log|A| for discrete actions)  (``alpha_loss``);
* targets         φ̄ ← ρ φ̄ + (1 − ρ) φ (Polyak averaging, ρ = ``polyak``).

Training is one pure function: ``make_train(config, env, env_params) -> train(key)``; a warm-up
scan with uniform random actions, then an outer ``lax.scan`` over log intervals (evaluation,
actor-gradient diagnostics and progress once per interval) around an inner scan over environment
steps, each followed by ``updates_per_step`` gradient steps.
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
from jax._src import core as jax_core
from flax import struct

import gradest
from gradest import baselines as gradest_baselines
from agents import _common, networks, replay, rollout
from agents._common import static

Array = jax.Array
PRNGKey = jax.Array
sg = jax.lax.stop_gradient

ESTIMATORS = ("pathwise", "score_function", "zeroth_order", "gumbel_softmax", "straight_through",
              "exact")
BASELINES = ("none", "value", "mc_value", "leave_one_out")


@struct.dataclass
class SACConfig:
    """SAC hyperparameters (field names shared with the on-policy agents where they mean the
    same). Static fields fix shapes and the program; the rest are traced, so configs that differ
    only in them can be vmapped: ``jax.vmap(train)(keys, stacked_configs)``."""

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
    actor_estimator: str = static("pathwise")  # one of ESTIMATORS
    actor_baseline: str = static("none")  # score function only: one of BASELINES
    # K: actions scored per state by the score function (all baselines; the leave-one-out group)
    # and fresh actions averaged by the "mc_value" baseline. Other estimators draw one.
    num_action_samples: int = static(4)
    zeroth_order_epsilon: float = static(0.01)  # smoothing scale ε in action space
    zeroth_order_directions: int = static(4)  # antithetic direction pairs per state
    gumbel_temperature: float = static(1.0)  # initial Gumbel-Softmax temperature τ₀ (seed 001)
    gumbel_anneal_rate: float = static(1e-4)  # τ_t = max(τ_min, τ₀ exp(−rate · updates))
    gumbel_min_temperature: float = static(0.5)  # τ_min
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


def td_target(reward: Array, terminated: Array, next_value: Array, gamma: Array) -> Array:
    """y = r + γ (1 − terminated) V(s').

    V(s') is taken at the observation the step produced *before* any auto-reset, so a truncated
    (time-limit) step is bootstrapped like any other; only a termination drops the future."""
    return reward + gamma * (1.0 - terminated.astype(reward.dtype)) * next_value


def critic_loss(q_twin: Array, target: Array) -> Array:
    """Σ_j ½ (Q_j(s, a) − sg(y))²: each critic regresses the shared target (``q_twin``: ``[J]``)."""
    chex.assert_rank(q_twin, 1)
    return 0.5 * jnp.sum((q_twin - sg(target)) ** 2)


def alpha_loss(log_alpha: Array, entropy: Array, target_entropy: Array) -> Array:
    """log α · sg(H − H̄): its gradient H − H̄ is negative while the policy's entropy H is below
    the target, so gradient descent raises α (Haarnoja et al., 2018b, eq. 18 in log α)."""
    return log_alpha * sg(entropy - target_entropy)


def polyak_update(target: Any, online: Any, polyak: Array) -> Any:
    """φ̄ ← ρ φ̄ + (1 − ρ) φ."""
    return jax.tree.map(lambda t, o: polyak * t + (1.0 - polyak) * o, target, online)


def exact_expectation() -> gradest.GradientEstimator:
    """The exact discrete 'estimator': surrogate Σ_a πθ(a) f(θ, a) over one-hot actions.

    Its value is E_π[f] and its gradient ∇θ E_π[f] exactly (discrete SAC, Christodoulou, 2019);
    it keeps the gradest surrogate contract so it plugs in where any estimator does.
    """
    traits = gradest.Traits(name="exact", unbiased=True, needs_differentiable_f=False,
                            supports="discrete")

    def surrogate(key, params, make_dist, f, state):
        del key, state
        dist = make_dist(params)
        num_actions = dist.logits.shape[-1]
        fz = jax.vmap(lambda y: f(params, y))(jnp.eye(num_actions, dtype=jnp.float32))
        value = jnp.sum(jax.nn.softmax(dist.logits) * fz)
        return value, {"f": value}

    return gradest.GradientEstimator(tuple, surrogate, lambda state, aux: state, traits)


_ESTIMATOR_FACTORIES: dict[str, Callable[[SACConfig], gradest.GradientEstimator]] = {
    "pathwise": lambda c: gradest.pathwise(),
    "score_function": lambda c: gradest.score_function(
        gradest_baselines.leave_one_out(c.num_action_samples)
        if c.actor_baseline == "leave_one_out" else None),
    "zeroth_order": lambda c: gradest.zeroth_order(
        c.zeroth_order_epsilon, c.zeroth_order_directions, antithetic=True),
    "gumbel_softmax": lambda c: gradest.gumbel_softmax(gradest.exponential_anneal(
        c.gumbel_temperature, c.gumbel_anneal_rate, c.gumbel_min_temperature)),
    "straight_through": lambda c: gradest.straight_through(gradest.exponential_anneal(
        c.gumbel_temperature, c.gumbel_anneal_rate, c.gumbel_min_temperature)),
    "exact": lambda c: exact_expectation(),
}


def make_actor_estimator(config: SACConfig, discrete: bool) -> gradest.GradientEstimator:
    """The configured actor-gradient estimator; ``gradest.EstimatorError`` if it does not fit the
    action space (e.g. pathwise on discrete actions) or the baseline does not fit the estimator."""
    if config.actor_estimator not in _ESTIMATOR_FACTORIES:
        raise gradest.EstimatorError(
            f"unknown actor_estimator {config.actor_estimator!r}; choose one of {ESTIMATORS}")
    if config.actor_baseline not in BASELINES:
        raise gradest.EstimatorError(
            f"unknown actor_baseline {config.actor_baseline!r}; choose one of {BASELINES}")
    if config.actor_baseline != "none" and config.actor_estimator != "score_function":
        raise gradest.EstimatorError(
            f"actor_baseline={config.actor_baseline!r} is a control variate for the score "
            f"function; {config.actor_estimator} ignores it, so leave it 'none'")
    estimator = _ESTIMATOR_FACTORIES[config.actor_estimator](config)
    # The critic makes f differentiable in the action: every estimator that fits the action
    # space fits SAC.
    gradest.check_compatible(estimator, kind="discrete" if discrete else "continuous",
                             differentiable_f=True)
    return estimator


# --------------------------------------------------------------------------------------------
# Networks: the policy as a distribution over agent actions (in (−1, 1)ᴰ, or one-hot), twin Q in
# one vmapped critic.


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


def per_critic(critic_params: Any, apply: Callable[[Any], Array]) -> Array:
    """``[apply(φ_1), apply(φ_2)]`` for the twin critics' stacked parameters φ ``[2, ...]``.

    The critics are applied one after the other rather than vmapped over φ: each layer is then a
    plain matmul on a ``[batch, width]`` array, where the vmapped form interleaves the twin and
    batch axes and XLA moves data between the two layouts at every layer (on CPU about 5% of a
    SAC step, interleaved A/B runs). The values are the same."""
    num = jax.tree.leaves(critic_params)[0].shape[0]
    return jnp.stack([apply(jax.tree.map(lambda p: p[j], critic_params)) for j in range(num)])


def twin_q(nets: Networks, critic_params: Any, obs: Array, action: Array) -> Array:
    """[Q_1(s, a), Q_2(s, a)]: both critics in one call (``per_critic``).
    A discrete action is a (possibly relaxed) one-hot vector y and Q(s, y) = ⟨Q(s, ·), y⟩."""
    if nets.spec.discrete:
        q_all = per_critic(critic_params, lambda p: nets.critic.apply(p, obs))
        return jnp.sum(q_all * action[None], axis=-1)
    return per_critic(critic_params, lambda p: nets.critic.apply(p, obs, action))


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
        q_all = per_critic(critic_params, lambda p: nets.critic.apply(p, obs))  # [2, n, A]
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
    built: dict = {}

    def make_dist(params):
        # An estimator may ask for πθ more than once with the same θ (pathwise: to sample a, then
        # for α log πθ(a|s) inside f). Building it once per (θ, trace) shares the actor's forward
        # pass, so the backward pass runs through the actor once with the cotangents summed,
        # rather than once per call: the same gradient for a smaller, faster program.
        trace = jax_core.get_opaque_trace_state(convention="flax")
        cached = built.get(id(params))
        if cached is not None and cached[0] is params and cached[1] == trace:
            return cached[2]
        dist = policy(nets, params, obs)
        built[id(params)] = (params, trace, dist)
        return dist

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
    # Several independent surrogate calls per state (the score function with K actions and a
    # baseline that needs no group): their mean is the K-sample estimate.
    values, aux = jax.vmap(lambda k: estimator.surrogate(k, actor_params, make_dist, f,
                                                         estimator_state))(
        jax.random.split(key, num_draws))
    return jnp.mean(values), jax.tree.map(lambda x: jnp.reshape(x, (-1,) + x.shape[2:]), aux)


# --------------------------------------------------------------------------------------------
# Training state.


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
    value_params: Any  # the learned V(s) baseline; None unless actor_baseline == "value"
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    value_opt: Any
    estimator_state: Any
    obs_stats: rollout.RunningStats
    buffer: replay.ReplayBuffer
    env: rollout.RolloutState
    num_updates: Array


class Metrics(NamedTuple):
    """Per-update metrics (averaged over a log interval)."""

    critic_loss: Array
    actor_loss: Array
    alpha: Array
    entropy: Array
    q_mean: Array
    value_loss: Array


class Agent(NamedTuple):
    """Everything static the agent's functions need (built by ``make_agent``), so the loop bodies
    are plain module-level functions of (agent, state, key)."""

    config: SACConfig
    env: Any
    env_params: Any
    nets: Networks
    estimator: gradest.GradientEstimator
    optimizers: "Optimizers"
    target_entropy: Array
    actor_draws: int  # surrogate calls per state (K / group size for the score function, else 1)


class Optimizers(NamedTuple):
    actor: optax.GradientTransformation
    critic: optax.GradientTransformation  # also the learned V baseline's
    alpha: optax.GradientTransformation


def make_optimizers(config: SACConfig) -> Optimizers:
    """Adam per parameter group; the networks' gradients first clipped to ``max_grad_norm``.
    Every step size follows η_t = η (1 − (1 − f) t / T) over the T gradient updates of the run,
    f = ``final_lr_fraction`` (constant where f is a known 1)."""
    # Clipping to an infinite norm is the identity: left out when the bound is a known inf
    # (not when it is traced, e.g. vmapped over configs). Each network's parameters are raveled
    # into one vector for the optimizer (``_common.flat_per_network``: the same arithmetic, a few
    # kernels per step instead of several per parameter leaf).
    no_clip = isinstance(config.max_grad_norm, (int, float)) and math.isinf(config.max_grad_norm)

    constant = isinstance(config.final_lr_fraction, (int, float)) and config.final_lr_fraction == 1
    sizes = loop_sizes(config)
    num_updates = max(1, sizes.num_logs * sizes.iterations_per_log * config.updates_per_step)

    def schedule(lr):
        if constant:
            return lr
        decay = 1.0 - config.final_lr_fraction
        return lambda count: lr * (1.0 - decay * jnp.minimum(count, num_updates) / num_updates)

    def clipped(lr):
        adam = optax.adam(schedule(lr))
        if no_clip:
            return _common.flat_per_network(adam)
        return _common.flat_per_network(
            optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam))

    return Optimizers(clipped(config.learning_rate * config.actor_lr_scale),
                      clipped(config.learning_rate), optax.adam(schedule(config.learning_rate)))


def target_entropy(config: SACConfig, spec: rollout.ActionSpec) -> Array:
    """H̄ = −scale · |A| for a box, ratio · log|A| for discrete actions (see ``SACConfig``)."""
    if spec.discrete:
        return jnp.asarray(config.target_entropy_ratio * math.log(spec.num_actions), jnp.float32)
    return jnp.asarray(-config.target_entropy_scale * spec.num_actions, jnp.float32)


def _normalize(agent: Agent, stats: rollout.RunningStats, obs: Array) -> Array:
    return rollout.normalize(stats, obs) if agent.config.normalize_obs else obs


def init_state(agent: Agent, key: PRNGKey) -> SACState:
    config, nets = agent.config, agent.nets
    k_env, k_actor, k_critic, k_value = jax.random.split(key, 4)
    env_state = rollout.reset(k_env, agent.env, agent.env_params, config.num_envs)
    obs = env_state.obs[0]
    example_action = jnp.zeros((nets.spec.num_actions,), jnp.float32)
    actor_params = nets.actor.init(k_actor, obs)
    critic_init = (lambda k: nets.critic.init(k, obs)) if nets.spec.discrete else (
        lambda k: nets.critic.init(k, obs, example_action))
    critic_params = jax.vmap(critic_init)(jax.random.split(k_critic, 2))
    log_alpha = jnp.log(jnp.asarray(config.init_alpha, jnp.float32))
    learned_value = config.actor_baseline == "value"
    value_params = nets.value.init(k_value, obs) if learned_value else None
    example = Experience(obs, example_action, jnp.zeros(()), jnp.zeros((), bool), obs)
    return SACState(
        actor_params=actor_params, critic_params=critic_params, target_critic_params=critic_params,
        log_alpha=log_alpha, value_params=value_params,
        actor_opt=agent.optimizers.actor.init(actor_params),
        critic_opt=agent.optimizers.critic.init(critic_params),
        alpha_opt=agent.optimizers.alpha.init(log_alpha),
        value_opt=agent.optimizers.critic.init(value_params) if learned_value else None,
        estimator_state=agent.estimator.init(), obs_stats=rollout.init_stats(obs.shape),
        buffer=replay.init(example, config.buffer_size), env=env_state,
        num_updates=jnp.zeros((), jnp.int32))


# --------------------------------------------------------------------------------------------
# One gradient step.


def _apply(optimizer: optax.GradientTransformation, grads: Any, opt_state: Any, params: Any
           ) -> tuple[Any, Any]:
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _baseline(agent: Agent, state: SACState, key: PRNGKey, obs: Array, critic_params: Any,
              alpha: Array) -> Array:
    """b(s) = −V̂(s) per state (zero without a V baseline): E[f] = −V(s), so f − b is centred."""
    config = agent.config
    if config.actor_baseline == "value":
        return -sg(jax.vmap(lambda o: agent.nets.value.apply(state.value_params, o))(obs))
    if config.actor_baseline == "mc_value":
        # K fresh actions per state, independent of the one scored: the baseline stays unbiased.
        def mc_value(k, o):
            values, _ = jax.vmap(lambda kk: state_value(
                agent.nets, kk, state.actor_params, critic_params, o, alpha))(
                    jax.random.split(k, config.num_action_samples))
            return jnp.mean(values)

        return -sg(jax.vmap(mc_value)(jax.random.split(key, obs.shape[0]), obs))
    return jnp.zeros(obs.shape[:1])


def _actor_loss(agent: Agent, actor_params: Any, keys: PRNGKey, obs: Array, critic_params: Any,
                alpha: Array, baseline: Array, estimator_state: Any) -> tuple[Array, dict]:
    """Mean over batch states of the per-state surrogate."""
    values, aux = jax.vmap(
        lambda k, o, b: actor_surrogate(agent.nets, agent.estimator, actor_params, k, o,
                                        critic_params, alpha, b, estimator_state,
                                        agent.actor_draws))(keys, obs, baseline)
    return jnp.mean(values), aux


def update(agent: Agent, state: SACState, key: PRNGKey) -> tuple[SACState, Metrics]:
    config, nets = agent.config, agent.nets
    k_batch, k_next, k_base, k_actor = jax.random.split(key, 4)
    batch = replay.sample(k_batch, state.buffer, config.batch_size)
    obs = _normalize(agent, state.obs_stats, batch.obs)
    next_obs = _normalize(agent, state.obs_stats, batch.next_obs)
    alpha = jnp.exp(state.log_alpha)
    n = config.batch_size

    # Critics. The entropy estimate for α comes from the same policy evaluation at s' (also a
    # replay state), saving an actor pass.
    next_value, entropy = batch_state_value(nets, k_next, state.actor_params,
                                            state.target_critic_params, next_obs, alpha)
    target = td_target(batch.reward, batch.terminated, next_value, config.gamma)

    def critic_objective(params):
        # Both critics on the whole batch at once ([2, n] → [n, 2]): the twin axis stays
        # outermost, as the stacked parameters have it (no per-sample layout transposes).
        q = twin_q(nets, params, obs, batch.action).T
        return jnp.mean(jax.vmap(critic_loss)(q, target)), q

    (c_loss, q), c_grads = jax.value_and_grad(critic_objective, has_aux=True)(state.critic_params)
    critic_params, critic_opt = _apply(agent.optimizers.critic, c_grads, state.critic_opt, state.critic_params)

    # Actor, against the updated critics.
    baseline = _baseline(agent, state, k_base, obs, critic_params, alpha)
    (a_loss, aux), a_grads = jax.value_and_grad(
        functools.partial(_actor_loss, agent), has_aux=True)(
            state.actor_params, jax.random.split(k_actor, n), obs, critic_params, alpha,
            baseline, state.estimator_state)
    actor_params, actor_opt = _apply(agent.optimizers.actor, a_grads, state.actor_opt, state.actor_params)
    estimator_state = agent.estimator.update(state.estimator_state, aux)

    # Temperature.
    al_grad = jax.grad(alpha_loss)(state.log_alpha, jnp.mean(entropy), agent.target_entropy)
    log_alpha, alpha_opt = _apply(agent.optimizers.alpha, al_grad, state.alpha_opt,
                                  state.log_alpha)
    log_alpha = jnp.minimum(log_alpha, jnp.log(config.max_alpha))

    # Learned V(s) baseline: regress the soft value −E[f] seen by the actor (f = surrogate
    # sample + b, averaged over the K draws of a leave-one-out group).
    value_params, value_opt, v_loss = state.value_params, state.value_opt, jnp.zeros(())
    if config.actor_baseline == "value":
        f_mean = jnp.mean(jnp.reshape(aux["f"], (n, -1)), axis=1) + baseline

        def value_objective(params):
            v = jax.vmap(lambda o: nets.value.apply(params, o))(obs)
            return 0.5 * jnp.mean((v + sg(f_mean)) ** 2)

        v_loss, v_grads = jax.value_and_grad(value_objective)(state.value_params)
        value_params, value_opt = _apply(agent.optimizers.critic, v_grads, state.value_opt, state.value_params)

    state = state.replace(
        actor_params=actor_params, critic_params=critic_params,
        target_critic_params=polyak_update(state.target_critic_params, critic_params,
                                           config.polyak),
        log_alpha=log_alpha, value_params=value_params, actor_opt=actor_opt,
        critic_opt=critic_opt, alpha_opt=alpha_opt, value_opt=value_opt,
        estimator_state=estimator_state, num_updates=state.num_updates + 1)
    # The actor loss is reported without the baseline, as E[α log π − min Q].
    metrics = Metrics(c_loss, a_loss + jnp.mean(baseline), alpha, jnp.mean(entropy), jnp.mean(q),
                      v_loss)
    return state, metrics


# --------------------------------------------------------------------------------------------
# Acting and the loops.


def _env_action(spec: rollout.ActionSpec, action: Array) -> Array:
    return jnp.argmax(action, axis=-1) if spec.discrete else action


def random_actions(spec: rollout.ActionSpec, key: PRNGKey, num_envs: int) -> Array:
    """Uniform agent actions: in (−1, 1)ᴰ, or uniform one-hot vectors."""
    if spec.discrete:
        index = jax.random.randint(key, (num_envs,), 0, spec.num_actions)
        return jax.nn.one_hot(index, spec.num_actions, dtype=jnp.float32)
    return jax.random.uniform(key, (num_envs, spec.num_actions), minval=-1.0, maxval=1.0)


class _Collected(NamedTuple):
    return_sum: Array
    episodes: Array


def _collect(agent: Agent, state: SACState, key: PRNGKey, action: Array
             ) -> tuple[SACState, _Collected]:
    """Steps the environments with ``action`` and stores the transitions."""
    env, transition = rollout.step(key, agent.env, agent.env_params, agent.nets.spec, state.env,
                                   _env_action(agent.nets.spec, action))
    experience = Experience(transition.obs, action, transition.reward, transition.terminated,
                            transition.next_obs)
    state = state.replace(env=env, buffer=replay.add(state.buffer, experience),
                          obs_stats=rollout.update_stats(state.obs_stats, transition.obs))
    return state, _Collected(*rollout.completed_episode_return(transition))


def warmup_step(agent: Agent, state: SACState, key: PRNGKey) -> tuple[SACState, _Collected]:
    k_act, k_env = jax.random.split(key)
    action = random_actions(agent.nets.spec, k_act, agent.config.num_envs)
    return _collect(agent, state, k_env, action)


def train_step(agent: Agent, state: SACState, key: PRNGKey
                ) -> tuple[SACState, tuple[_Collected, Metrics]]:
    # One split for the step: the action's key, one per environment, one per update.
    num_envs = agent.config.num_envs
    keys = jax.random.split(key, 1 + num_envs + agent.config.updates_per_step)
    obs = _normalize(agent, state.obs_stats, state.env.obs)
    action = policy(agent.nets, state.actor_params, obs).sample(seed=keys[0])
    state, collected = _collect(agent, state, keys[1:1 + num_envs], action)
    state, metrics = jax.lax.scan(functools.partial(update, agent), state, keys[1 + num_envs:])
    return state, (collected, jax.tree.map(jnp.mean, metrics))


def greedy_action(agent: Agent, state: SACState, obs: Array) -> Array:
    """The deterministic action: tanh(μ(s)) (continuous) or argmax π(·|s), as env actions."""
    dist = policy(agent.nets, state.actor_params, _normalize(agent, state.obs_stats, obs))
    return _env_action(agent.nets.spec, dist.mode())


def evaluate(agent: Agent, key: PRNGKey, state: SACState, num_episodes: int) -> Array:
    """Undiscounted returns ``[num_episodes]`` of the greedy policy."""
    # rollout.evaluate maps agent actions to env actions; for discrete ones that is the identity
    # on indices, which greedy_action already returns.
    return rollout.evaluate(key, agent.env, agent.env_params, agent.nets.spec,
                            functools.partial(greedy_action, agent, state), num_episodes)


def actor_gradient_stats(agent: Agent, state: SACState, key: PRNGKey) -> gradest.GradientStats:
    """Variance and SNR of the actor gradient from per-state gradients over one replay batch."""
    k_batch, k_base, k_actor = jax.random.split(key, 3)
    batch = replay.sample(k_batch, state.buffer, agent.config.batch_size)
    obs = _normalize(agent, state.obs_stats, batch.obs)
    alpha = jnp.exp(state.log_alpha)
    baseline = _baseline(agent, state, k_base, obs, state.critic_params, alpha)
    grad_fn = jax.grad(functools.partial(actor_surrogate, agent.nets, agent.estimator),
                       has_aux=True)
    grads, _ = jax.vmap(lambda k, o, b: grad_fn(state.actor_params, k, o, state.critic_params,
                                                alpha, b, state.estimator_state,
                                                agent.actor_draws))(
        jax.random.split(k_actor, obs.shape[0]), obs, baseline)
    return gradest.gradient_stats(grads)


class LoopSizes(NamedTuple):
    """Static sizes of the training loop; one iteration steps all ``num_envs`` envs once."""

    warmup_iterations: int
    num_logs: int
    iterations_per_log: int

    def env_steps(self, num_envs: int) -> int:
        return (self.warmup_iterations + self.num_logs * self.iterations_per_log) * num_envs


def loop_sizes(config: SACConfig) -> LoopSizes:
    """Splits the budget into a warm-up and ``num_logs`` intervals of about ``log_interval``
    iterations. The warm-up takes at least ``warmup_steps`` environment steps and absorbs the
    rounding, so the run takes exactly ``total_steps`` (rounded down to a multiple of
    ``num_envs``)."""
    total = config.total_steps // config.num_envs
    train_iterations = total - -(-config.warmup_steps // config.num_envs)
    if train_iterations < 1:
        raise ValueError(f"total_steps={config.total_steps} leaves no training after "
                         f"warmup_steps={config.warmup_steps}")
    num_logs = max(1, round(train_iterations / max(1, config.log_interval)))
    per_log = train_iterations // num_logs
    return LoopSizes(total - num_logs * per_log, num_logs, per_log)


def _print_progress(total: int, steps, train_return, episodes, eval_return, evaluated, alpha,
                    q_mean, variance, snr) -> None:
    print(f"[sac] {int(steps):>9,}/{total:,} env steps | "
          f"{_common.returns_text(train_return, episodes, eval_return, evaluated)}"
          f" | alpha {float(alpha):.3g}"
          f" | Q {float(q_mean):8.2f} | actor grad var {float(variance):.3g} snr {float(snr):.3g}",
          flush=True)


def _outer_step(agent: Agent, sizes: LoopSizes, state: SACState, xs: tuple[Array, PRNGKey]
                ) -> tuple[SACState, dict]:
    """One log interval: ``iterations_per_log`` steps with their updates, then evaluation,
    actor-gradient diagnostics and the progress line (once per interval, never under a cond)."""
    index, key = xs
    k_steps, k_eval, k_diag = jax.random.split(key, 3)
    state, (collected, metrics) = jax.lax.scan(functools.partial(train_step, agent), state,
                                               jax.random.split(k_steps, sizes.iterations_per_log))
    stats = actor_gradient_stats(agent, state, k_diag)
    episodes = jnp.sum(collected.episodes)
    eval_returns, evaluated = _common.evaluate_every(
        index, sizes.num_logs, agent.config.eval_every,
        lambda: evaluate(agent, k_eval, state, agent.config.eval_episodes),
        agent.config.eval_episodes)
    iterations = sizes.warmup_iterations + (index + 1) * sizes.iterations_per_log
    steps = iterations * agent.config.num_envs
    out = {
        **{k: jnp.mean(v) for k, v in metrics._asdict().items()},
        "env_steps": steps,
        # Mean return of the training episodes that ended in the interval; 0 here if none did,
        # NaN once ``_common.finish_metrics`` has seen ``train_episodes`` (no NaN in the program:
        # ``--debug_nans`` would stop on it).
        "train_return": jnp.sum(collected.return_sum) / jnp.maximum(episodes, 1),
        "train_episodes": episodes,
        "eval_returns": eval_returns,
        "eval_return": jnp.mean(eval_returns),
        "evaluated": evaluated,
        "grad_variance": stats.total_variance,
        "grad_snr": stats.snr,
        "grad_norm": stats.mean_norm,
    }
    if agent.config.verbose:
        jax.debug.callback(
            functools.partial(_print_progress, sizes.env_steps(agent.config.num_envs)), steps,
            out["train_return"], episodes, out["eval_return"], evaluated, out["alpha"],
            out["q_mean"], out["grad_variance"], out["grad_snr"])
    return state, out


def make_agent(config: SACConfig, env, env_params) -> Agent:
    """Builds the networks, the actor estimator and the optimizer; raises
    ``gradest.EstimatorError`` for an estimator that does not fit the action space."""
    if config.eval_every < 1 or config.eval_episodes < 1:
        raise ValueError(f"eval_every and eval_episodes must be positive, got "
                         f"{config.eval_every} and {config.eval_episodes}")
    spec = rollout.action_spec(env, env_params)
    if config.batch_size > config.warmup_steps:
        raise ValueError(f"warmup_steps={config.warmup_steps} must cover one batch "
                         f"(batch_size={config.batch_size})")
    estimator = make_actor_estimator(config, spec.discrete)
    draws = 1
    if config.actor_estimator == "score_function":
        k = config.num_action_samples
        if not isinstance(k, int) or k < 1 or k % estimator.traits.samples_per_call:
            raise ValueError(f"num_action_samples={k!r} must be a positive multiple of the "
                             f"baseline's group size {estimator.traits.samples_per_call}")
        draws = k // estimator.traits.samples_per_call
    return Agent(config, env, env_params, make_networks(config, spec), estimator,
                 make_optimizers(config), target_entropy(config, spec), draws)


def make_stages(config: SACConfig, env, env_params) -> _common.Stages:
    """SAC on ``env`` as resumable ``_common.Stages``: ``init`` builds the state and runs the
    warm-up, ``run`` runs log intervals; the carry holds the whole ``SACState`` (replay buffer,
    environments, optimizer states, update counter) and the loop key. Raises
    ``gradest.EstimatorError`` at once for an estimator that does not fit the action space."""
    make_agent(config, env, env_params)
    sizes = loop_sizes(config)

    def init(key: PRNGKey, train_config: SACConfig = config) -> _common.Carry:
        _common.check_static(train_config, config)
        agent = make_agent(train_config, env, env_params)
        k_init, k_warm, k_train = jax.random.split(key, 3)
        state = init_state(agent, k_init)
        state, _ = jax.lax.scan(functools.partial(warmup_step, agent), state,
                                jax.random.split(k_warm, sizes.warmup_iterations))
        return _common.Carry(state, k_train)

    def run(carry: _common.Carry, start, length: int, train_config: SACConfig = config
            ) -> tuple[_common.Carry, dict]:
        _common.check_static(train_config, config)
        agent = make_agent(train_config, env, env_params)
        xs = _common.log_inputs(carry.key, sizes.num_logs, start, length)
        state, metrics = jax.lax.scan(functools.partial(_outer_step, agent, sizes), carry.state,
                                      xs)
        return _common.Carry(state, carry.key), metrics

    def output(carry: _common.Carry):
        state = carry.state
        params = {"actor": state.actor_params, "critic": state.critic_params,
                  "log_alpha": state.log_alpha}
        return params, state.obs_stats

    return _common.Stages(sizes.num_logs, config, init, run, output)


def make_train(config: SACConfig, env, env_params):
    """``train(key, config=config) -> agents._common.TrainOutput`` for SAC on ``env``: one pure
    function, so ``jax.jit(jax.vmap(train))(keys)`` trains many seeds at once (and configs that
    differ in traced fields only). Raises ``gradest.EstimatorError`` at once for an estimator
    that does not fit the action space.

    The output's ``params`` are {"actor", "critic", "log_alpha"}; ``metrics`` have one entry
    per log interval (``eval_returns``: ``[num_logs, eval_episodes]``).
    """
    return _common.train_from_stages(make_stages(config, env, env_params))
