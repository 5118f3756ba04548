"""The README's example runs as written and prints what its comment says.

Its one ```python block is executed unchanged; the two printed per-draw variances must be the
≈ 25 (pathwise) and ≈ 7.7 (leave-one-out score function) of its comment within 5% (100 000 draws
each: the Monte Carlo error of these variances is about 1%), and both gradients close to exact.
"""

import ast
import contextlib
import io
import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs_and_matches_its_comment():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], str(README), "exec"), {})
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 2
    per_draw = {}
    for line in lines:
        name, rest = line.split(" ", 1)
        grad, rest = rest.split(" exact ", 1)
        exact, variance = rest.split(" variance per draw ")
        grad, exact = ast.literal_eval(grad), ast.literal_eval(exact)
        for j in grad:
            assert abs(grad[j] - exact[j]) < 0.1, (name, grad, exact)
        per_draw[name] = float(variance)
    assert abs(per_draw["pathwise"] / 25.0 - 1) < 0.05, per_draw
    assert abs(per_draw["score_function[leave_one_out]"] / 7.7 - 1) < 0.05, per_draw


def test_readme_example_imports_only_what_it_uses():
    block = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[0]
    tree = ast.parse(block)
    imported = {alias.asname or alias.name.split(".")[0]
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= used, imported - used
