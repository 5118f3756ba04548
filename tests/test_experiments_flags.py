"""One flag convention across the experiments: ``python -m experiments.<name> --helpshort``
lists the module's own flags, those defined for it in ``experiments._common`` included, and
``experiments.train`` lists every field of the agent's config with its value and help text."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules whose --seed, --output_dir, --overwrite and --quick come from _common.
COMMON = ("gumbel", "zeroth_order", "variance", "sac_estimators", "reinforce_baselines")


def _listed_flags(text: str, module: str) -> set[str]:
    """The flags --helpshort lists under the module's own heading."""
    section = text.split(f"experiments/{module}.py:", 1)[1].split("Try --helpfull", 1)[0]
    return set(re.findall(r"^  --(?:\[no\])?(\w+)", section, flags=re.M))


def test_helpshort_lists_each_modules_own_flags():
    commands = {m: [sys.executable, "-m", f"experiments.{m}", "--helpshort"]
                for m in (*COMMON, "train")}
    commands["train_sac"] = [sys.executable, "-m", "experiments.train", "--agent=sac",
                             "--env=CartPole-v1", "--helpshort"]
    procs = {m: subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for m, c in commands.items()}
    out = {m: p.communicate(timeout=600)[0] for m, p in procs.items()}
    for module in COMMON:
        listed = _listed_flags(out[module], module)
        assert {"seed", "output_dir", "overwrite", "quick"} <= listed, (module, listed)
    train = _listed_flags(out["train"], "train")
    assert {"agent", "env", "num_seeds", "seed", "output_dir", "overwrite", "resume",
            "checkpoint_every", "config"} <= train, train
    # PPO's tuned CartPole value (the default agent and environment).
    assert "    clip_epsilon = 0.1: ε of the ratio clip" in out["train"].splitlines()
    sac_lines = out["train_sac"].splitlines()
    assert "    actor_estimator = 'exact': one of estimators.ESTIMATORS" in sac_lines, out["train_sac"]
    assert "(default: 'activation: null" not in out["train"]
