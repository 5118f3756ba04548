"""Helpers shared by the per-agent config modules."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
from typing import Any

import ml_collections


def with_tuned(config_cls: type, tuned: dict[str, dict[str, Any]], env_id: str
               ) -> ml_collections.ConfigDict:
    """The dataclass defaults of ``config_cls`` with ``tuned[env_id]`` applied."""
    values = {f.name: f.default for f in dataclasses.fields(config_cls)}
    values.update(tuned.get(env_id, {}))
    return ml_collections.ConfigDict(values)


def field_help(config_cls: type) -> dict[str, str]:
    """Field name → its help text: the comment beside the field in the config dataclass (or
    its base classes), after the comment lines just above it. The configs keep a comment per
    field (the flax examples' convention); this reads them from the source, so the command line's
    ``--help`` says what the code says. Fields of a class whose source is not available get
    none."""
    text = {}
    for klass in reversed(config_cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        comments = {tok.start[0]: tok.string.lstrip("#").strip()
                    for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT}
        for node in ast.parse(source).body[0].body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            above, line = [], node.lineno - 1
            # Comment lines right above the field, up to a section header ("--- static ---").
            while (line in comments and lines[line - 1].lstrip().startswith("#")
                   and not comments[line].startswith("---")):
                above.insert(0, comments[line])
                line -= 1
            text[node.target.id] = " ".join(above + [comments.get(node.lineno, "")]).strip()
    return text
