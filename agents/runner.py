"""Many seeds of one agent at once, on every device there is: sharding, processes, checkpoints
and the divergence stop.

An agent reaches the runner as its resumable stages (``agents.Stages``): ``num_logs``,
``config``, ``init(key, config) -> carry``, ``run(carry, start, length, config) -> (carry, raw
metrics)`` and ``output(carry) -> (params, obs_stats)``, pure functions of one seed.

* ``SeedTrainer`` holds ``num_seeds`` seeds whose seed axis is sharded over a one-axis ``Mesh``
  (``"seeds"``, ``NamedSharding``): one program, each device trains its share of the seeds and
  nothing crosses devices. Seed ``i`` trains with ``fold_in(prng_key(seed), i)`` wherever it
  runs, so the same command gives the same numbers on one CPU, one GPU or many devices. Across
  processes (``jax.distributed``, initialized by the caller first) the devices of all processes
  share the seeds and every process gets all metrics (a gather across processes).
* ``train_seeds`` compiles and runs all seeds in one piece.
* ``run`` trains in chunks of log intervals, saving a checkpoint (``Checkpoints``, orbax) after
  each, resumes exactly (the randomness of interval ``i`` is ``split(loop key, num_logs)[i]``
  however the run is cut), checks after every chunk that the metrics and the state of every seed
  are finite, and stops with ``Diverged``, having saved the last good state, when they are not.

Nothing here prints or writes results: ``experiments.train`` is the command line around it.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Callable, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from agents import Stages, TrainOutput, finish_metrics, prng_key

MAX_CHECKPOINTS = 3


class CheckpointError(ValueError):
    """Checkpoints that cannot serve this run: none restores, or there are some where a fresh
    run was asked for."""


class CheckpointMismatch(CheckpointError):
    """The checkpoints belong to another run (agent, environment, seed, config...)."""


class Diverged(Exception):
    """A seed's metrics or state stopped being finite.

    Attributes:
      where: the first non-finite log interval and its env step (or the chunk, under
        ``jax_debug_nans``).
      seed_indices: the seeds (indices into the run's seeds) that went non-finite.
      reason: what was not finite.
      checkpoint_step: log intervals done in the last good checkpoint saved (``None``: none).
      raw: the raw metrics of the good log intervals before it (numpy, ``[num_seeds, logs]``).
    """

    def __init__(self, where: str, seed: int, seed_indices, reason: str,
                 checkpoint: str | None, checkpoint_step: int | None, raw: dict | None):
        saved = (f"last good checkpoint: {checkpoint} at log interval {checkpoint_step}"
                 if checkpoint is not None else "no checkpoint (checkpointing is off)")
        super().__init__(f"diverged at {where}, seed index {seed_indices} of seed {seed}: "
                         f"{reason}; {saved}")
        self.where, self.seed, self.seed_indices, self.reason = where, seed, seed_indices, reason
        self.checkpoint, self.checkpoint_step, self.raw = checkpoint, checkpoint_step, raw


# --------------------------------------------------------------------------------------------
# Seeds sharded over devices.

def seed_devices(num_seeds: int, devices=None) -> list:
    """The devices the seeds are split over: all of ``devices`` (default: every device of every
    process) when their number divides ``num_seeds``; on one process otherwise the largest
    number of them that does (7 seeds on 4 devices: 1 device); on several processes a
    ``ValueError`` (each host must hold an equal share)."""
    if num_seeds < 1:
        raise ValueError(f"num_seeds must be positive, got {num_seeds}")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("no devices to train on")
    if jax.process_count() > 1:
        if num_seeds % len(devices):
            raise ValueError(f"num_seeds={num_seeds} must be a multiple of the {len(devices)} "
                             f"devices of the {jax.process_count()} processes")
        return devices
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    return devices[:count]


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree):
    """Numpy copies of (possibly sharded) arrays; across processes every process gets all of
    them (a collective: every process must call it)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def _finite_per_seed(tree) -> jax.Array:
    """[num_seeds] bool: every floating entry of the seed's slice of every leaf is finite."""
    ok = None
    for leaf in jax.tree.leaves(tree):
        if _is_key(leaf) or not jax.numpy.issubdtype(leaf.dtype, jax.numpy.inexact):
            continue
        leaf_ok = jax.numpy.all(jax.numpy.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
        ok = leaf_ok if ok is None else ok & leaf_ok
    return ok


class SeedTrainer:
    """``num_seeds`` seeds of one agent (its ``Stages``), their seed axis sharded over a ``Mesh``
    of devices (``seed_devices``), trained in chunks of log intervals.

    One seed runs under plain ``jax.jit`` (a batch of one under ``vmap`` compiles slower);
    several under ``jax.jit(jax.vmap(...))`` with inputs and outputs sharded along the seed axis.
    ``compiler_options`` go to every ``jax.jit`` (e.g. ``agents.compiler_options()``).
    """

    def __init__(self, stages: Stages, num_seeds: int, seed: int, devices=None, *,
                 compiler_options: dict | None = None):
        self.stages, self.num_seeds, self.seed = stages, num_seeds, seed
        self.devices = seed_devices(num_seeds, devices)
        self.mesh = Mesh(np.array(self.devices), ("seeds",))
        self.sharding = NamedSharding(self.mesh, P("seeds"))
        self._jit_kwargs = dict(compiler_options=compiler_options, out_shardings=self.sharding)
        base = prng_key(seed)
        self.key_impl = jax.random.key_impl(base)
        data = np.asarray(jax.random.key_data(
            jax.vmap(lambda i: jax.random.fold_in(base, i))(np.arange(num_seeds))))
        self.key_data = jax.make_array_from_callback(data.shape, self.sharding,
                                                     lambda index: data[index])
        self._init = jax.jit(self._batched(
            lambda kd: stages.init(jax.random.wrap_key_data(kd, impl=self.key_impl))),
            **self._jit_kwargs)
        self._finite = jax.jit(_finite_per_seed)
        self._jitted, self._compiled = {}, {}

    def _batched(self, fn, in_axes=0):
        """``fn`` of one seed → a function of all seeds (leading axis)."""
        if self.num_seeds > 1:
            return jax.vmap(fn, in_axes=in_axes)
        axes = in_axes if isinstance(in_axes, tuple) else None

        def one(*args):
            args = [a if axes is not None and axes[i] is None else jax.tree.map(lambda x: x[0], a)
                    for i, a in enumerate(args)]
            return jax.tree.map(lambda x: x[None], fn(*args))
        return one

    def _run_fn(self, length: int):
        if length not in self._jitted:
            self._jitted[length] = jax.jit(self._batched(
                lambda carry, start: self.stages.run(carry, start, length), in_axes=(0, None)),
                **self._jit_kwargs)
        return self._jitted[length]

    def abstract_carry(self):
        return jax.eval_shape(self._init, self.key_data)

    def compile(self, lengths) -> float:
        """Compiles ``init`` and ``run`` for each chunk length; returns the seconds it took.
        Under ``jax_debug_nans`` nothing is compiled ahead of time: only calls through ``jit``
        locate the operation that made a NaN."""
        if jax.config.jax_debug_nans:
            return 0.0
        start = time.perf_counter()
        self._compiled["init"] = self._init.lower(self.key_data).compile()
        abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                               sharding=self.sharding),
                                self.abstract_carry())
        for n in sorted(set(lengths)):
            self._compiled[n] = self._run_fn(n).lower(
                abstract, jax.ShapeDtypeStruct((), np.int32)).compile()
        return time.perf_counter() - start

    def init(self):
        return self._compiled.get("init", self._init)(self.key_data)

    def run(self, carry, start: int, length: int):
        """Log intervals ``start … start + length − 1`` of every seed: (carry, raw metrics)."""
        return self._compiled.get(length, self._run_fn(length))(carry, np.int32(start))

    def finite(self, carry) -> np.ndarray:
        """[num_seeds] bool: whether each seed's whole state is finite."""
        return np.asarray(to_host(self._finite(carry)))

    def output(self, carry):
        """(params, obs_stats) of every seed, numpy, leading seed axis."""
        return to_host(self.stages.output(carry))

    def metric_shapes(self) -> dict:
        """name → (shape after the log axis, dtype) of one seed's raw metrics per log."""
        _, metrics = jax.eval_shape(lambda c: self.stages.run(c, 0, 1),
                                    jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:],
                                                                                s.dtype),
                                                 self.abstract_carry()))
        return {k: (v.shape[1:], v.dtype) for k, v in metrics.items()}

    def empty_metrics(self) -> dict:
        """Raw metrics of no log interval: ``[num_seeds, 0, ...]`` per name."""
        return {k: np.zeros((self.num_seeds, 0) + shape, dtype)
                for k, (shape, dtype) in self.metric_shapes().items()}

    # Checkpoints hold key data (uint32), not typed keys.
    def saveable(self, carry):
        return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, carry)

    def restore_template(self):
        return jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(
                jax.eval_shape(jax.random.key_data, s).shape if _is_key(s) else s.shape,
                np.uint32 if _is_key(s) else s.dtype, sharding=self.sharding),
            self.abstract_carry())

    def from_saved(self, saved):
        return jax.tree.map(
            lambda s, x: jax.random.wrap_key_data(x, impl=self.key_impl) if _is_key(s) else x,
            self.abstract_carry(), saved)


