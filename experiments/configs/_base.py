"""Helpers shared by the per-agent config modules."""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections


def with_tuned(config_cls: type, tuned: dict[str, dict[str, Any]], env_id: str
               ) -> ml_collections.ConfigDict:
    """The dataclass defaults of ``config_cls`` with ``tuned[env_id]`` applied."""
    values = {f.name: f.default for f in dataclasses.fields(config_cls)}
    values.update(tuned.get(env_id, {}))
    return ml_collections.ConfigDict(values)
