"""Pieces every on-policy agent shares: the config fields, the optimizer, the policy-gradient
loss on one sample, actor-gradient diagnostics and the training loop.

The loop (``train_loop``) is an outer ``lax.scan`` over log intervals around an inner
``lax.scan`` over updates. Evaluation, gradient diagnostics and the progress print run once per
outer step, outside the inner scan: under ``vmap`` a ``lax.cond`` ("every N updates") would turn
into a select that computes both branches on every update.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import gradest
from agents import networks, rollout as rollout_lib
from agents._prng import KEY_IMPL, prng_key  # noqa: F401  (re-exported)

Array = jax.Array
PRNGKey = jax.Array
Params = Any


def static(default):
    """A config field fixed at trace time (a size, a count, a choice): not a pytree leaf."""
    return struct.field(pytree_node=False, default=default)


@struct.dataclass
class CommonConfig:
    """Fields every on-policy agent has. Static fields shape the computation; the others are
    traced leaves, so a batch of configs that differ only in them can be ``vmap``-ed."""

    # --- static ---
    num_envs: int = static(4)               # environments stepped side by side
    num_steps: int = static(128)            # steps per environment per rollout (one update)
    total_steps: int = static(500_000)      # env-step budget; rounded down to whole updates
    log_interval: int = static(50)          # updates between evaluations / diagnostics / prints
    eval_episodes: int = static(32)         # greedy episodes per evaluation
    eval_every: int = static(1)             # log intervals per evaluation (the last always)
    actor_widths: Sequence[int] = static((64, 64))   # hidden layer widths of the actor
    critic_widths: Sequence[int] = static((64, 64))  # hidden layer widths of the critic
    activation: str = static("tanh")        # hidden activation (networks.ACTIVATIONS)
    state_dependent_std: bool = static(False)  # Gaussian actors: σ(s) head or a free log σ
    log_std_init: float = static(0.0)       # Gaussian actors: initial log σ
    normalize_obs: bool = static(False)     # running mean/std observation normalization
    anneal_lr: bool = static(True)          # learning rate decays linearly to 0
    clip_per_network: bool = static(False)  # clip actor and critic gradients separately
    verbose: bool = static(True)            # print progress from inside jit once per log
    # --- traced ---
    learning_rate: float = 2.5e-4           # Adam step size (initial, if annealed)
    gamma: float = 0.99                     # discount γ
    ent_coef: float = 0.01                  # entropy bonus coefficient
    max_grad_norm: float = 0.5              # global-norm gradient clip
    reward_scale: float = 1.0               # rewards are multiplied by this before learning


class LoopSizes(NamedTuple):
    """Static sizes of the training loop."""

    steps_per_update: int
    num_logs: int
    updates_per_log: int

    @property
    def num_updates(self) -> int:
        return self.num_logs * self.updates_per_log

    @property
    def env_steps(self) -> int:
        return self.num_updates * self.steps_per_update


def loop_sizes(config: CommonConfig) -> LoopSizes:
    """Splits the budget into ``num_logs`` outer steps of ``updates_per_log`` updates.

    The number of updates is ``total_steps // (num_envs · num_steps)``, rounded down to a
    multiple of the number of logs (at most ``num_logs − 1`` updates are dropped).
    """
    per_update = config.num_envs * config.num_steps
    num_updates = config.total_steps // per_update
    if num_updates < 1:
        raise ValueError(
            f"total_steps={config.total_steps} is less than one update "
            f"(num_envs · num_steps = {per_update})")
    num_logs = max(1, num_updates // max(1, config.log_interval))
    return LoopSizes(per_update, num_logs, num_updates // num_logs)


def check_config(config: CommonConfig) -> None:
    """``ValueError`` on sizes that cannot work (checked before tracing)."""
    for name in ("num_envs", "num_steps", "total_steps", "log_interval", "eval_episodes",
                 "eval_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)}")
    loop_sizes(config)


# --------------------------------------------------------------------------------------------
# Networks and the environment, fixed when the agent is built.

class Setup(NamedTuple):
    """The static pieces an agent is built from (not traced)."""

    env: Any
    env_params: Any
    spec: rollout_lib.ActionSpec
    actor: nn.Module
    critic: nn.Module
    obs_shape: tuple[int, ...]


def make_setup(config: CommonConfig, env, env_params) -> Setup:
    """Actor (categorical or Gaussian by the action space) and V(s) critic for ``env``."""
    spec = rollout_lib.action_spec(env, env_params)
    obs_shape = tuple(env.observation_space(env_params).shape)
    obs_ndim = len(obs_shape)
    if spec.discrete:
        actor = networks.CategoricalActor(spec.num_actions, tuple(config.actor_widths),
                                          config.activation, obs_ndim)
    else:
        actor = networks.GaussianActor(spec.num_actions, tuple(config.actor_widths),
                                       config.activation, config.state_dependent_std,
                                       config.log_std_init, obs_ndim=obs_ndim)
    critic = networks.ValueCritic(tuple(config.critic_widths), config.activation, obs_ndim)
    return Setup(env, env_params, spec, actor, critic, obs_shape)


def init_params(key: PRNGKey, setup: Setup) -> dict:
    """{"actor": ..., "critic": ...} for a dummy observation."""
    key_actor, key_critic = jax.random.split(key)
    dummy = jnp.zeros(setup.obs_shape)
    return {"actor": setup.actor.init(key_actor, dummy),
            "critic": setup.critic.init(key_critic, dummy)}


def _network_labels(params: dict) -> dict:
    return {name: jax.tree.map(lambda _: name, tree) for name, tree in params.items()}


def make_optimizer(config: CommonConfig, num_gradient_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping then Adam, with the step size annealed linearly to 0 if asked.

    With ``clip_per_network`` the actor's and the critic's gradients are clipped each to their
    own norm, so that a large critic gradient (a regression on unnormalized returns) cannot
    shrink the actor's step.
    """
    if config.anneal_lr:
        def lr(count):
            return config.learning_rate * (1.0 - count / num_gradient_steps)
    else:
        lr = config.learning_rate
    clip = optax.clip_by_global_norm(config.max_grad_norm)
    if config.clip_per_network:
        clip = optax.multi_transform({"actor": clip, "critic": clip}, _network_labels)
    return flat_per_network(optax.chain(clip, optax.adam(lr, eps=1e-5)))


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


