"""The reconcile contract: what one pass over a key comes to, for the worker loop to act on.

Owns `Outcome` (look again after some seconds; an error and its kind: a transient engine error is
retried with backoff, invalid input waits until the input changes, a bug is retried with backoff; keys
to add) and nothing else. Passes return it; only the worker loop touches the queue.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"
TRANSIENT = "transient"
INVALID = "invalid"
BUG = "bug"


@dataclass(frozen=True)
class Outcome:
    requeue_after: float | None = None  # look at the key again after this many seconds
    error: str | None = None
    kind: str = OK
    enqueue: tuple[str, ...] = ()  # other keys that need a pass

    @property
    def retry(self) -> bool:
        return self.kind in (TRANSIENT, BUG)


DONE = Outcome()