def _host_metrics(raw) -> dict:
    return {k: np.asarray(v) for k, v in to_host(raw).items()}


def train_seeds(stages: Stages, num_seeds: int, seed: int, devices=None, *,
                compiler_options: dict | None = None) -> tuple[TrainOutput, float, float]:
    """Compiles and runs all seeds in one piece, sharded over ``devices`` (default: all; see
    ``seed_devices``); returns the output (``TrainOutput``, numpy, leading seed axis) and the
    compile and run seconds."""
    trainer = SeedTrainer(stages, num_seeds, seed, devices, compiler_options=compiler_options)
    num_logs = stages.num_logs
    compile_s = trainer.compile([num_logs])
    start = time.perf_counter()
    carry, metrics = trainer.run(trainer.init(), 0, num_logs)
    jax.block_until_ready((carry, metrics))
    train_s = time.perf_counter() - start
    params, obs_stats = trainer.output(carry)
    output = TrainOutput(params, obs_stats, finish_metrics(_host_metrics(metrics)))
    return output, compile_s, train_s


# --------------------------------------------------------------------------------------------
# Checkpoints.

class Damaged(NamedTuple):
    """A checkpoint that could not be restored: its step, the file that failed (the step's
    folder where the error names none), the first line of the error, and where the step's
    folder was moved."""

    step: int
    file: str
    error: str
    moved_to: str


