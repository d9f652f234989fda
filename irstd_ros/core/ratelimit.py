"""Log throttling: at most one message per key and period (the node's pipeline, the
tracker). Pure Python."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """True at most once per ``period`` seconds for each key (log throttling); ``clock``:
    monotonic seconds."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self._clock = period, clock
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            return False
        self._last[key] = now
        return True