def observe(config: CommonConfig, stats: rollout_lib.RunningStats, obs: Array) -> Array:
    """What the networks see: the observation, normalized if the config asks for it."""
    return rollout_lib.normalize(stats, obs) if config.normalize_obs else obs


def updated_stats(config: CommonConfig, stats: rollout_lib.RunningStats,
                  obs: Array) -> rollout_lib.RunningStats:
    return rollout_lib.update_stats(stats, obs) if config.normalize_obs else stats


def act(setup: Setup, config: CommonConfig, actor_params: Params,
        stats: rollout_lib.RunningStats, key: PRNGKey, obs: Array) -> tuple[Array, Array]:
    """a ~ πθ(·|s) for a batch of raw observations, with log πθ(a|s) (the rollout's extras).
    Bind everything but (key, obs) with ``functools.partial`` to get a ``rollout.Policy``."""
    dist = setup.actor.apply(actor_params, observe(config, stats, obs))
    return sample_with_log_prob(dist, key)


def sample_with_log_prob(dist, key: PRNGKey) -> tuple[Array, Array]:
    """a ~ dist and log dist(a). Not distrax's ``sample_and_log_prob``: its Gaussians add the
    sample axis to loc by implicit rank promotion, which ``jax_numpy_rank_promotion="raise"``
    refuses; the log-prob of the drawn action is the same number."""
    action = dist.sample(seed=key)
    return action, dist.log_prob(action)


class Learner(NamedTuple):
    """What a gradient step changes."""

    params: Params
    opt_state: Any