def _json_round_trip(obj):
    return json.loads(json.dumps(obj))


def _failed_file(step_dir: str, error: BaseException) -> str:
    """The file of ``step_dir`` a restore error is about: the longest path under it that the
    message quotes and that exists, else a JSON file there that does not parse (orbax's
    metadata; its errors name no file), else the folder itself."""
    quoted = [p for p in re.findall(r"[\"']([^\"']+)[\"']", str(error))
              if p.startswith(step_dir) and os.path.isfile(p)]
    if quoted:
        return max(quoted, key=len)
    for folder, _, names in sorted(os.walk(step_dir)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if "metadata" in name.lower():
                try:
                    with open(path) as fh:
                        json.load(fh)
                except (ValueError, UnicodeDecodeError):
                    return path
    return step_dir


class Checkpoints:
    """The latest ``max_to_keep`` training states of a run in ``directory`` (orbax), each tagged
    with the number of log intervals done and ``meta`` (what identifies the run: agent,
    environment, seed, number of seeds, number of logs, config). orbax writes each to a
    temporary folder and renames it when complete, so an interrupted save leaves the previous
    ones intact; a step whose files were damaged afterwards is skipped by ``restore``, which
    falls back to the one before it."""

    META_KEYS = ("agent", "env", "seed", "num_seeds", "num_logs")

    def __init__(self, directory: str, meta: dict, max_to_keep: int = MAX_CHECKPOINTS):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.directory = os.path.abspath(directory)
        self.meta = _json_round_trip(meta)
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, logs_done: int, trainer: SeedTrainer, carry, metrics: dict) -> None:
        """Saves ``carry`` and the raw ``metrics`` so far as step ``logs_done`` (kept if that
        step exists already: a resumed run reaching it again)."""
        if logs_done in self.manager.all_steps():
            return
        ocp = self.ocp
        self.manager.save(logs_done, args=ocp.args.Composite(
            state=ocp.args.StandardSave({"carry": trainer.saveable(carry), "metrics": metrics}),
            meta=ocp.args.JsonSave({**self.meta, "logs_done": logs_done})))
        self.manager.wait_until_finished()

    def delete_all(self) -> None:
        """Removes every checkpoint of ``directory`` (a run started afresh)."""
        for step in self.steps():
            self.manager.delete(step)

    def _check_meta(self, meta: dict) -> None:
        for name in self.META_KEYS:
            if meta.get(name) != self.meta[name]:
                raise CheckpointMismatch(
                    f"the checkpoint in {self.directory} is of another run "
                    f"({name}={meta.get(name)!r}, now {self.meta[name]!r})")
        saved = {k: v for k, v in meta["config"].items() if k != "verbose"}
        now = {k: v for k, v in self.meta["config"].items() if k != "verbose"}
        if saved != now:
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise CheckpointMismatch(f"the checkpoint in {self.directory} was made with another "
                                     f"config (differs in {', '.join(diff)})")

    def _restore_step(self, step: int, trainer: SeedTrainer) -> tuple[object, dict]:
        ocp = self.ocp
        meta = self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
        self._check_meta(meta)
        metrics = {k: np.zeros((trainer.num_seeds, step) + shape, dtype)
                   for k, (shape, dtype) in trainer.metric_shapes().items()}
        state = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(
            {"carry": trainer.restore_template(), "metrics": metrics})))["state"]
        return trainer.from_saved(state["carry"]), {k: np.asarray(v)
                                                    for k, v in state["metrics"].items()}

    def restore(self, trainer: SeedTrainer) -> tuple[int, object, dict, list[Damaged]]:
        """(log intervals done, carry, raw metrics so far, damaged steps skipped) of the latest
        checkpoint that restores, newest first. A damaged step is moved aside to
        ``<step>.damaged`` (kept for inspection, out of orbax's sight, so that it neither
        shadows the good ones nor makes orbax delete them). ``CheckpointMismatch`` if the
        checkpoints belong to another run; ``CheckpointError`` if none restores."""
        damaged = []
        for step in reversed(self.steps()):
            try:
                carry, metrics = self._restore_step(step, trainer)
            except CheckpointMismatch:
                raise
            except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many kinds
                step_dir = os.path.join(self.directory, str(step))
                message = (str(e).strip().splitlines() or [type(e).__name__])[0]
                moved_to = _unused(step_dir + ".damaged")
                damaged.append(Damaged(step, _failed_file(step_dir, e), message[:200], moved_to))
                if jax.process_index() == 0:
                    os.replace(step_dir, moved_to)
                if jax.process_count() > 1:   # every process sees the step gone before saving
                    from jax.experimental import multihost_utils
                    multihost_utils.sync_global_devices(f"checkpoint {step} moved aside")
                self.manager.reload()
                continue
            return step, carry, metrics, damaged
        where = ", ".join(f"{d.file}: {d.error}" for d in damaged)
        raise CheckpointError(f"no checkpoint in {self.directory} could be restored ({where})")

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _unused(path: str) -> str:
    """``path``, or ``path.1``, ``path.2``, … : the first that does not exist."""
    candidate, n = path, 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{path}.{n}"
    return candidate


