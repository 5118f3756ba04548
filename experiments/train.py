"""Train an agent on a gymnax environment over several seeds at once, on every device there is.

    python -m experiments.train --agent=ppo --env=CartPole-v1 --num_seeds=8 \\
        --total_steps=100000 --output_dir=/tmp/ppo_cartpole [--config.learning_rate=1e-3 ...] \\
        [--checkpoint_every=10 [--resume]] [--debug_nans] \\
        [--distributed [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]]

The training machinery is ``agents.runner``; this module is its command line. All seeds train in
one ``jax.jit(jax.vmap(train))`` program whose seed axis is sharded over the
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

The agent's config is its tuned defaults for the environment (``experiments/configs/<agent>.py``;
a note says when the environment has none) with ``--config.<field>=`` overrides; ``--helpshort``
lists the fields of ``--agent``'s config with their values for ``--env`` and what each means.
An environment whose observation is an integer (FrozenLake-misc) is seen one-hot
(``agents.envs``).

The output folder holds one run. An existing non-empty ``--output_dir`` is refused unless
``--resume`` (continue the run whose checkpoints it holds) or ``--overwrite`` (start afresh: the
previous run's files and checkpoints are removed) is given; nothing is written before the run is
accepted. Then, each file atomically (a temporary file renamed into place, so an interrupted write
never leaves half a file) and with the permissions the umask gives:

* ``run_info.json`` (once the run is accepted, before training): seed, number of seeds, agent,
  environment, the full config, package versions, Python, platform, devices and process count,
  command line;
* ``metrics.json``: every logged metric, ``[num_seeds, num_logs]`` per name;
* ``learning_curve.png``: evaluation return (mean and min–max over seeds) and training return
  against env steps;
* ``summary.json``: agent, env, budget, final evaluation return per seed (the mean over
  ``eval_episodes`` ≥ 32 greedy episodes after the last update), compile and train seconds,
  env steps per second (all seeds together, over the steps trained in this session; a finished
  run resumed keeps the throughput it had), the config, and the run info.

Checkpoints (orbax, ``agents.runner.Checkpoints``): ``--checkpoint_every=N`` runs the training in
chunks of N *log intervals* (a log interval is ``config.log_interval`` updates, or SAC
environment steps; the run has ``num_logs`` of them) and saves the full state of every seed after
each chunk: parameters, optimizer states, environment states, observation statistics, replay
buffer, update counters, PRNG keys, the metrics so far and the number of log intervals done.
``--checkpoint_dir`` (default ``OUTPUT_DIR/checkpoints``) keeps the latest 3. ``--resume``
continues from the latest checkpoint there (the agent, env, config, seed and number of seeds must
match; the device count may differ) and gives the same final parameters and metrics as a run
never stopped; a latest checkpoint whose files were damaged is named in a warning, moved aside
(``<step>.damaged``) and the one before it used. ``--stop_after=K`` stops (exit 0) once K log
intervals are done and saved, as a preempted job would, to be continued with ``--resume``.
orbax logs nothing below warnings unless ``--verbosity`` is given (``--quiet``: below errors).

Bad input and faults. Everything is checked before anything compiles: unknown agent,
environment (or one that needs a download that fails), config field, or choice (each error
lists the right ones), an action space or an estimator the agent does not support (SAC names
the estimators that fit), and every field of the config (its own ``validate()``); a bad output
folder (a file, under a file, not writable). Each prints one line to stderr and exits with
status 2. After every chunk the metrics and the state of every seed are checked to be finite;
``--debug_nans`` also turns on ``jax_debug_nans``, which stops at the first operation that makes
a NaN. A run that diverges stops with one line naming the first non-finite log interval, its env
step and the seed(s), having saved its last good state as a checkpoint (with
``--checkpoint_every``), ``metrics.json`` of the log intervals before it and
``divergence.json``; exit status 3.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
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

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_dict, config_flags  # noqa: E402

import agents  # noqa: E402
from agents import runner  # noqa: E402
from experiments import _common, configs  # noqa: E402
from experiments.configs import config_dict_of, make_config, make_env, make_stages  # noqa: E402
from experiments.configs._base import field_help  # noqa: E402

MIN_EVAL_EPISODES = 32
# What a run writes into its output folder (``--overwrite`` removes these, and the checkpoints).
RUN_FILES = ("run_info.json", "metrics.json", "learning_curve.png", "summary.json",
             "divergence.json")


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


def config_help(agent: str, env_id: str) -> str:
    """The ``--config`` flag's help: each field of ``agent``'s config, its value for ``env_id``
    and its meaning (the comment beside it in the config class)."""
    entry = configs.REGISTRY.get(agent)
    if entry is None:
        return f"overrides of the agent's config fields (--agent={agent} is not registered)"
    values = entry.get_config(env_id)
    tuned = "tuned" if env_id in entry.tuned_envs else "defaults, not tuned"
    lines = [(f"overrides of the agent's config, --config.<field>=<value>; the fields of "
              f"--agent={agent}, with their values for --env={env_id} ({tuned}; pass --agent "
              "and --env with --helpshort for another's):")]
    for name, text in field_help(entry.config_cls).items():
        lines.append(f"  {name} = {values[name]!r}: {text}")
    return "\n".join(lines)


def define_flags(argv: list[str]) -> None:
    """The command line's flags. Defined only when this module runs as the program."""
    flags.DEFINE_string("agent", "ppo", f"agent: one of {sorted(configs.REGISTRY)}")
    flags.DEFINE_string("env", "CartPole-v1", "gymnax environment id")
    flags.DEFINE_integer("num_seeds", 8, "seeds trained side by side (vmapped, sharded over the "
                         "devices)")
    flags.DEFINE_integer("seed", 0, "base seed; seed i uses fold_in(key(seed), i)")
    flags.DEFINE_integer("total_steps", None,
                         "env steps per seed (default: the config's total_steps)")
    flags.DEFINE_string("output_dir", None, "where to write metrics, plot, summary (required; "
                        "an existing non-empty folder needs --resume or --overwrite)")
    flags.DEFINE_bool("overwrite", False, "start afresh in an output folder that holds a run: "
                      "remove its files and checkpoints first")
    flags.DEFINE_bool("quiet", False, "no progress lines during training, and no orbax logging "
                      "below errors")
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
    config_flags.DEFINE_config_dict(
        "config", _override_fields(),
        config_help(_flag_value(argv, "agent") or "ppo", _flag_value(argv, "env") or "CartPole-v1"))
    # The help lists each field with its value; the flag's default (every agent's field, unset)
    # would repeat the list without either.
    flags.FLAGS["config"].default_as_str = None


