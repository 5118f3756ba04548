"""Train an agent on a gymnax environment over several seeds at once, on every device there is.

    python -m experiments.train --agent=ppo --env=CartPole-v1 --num_seeds=8 \\
        --total_steps=100000 --output_dir=/tmp/ppo_cartpole [--config.learning_rate=1e-3 ...] \\
        [--checkpoint_every=10 [--resume]] [--debug_nans] \\
        [--distributed [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]]

All seeds train in one ``jax.jit(jax.vmap(train))`` program whose seed axis is sharded over the
devices (a one-axis ``Mesh`` named ``"seeds"`` and ``NamedSharding``): the same command runs
unchanged on one CPU, one GPU or many devices, and gives the same numbers (seed ``i`` is
``fold_in(key(seed), i)`` wherever it runs). Seeds per device: ``num_seeds`` is split evenly over
the largest number of the available devices that divides it (7 seeds on 4 devices run on 1; a
note says so); across several processes it must be a multiple of the device count.

Several processes (hosts). With ``--distributed`` every process of the job runs the same command
and first calls ``jax.distributed.initialize()``, with ``--coordinator_address`` (``HOST:PORT``
where process 0 serves the coordinator; the same for all), ``--num_processes`` and
``--process_id``, each defaulting to ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``, and whatever neither gives detected by JAX from the cluster (SLURM, Open MPI,
TPU). The seeds are spread over the devices of all processes, every process gets all metrics
(gathered across processes; on CPU through gloo collectives), and only process 0 writes files;
with checkpoints every process needs the same ``--checkpoint_dir`` on a shared file system. Two
processes on one machine, two CPU devices each::

    for i in 0 1; do XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        python -m experiments.train --distributed --coordinator_address=localhost:12345 \\
        --num_processes=2 --process_id=$i --num_seeds=8 --output_dir=/tmp/run & done; wait

The agent's config is its tuned defaults for the environment (``experiments/configs/<agent>.py``)
with ``--config.<field>=`` overrides. Writes to ``--output_dir``, each file atomically (a
temporary file renamed into place, so an interrupted write never leaves half a file):

* ``run_info.json`` (first, before training): seed, number of seeds, agent, environment, the
  full config, package versions, Python, platform, devices and process count, command line;
* ``metrics.json``: every logged metric, ``[num_seeds, num_logs]`` per name;
* ``learning_curve.png``: evaluation return (mean and min–max over seeds) and training return
  against env steps;
* ``summary.json``: agent, env, budget, final evaluation return per seed (the mean over
  ``eval_episodes`` ≥ 32 greedy episodes after the last update), compile and train seconds,
  env steps per second (all seeds together), the config, and the run info.

Checkpoints (orbax): ``--checkpoint_every=N`` runs the training in chunks of N *log intervals*
(a log interval is ``config.log_interval`` updates, or SAC environment steps; the run has
``num_logs`` of them) and saves the full state of every seed after each chunk: parameters,
optimizer states, environment states, observation statistics, replay buffer, update counters,
PRNG keys, the metrics so far and the number of log intervals done. ``--checkpoint_dir``
(default ``OUTPUT_DIR/checkpoints``) keeps the latest 3. ``--resume`` continues from the latest
checkpoint there (the agent, env, config, seed and number of seeds must match; the device count
may differ) and gives the same final parameters and metrics as a run never stopped;
``--stop_after=K`` stops (exit 0) once K log intervals are done and saved, as a preempted job
would, to be continued with ``--resume``.

Bad input and faults. The configuration is checked before anything compiles: unknown agent,
environment, config field or choice (activation, estimator, baseline), an action space or an
estimator the agent does not support, non-positive sizes, NaN or infinite values (``inf`` is
allowed only where it means "off": ``max_grad_norm``, ``max_alpha``), out-of-range
probabilities; each prints one line to stderr and exits with status 2. After every chunk the
metrics and the state of every seed are checked to be finite; ``--debug_nans`` also turns on
``jax_debug_nans``, which stops at the first operation that makes a NaN. A run that diverges
stops with one line naming the first non-finite log interval, its env step and the seed(s), having
saved its last good state as a checkpoint (with ``--checkpoint_every``), ``metrics.json`` of the
log intervals before it and ``divergence.json``; exit status 3.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import os
import platform
import sys
import time
import warnings

import jax
import numpy as np

EXIT_USAGE = 2
EXIT_DIVERGED = 3


# The arguments of jax.distributed.initialize(): flag name, environment variable, type.
DISTRIBUTED_ARGS = (("coordinator_address", "JAX_COORDINATOR_ADDRESS", str),
                    ("num_processes", "JAX_NUM_PROCESSES", int),
                    ("process_id", "JAX_PROCESS_ID", int))


def _distributed_requested(argv: list[str]) -> bool:
    return any(a in ("--distributed", "--distributed=true", "--distributed=True",
                     "--distributed=1") for a in argv[1:])


def _flag_value(argv: list[str], name: str) -> str | None:
    """The value of ``--name=V`` or ``--name V`` on the command line (the last one wins, as
    with absl), else None."""
    value = None
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def distributed_args(argv: list[str], environ=None) -> dict:
    """Keyword arguments of ``jax.distributed.initialize()`` from ``--coordinator_address``,
    ``--num_processes``, ``--process_id``, or else ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``; those given by neither are left out, for JAX to
    detect from the cluster (SLURM, Open MPI, TPU). ``ValueError`` for a non-integer count or
    id."""
    environ = os.environ if environ is None else environ
    kwargs = {}
    for name, variable, kind in DISTRIBUTED_ARGS:
        value = _flag_value(argv, name)
        source = f"--{name}"
        if value is None:
            value, source = environ.get(variable), variable
        if value is None or value == "":
            continue
        try:
            kwargs[name] = kind(value)
        except ValueError:
            raise ValueError(f"{source} must be an integer, got {value!r}") from None
    return kwargs


def initialize_distributed(argv: list[str]) -> None:
    """``jax.distributed.initialize()`` with ``distributed_args(argv)``; a one-line error and
    exit 2 if it fails. Must run before anything touches a JAX backend (``import gymnax``
    does), hence before this module imports the agents. Cross-process collectives on CPU (the
    gather of every seed's metrics) go through gloo, which must be chosen before the CPU
    backend starts; an implementation chosen by the user (``JAX_CPU_COLLECTIVES_IMPLEMENTATION``)
    is kept."""
    try:
        kwargs = distributed_args(argv)
        if not jax.config.jax_cpu_collectives_implementation:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - any failure here is a setup problem of the job
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: --distributed: jax.distributed.initialize() failed: {message}",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__" and _distributed_requested(sys.argv):
    initialize_distributed(sys.argv)

from absl import app, flags  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402
from ml_collections import config_dict, config_flags  # noqa: E402

from agents import _jit as agents_jit, loop as agents_loop  # noqa: E402
from experiments import _common, configs  # noqa: E402

MIN_EVAL_EPISODES = 32
# Float fields where +inf is a documented setting ("off"), not a mistake.
INFINITY_ALLOWED = ("max_grad_norm", "max_alpha")
# Fields that must lie in [0, 1].
UNIT_INTERVAL = ("gamma", "gae_lambda", "polyak", "baseline_decay", "target_entropy_ratio",
                 "final_lr_fraction")
# Fields that must be > 0.
POSITIVE_FLOATS = ("learning_rate", "max_grad_norm", "max_alpha", "init_alpha",
                   "actor_lr_scale", "zeroth_order_epsilon", "gumbel_temperature",
                   "gumbel_min_temperature")
MAX_CHECKPOINTS = 3


def _override_fields() -> config_dict.ConfigDict:
    """Every field of every registered agent's config, unset: ``--config.<field>=`` sets it."""
    fields = {}
    for entry in configs.REGISTRY.values():
        for f in dataclasses.fields(entry.config_cls):
            fields[f.name] = config_dict.placeholder(type(f.default))
    return config_dict.ConfigDict(fields)


def check_config_names(argv: list[str]) -> None:
    """One-line error and exit 2 for ``--config.<name>`` naming no field of any agent's config
    (otherwise the flag parser fails with a traceback)."""
    known = set(_override_fields().keys())
    for arg in argv[1:]:
        if arg.startswith("--config."):
            name = arg[len("--config."):].split("=", 1)[0].split(".", 1)[0]
            if name not in known:
                print(f"error: --config.{name} is not a config field; known fields: "
                      f"{', '.join(sorted(known))}", file=sys.stderr)
                sys.exit(EXIT_USAGE)


def define_flags() -> None:
    """The command line's flags. Defined only when this module runs as the program, so that
    experiment modules that import it as a library (and define their own ``--seed`` and
    ``--output_dir``) do not clash with it."""
    flags.DEFINE_string("agent", "ppo", "agent name: one of the registered agents")
    flags.DEFINE_string("env", "CartPole-v1", "gymnax environment id")
    flags.DEFINE_integer("num_seeds", 8, "seeds trained side by side (vmapped, sharded over the "
                         "devices)")
    flags.DEFINE_integer("seed", 0, "base seed; seed i uses fold_in(key(seed), i)")
    flags.DEFINE_integer("total_steps", None,
                         "env steps per seed (default: the config's total_steps)")
    flags.DEFINE_string("output_dir", None, "where to write metrics, plot, summary")
    flags.DEFINE_bool("quiet", False, "no progress lines during training")
    flags.DEFINE_integer(
        "checkpoint_every", None, "save the full training state every N log intervals (a log "
        "interval is config.log_interval updates; SAC: environment steps); off by default")
    flags.DEFINE_string("checkpoint_dir", None,
                        "where checkpoints go (default: OUTPUT_DIR/checkpoints)")
    flags.DEFINE_bool("resume", False, "continue from the latest checkpoint in "
                      "--checkpoint_dir (same agent, env, config, seed and num_seeds)")
    flags.DEFINE_integer("stop_after", None, "stop (exit 0) once this many log intervals are "
                         "done and checkpointed, as a preempted job would; continue with "
                         "--resume")
    flags.DEFINE_bool("debug_nans", False, "turn on jax_debug_nans: stop at the first operation "
                      "that produces a NaN (slow; metrics and state are checked for NaN/Inf "
                      "after every chunk regardless)")
    flags.DEFINE_bool("distributed", False, "multi-process: call jax.distributed.initialize() "
                      "first (with the three flags below, or from the cluster's environment); "
                      "seeds spread over all processes' devices, only process 0 writes files")
    flags.DEFINE_string("coordinator_address", None, "with --distributed: HOST:PORT of process "
                        "0's coordinator, the same for every process (default: "
                        "$JAX_COORDINATOR_ADDRESS, else detected from the cluster)")
    flags.DEFINE_integer("num_processes", None, "with --distributed: number of processes "
                         "(default: $JAX_NUM_PROCESSES, else detected from the cluster)")
    flags.DEFINE_integer("process_id", None, "with --distributed: this process's index, 0 … "
                         "num_processes − 1 (default: $JAX_PROCESS_ID, else detected from the "
                         "cluster)")
    config_flags.DEFINE_config_dict("config", _override_fields(),
                                    "overrides of the agent's config fields")


# ml_collections parses --config.<name> when the flag is defined; check the names first.
if __name__ == "__main__":
    check_config_names(sys.argv)
    define_flags()


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class Diverged(Exception):
    """A seed's metrics or state became NaN or infinite: reported in one line, exit status 3."""


# --------------------------------------------------------------------------------------------
# Configuration, checked before anything compiles.

def validate_config(agent: str, config) -> None:
    """``UsageError`` for values no run can use: non-positive sizes, NaN or infinite floats,
    probabilities outside [0, 1], unknown activation / estimator / baseline names."""
    from agents import networks, reinforce
    from experiments.configs import estimators

    choices = {"activation": tuple(networks.ACTIVATIONS)}
    if agent == "sac":
        choices.update(actor_estimator=tuple(estimators.ESTIMATORS),
                       actor_baseline=estimators.BASELINES)
    if agent == "reinforce":
        choices["baseline"] = reinforce.BASELINES
    for f in dataclasses.fields(config):
        name, value = f.name, getattr(config, f.name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value < 1:
            raise UsageError(f"{name} must be positive, got {value}")
        if isinstance(value, float):
            if math.isnan(value) or (math.isinf(value)
                                     and not (value > 0 and name in INFINITY_ALLOWED)):
                raise UsageError(f"{name} must be a finite number, got {value}")
            if name in POSITIVE_FLOATS and not value > 0:
                raise UsageError(f"{name} must be positive, got {value}")
            if name in UNIT_INTERVAL and not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} must lie in [0, 1], got {value}")
        if isinstance(value, tuple) and any(not isinstance(v, int) or v < 1 for v in value):
            raise UsageError(f"{name} must be positive layer widths, got {list(value)}")
        if name in choices and value not in choices[name]:
            raise UsageError(f"unknown {name} {value!r}; choose one of {list(choices[name])}")


def make_config(agent: str, env_id: str, overrides: dict, total_steps, quiet: bool):
    """The agent's config dataclass for ``env_id`` with the command-line overrides applied,
    validated (``validate_config``)."""
    if agent not in configs.REGISTRY:
        raise UsageError(f"unknown agent {agent!r}; choose one of {sorted(configs.REGISTRY)}")
    entry = configs.REGISTRY[agent]
    config = entry.get_config(env_id)
    for name, value in overrides.items():
        if value is None:
            continue
        if name not in config:
            raise UsageError(f"--config.{name} is not a field of {agent}'s config")
        config[name] = value
    if total_steps is not None:
        config.total_steps = total_steps
    if config.total_steps <= 0:
        raise UsageError(f"the budget must be positive, got total_steps={config.total_steps}")
    if quiet:
        config.verbose = False
    if config.eval_episodes < MIN_EVAL_EPISODES:
        raise UsageError(f"eval_episodes must be ≥ {MIN_EVAL_EPISODES} for the final return, "
                         f"got {config.eval_episodes}")
    try:
        built = configs.build(entry, config)
    except TypeError as e:
        raise UsageError(f"bad config for {agent}: {e}") from None
    validate_config(agent, built)
    return entry, built


def make_env(entry: configs.AgentEntry, agent: str, env_id: str):
    """gymnax environment and params; ``UsageError`` if unknown or unsupported by the agent."""
    import gymnax
    from agents import rollout

    if env_id not in gymnax.registered_envs:
        raise UsageError(f"unknown environment {env_id!r}; gymnax has {', '.join(gymnax.registered_envs)}")
    env, env_params = gymnax.make(env_id)
    try:
        spec = rollout.action_spec(env, env_params)
    except ValueError as e:
        raise UsageError(f"{env_id}: {e}") from None
    if (spec.discrete and not entry.discrete) or (not spec.discrete and not entry.continuous):
        kind = "discrete" if spec.discrete else "continuous"
        raise UsageError(f"{agent} does not support {env_id}'s {kind} action space")
    return env, env_params


def make_stages(entry: configs.AgentEntry, config, env, env_params) -> agents_loop.Stages:
    """The agent's resumable stages; what the agent rejects when it is built (sizes that do not
    fit together, an estimator that does not fit the action space) is a ``UsageError``. Nothing
    is compiled yet."""
    try:
        return entry.make_stages(config, env, env_params)
    except ValueError as e:   # gradest.EstimatorError is a ValueError
        raise UsageError(str(e).splitlines()[0]) from None


def config_dict_of(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


# --------------------------------------------------------------------------------------------
# Reproducibility: what produced a result is written beside it.

PACKAGES = ("jax", "jaxlib", "flax", "optax", "distrax", "chex", "gymnax", "numpy",
            "orbax-checkpoint", "ml-collections", "gradest")


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def run_info(agent: str, env_id: str, num_seeds: int, seed: int, config, devices) -> dict:
    """Seed, config, package versions, Python, platform and devices of a run."""
    return {
        "agent": agent, "env": env_id, "seed": seed, "num_seeds": num_seeds,
        "seed_keys": f"seed i trains with jax.random.fold_in(jax.random.key({seed}), i)",
        "config": config_dict_of(config),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else None,
        "process_count": jax.process_count(),
        "argv": list(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------------------------
# Seeds sharded over devices.

def seed_devices(num_seeds: int, devices=None) -> list:
    """The devices the seeds are split over: all of ``devices`` (default: every device of every
    process) when their number divides ``num_seeds``; on one process otherwise the largest
    number of them that does (7 seeds on 4 devices: 1 device); on several processes a
    ``UsageError`` (each host must hold an equal share)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise UsageError("no devices to train on")
    if jax.process_count() > 1:
        if num_seeds % len(devices):
            raise UsageError(f"num_seeds={num_seeds} must be a multiple of the {len(devices)} "
                             f"devices of the {jax.process_count()} processes")
        return devices
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    return devices[:count]


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_host(tree):
    """Numpy copies of (possibly sharded) arrays; across processes every process gets all of
    them (a collective: all processes must call it)."""
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
    """``num_seeds`` seeds of one agent, their seed axis sharded over a ``Mesh`` of devices,
    trained in chunks of log intervals (``agents.loop.Stages``).

    One seed runs under plain ``jax.jit`` (a batch of one under ``vmap`` compiles slower);
    several under ``jax.jit(jax.vmap(...))`` with inputs and outputs sharded along the seed axis,
    so each device trains its share of the seeds and nothing crosses devices.
    """

    def __init__(self, stages: agents_loop.Stages, num_seeds: int, seed: int, devices=None):
        self.stages, self.num_seeds, self.seed = stages, num_seeds, seed
        self.devices = seed_devices(num_seeds, devices)
        self.mesh = Mesh(np.array(self.devices), ("seeds",))
        self.sharding = NamedSharding(self.mesh, P("seeds"))
        base = jax.random.key(seed)
        self.key_impl = jax.random.key_impl(base)
        data = np.asarray(jax.random.key_data(
            jax.vmap(lambda i: jax.random.fold_in(base, i))(np.arange(num_seeds))))
        self.key_data = jax.make_array_from_callback(data.shape, self.sharding,
                                                     lambda index: data[index])
        self._init = agents_jit.jit(self._batched(
            lambda kd: stages.init(jax.random.wrap_key_data(kd, impl=self.key_impl))),
            out_shardings=self.sharding)
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
            self._jitted[length] = agents_jit.jit(self._batched(
                lambda carry, start: self.stages.run(carry, start, length), in_axes=(0, None)),
                out_shardings=self.sharding)
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
        """Log intervals ``start … start + length − 1`` of every seed: (carry, metrics)."""
        return self._compiled.get(length, self._run_fn(length))(carry, np.int32(start))

    def finite(self, carry) -> np.ndarray:
        return np.asarray(_to_host(self._finite(carry)))

    def output(self, carry):
        return _to_host(self.stages.output(carry))

    def metric_shapes(self) -> dict:
        """name → (shape after the log axis, dtype) of one seed's raw metrics per log."""
        _, metrics = jax.eval_shape(lambda c: self.stages.run(c, 0, 1),
                                    jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:],
                                                                                s.dtype),
                                                 self.abstract_carry()))
        return {k: (v.shape[1:], v.dtype) for k, v in metrics.items()}

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


def train_seeds(entry: configs.AgentEntry, config, env, env_params, num_seeds: int, seed: int,
                devices=None):
    """Compiles and runs all seeds in one piece, sharded over ``devices`` (default: all; see
    ``seed_devices``); returns the output (``TrainOutput``, numpy, leading seed axis) and the
    compile and run seconds."""
    trainer = SeedTrainer(make_stages(entry, config, env, env_params), num_seeds, seed, devices)
    num_logs = trainer.stages.num_logs
    compile_s = trainer.compile([num_logs])
    start = time.perf_counter()
    carry, metrics = trainer.run(trainer.init(), 0, num_logs)
    jax.block_until_ready((carry, metrics))
    train_s = time.perf_counter() - start
    params, obs_stats = trainer.output(carry)
    metrics = agents_loop.finish_metrics({k: np.asarray(v) for k, v in _to_host(metrics).items()})
    return agents_loop.TrainOutput(params, obs_stats, metrics), compile_s, train_s


# --------------------------------------------------------------------------------------------
# Checkpoints.

class Checkpoints:
    """The latest ``MAX_CHECKPOINTS`` training states of a run in ``directory`` (orbax), each
    tagged with the number of log intervals done; orbax writes each to a temporary folder and
    renames it when complete, so an interrupted save leaves the previous ones intact."""

    def __init__(self, directory: str, meta: dict):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.directory = os.path.abspath(directory)
        self.meta = meta
        self.manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=MAX_CHECKPOINTS, create=True))

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def save(self, logs_done: int, trainer: SeedTrainer, carry, metrics: dict) -> None:
        if logs_done in self.manager.all_steps():
            return
        ocp = self.ocp
        self.manager.save(logs_done, args=ocp.args.Composite(
            state=ocp.args.StandardSave({"carry": trainer.saveable(carry), "metrics": metrics}),
            meta=ocp.args.JsonSave({**self.meta, "logs_done": logs_done})))

    def restore(self, trainer: SeedTrainer) -> tuple[int, object, dict]:
        """(log intervals done, carry, metrics so far) of the latest checkpoint; ``UsageError``
        if it belongs to another run."""
        ocp = self.ocp
        step = self.latest()
        meta = self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
        for name in ("agent", "env", "seed", "num_seeds", "num_logs"):
            if meta.get(name) != self.meta[name]:
                raise UsageError(f"--resume: the checkpoint in {self.directory} is of another run "
                                 f"({name}={meta.get(name)!r}, now {self.meta[name]!r})")
        saved_config = {k: v for k, v in meta["config"].items() if k != "verbose"}
        config = {k: v for k, v in _json_round_trip(self.meta["config"]).items() if k != "verbose"}
        if saved_config != config:
            diff = sorted(k for k in set(saved_config) | set(config)
                          if saved_config.get(k) != config.get(k))
            raise UsageError(f"--resume: the checkpoint in {self.directory} was made with another "
                             f"config (differs in {', '.join(diff)})")
        metrics = {k: np.zeros((trainer.num_seeds, step) + shape, dtype)
                   for k, (shape, dtype) in trainer.metric_shapes().items()}
        state = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(
            {"carry": trainer.restore_template(), "metrics": metrics})))["state"]
        return step, trainer.from_saved(state["carry"]), {k: np.asarray(v) for k, v in
                                                          state["metrics"].items()}

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _json_round_trip(obj):
    import json
    return json.loads(json.dumps(obj))