def gradient_step(opt: optax.GradientTransformation, loss_fn: Callable[..., tuple[Array, dict]],
                  learner: Learner, *args) -> tuple[Learner, dict]:
    """One optimizer step on ``loss_fn(params, *args) -> (loss, metrics)``; returns the metrics."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(learner.params, *args)
    updates, opt_state = opt.update(grads, learner.opt_state, learner.params)
    return Learner(optax.apply_updates(learner.params, updates), opt_state), metrics


# --------------------------------------------------------------------------------------------
# The policy-gradient term, one sample at a time (rlax style; vmap at the call site).

def policy_gradient_loss(log_prob: Array, old_log_prob: Array, advantage: Array,
                         clip_epsilon: float | Array | None = None) -> tuple[Array, Any]:
    """−ρ Â (optionally PPO-clipped) for one logged sample, from ``gradest.likelihood_ratio_loss``.

    ρ = πθ(a|s) / π_old(a|s) = exp(log_prob − old_log_prob). At θ = θ_old, ρ = 1 and the gradient
    is −Â ∇θ log πθ(a|s): the score-function (REINFORCE) estimate of seeds 000 and 004. Returns
    the loss and the ``LikelihoodRatioStats`` (ratio, clip indicator, approximate KL).
    """
    chex.assert_rank([log_prob, old_log_prob, advantage], 0)
    objective, stats = gradest.likelihood_ratio_loss(log_prob, old_log_prob, advantage,
                                                     clip_epsilon)
    return -objective, stats


def permutation(key: PRNGKey, n: int) -> Array:
    """A uniformly random permutation of ``range(n)``, as ``jax.random.permutation(key, n)``
    draws one (sorting random keys, ties kept in order), in a fifth of its time on CPU.

    Each round sorts n uint32 words whose low k = ⌈log₂ n⌉ bits hold the position and whose
    high 32 − k bits are random: a sort of one integer operand, which XLA's CPU backend runs
    about 5× faster than the two-operand (key, value) sort of ``jax.random.permutation``
    (512 elements: 11 µs against 55 µs; PPO shuffles its rollout once per epoch). The rounds
    compose: a pair of elements keeps the order of the previous round only where its random bits
    tie. There are enough rounds for 3 log₂ n random bits in all, the rule of
    ``jax.random.permutation`` itself, so the distance from uniform is as small as its. For
    n > 2²⁴ (fewer than 8 random bits a round) this falls back to ``jax.random.permutation``.
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    k = max(1, (n - 1).bit_length())
    if k > 24:
        return jax.random.permutation(key, n)
    random_bits = 32 - k
    rounds = -(-3 * k // random_bits)
    low = jnp.uint32((1 << k) - 1)
    perm = None
    for round_key in jax.random.split(key, rounds):
        words = (jax.random.bits(round_key, (n,), jnp.uint32) & ~low) | jnp.arange(
            n, dtype=jnp.uint32)
        order = (jnp.sort(words) & low).astype(jnp.int32)
        perm = order if perm is None else perm[order]
    return perm


def standardize(x: Array) -> Array:
    """(x − mean) / std over the batch: advantage normalization (a batch baseline and scale)."""
    return (x - jnp.mean(x)) / (jnp.std(x) + 1e-8)


class PolicyBatch(NamedTuple):
    """Logged samples and their advantages, flattened to one axis: what the actor is fit to."""

    obs: Array
    action: Array
    log_prob: Array
    advantage: Array


class DiagInput(NamedTuple):
    """The actor parameters θ_old of the latest update, the batch it used and the baseline b
    per sample that the advantages subtract (advantage + baseline is the return estimate)."""

    actor_params: Params
    batch: PolicyBatch
    baseline: Array


def _sample_loss(setup: Setup, actor_params: Params, obs: Array, action: Array,
                 old_log_prob: Array, advantage: Array) -> Array:
    """The per-sample policy-gradient loss −ρ Â (reference for ``_per_sample_grads``)."""
    log_prob = setup.actor.apply(actor_params, obs).log_prob(action)
    loss, _ = policy_gradient_loss(log_prob, old_log_prob, advantage)
    return loss


def _per_sample_grads(setup: Setup, actor_params: Params, batch: PolicyBatch,
                      advantages: Array) -> Any:
    """Per-sample gradients of ``_sample_loss`` for each row of ``advantages`` ``[K, S]``:
    leaves ``[K, S, ...]``.

    ∇θ(−ρ_i Â_i) = −ρ_i Â_i ∇θ log πθ(a_i|s_i), ρ_i = πθ(a_i|s_i) / π_old(a_i|s_i), so one
    vmapped backward pass (∇θ log πθ per sample) serves every advantage vector: the same
    gradients as ``jax.grad`` of ``_sample_loss`` per vector, at a fraction of the program size.
    """
    def log_prob(params, obs, action):
        return setup.actor.apply(params, obs).log_prob(action)

    log_probs, score = jax.vmap(jax.value_and_grad(log_prob), in_axes=(None, 0, 0))(
        actor_params, batch.obs, batch.action)
    ratio = jnp.exp(log_probs - batch.log_prob)
    weights = -ratio[None] * advantages                             # [K, S]
    return jax.tree.map(
        lambda g: weights.reshape(weights.shape + (1,) * (g.ndim - 1)) * g[None], score)


def _summary(setup: Setup, actor_params: Params, batch: PolicyBatch) -> dict:
    grads = _per_sample_grads(setup, actor_params, batch, batch.advantage[None])
    return gradest.diagnostics.summarize(jax.tree.map(lambda g: g[0], grads))


def actor_gradient_stats(setup: Setup, diag: DiagInput) -> dict:
    """Variance and SNR of the per-sample actor gradients Â_i ∇θ log πθ(a_i|s_i) at θ_old,
    across the batch (``gradest.diagnostics``), and, on the same samples, of the estimator
    without the baseline, (Â_i + b_i) ∇θ log πθ(a_i|s_i): a paired measure of what the baseline
    buys (seed 004), free of the confound that different runs reach different policies.

    Both come from one pass of per-sample score gradients ∇θ log πθ(a_i|s_i), each weighted by
    −ρ_i Â_i and −ρ_i (Â_i + b_i) (``_per_sample_grads``): the gradients of the per-sample loss
    −ρ Â, exactly as two separate ``vmap(grad)`` passes would give them.
    """
    advantages = jnp.stack([diag.batch.advantage, diag.batch.advantage + diag.baseline])
    grads = _per_sample_grads(setup, diag.actor_params, diag.batch, advantages)
    with_b, without_b = (gradest.diagnostics.summarize(jax.tree.map(lambda g: g[k], grads))
                         for k in range(2))
    return {"grad_variance": with_b["total_variance"], "grad_snr": with_b["snr"],
            "grad_norm": with_b["mean_norm"],
            "grad_variance_no_baseline": without_b["total_variance"],
            "grad_snr_no_baseline": without_b["snr"]}


# --------------------------------------------------------------------------------------------
# The training loop.

class AgentState(NamedTuple):
    """What one seed carries from update to update.

    ``extra`` holds agent-specific state (e.g. a moving-average baseline); ``diag`` the latest
    update's θ_old and batch, for gradient diagnostics once per log.
    """

    params: Params
    opt_state: Any
    env: rollout_lib.RolloutState
    obs_stats: rollout_lib.RunningStats
    diag: DiagInput
    extra: Any


class TrainOutput(NamedTuple):
    """``train(key)``'s result: final parameters and observation statistics, and metrics with a
    leading axis of one entry per log (``[num_logs]``; eval returns ``[num_logs, episodes]``)."""

    params: Params
    obs_stats: rollout_lib.RunningStats
    metrics: dict


def init_state(key: PRNGKey, setup: Setup, config: CommonConfig, opt: optax.GradientTransformation,
               extra: Any = None) -> AgentState:
    """Fresh parameters, optimizer state and environments; ``diag`` holds a placeholder batch
    of the right shapes (the first log overwrites it)."""
    key_params, key_env = jax.random.split(key)
    params = init_params(key_params, setup)
    env = rollout_lib.reset(key_env, setup.env, setup.env_params, config.num_envs)
    batch_size = config.num_envs * config.num_steps
    obs = jnp.zeros((batch_size,) + setup.obs_shape)
    # Zeros shaped like the actor's samples: nothing to draw or compute for a placeholder.
    action, log_prob = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype),
        jax.eval_shape(lambda p, o, k: sample_with_log_prob(setup.actor.apply(p, o), k),
                       params["actor"], obs, key))
    zeros = jnp.zeros((batch_size,))
    batch = PolicyBatch(obs, action, log_prob, zeros)
    return AgentState(params, opt.init(params), env, rollout_lib.init_stats(setup.obs_shape),
                      DiagInput(params["actor"], batch, zeros), extra)


