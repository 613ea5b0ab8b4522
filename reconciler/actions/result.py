"""What one action came to: `ActionResult`, and the one-line message of a failure.

It must not act or decide; `runner` reports results, commands and the daemon print them.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler import resolve
from reconciler.engine import api


@dataclass(frozen=True)
class ActionResult:
    action: str  # start | stop | advance | deploy
    cluster: str
    service: str | None
    instance: str
    task_id: str
    ok: bool
    message: str
    seconds: float = 0.0

    def line(self) -> str:
        who = self.service or "-"
        mark = "ok" if self.ok else "FAILED"
        tid = self.task_id[:12] if self.task_id else "-"
        return f"{self.action:<6} {who} task {tid} on {self.instance}: {mark} ({self.seconds:.1f}s) {self.message}".rstrip()


class TaskFailed(Exception):
    def __init__(self, message: str, stop_code: str = "TaskFailedToStart"):
        super().__init__(message)
        self.stop_code = stop_code


def failure(e: Exception) -> str:
    """The one-line message of a failed action. Expected failures speak for themselves; anything else
    names its type, so a bug reads as one rather than as an engine's answer."""
    if isinstance(e, api.EngineError):
        return e.message
    if isinstance(e, (TaskFailed, resolve.ResolveError)):
        return str(e)
    return f"unexpected {type(e).__name__}: {e}"