# --------------------------------------------------------------------------------------------
# The run.

def plot(metrics: dict, path: str, title: str) -> None:
    plt = _common.plt
    steps = metrics["env_steps"][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, color in (("eval_return", "C0"), ("train_return", "C1")):
        values = metrics[name]
        with warnings.catch_warnings():   # a log interval where no training episode ended
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = (np.nanmean(values, 0), np.nanmin(values, 0),
                               np.nanmax(values, 0))
        # Intervals without a value (not evaluated: eval_every > 1) are left out of the line.
        shown = np.isfinite(mean)
        ax.plot(steps[shown], mean[shown], color=color, label=f"{name.replace('_', ' ')} (mean)")
        ax.fill_between(steps[shown], low[shown], high[shown], color=color, alpha=0.2)
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("episode return")
    ax.set_title(f"{title} ({values.shape[0]} seeds; band = min–max)")
    ax.legend()
    _common.save_figure(fig, path)


def _reported(raw: dict) -> dict:
    """Raw stage metrics (numpy) → what metrics.json holds."""
    return {k: v for k, v in agents_loop.finish_metrics(raw).items() if k != "eval_returns"}


def _first_non_finite(raw: dict, carry_ok: np.ndarray) -> tuple[int, list[int], list[str]] | None:
    """(log index within the chunk, seed indices, metric names) of the first log interval with
    a non-finite metric; the chunk's last log if only the state is non-finite; None if all is
    finite."""
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


def run(agent: str, env_id: str, num_seeds: int, seed: int, total_steps, output_dir: str,
        overrides: dict, quiet: bool = False, *, checkpoint_every: int | None = None,
        checkpoint_dir: str | None = None, resume: bool = False, stop_after: int | None = None,
        debug_nans: bool = False, devices=None, return_output: bool = False):
    """Trains, writes run info, metrics, plot and summary to ``output_dir``; returns the summary
    (``None`` if stopped by ``stop_after`` before the end), with ``return_output`` as
    ``(summary, TrainOutput)`` (numpy, leading seed axis; all metrics). Raises ``UsageError``
    for bad input (before compiling) and ``Diverged`` when a seed's metrics or state stop being
    finite."""
    if num_seeds < 1:
        raise UsageError(f"num_seeds must be positive, got {num_seeds}")
    for name, value in (("checkpoint_every", checkpoint_every), ("stop_after", stop_after)):
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be positive, got {value}")
    if stop_after is not None and checkpoint_every is None:
        raise UsageError("--stop_after needs --checkpoint_every (a stopped run resumes from its "
                         "checkpoint)")
    entry, config = make_config(agent, env_id, overrides, total_steps, quiet)
    env, env_params = make_env(entry, agent, env_id)
    stages = make_stages(entry, config, env, env_params)
    trainer = SeedTrainer(stages, num_seeds, seed, devices)
    if len(trainer.devices) < len(jax.devices() if devices is None else devices) and not quiet:
        print(f"note: {num_seeds} seeds run on {len(trainer.devices)} device(s), the most that "
              "divides them evenly", flush=True)
    info = run_info(agent, env_id, num_seeds, seed, config, trainer.devices)
    writer = jax.process_index() == 0
    if writer:
        os.makedirs(output_dir, exist_ok=True)
        _common.write_json(os.path.join(output_dir, "run_info.json"), info)

    num_logs = stages.num_logs
    chunk = min(checkpoint_every or num_logs, num_logs)
    ckpt = None
    if checkpoint_every is not None or resume:
        meta = {"agent": agent, "env": env_id, "seed": seed, "num_seeds": num_seeds,
                "num_logs": num_logs, "config": _json_round_trip(config_dict_of(config))}
        ckpt = Checkpoints(checkpoint_dir or os.path.join(output_dir, "checkpoints"), meta)
    previous = jax.config.jax_debug_nans
    if debug_nans:
        jax.config.update("jax_debug_nans", True)
    try:
        summary, output = _train_and_write(trainer, ckpt, info, config, agent, env_id,
                                           output_dir, chunk, resume, stop_after, writer)
        return (summary, output) if return_output else summary
    finally:
        jax.config.update("jax_debug_nans", previous)
        if ckpt is not None:
            ckpt.close()


def _train_and_write(trainer: SeedTrainer, ckpt: Checkpoints | None, info: dict, config,
                     agent: str, env_id: str, output_dir: str, chunk: int, resume: bool,
                     stop_after: int | None, writer: bool):
    num_logs, num_seeds, seed = trainer.stages.num_logs, trainer.num_seeds, trainer.seed
    logs_done, carry, chunks = 0, None, []
    if ckpt is not None and ckpt.latest() is not None:
        if not resume:
            raise UsageError(f"{ckpt.directory} already holds checkpoints; pass --resume to "
                             "continue that run, or choose another --checkpoint_dir")
        logs_done, carry, saved = ckpt.restore(trainer)
        chunks = [saved] if logs_done else []
        print(f"resuming from {ckpt.directory} at log interval {logs_done}/{num_logs}",
              flush=True)
    lengths = [min(chunk, num_logs - s) for s in range(logs_done, num_logs, chunk)]
    compile_s = trainer.compile(lengths or [chunk])
    train_s = 0.0
    start = time.perf_counter()
    if carry is None:
        carry = trainer.init()
    first_log = logs_done
    while logs_done < num_logs:
        n = min(chunk, num_logs - logs_done)
        try:
            new_carry, raw = trainer.run(carry, logs_done, n)
            raw = {k: np.asarray(v) for k, v in _to_host(raw).items()}
            carry_ok = trainer.finite(new_carry)
        except FloatingPointError as e:   # jax_debug_nans
            reason = str(e).strip().splitlines()[0]
            _diverged(trainer, ckpt, carry, chunks, output_dir, writer, logs_done,
                      f"log intervals {logs_done}–{logs_done + n - 1}", "unknown", reason)
        found = _first_non_finite(raw, carry_ok)
        if found is not None:
            log, seeds, names = found
            step = int(raw["env_steps"][seeds[0], log])
            chunks.append({k: v[:, :log] for k, v in raw.items()})
            _diverged(trainer, ckpt, carry, chunks, output_dir, writer, logs_done,
                      f"log interval {logs_done + log} (env step {step:,} per seed)",
                      f"{seeds} of --seed={seed}", f"non-finite {', '.join(names)}")
        carry = new_carry
        chunks.append(raw)
        logs_done += n
        if ckpt is not None and (logs_done % chunk == 0 or logs_done == num_logs):
            train_s += time.perf_counter() - start
            ckpt.save(logs_done, trainer, carry, _concat(chunks))
            start = time.perf_counter()
        if stop_after is not None and logs_done >= stop_after and logs_done < num_logs:
            print(f"stopped after {logs_done}/{num_logs} log intervals; continue with --resume "
                  f"(checkpoints in {ckpt.directory})", flush=True)
            return None, None
    jax.block_until_ready(carry)
    train_s += time.perf_counter() - start

    raw = _concat(chunks)
    metrics = _reported(raw)
    final = metrics["eval_return"][:, -1]
    steps_per_seed = int(metrics["env_steps"][0, -1])
    steps_before = int(metrics["env_steps"][0, first_log - 1]) if first_log else 0
    summary = {
        "agent": agent, "env": env_id, "total_steps": steps_per_seed,
        "requested_total_steps": config.total_steps, "num_seeds": num_seeds, "seed": seed,
        "final_return_per_seed": final.tolist(), "final_return_mean": float(final.mean()),
        "final_return_std": float(final.std()), "eval_episodes": config.eval_episodes,
        "compile_seconds": compile_s, "train_seconds": train_s,
        "env_steps_per_second": (steps_per_seed - steps_before) * num_seeds / max(train_s, 1e-9),
        "resumed_at_log": first_log if first_log else None,
        "device": str(trainer.devices[0]), "num_devices": len(trainer.devices),
        "config": config_dict_of(config),
        "run_info": info,
    }
    if writer:
        _common.write_json(os.path.join(output_dir, "metrics.json"),
                           {k: v.tolist() for k, v in metrics.items()}, indent=None)
        plot(metrics, os.path.join(output_dir, "learning_curve.png"), f"{agent} on {env_id}")
        _common.write_json(os.path.join(output_dir, "summary.json"), summary, indent=1)
    print(f"{agent} on {env_id}: final return {summary['final_return_mean']:.1f} "
          f"(per seed {np.round(final, 1).tolist()}), compile {compile_s:.1f}s, "
          f"train {train_s:.1f}s, {summary['env_steps_per_second']:,.0f} env steps/s")
    params, obs_stats = trainer.output(carry)
    return summary, agents_loop.TrainOutput(params, obs_stats,
                                              agents_loop.finish_metrics(raw))


def _concat(chunks: list[dict]) -> dict:
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}