# ml_collections parses --config.<name> when the flag is defined; check the names first.
if __name__ == "__main__":
    check_config_names(sys.argv)
    define_flags(sys.argv)


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


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
    key = agents.prng_key(seed)
    return {
        "agent": agent, "env": env_id, "seed": seed, "num_seeds": num_seeds,
        "seed_keys": (f"seed i trains with jax.random.fold_in(jax.random.key({seed}, "
                      f"impl={str(jax.random.key_impl(key))!r}), i)"),
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
# The output folder: one run.

def check_output_dir(output_dir: str, *, overwrite: bool, resume: bool) -> None:
    """``UsageError`` for an output folder no run can write (a file; under a file; a folder
    that cannot be written) and for one that holds files without ``--overwrite`` or
    ``--resume``. Reads only: nothing is written before the run is accepted."""
    if overwrite and resume:
        raise UsageError("--overwrite starts afresh and --resume continues: pass one of them")
    path = pathlib.Path(output_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output_dir {output_dir} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--output_dir {output_dir} lies under {existing}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--output_dir {output_dir}: {existing} is not writable")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise UsageError(f"--output_dir {output_dir} already holds files; pass --resume to "
                         "continue its run, --overwrite to start afresh, or choose another "
                         "folder")


def accept_output_dir(output_dir: str, overwrite: bool) -> None:
    """Creates the folder; with ``overwrite`` removes a previous run's files and default
    checkpoints (other files are left alone). ``UsageError`` if the system refuses."""
    path = pathlib.Path(output_dir)
    try:
        if overwrite and path.is_dir():
            for name in RUN_FILES:
                (path / name).unlink(missing_ok=True)
            shutil.rmtree(path / "checkpoints", ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--output_dir {output_dir}: {e.strerror or e}") from None


def _previous_summary(output_dir: str) -> dict | None:
    try:
        return json.loads((pathlib.Path(output_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Results for people: rounded numbers, a figure that shows one log interval too.

def for_people(x, digits: int | None = None):
    """A float32 number as the shortest decimal that reads back as it (0.8, not
    0.800000011920929), rounded to ``digits`` significant digits if given (the printed line;
    the result files keep every digit of the float32); NaN/inf kept."""
    x = float(np.float32(x))
    if not np.isfinite(x):
        return x
    shortest = float(str(np.float32(x)))
    return shortest if digits is None else float(f"{shortest:.{digits}g}")


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
        # Intervals without a value (not evaluated: eval_every > 1) are left out of the line;
        # markers show the points, so that a run of one log interval shows its one point.
        shown = np.isfinite(mean)
        ax.plot(steps[shown], mean[shown], color=color, marker="o", markersize=3,
                label=f"{name.replace('_', ' ')} (mean)")
        ax.fill_between(steps[shown], low[shown], high[shown], color=color, alpha=0.2)
        if shown.sum() == 1:   # a band of one point has no area: show the min–max as a bar
            ax.errorbar(steps[shown], mean[shown], [mean[shown] - low[shown],
                                                    high[shown] - mean[shown]],
                        color=color, capsize=4)
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("episode return")
    ax.set_title(f"{title} ({values.shape[0]} seeds; band = min–max)")
    ax.legend()
    _common.save_figure(fig, path)


def _reported(metrics: dict) -> dict:
    """Finished metrics (numpy) → what metrics.json holds."""
    return {k: v.tolist() for k, v in metrics.items() if k != "eval_returns"}


# --------------------------------------------------------------------------------------------
# The run.

def build(agent: str, env_id: str, num_seeds: int, seed: int, total_steps, overrides: dict,
          quiet: bool, devices=None) -> tuple[object, runner.SeedTrainer]:
    """(config, ``runner.SeedTrainer``) of the run, nothing compiled: ``UsageError`` in one line
    for anything no run can use. Says when the environment has no tuned config, and when the
    seeds do not use every device."""
    try:
        entry, config = make_config(agent, env_id, overrides, total_steps, quiet)
        if config.eval_episodes < MIN_EVAL_EPISODES:
            raise ValueError(f"eval_episodes must be ≥ {MIN_EVAL_EPISODES} for the final "
                             f"return, got {config.eval_episodes}")
        env, env_params = make_env(entry, agent, env_id)
        stages = make_stages(entry, config, env, env_params)
        trainer = runner.SeedTrainer(stages, num_seeds, seed, devices,
                                     compiler_options=agents.compiler_options())
    except ValueError as e:
        raise UsageError(str(e)) from None
    if env_id not in entry.tuned_envs:
        print(f"note: {agent} has no tuned config for {env_id} (tuned: "
              f"{', '.join(entry.tuned_envs) or 'none'}); using {entry.config_cls.__name__}'s "
              "defaults", flush=True)
    if len(trainer.devices) < len(jax.devices() if devices is None else devices) and not quiet:
        print(f"note: {num_seeds} seeds run on {len(trainer.devices)} device(s), the most that "
              "divides them evenly", flush=True)
    return config, trainer


def run(agent: str, env_id: str, num_seeds: int, seed: int, total_steps, output_dir: str,
        overrides: dict, quiet: bool = False, *, overwrite: bool = False,
        checkpoint_every: int | None = None, checkpoint_dir: str | None = None,
        resume: bool = False, stop_after: int | None = None, debug_nans: bool = False,
        devices=None, return_output: bool = False):
    """Trains (``agents.runner``), writes run info, metrics, plot and summary to ``output_dir``;
    returns the summary (``None`` if stopped by ``stop_after`` before the end), with
    ``return_output`` as ``(summary, TrainOutput)`` (numpy, leading seed axis; all metrics).
    Raises ``UsageError`` for bad input (before compiling or writing anything) and
    ``runner.Diverged`` when a seed's metrics or state stop being finite."""
    for name, value in (("checkpoint_every", checkpoint_every), ("stop_after", stop_after)):
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be positive, got {value}")
    if stop_after is not None and checkpoint_every is None:
        raise UsageError("--stop_after needs --checkpoint_every (a stopped run resumes from its "
                         "checkpoint)")
    config, trainer = build(agent, env_id, num_seeds, seed, total_steps, overrides, quiet,
                            devices)
    stages = trainer.stages
    check_output_dir(output_dir, overwrite=overwrite, resume=resume)
    ckpt = None
    if checkpoint_every is not None or resume:
        meta = {"agent": agent, "env": env_id, "seed": seed, "num_seeds": num_seeds,
                "num_logs": stages.num_logs, "config": config_dict_of(config)}
        ckpt = _open_checkpoints(checkpoint_dir or os.path.join(output_dir, "checkpoints"),
                                 meta, output_dir, overwrite, resume)
    writer = jax.process_index() == 0
    info = run_info(agent, env_id, num_seeds, seed, config, trainer.devices)

    def accept(resumed_at: int, damaged: list[runner.Damaged]) -> None:
        for d in damaged:
            print(f"warning: checkpoint {d.step} is damaged ({d.file}: {d.error}); moved aside "
                  f"to {d.moved_to}", file=sys.stderr, flush=True)
        if resumed_at:
            print(f"resuming from {ckpt.directory} at log interval "
                  f"{resumed_at}/{stages.num_logs}", flush=True)
        if writer:
            accept_output_dir(output_dir, overwrite)
            _common.write_json(os.path.join(output_dir, "run_info.json"),
                               {**info, "resumed_at_log": resumed_at or None})

    previous = jax.config.jax_debug_nans
    if debug_nans:
        jax.config.update("jax_debug_nans", True)
    try:
        result = _train(trainer, ckpt, checkpoint_every, resume, stop_after, output_dir, writer,
                        accept)
        if result.output is None:
            print(f"stopped after {result.logs_done}/{stages.num_logs} log intervals; continue "
                  f"with --resume (checkpoints in {ckpt.directory})", flush=True)
            return (None, None) if return_output else None
        info["resumed_at_log"] = result.resumed_at or None
        summary = _write_results(result, trainer, config, info, agent, env_id, output_dir,
                                 writer)
        return (summary, result.output) if return_output else summary
    finally:
        jax.config.update("jax_debug_nans", previous)
        if ckpt is not None:
            ckpt.close()


def _open_checkpoints(directory: str, meta: dict, output_dir: str, overwrite: bool,
                      resume: bool) -> runner.Checkpoints:
    """``runner.Checkpoints`` in ``directory`` (created here; emptied with ``overwrite``).
    ``UsageError``, before anything is written, if it holds checkpoints and neither ``resume``
    nor ``overwrite`` is given, or if ``resume`` finds none where the output folder holds files
    (continuing would mix two runs)."""
    path = pathlib.Path(directory)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--checkpoint_dir {directory} is a file, not a folder")
    # orbax names each checkpoint's folder by its step.
    has_steps = path.is_dir() and any(child.name.isdigit() for child in path.iterdir())
    if has_steps and not (resume or overwrite):
        raise UsageError(f"{directory} already holds checkpoints; pass --resume to continue that "
                         "run, --overwrite to start afresh, or choose another --checkpoint_dir")
    output = pathlib.Path(output_dir)
    if resume and not has_steps and output.is_dir() and any(output.iterdir()):
        raise UsageError(f"--resume: {directory} holds no checkpoint to continue from; pass "
                         "--overwrite to start afresh in --output_dir")
    try:
        ckpt = runner.Checkpoints(directory, meta)
    except OSError as e:
        raise UsageError(f"--checkpoint_dir {directory}: {e.strerror or e}") from None
    if overwrite and jax.process_index() == 0:
        ckpt.delete_all()
    return ckpt


def _train(trainer, ckpt, checkpoint_every, resume, stop_after, output_dir, writer, accept):
    """``runner.run`` (``accept`` once the run is accepted); on divergence writes the good
    metrics and ``divergence.json`` before the error propagates."""
    try:
        result = runner.run(trainer, checkpoints=ckpt, checkpoint_every=checkpoint_every,
                            resume=resume, stop_after=stop_after, on_start=accept)
    except runner.CheckpointError as e:
        raise UsageError(f"--resume: {e}") from None
    except runner.Diverged as e:
        if writer:
            if e.raw is not None:
                _common.write_json(os.path.join(output_dir, "metrics.json"),
                                   _reported(agents.finish_metrics(e.raw)), indent=None)
            _common.write_json(os.path.join(output_dir, "divergence.json"), {
                "where": e.where, "seed": e.seed, "seed_indices": e.seed_indices,
                "reason": e.reason, "checkpoint": e.checkpoint,
                "checkpoint_step": e.checkpoint_step})
        raise
    return result


def _write_results(result: runner.RunResult, trainer, config, info: dict, agent: str,
                   env_id: str, output_dir: str, writer: bool) -> dict:
    metrics = result.output.metrics
    final = metrics["eval_return"][:, -1]
    steps = metrics["env_steps"][0]
    steps_per_seed = int(steps[-1])
    trained = steps_per_seed - (int(steps[result.resumed_at - 1]) if result.resumed_at else 0)
    timing = {"compile_seconds": result.compile_seconds, "train_seconds": result.train_seconds,
              "env_steps_per_second": trained * trainer.num_seeds / max(result.train_seconds,
                                                                         1e-9)}
    if trained == 0:
        # A finished run resumed trains nothing: keep the throughput it was measured at.
        previous = _previous_summary(output_dir) or {}
        timing = {k: previous.get(k) for k in timing}
    summary = {
        "agent": agent, "env": env_id, "total_steps": steps_per_seed,
        "requested_total_steps": config.total_steps, "num_seeds": trainer.num_seeds,
        "seed": trainer.seed,
        "final_return_per_seed": [for_people(x) for x in final],
        "final_return_mean": for_people(final.mean()),
        "final_return_std": for_people(final.std()), "eval_episodes": config.eval_episodes,
        **timing,
        "resumed_at_log": result.resumed_at or None,
        "device": str(trainer.devices[0]), "num_devices": len(trainer.devices),
        "config": config_dict_of(config),
        "run_info": info,
    }
    if writer:
        _common.write_json(os.path.join(output_dir, "metrics.json"), _reported(metrics),
                           indent=None)
        plot(metrics, os.path.join(output_dir, "learning_curve.png"), f"{agent} on {env_id}")
        _common.write_json(os.path.join(output_dir, "summary.json"), summary, indent=1)
    def shown(key: str, fmt: str) -> str:
        return "?" if timing[key] is None else f"{timing[key]:{fmt}}"
    print(f"{agent} on {env_id}: final return {for_people(final.mean(), 4):g} (per seed "
          f"{[for_people(x, 4) for x in final]}), compile {shown('compile_seconds', '.1f')}s, "
          f"train {shown('train_seconds', '.1f')}s, "
          f"{shown('env_steps_per_second', ',.0f')} env steps/s")
    return summary


def _quiet_logging(quiet: bool) -> None:
    """orbax logs through absl at INFO (dozens of lines per checkpoint): show warnings only
    (errors only with ``--quiet``) unless ``--verbosity`` asks for more."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.ERROR if quiet else logging.WARNING)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = flags.FLAGS
    _quiet_logging(f.quiet)
    if f.output_dir is None:
        print("error: --output_dir is required", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    given = [name for name, _, _ in DISTRIBUTED_ARGS if f[name].present]
    if given and not f.distributed:
        print(f"error: --{given[0]} needs --distributed", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        run(f.agent, f.env, f.num_seeds, f.seed, f.total_steps,
            f.output_dir, f.config.to_dict(), f.quiet, overwrite=f.overwrite,
            checkpoint_every=f.checkpoint_every, checkpoint_dir=f.checkpoint_dir,
            resume=f.resume, stop_after=f.stop_after, debug_nans=f.debug_nans)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except runner.Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)


if __name__ == "__main__":
    app.run(main)
