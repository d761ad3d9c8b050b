"""Many updates' batches as one flat float32 array, so that a learner call moves them to its
device in a single (pinned, non-blocking) copy and slices them there.

``pack(batches)`` takes n updates' batches (each a tuple of one Transitions per level, every
update with the same shapes) and returns the flat array and its ``Layout``; ``unpack`` cuts a
flat array (numpy or torch, on any device) back into per-level columns of shape (n, B, ...).
The order inside the flat array: level by level, then ``Transitions._fields`` order, each column
(n, B, ...) in C order. Pure functions; the learner alone turns them into tensors.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from hacray.types import Transitions


class Column(NamedTuple):
    """Where one level's field lies in the flat array: ``flat[offset:offset + size]``."""

    level: int
    name: str
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class Layout(NamedTuple):
    updates: int
    columns: tuple[Column, ...]

    @property
    def size(self) -> int:
        return sum(c.size for c in self.columns)


def layout_of(batches: Sequence[tuple[Transitions, ...]]) -> Layout:
    """The layout of ``batches``; every update's batches must match the first's shapes."""
    if not batches:
        raise ValueError("no batches to pack")
    first, columns, offset = batches[0], [], 0
    for update in batches[1:]:
        if [[c.shape for c in level] for level in update] != [[c.shape for c in level]
                                                             for level in first]:
            raise ValueError("batches of one call must all have the same shapes")
    for level, transitions in enumerate(first):
        for name, column in zip(Transitions._fields, transitions):
            shape = (len(batches), *column.shape)
            columns.append(Column(level, name, offset, shape))
            offset += int(np.prod(shape))
    return Layout(len(batches), tuple(columns))


def pack(batches: Sequence[tuple[Transitions, ...]], out: Optional[np.ndarray] = None,
         layout: Optional[Layout] = None) -> tuple[np.ndarray, Layout]:
    """The batches' values in one flat float32 array (written into ``out`` when it is given
    and large enough; a pinned buffer, say) and their layout (``layout_of``, when not given)."""
    layout = layout or layout_of(batches)
    flat = (out[:layout.size] if out is not None and out.size >= layout.size
            else np.empty(layout.size, np.float32))
    for column in layout.columns:
        field = Transitions._fields.index(column.name)
        view = flat[column.offset:column.offset + column.size].reshape(column.shape)
        for j, update in enumerate(batches):
            view[j] = update[column.level][field]
    return flat, layout


def unpack(flat: Any, layout: Layout) -> list[dict[str, Any]]:
    """Per level, ``{field: (n, B, ...) view of flat}``; ``flat`` is a numpy array or a tensor."""
    levels: list[dict[str, Any]] = [{} for _ in range(1 + max(c.level for c in layout.columns))]
    for column in layout.columns:
        levels[column.level][column.name] = (
            flat[column.offset:column.offset + column.size].reshape(column.shape))
    return levels