# --------------------------------------------------------------------------------------------
# A run in chunks, with checkpoints and the divergence stop.

class RunResult(NamedTuple):
    """What ``run`` returns.

    Attributes:
      output: the final ``TrainOutput`` (numpy, leading seed axis; all log intervals), or
        ``None`` if ``stop_after`` stopped the run first.
      logs_done: log intervals done (``num_logs`` unless stopped).
      resumed_at: log intervals restored from a checkpoint (0 for a fresh run).
      compile_seconds, train_seconds: this session's; the training time excludes compiling
        and saving checkpoints.
      damaged: checkpoints skipped at resume (``Damaged``).
    """

    output: TrainOutput | None
    logs_done: int
    resumed_at: int
    compile_seconds: float
    train_seconds: float
    damaged: list


def _concat(chunks: list[dict]) -> dict:
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}


def first_non_finite(raw: dict, carry_ok: np.ndarray) -> tuple[int, list[int], list[str]] | None:
    """(log index within the chunk, seed indices, metric names) of the first log interval with
    a non-finite raw metric; the chunk's last log if only the state is non-finite; None if all
    is finite."""
    bad = {k: ~np.isfinite(v.reshape(v.shape[:2] + (-1,))).all(axis=2) for k, v in raw.items()
           if np.issubdtype(v.dtype, np.inexact)}
    any_bad = np.any(np.stack(list(bad.values())), axis=0)   # [seeds, logs]
    if any_bad.any():
        log = int(np.argmax(any_bad.any(axis=0)))
        seeds = np.flatnonzero(any_bad[:, log]).tolist()
        return log, seeds, sorted(k for k, b in bad.items() if b[:, log].any())
    if not carry_ok.all():
        return any_bad.shape[1] - 1, np.flatnonzero(~carry_ok).tolist(), ["state"]
    return None