def _diverged(trainer, ckpt, last_good_carry, chunks, output_dir, writer, logs_done, where,
              seeds, reason):
    """Saves the last good state (with checkpointing), writes the good metrics and
    ``divergence.json``, raises ``Diverged``."""
    saved = "no checkpoint (run with --checkpoint_every)"
    chunks = [c for c in chunks if next(iter(c.values())).shape[1] > 0]
    if ckpt is not None:
        good = _concat(chunks) if chunks else {
            k: np.zeros((trainer.num_seeds, 0) + shape, dtype)
            for k, (shape, dtype) in trainer.metric_shapes().items()}
        ckpt.save(logs_done, trainer, last_good_carry, good)
        saved = f"last good checkpoint: {ckpt.directory} at log interval {logs_done}"
    if writer:
        if chunks:
            _common.write_json(os.path.join(output_dir, "metrics.json"),
                               {k: v.tolist() for k, v in _reported(_concat(chunks)).items()},
                               indent=None)
        _common.write_json(os.path.join(output_dir, "divergence.json"),
                           {"where": where, "seeds": seeds, "reason": reason,
                            "checkpoint": saved})
    raise Diverged(f"diverged at {where}, seed index {seeds}: {reason}; {saved}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    if f.output_dir is None:
        print("error: --output_dir is required", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    given = [name for name, _, _ in DISTRIBUTED_ARGS if f[name].present]
    if given and not f.distributed:
        print(f"error: --{given[0]} needs --distributed", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        run(f.agent, f.env, f.num_seeds, f.seed, f.total_steps,
            f.output_dir, f.config.to_dict(), f.quiet,
            checkpoint_every=f.checkpoint_every, checkpoint_dir=f.checkpoint_dir,
            resume=f.resume, stop_after=f.stop_after, debug_nans=f.debug_nans)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)


if __name__ == "__main__":
    app.run(main)