def flatten(x: Array) -> Array:
    """[T, N, ...] → [T·N, ...]."""
    return x.reshape((-1,) + x.shape[2:])


def episode_metrics(transitions: rollout_lib.Transition) -> dict:
    total, count = rollout_lib.completed_episode_return(transitions)
    return {"return_sum": total, "episodes": count}


def greedy_returns(setup: Setup, config: CommonConfig, state: AgentState, key: PRNGKey) -> Array:
    """Returns of ``eval_episodes`` episodes of the greedy (categorical) / mean (Gaussian) action."""
    def act(obs):
        return setup.actor.apply(state.params["actor"], observe(config, state.obs_stats, obs)).mode()
    return rollout_lib.evaluate(key, setup.env, setup.env_params, setup.spec, act,
                                config.eval_episodes)


def evaluate_every(index: Array, num_logs: int, eval_every: int, evaluate: Callable[[], Array],
                   num_episodes: int) -> tuple[Array, Array]:
    """(returns ``[num_episodes]``, whether they were measured) at log interval ``index``:
    ``evaluate()`` every ``eval_every`` intervals and at the last one, zeros elsewhere (NaN once
    ``finish_metrics`` has seen ``evaluated``). The branch depends on the interval index only,
    never on a seed, so under ``vmap`` over seeds it stays a real branch: skipped evaluations
    cost nothing."""
    if eval_every == 1:
        return evaluate(), jnp.ones((), bool)
    due = jnp.logical_or((index + 1) % eval_every == 0, index == num_logs - 1)
    returns = jax.lax.cond(due, evaluate, lambda: jnp.zeros((num_episodes,), jnp.float32))
    return returns, due


