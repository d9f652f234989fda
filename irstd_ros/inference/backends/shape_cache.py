"""What a backend builds per padded frame size (OpenVINO compiled models, CUDA graphs,
TensorRT engines), kept in a bounded LRU that says when dropping sizes turns into rebuilding.

Dropping the least recently used size is harmless when a stream changes size once. When
more sizes than the bound alternate (several cameras, a size that changes back and forth),
every frame of a dropped size builds it again: 50+ ms per frame for OpenVINO instead of a
few. A size built again after it was dropped is counted (``rebuilds`` in the backend's
``describe()``), and the first one is logged once per cache with the sizes and the remedy.
Torch-free, so the OpenVINO backend imports it without torch.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Size = tuple[int, ...]  # ends in the padded (height, width)
K = TypeVar("K", bound=Size)
V = TypeVar("V")
MAX_REMEMBERED_DROPS = 256  # dropped sizes remembered to recognise a rebuild (bounded)


def size_text(size: Size) -> str:
    """``WxH`` of a size key (its last two numbers are height, width)."""
    return f"{size[-1]}x{size[-2]}"


class ShapeCache(Generic[K, V]):
    """At most ``limit`` values by size, least recently used dropped (handed to ``evict``).

    ``owner`` names the backend in the log; ``remedy`` says what avoids the rebuilds. Not
    thread-safe: the backends call it under the lock that serialises their frames."""

    def __init__(self, owner: str, limit: int, remedy: str, evict: Callable[[V], object] | None = None) -> None:
        self.owner = owner
        self.limit = limit
        self.remedy = remedy
        self.evict = evict
        self.evictions = 0  # sizes dropped to stay within the limit
        self.rebuilds = 0  # sizes built again after they were dropped
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._dropped: OrderedDict[K, None] = OrderedDict()

    def get(self, key: K, make: Callable[[K], V]) -> V:
        """The value of ``key``, made by ``make(key)`` on a miss (nothing kept if it raises)."""
        value = self._entries.get(key)
        if value is None:
            value = make(key)
            self._entries[key] = value
            if key in self._dropped:
                del self._dropped[key]
                self._rebuilt(key)
            while len(self._entries) > self.limit:
                old_key, old = self._entries.popitem(last=False)
                self.evictions += 1
                self._dropped[old_key] = None
                while len(self._dropped) > MAX_REMEMBERED_DROPS:
                    self._dropped.popitem(last=False)
                if self.evict is not None:
                    self.evict(old)
        self._entries.move_to_end(key)
        return value

    def _rebuilt(self, key: K) -> None:
        self.rebuilds += 1
        if self.rebuilds == 1:
            kept = ", ".join(size_text(k) for k in self._entries if k != key)
            log.warning(
                "%s: padded frame size %s built again after it was dropped: more frame sizes are in "
                "use than the %d it keeps (also kept: %s); while they alternate, frames build again "
                "instead of running (counted as size_rebuilds in describe()). %s",
                self.owner, size_text(key), self.limit, kept or "none", self.remedy,
            )

    def stats(self) -> dict[str, object]:
        """For ``describe()``: the limit and the counters."""
        return {
            "size_limit": self.limit,
            "size_evictions": self.evictions,
            "size_rebuilds": self.rebuilds,
        }

    def values(self) -> list[V]:
        """The values, least recently used first."""
        return list(self._entries.values())

    def clear(self) -> None:
        """Forget every value (not handed to ``evict``) and the dropped sizes."""
        self._entries.clear()
        self._dropped.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