def run(trainer: SeedTrainer, *, checkpoints: Checkpoints | None = None,
        checkpoint_every: int | None = None, resume: bool = False,
        stop_after: int | None = None,
        on_start: Callable[[int, list[Damaged]], None] | None = None) -> RunResult:
    """Trains every seed of ``trainer`` to the end, in chunks of ``checkpoint_every`` log
    intervals (one chunk without), saving a checkpoint after each chunk and at the end.

    ``resume``: continue from the latest checkpoint that restores (``Checkpoints.restore``);
    without it, existing checkpoints are an error (``CheckpointError``: they would be mixed with
    this run's). ``stop_after``: return (``output=None``) once that many log intervals are done
    and saved, as a preempted job would. ``on_start(log intervals restored, damaged steps
    skipped)`` is called once the run's starting point is settled (a resume accepted), before
    anything compiles: where a caller reports it and writes what describes the run. Raises
    ``Diverged`` at the first log interval whose metrics, or the chunk whose final state, are not
    finite, after saving the last good state.
    """
    num_logs = trainer.stages.num_logs
    chunk = min(checkpoint_every or num_logs, num_logs)
    logs_done, carry, chunks, damaged = _starting_point(trainer, checkpoints, resume)
    resumed_at = logs_done
    if on_start is not None:
        on_start(resumed_at, damaged)
    lengths = [min(chunk, num_logs - s) for s in range(logs_done, num_logs, chunk)]
    compile_s = trainer.compile(lengths) if lengths else 0.0   # a finished run: nothing to do
    train_s, start = 0.0, time.perf_counter()
    if carry is None:
        carry = trainer.init()
    while logs_done < num_logs:
        n = min(chunk, num_logs - logs_done)
        carry, raw = _finite_chunk(trainer, checkpoints, carry, chunks, logs_done, n)
        chunks.append(raw)
        logs_done += n
        if checkpoints is not None:
            jax.block_until_ready(carry)
            train_s += time.perf_counter() - start
            checkpoints.save(logs_done, trainer, carry, _concat(chunks))
            start = time.perf_counter()
        if stop_after is not None and stop_after <= logs_done < num_logs:
            return RunResult(None, logs_done, resumed_at, compile_s, train_s, damaged)
    jax.block_until_ready(carry)
    train_s += time.perf_counter() - start
    params, obs_stats = trainer.output(carry)
    output = TrainOutput(params, obs_stats, finish_metrics(_concat(chunks)))
    return RunResult(output, logs_done, resumed_at, compile_s, train_s, damaged)