def returns_text(train_return, episodes, eval_return, evaluated) -> str:
    """The progress line's returns: NaN where no training episode ended, a dash where the
    interval was not evaluated."""
    shown = float(train_return) if int(episodes) > 0 else float("nan")
    eval_text = f"{float(eval_return):8.2f}" if bool(evaluated) else "       –"
    return f"train return {shown:8.2f} | eval return {eval_text}"


def _print_progress(name: str, total: int, steps, train_return, episodes, eval_return,
                    evaluated) -> None:
    print(f"[{name}] {int(steps):>9,}/{total:,} env steps | "
          f"{returns_text(train_return, episodes, eval_return, evaluated)}", flush=True)


# update(state, key) -> (state, metrics): one rollout and the learning step(s) on it.
UpdateFn = Callable[[AgentState, PRNGKey], tuple[AgentState, dict]]


class _Loop(NamedTuple):
    name: str
    setup: Setup
    config: CommonConfig
    sizes: LoopSizes
    update: UpdateFn


def _outer_step(loop: _Loop, state: AgentState, xs: tuple[Array, PRNGKey]
                ) -> tuple[AgentState, dict]:
    index, key = xs
    key_updates, key_eval = jax.random.split(key)
    state, metrics = jax.lax.scan(loop.update, state,
                                  jax.random.split(key_updates, loop.sizes.updates_per_log))
    episodes = jnp.sum(metrics.pop("episodes"))
    # No NaN inside the program (``--debug_nans`` would stop on it): an interval without a
    # completed episode logs 0 here and ``finish_metrics`` turns it into NaN.
    train_return = jnp.sum(metrics.pop("return_sum")) / jnp.maximum(episodes, 1)
    out = {k: jnp.mean(v) for k, v in metrics.items()}
    eval_returns, evaluated = evaluate_every(
        index, loop.sizes.num_logs, loop.config.eval_every,
        lambda: greedy_returns(loop.setup, loop.config, state, key_eval), loop.config.eval_episodes)
    out.update(actor_gradient_stats(loop.setup, state.diag))
    steps = (index + 1) * loop.sizes.updates_per_log * loop.sizes.steps_per_update
    out.update(env_steps=steps, train_return=train_return, train_episodes=episodes,
               eval_returns=eval_returns, eval_return=jnp.mean(eval_returns), evaluated=evaluated)
    if loop.config.verbose:
        jax.debug.callback(functools.partial(_print_progress, loop.name, loop.sizes.env_steps),
                           steps, train_return, episodes, out["eval_return"], evaluated)
    return state, out


