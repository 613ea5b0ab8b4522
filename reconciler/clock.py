"""The one clock: wall time for what is recorded and compared with engine timestamps, monotonic time for
deadlines and waits.

Owns the `Clock` protocol, the system clock and a manual clock for tests. Every component that needs the
time takes a `Clock` (through `Environment.clock`), so no test patches `time.time` for the whole process.
It must not hold any other logic.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (compared with engine timestamps and written to state)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, backoff, waits)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told (`advance`, or `sleep`, which advances instead of waiting)."""

    def __init__(self, start: float = 1_000_000_000.0):
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))


SYSTEM = SystemClock()
