"""Crash-loop backoff of one service, as pure values on a clock the caller passes.

Owns the per-service `Backoff` state and its rules, after ECS task-launch throttling and Kubernetes'
CrashLoopBackOff: a failure is a task that died before it ever became available (an essential container
with a health check never passed a probe, or one without a check ran less than the grace period), or a
start that failed (an image that cannot be pulled, a dependency that never became healthy). A task that
became available and was then killed (a SIGKILL, an OOM after an hour, an engine restart) is no failure:
it is replaced at once. Each round of failures waits 10 s before the next attempt, doubling to 5 min;
ten minutes without a failure forgets them all. Also the JSON the state directory keeps for
`describe service` (`{"recentFailures", "nextReplacementAt", "backoffSeconds"}` per service).

Every function takes `now` where time matters; this module must not read a clock, do I/O or log, and it
does not decide what to start or stop (the planner does) nor when to look again (the controller does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from reconciler.model import observed as obs

BASE = 10.0  # seconds before the attempt after the first failure
CAP = 300.0  # the longest wait
RESET = 600.0  # seconds without a failure after which the failures are forgotten
DEFAULT_MIN_RUN = 10.0  # seconds a container without health check must run to count as available


@dataclass(frozen=True)
class Backoff:
    """Recent failures of one service, the last attempt they gate, and the next attempt last announced."""

    failures: tuple[float, ...] = ()  # when each failure was recorded
    last_attempt: float = 0.0  # when the last failure was recorded (the attempt the wait counts from)
    announced: float = 0.0  # the next-attempt time last announced (logged); 0 for none

    @property
    def failing(self) -> bool:
        return bool(self.failures)


def delay(state: Backoff) -> float:
    """The wait after the last attempt: 0 without failures, else 10 s doubling per failure, at most 5 min."""
    n = len(state.failures)
    if n == 0:
        return 0.0
    return min(BASE * 2 ** min(n - 1, 32), CAP)


def next_attempt(state: Backoff) -> float:
    """When the next attempt may start (epoch seconds)."""
    return state.last_attempt + delay(state)


def forget_old(state: Backoff, now: float) -> Backoff:
    """`state` without its failures when the last one is more than `RESET` seconds before `now`."""
    if state.failures and now - state.failures[-1] > RESET:
        return Backoff(last_attempt=state.last_attempt)
    return state


def wait(state: Backoff, now: float) -> float:
    """Seconds from `now` until the next attempt may start; 0 to go ahead (old failures are forgotten)."""
    state = forget_old(state, now)
    return max(0.0, next_attempt(state) - now)


def record_failures(state: Backoff, n: int, now: float) -> Backoff:
    """`state` with `n` failures recorded at `now`, which becomes the attempt the next wait counts from.

    Callers record one failure per round (an attempt whose tasks died young, or an execution whose starts
    failed), not one per task: three replicas crashing together back off like one."""
    if n <= 0:
        return state
    state = forget_old(state, now)
    return Backoff(failures=(*state.failures, *([now] * n)), last_attempt=now, announced=state.announced)


def admit(state: Backoff, young_deaths: int, now: float, retry: bool = False) -> tuple[float, Backoff]:
    """The gate before a plan of the service starts tasks: (seconds to wait, 0 to go now; the new state).

    `young_deaths`: how many of the tasks it replaces died before ever becoming available
    (`is_crash_failure`). When there are any, it waits until `next_attempt`; when that is due it goes
    ahead and records the round as one failure. `retry`: the plan retries failed starts (recorded after
    the execution with `record_failures`), which leave no dead task to show for them; it waits likewise,
    and going ahead makes `now` the attempt the next wait counts from. Otherwise it goes ahead at once,
    whatever the backoff: a task that became available and was then killed is replaced at once.
    """
    state = forget_old(state, now)
    if young_deaths <= 0 and not (retry and state.failures):
        return 0.0, state
    remaining = wait(state, now)
    if remaining > 0:
        return remaining, state
    if young_deaths > 0:
        return 0.0, record_failures(state, 1, now)
    return 0.0, replace(state, last_attempt=now)


def should_announce(state: Backoff) -> tuple[bool, Backoff]:
    """Whether the current wait is news (its next attempt was not announced yet), and the state that
    remembers it was: events and their re-checks ask again and again, the log should say it once."""
    target = next_attempt(state)
    if not state.failures or state.announced == target:
        return False, state
    return True, replace(state, announced=target)


# -- what counts as a failure ---------------------------------------------------------------------------


def min_run_seconds(grace_period: float | None) -> float:
    """How long a container without a health check must run to count as available: the service's health
    check grace period, or `DEFAULT_MIN_RUN` when it has none."""
    return float(grace_period) if grace_period and grace_period > 0 else DEFAULT_MIN_RUN


def is_crash_failure(task: obs.Task, min_run: float = DEFAULT_MIN_RUN) -> bool:
    """Whether a STOPPED task's death counts as a crash-loop failure: it never became available.

    A task that is not STOPPED is no failure; nor is one that became available before it died (healthy,
    or running `min_run` seconds without a health check), however it died. Its containers' times are the
    engine's: the run of a container still running is counted up to when the task stopped."""
    if task.status().last_status != obs.STOPPED:
        return False
    return not task.ever_available(min_run)


def crash_failures(tasks: Iterable[obs.Task], min_run: float = DEFAULT_MIN_RUN) -> list[obs.Task]:
    """The tasks of `tasks` whose death counts as a crash-loop failure."""
    return [t for t in tasks if is_crash_failure(t, min_run)]


# -- the state directory's file -------------------------------------------------------------------------


def to_json(state: Backoff) -> dict[str, Any]:
    """The entry `StateDir.save_backoff` keeps for a service (what `describe service` shows)."""
    return {
        "recentFailures": len(state.failures),
        "nextReplacementAt": next_attempt(state),
        "backoffSeconds": delay(state),
    }


def from_json(entry: Mapping[str, Any] | None) -> Backoff:
    """The state an entry of `to_json` was written from, as far as it matters: the failure count, and the
    last attempt (which is also when the last failure was recorded). A malformed entry is no backoff."""
    if not isinstance(entry, Mapping):
        return Backoff()
    try:
        n = int(entry.get("recentFailures") or 0)
        at = float(entry.get("nextReplacementAt") or 0.0) - float(entry.get("backoffSeconds") or 0.0)
    except (TypeError, ValueError):
        return Backoff()
    if n <= 0:
        return Backoff()
    return Backoff(failures=(at,) * min(n, 10_000), last_attempt=at)


def states_to_json(states: Mapping[str, Backoff]) -> dict[str, dict[str, Any]]:
    """The whole file for one cluster: `{service: entry}` for the services with recent failures."""
    return {service: to_json(s) for service, s in sorted(states.items()) if s.failures}


def states_from_json(entries: Mapping[str, Any] | None) -> dict[str, Backoff]:
    """The services' states from the file's contents (`StateDir.backoff`); bad entries are skipped."""
    if not isinstance(entries, Mapping):
        return {}
    out = {str(k): from_json(v) for k, v in entries.items()}
    return {k: v for k, v in out.items() if v.failures}