def _starting_point(trainer: SeedTrainer, checkpoints: Checkpoints | None, resume: bool
                    ) -> tuple[int, object, list[dict], list[Damaged]]:
    """(log intervals done, carry, metric chunks so far, damaged checkpoints skipped) where the
    run starts: the latest checkpoint that restores with ``resume``, else nothing done and no
    carry yet; existing checkpoints without ``resume`` are a ``CheckpointError``."""
    if checkpoints is None or checkpoints.latest() is None:
        return 0, None, [], []
    if not resume:
        raise CheckpointError(f"{checkpoints.directory} already holds checkpoints; resume "
                              "them, or start afresh elsewhere")
    logs_done, carry, saved, damaged = checkpoints.restore(trainer)
    return logs_done, carry, [saved] if logs_done else [], damaged


def _finite_chunk(trainer: SeedTrainer, checkpoints: Checkpoints | None, carry,
                  chunks: list[dict], logs_done: int, n: int) -> tuple[object, dict]:
    """The next ``n`` log intervals from ``carry``: (new carry, host metrics) when every metric
    and the final state are finite; otherwise saves the last good state and raises ``Diverged``
    at the first non-finite log interval (the whole chunk under ``jax_debug_nans``)."""
    try:
        new_carry, raw = trainer.run(carry, logs_done, n)
        raw = _host_metrics(raw)
        carry_ok = trainer.finite(new_carry)
    except FloatingPointError as e:   # jax_debug_nans
        _diverged(trainer, checkpoints, carry, chunks, logs_done,
                  f"log intervals {logs_done}–{logs_done + n - 1}", "unknown",
                  str(e).strip().splitlines()[0])
    found = first_non_finite(raw, carry_ok)
    if found is not None:
        log, seeds, names = found
        step = int(raw["env_steps"][seeds[0], log])
        _diverged(trainer, checkpoints, carry, chunks + [{k: v[:, :log] for k, v in raw.items()}],
                  logs_done, f"log interval {logs_done + log} (env step {step:,} per seed)", seeds,
                  f"non-finite {', '.join(names)}")
    return new_carry, raw


def _diverged(trainer: SeedTrainer, checkpoints: Checkpoints | None, last_good_carry,
              chunks: list[dict], logs_done: int, where: str, seeds, reason: str):
    """Saves the last good state (with checkpointing) and raises ``Diverged`` with the good
    metrics."""
    chunks = [c for c in chunks if next(iter(c.values())).shape[1] > 0]
    good = _concat(chunks) if chunks else trainer.empty_metrics()
    directory = step = None
    if checkpoints is not None:
        checkpoints.save(logs_done, trainer, last_good_carry, good)
        directory, step = checkpoints.directory, logs_done
    raise Diverged(where, trainer.seed, seeds, reason, directory, step,
                   good if chunks else None)


__all__ = ["CheckpointError", "CheckpointMismatch", "Checkpoints", "Damaged", "Diverged",
           "MAX_CHECKPOINTS", "RunResult", "SeedTrainer", "first_non_finite", "run",
           "seed_devices", "to_host", "train_seeds"]
