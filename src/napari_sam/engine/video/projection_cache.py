"""Per-memory-frame key / value projections, reused while a memory stays in the bank.

A memory frame enters the memory attention of the next ``num_maskmem - 1`` frames (and a
conditioning frame every frame); its per-layer keys and values do not depend on how old it
is (:meth:`Sam2.project_memory`), so a propagation projects each memory once. Entries are
keyed by the batch they were projected for (object ids and, per object, the frame and
source), so a stable group of objects reuses them without copying.

The cache is bounded: ``2 * layers * hw * d_model`` floats per object and frame (32 MiB at
1024 px for the tiny model). A group whose working set (``num_maskmem + 1`` entries) does not
fit in ``budget_bytes`` is not cached at all — it then projects the raw memories on the fly,
which is the official computation order.
"""

from __future__ import annotations

from collections import OrderedDict


def _nbytes(pm) -> int:
    return sum(t.numel() * t.element_size() for t in list(pm.keys) + list(pm.values))


class ProjectionCache:
    """LRU of projected memories under a byte budget; invalidated per (object, frame)."""

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._index: dict[tuple, set[tuple]] = {}

    def fits(self, entry_bytes: int, entries: int) -> bool:
        """Whether ``entries`` entries of ``entry_bytes`` each fit the budget."""
        return entry_bytes * entries <= self.budget

    def get(self, key: tuple):
        hit = self._entries.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return hit[0]

    def put(self, key: tuple, pm) -> None:
        """Store ``pm`` for ``key`` = (obj_ids, ((frame, source), ...)); evicts the oldest."""
        size = _nbytes(pm)
        if size > self.budget:
            return
        self._drop(key)
        while self._entries and self.used + size > self.budget:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (pm, size)
        self.used += size
        for member in zip(key[0], key[1]):
            self._index.setdefault((member[0], *member[1]), set()).add(key)

    def invalidate(self, obj_id, frame: int) -> None:
        """Forget every entry that holds ``obj_id``'s memory of ``frame`` (any source)."""
        for source_key in [k for k in self._index if k[0] == obj_id and k[1] == frame]:
            for key in list(self._index.get(source_key, ())):
                self._drop(key)

    def invalidate_object(self, obj_id) -> None:
        for source_key in [k for k in self._index if k[0] == obj_id]:
            for key in list(self._index.get(source_key, ())):
                self._drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self._index.clear()
        self.used = 0

    def _drop(self, key: tuple) -> None:
        hit = self._entries.pop(key, None)
        if hit is None:
            return
        self.used -= hit[1]
        for member in zip(key[0], key[1]):
            refs = self._index.get((member[0], *member[1]))
            if refs is not None:
                refs.discard(key)
                if not refs:
                    del self._index[(member[0], *member[1])]

    def __len__(self) -> int:
        return len(self._entries)


def prune(cache: ProjectionCache, keep) -> None:
    """Drop the entries for which ``keep(key)`` is False (e.g. memories out of reach)."""
    for key in [k for k in cache._entries if not keep(k)]:
        cache._drop(key)
