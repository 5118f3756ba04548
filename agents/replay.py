"""A uniform replay buffer as a ring-buffer pytree that lives inside ``jit`` and ``lax.scan``.

Why not flashbax: it is not installed in our pinned environment (jax 0.10.2), and an off-policy
agent on gymnax needs only three pure functions over a fixed-size pytree: ``init``, ``add``
(write a batch of N items at the head, wrapping around) and ``sample`` (uniform over what is
filled). Kept in the scan carry, the storage is updated in place by XLA, so the buffer costs one
scatter per environment step and one gather per minibatch.

Items are any pytree whose leaves share a leading batch axis (``add``) or none (``init``'s
example); the buffer stores them with a leading ``capacity`` axis.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

Array = jax.Array
PRNGKey = jax.Array


@struct.dataclass
class ReplayBuffer:
    """Ring buffer of ``capacity`` items.

    Attributes:
      storage: the items, each leaf shaped ``[capacity, ...]``.
      head: index the next item is written to.
      size: number of valid items, min(items added, capacity).
    """

    storage: Any
    head: Array
    size: Array

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.storage)[0].shape[0]


def init(example_item: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for items shaped like ``example_item`` (one item, no batch axis)."""
    if not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive int, got {capacity!r}")
    storage = jax.tree.map(
        lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x)), example_item)
    return ReplayBuffer(storage, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(buffer: ReplayBuffer, items: Any) -> ReplayBuffer:
    """Writes a batch of N ≤ capacity items (leading axis N) at the head, overwriting the oldest."""
    capacity = buffer.capacity
    n = jax.tree.leaves(items)[0].shape[0]
    if n > capacity:
        raise ValueError(f"cannot add {n} items to a buffer of capacity {capacity}")
    chex.assert_trees_all_equal_structs(buffer.storage, items)
    index = (buffer.head + jnp.arange(n)) % capacity
    storage = jax.tree.map(lambda s, x: s.at[index].set(x.astype(s.dtype)), buffer.storage, items)
    return ReplayBuffer(storage, (buffer.head + n) % capacity,
                        jnp.minimum(buffer.size + n, capacity))


def sample(key: PRNGKey, buffer: ReplayBuffer, batch_size: int) -> Any:
    """``batch_size`` items drawn uniformly with replacement from the filled part.

    Sampling an empty buffer returns zero-filled items (index 0); callers fill it first.
    """
    index = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda s: s[index], buffer.storage)
