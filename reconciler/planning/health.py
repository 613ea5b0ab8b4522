"""Whether a new task made it: the verdict on a task a command launched, and how long to give it.

Owns the rule `apply` and `run-task` use to call a new task done (RUNNING and HEALTHY), failed (STOPPED,
or UNHEALTHY, or gone) or still on its way, and the deadline a task definition earns: its health checks'
start period and retries, plus its containers' `startTimeout` when they wait on `dependsOn`. Pure: the
observed task and the time are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import observed as obs
from reconciler.planning import dependencies

MIN_SECONDS = 10.0
MAX_SECONDS = 900.0
# ECS: a task none of whose essential containers has a health check counts as healthy (toward the minimum
# healthy percent, and for a deployment to complete) only once it has been RUNNING this long.
UNCHECKED_SETTLE_SECONDS = 40.0
# A deployment completes once each new task is available or, without a health check, has been RUNNING this
# long (a process that exits right after it starts does not make a deployment COMPLETED; one that dies
# later is the circuit breaker's). Like Nomad's `min_healthy_time`, shorter than ECS's 40 s so that a
# deployment of tasks without health checks does not wait out the minimum-healthy rule when nothing old
# has to go.
UNCHECKED_STABLE_SECONDS = 5.0


@dataclass(frozen=True)
class Verdict:
    done: bool  # it has come to an end, one way or the other
    failure: str | None = None  # why it did not make it (None: it did, or it may still)


def verdict(task: obs.Task | None) -> Verdict:
    if task is None:
        return Verdict(True, "its containers are gone")
    status = task.status()
    if status.last_status == obs.STOPPED:
        return Verdict(True, status.reason or "stopped")
    if status.last_status == obs.RUNNING and status.health == obs.UNHEALTHY:
        return Verdict(True, "Task failed container health checks")
    if status.last_status == obs.RUNNING and status.health == obs.HEALTHY:
        return Verdict(True)
    return Verdict(False)


def checked(task: obs.Task) -> bool:
    """Whether an essential container of `task` has a health check."""
    return any(c.essential and c.spec.get("healthCheck") for c in task.app_containers)


def available(task: obs.Task, now: float) -> bool:
    """RUNNING and HEALTHY, and, without a health check on an essential container, running (since its
    creation) for `UNCHECKED_SETTLE_SECONDS`: when ECS counts a task as healthy."""
    status = task.status()
    if status.last_status != obs.RUNNING or status.health != obs.HEALTHY:
        return False
    return checked(task) or now - task.created >= UNCHECKED_SETTLE_SECONDS


def stable(task: obs.Task, now: float) -> bool:
    """RUNNING and HEALTHY, and, without a health check, RUNNING for `UNCHECKED_STABLE_SECONDS`."""
    status = task.status()
    if status.last_status != obs.RUNNING or status.health != obs.HEALTHY:
        return False
    return checked(task) or now - task.created >= UNCHECKED_STABLE_SECONDS


def seconds_allowed(task_spec: Mapping[str, Any]) -> float:
    """How long a new task of `task_spec` may take to become RUNNING and HEALTHY."""
    worst = MIN_SECONDS
    waits = 0.0
    containers = task_spec.get("containerDefinitions", [])
    awaited = {d.get("containerName") for c in containers for d in c.get("dependsOn") or []}
    for c in containers:
        hc = c.get("healthCheck")
        if hc and c.get("essential", True):
            worst = max(worst, hc.get("startPeriod", 0) + (hc.get("retries", 3) + 1) * (hc.get("interval", 30) + hc.get("timeout", 5)))
        if c.get("name") in awaited:
            waits = max(waits, float(c.get("startTimeout") or dependencies.DEFAULT_START_TIMEOUT))
    return min(worst + waits + 10.0, MAX_SECONDS + waits)