# --------------------------------------------------------------------------------------------
# Resumable stages: a run cut at log-interval boundaries, with the same randomness as one piece.

class Carry(NamedTuple):
    """What one seed carries from log interval to log interval: the whole agent state
    (parameters, optimizer states, environments, replay buffer, counters) and the loop key.
    Log interval ``i`` always uses ``split(key, num_logs)[i]``, so a run cut into pieces draws
    exactly the random numbers of the run in one piece."""

    state: Any
    key: PRNGKey


class Stages(NamedTuple):
    """A training run as resumable pieces (``experiments.train`` checkpoints between them).

    * ``init(key, config=config) -> Carry``: fresh state (SAC: after its warm-up);
    * ``run(carry, start, length, config=config) -> (carry, metrics)``: log intervals
      ``start, …, start + length − 1`` (``start`` may be traced, ``length`` is static); the
      metrics have a leading ``[length]`` axis and are raw (see ``finish_metrics``);
    * ``output(carry) -> (params, obs_stats)``: what ``TrainOutput`` reports.

    ``train(key) = output(run(init(key), 0, num_logs))`` with finished metrics; all three are pure
    functions of one seed, to ``vmap`` over seeds.
    """

    num_logs: int
    config: Any
    init: Callable[..., Carry]
    run: Callable[..., tuple[Carry, dict]]
    output: Callable[[Carry], tuple[Params, Any]]


def log_inputs(key: PRNGKey, num_logs: int, start, length: int) -> tuple[Array, PRNGKey]:
    """(indices, keys) of log intervals ``start … start + length − 1`` of ``num_logs``."""
    keys = jax.random.split(key, num_logs)
    if isinstance(start, int):
        return jnp.arange(start, start + length), keys[start:start + length]
    return start + jnp.arange(length), jax.lax.dynamic_slice_in_dim(keys, start, length)


def finish_metrics(metrics: dict) -> dict:
    """Raw stage metrics → reported ones: ``train_return`` is NaN for an interval in which no
    training episode ended (``train_episodes`` = 0, then dropped), ``eval_return`` and
    ``eval_returns`` NaN for one that was not evaluated (``evaluated``, then dropped; see
    ``eval_every``). Works on jax arrays inside a program and on numpy arrays on the host (where
    jax's NaN checks do not look)."""
    metrics = dict(metrics)
    episodes = metrics.pop("train_episodes")
    xp = np if isinstance(episodes, np.ndarray) else jnp
    metrics["train_return"] = xp.where(episodes > 0, metrics["train_return"], np.nan)
    evaluated = metrics.pop("evaluated", None)
    if evaluated is not None:
        metrics["eval_return"] = xp.where(evaluated, metrics["eval_return"], np.nan)
        if "eval_returns" in metrics:
            metrics["eval_returns"] = xp.where(evaluated[..., None], metrics["eval_returns"],
                                               np.nan)
    return metrics


