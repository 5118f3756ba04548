"""The one training loop every agent runs in, and its resumable stages.

An agent is a ``loop.Agent``: pure functions of one seed's state (``init``, ``update``,
``evaluate``, ``actor_gradients``, ``output``) and the static facts the loop needs (its name, its
``LoopSizes``, when to evaluate, what to print). The loop is an outer ``lax.scan`` over log
intervals around an inner ``lax.scan`` of ``update``; once per log interval, here and nowhere
else, it evaluates the greedy policy, measures the actor gradient's variance and SNR
(``agents.diagnostics``) and prints the progress line. These run outside the inner scan: under
``vmap`` a ``lax.cond`` ("every N updates") would turn into a select that computes both branches
on every update.

The run is cut into resumable pieces (``Stages``) at log-interval boundaries: ``experiments.train``
checkpoints between them, and a run cut into pieces draws exactly the random numbers of the run
in one piece.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from agents import config as config_lib, diagnostics

Array = jax.Array
PRNGKey = jax.Array
State = Any


class LoopSizes(NamedTuple):
    """Static sizes of the loop. An update acts ``steps_per_update`` environment steps (all
    environments together) and learns from them; ``warmup_updates`` updates' worth of steps are
    taken by ``init`` before learning starts (SAC's random actions; 0 for the others)."""

    warmup_updates: int
    steps_per_update: int
    num_logs: int
    updates_per_log: int

    @property
    def num_updates(self) -> int:
        """Learning updates in the run (warm-up excluded)."""
        return self.num_logs * self.updates_per_log

    def env_steps(self, logs_done: Array | int) -> Array | int:
        """Environment steps taken once ``logs_done`` log intervals are done (warm-up included)."""
        return (self.warmup_updates + logs_done * self.updates_per_log) * self.steps_per_update

    @property
    def total_env_steps(self) -> int:
        return self.env_steps(self.num_logs)


def loop_sizes(total_steps: int, steps_per_update: int, log_interval: int,
               warmup_steps: int = 0) -> LoopSizes:
    """Splits a budget of ``total_steps`` environment steps into a warm-up of at least
    ``warmup_steps`` and ``num_logs`` = ⌊updates / ``log_interval``⌋ (at least 1) log intervals of
    equally many updates. What does not divide evenly goes to the warm-up where there is one
    (acting at random costs no learning, and the run then takes the whole budget), and is
    dropped otherwise (at most ``num_logs − 1`` updates)."""
    updates = total_steps // steps_per_update
    warmup = -(-warmup_steps // steps_per_update)
    learning = updates - warmup
    if learning < 1:
        raise ValueError(
            f"total_steps={total_steps} leaves no update of {steps_per_update} env steps"
            + (f" after warmup_steps={warmup_steps}" if warmup_steps else
               " (it is less than one update)"))
    num_logs = max(1, learning // max(1, log_interval))
    per_log = learning // num_logs
    if warmup_steps:
        warmup = updates - num_logs * per_log
    return LoopSizes(warmup, steps_per_update, num_logs, per_log)


class Agent(NamedTuple):
    """One agent, as the loop sees it, for one seed and one config.

    * ``init(key) -> state``: fresh parameters, optimizer states and environments, after any
      warm-up;
    * ``update(state, key) -> (state, metrics)``: acts ``sizes.steps_per_update`` environment
      steps and learns; scalar metrics, among them ``return_sum`` and ``episodes`` of the
      training episodes that ended (the loop turns them into ``train_return``);
    * ``evaluate(state, key) -> returns``: undiscounted returns of greedy episodes;
    * ``actor_gradients(state, key) -> {suffix: per-sample gradients}``
      (``diagnostics.gradient_metrics``);
    * ``output(state) -> (params, obs_stats)``: what ``TrainOutput`` reports.
    """

    name: str
    sizes: LoopSizes
    eval_every: int            # log intervals per evaluation (the last is always evaluated)
    verbose: bool              # print the progress line once per log interval
    progress_keys: tuple[str, ...]   # metrics the progress line shows after the returns
    init: Callable[[PRNGKey], State]
    update: Callable[[State, PRNGKey], tuple[State, dict]]
    evaluate: Callable[[State, PRNGKey], Array]
    actor_gradients: Callable[[State, PRNGKey], dict]
    output: Callable[[State], tuple[Any, Any]]


class TrainOutput(NamedTuple):
    """``train(key)``'s result: final parameters and observation statistics, and metrics with a
    leading axis of one entry per log (``[num_logs]``; eval returns ``[num_logs, episodes]``)."""

    params: Any
    obs_stats: Any
    metrics: dict


def evaluate_every(agent: Agent, state: State, key: PRNGKey, index: Array) -> tuple[Array, Array]:
    """(returns, whether they were measured) at log interval ``index``: ``agent.evaluate`` every
    ``eval_every`` intervals and at the last one, zeros elsewhere (NaN once ``finish_metrics``
    has seen ``evaluated``). The branch depends on the interval index only, never on a seed, so
    under ``vmap`` over seeds it stays a real branch: skipped evaluations cost nothing."""
    evaluate = functools.partial(agent.evaluate, state, key)
    if agent.eval_every == 1:
        return evaluate(), jnp.ones((), bool)
    due = jnp.logical_or((index + 1) % agent.eval_every == 0, index == agent.sizes.num_logs - 1)
    shape = jax.eval_shape(evaluate)
    returns = jax.lax.cond(due, evaluate, lambda: jnp.zeros(shape.shape, shape.dtype))
    return returns, due


def _print_progress(name: str, total: int, keys: tuple[str, ...], steps, train_return,
                    episodes, eval_return, evaluated, *shown) -> None:
    """The progress line: NaN where no training episode ended, a dash where the interval was not
    evaluated, then the agent's ``progress_keys``."""
    train_text = float(train_return) if int(episodes) > 0 else float("nan")
    eval_text = f"{float(eval_return):8.2f}" if bool(evaluated) else "       –"
    extra = "".join(f" | {k} {float(v):.3g}" for k, v in zip(keys, shown, strict=True))
    print(f"[{name}] {int(steps):>9,}/{total:,} env steps | train return {train_text:8.2f} | "
          f"eval return {eval_text}{extra}", flush=True)


def _log_interval(agent: Agent, state: State, xs: tuple[Array, PRNGKey]) -> tuple[State, dict]:
    """One log interval: ``updates_per_log`` updates, then evaluation, actor-gradient
    diagnostics and the progress line."""
    index, key = xs
    key_updates, key_eval, key_diag = jax.random.split(key, 3)
    state, metrics = jax.lax.scan(agent.update, state,
                                  jax.random.split(key_updates, agent.sizes.updates_per_log))
    episodes = jnp.sum(metrics.pop("episodes"))
    # No NaN inside the program (``--debug_nans`` would stop on it): an interval without a
    # completed episode logs 0 here and ``finish_metrics`` turns it into NaN.
    train_return = jnp.sum(metrics.pop("return_sum")) / jnp.maximum(episodes, 1)
    out = {k: jnp.mean(v) for k, v in metrics.items()}
    eval_returns, evaluated = evaluate_every(agent, state, key_eval, index)
    out.update(diagnostics.gradient_metrics(agent.actor_gradients(state, key_diag)))
    steps = agent.sizes.env_steps(index + 1)
    out.update(env_steps=steps, train_return=train_return, train_episodes=episodes,
               eval_returns=eval_returns, eval_return=jnp.mean(eval_returns), evaluated=evaluated)
    if agent.verbose:
        jax.debug.callback(
            functools.partial(_print_progress, agent.name, agent.sizes.total_env_steps,
                              agent.progress_keys),
            steps, train_return, episodes, out["eval_return"], evaluated,
            *(out[k] for k in agent.progress_keys))
    return state, out


# --------------------------------------------------------------------------------------------
# Resumable stages.

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
    output: Callable[[Carry], tuple[Any, Any]]


def log_inputs(key: PRNGKey, num_logs: int, start, length: int) -> tuple[Array, PRNGKey]:
    """(indices, keys) of log intervals ``start … start + length − 1`` of ``num_logs``."""
    keys = jax.random.split(key, num_logs)
    if isinstance(start, int):
        return jnp.arange(start, start + length), keys[start:start + length]
    return start + jnp.arange(length), jax.lax.dynamic_slice_in_dim(keys, start, length)


def finish_metrics(metrics: dict) -> dict:
    """Raw stage metrics → reported ones: ``train_return`` is NaN for an interval in which no
    training episode ended (``train_episodes`` = 0, then dropped), ``eval_return`` and
    ``eval_returns`` NaN for one that was not evaluated (``evaluated``, then dropped). Works on
    jax arrays inside a program and on numpy arrays on the host (where jax's NaN checks do not
    look)."""
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


def make_stages(build: Callable[[Any], Agent], config: Any) -> Stages:
    """``Stages`` of the agent ``build(config)``. ``init`` and ``run`` rebuild it from the config
    they are given (which may differ from ``config`` in traced fields only); ``build(config)``
    runs once here, so an agent that cannot be built fails before anything is traced."""
    sizes = build(config).sizes

    def init(key: PRNGKey, train_config: Any = config) -> Carry:
        config_lib.check_static(train_config, config)
        key_init, key_loop = jax.random.split(key)
        return Carry(build(train_config).init(key_init), key_loop)

    def run(carry: Carry, start, length: int, train_config: Any = config) -> tuple[Carry, dict]:
        config_lib.check_static(train_config, config)
        agent = build(train_config)
        xs = log_inputs(carry.key, sizes.num_logs, start, length)
        state, metrics = jax.lax.scan(functools.partial(_log_interval, agent), carry.state, xs)
        return Carry(state, carry.key), metrics

    def output(carry: Carry) -> tuple[Any, Any]:
        return build(config).output(carry.state)

    return Stages(sizes.num_logs, config, init, run, output)


def make_train(stages: Stages) -> Callable[..., TrainOutput]:
    """``train(key, config=stages.config) -> TrainOutput``: all log intervals in one piece."""

    def train(key: PRNGKey, train_config: Any = stages.config) -> TrainOutput:
        carry = stages.init(key, train_config)
        carry, metrics = stages.run(carry, 0, stages.num_logs, train_config)
        return TrainOutput(*stages.output(carry), finish_metrics(metrics))

    return train