def run_logs(name: str, setup: Setup, config: CommonConfig, update: UpdateFn, carry: Carry,
             start, length: int) -> tuple[Carry, dict]:
    """Log intervals ``start … start + length − 1`` of ``train_loop`` from ``carry``."""
    loop = _Loop(name, setup, config, loop_sizes(config), update)
    xs = log_inputs(carry.key, loop.sizes.num_logs, start, length)
    state, metrics = jax.lax.scan(functools.partial(_outer_step, loop), carry.state, xs)
    return Carry(state, carry.key), metrics


def train_loop(name: str, key: PRNGKey, setup: Setup, config: CommonConfig, state: AgentState,
               update: UpdateFn) -> TrainOutput:
    """Runs ``update`` ``num_updates`` times from ``state`` and logs once per ``log_interval``.

    Each log entry has the mean over its updates of every scalar ``update`` returns (apart from
    ``return_sum``/``episodes``, which become the mean return of the episodes completed in the
    interval, ``train_return``), greedy evaluation returns and the actor-gradient diagnostics of
    the interval's last update.
    """
    carry, metrics = run_logs(name, setup, config, update, Carry(state, key), 0,
                              loop_sizes(config).num_logs)
    return TrainOutput(carry.state.params, carry.state.obs_stats, finish_metrics(metrics))


# build(train_config) -> (optimizer, initial ``extra``, update function): an agent's pieces.
BuildFn = Callable[[Any], tuple[optax.GradientTransformation, Any, UpdateFn]]


def on_policy_stages(name: str, setup: Setup, config: CommonConfig, build: BuildFn) -> Stages:
    """``Stages`` of an on-policy agent: ``init`` splits the key into (init, loop) keys and
    builds the state; ``run`` runs ``train_loop``'s log intervals."""

    def init(key: PRNGKey, train_config: CommonConfig = config) -> Carry:
        check_static(train_config, config)
        key_init, key_loop = jax.random.split(key)
        opt, extra, _ = build(train_config)
        return Carry(init_state(key_init, setup, train_config, opt, extra), key_loop)

    def run(carry: Carry, start, length: int, train_config: CommonConfig = config
            ) -> tuple[Carry, dict]:
        check_static(train_config, config)
        _, _, update = build(train_config)
        return run_logs(name, setup, train_config, update, carry, start, length)

    def output(carry: Carry) -> tuple[Params, Any]:
        return carry.state.params, carry.state.obs_stats

    return Stages(loop_sizes(config).num_logs, config, init, run, output)


def train_from_stages(stages: Stages) -> Callable[..., TrainOutput]:
    """``train(key, config=stages.config) -> TrainOutput``: all log intervals in one piece."""

    def train(key: PRNGKey, train_config: Any = stages.config) -> TrainOutput:
        carry = stages.init(key, train_config)
        carry, metrics = stages.run(carry, 0, stages.num_logs, train_config)
        return TrainOutput(*stages.output(carry), finish_metrics(metrics))

    return train


def check_static(config: CommonConfig, reference: CommonConfig) -> None:
    """A config passed to ``train`` may differ from the one the agent was built with only in its
    traced fields (sizes and choices are baked into the compiled program)."""
    if jax.tree.structure(config) != jax.tree.structure(reference):
        raise ValueError("train() got a config whose static fields differ from make_train's; "
                         "only traced fields (learning rate, γ, coefficients) may change")


def stack_configs(configs: Sequence[CommonConfig]) -> CommonConfig:
    """One config whose traced fields carry a leading axis, for ``jax.vmap(train)(keys, config)``
    over hyperparameters (all static fields must agree)."""
    for c in configs[1:]:
        check_static(c, configs[0])
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x, jnp.float32) for x in xs]), *configs)
