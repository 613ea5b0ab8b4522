"""A task's `dependsOn` ordering as state: which created containers may start now, and which never can.

Owns ECS's container dependency conditions evaluated against observed containers: START (the dependency
has been started), COMPLETE (it exited), SUCCESS (it exited 0), HEALTHY (its health check passed), the
`startTimeout` of the container depended on (as ECS: containerA gives up on containerB once B's
startTimeout passed; counted from B's start, else the task's creation), and the
creation order (dependencies and `volumesFrom` sources first). Each reconcile pass asks it about every
PENDING task, so a task moves on as soon as a condition holds, with nothing waiting inside a worker.
Pure: no I/O, and the time is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.model import observed as obs

DEFAULT_START_TIMEOUT = 180.0  # seconds, as ECS when startTimeout is not set


@dataclass(frozen=True)
class Progress:
    ready: tuple[str, ...] = ()  # created containers whose conditions all hold: start them now
    failure: str | None = None  # a condition that cannot be met any more (the task failed to start)
    waiting: tuple[str, ...] = ()  # created containers still waiting on a dependency


def _met(condition: str, dep: obs.Container) -> bool | None:
    """True when met, False while it may still be, None when it never can be."""
    if condition == "START":
        return dep.state != "created"
    if dep.exited:
        if condition == "COMPLETE" or (condition == "SUCCESS" and dep.exit_code == 0):
            return True
        return None
    if condition == "HEALTHY":
        if dep.health == "healthy":
            return True
        if dep.health == "unhealthy":
            return None
    return False


def progress(task: obs.Task, now: float) -> Progress:
    """What to do about the created (not yet started) containers of `task`."""
    by_name = {c.container: c for c in task.app_containers}
    ready: list[str] = []
    waiting: list[str] = []
    for c in task.app_containers:
        if c.state != "created":
            continue
        verdict: bool | None = True
        for dep in c.spec.get("dependsOn") or []:
            name, condition = dep.get("containerName", ""), dep.get("condition", "START")
            other = by_name.get(name)
            met = _met(condition, other) if other is not None else None
            if met is None:
                why = f"dependency {name} is missing" if other is None else _why_never(name, condition, other)
                return Progress(failure=f"container {c.container}: {why}, so condition {condition} cannot be met")
            if not met:
                verdict = False
                assert other is not None
                timeout = float(other.spec.get("startTimeout") or DEFAULT_START_TIMEOUT)
                since = other.started_at or task.created
                if since and now - since > timeout:
                    return Progress(
                        failure=f"container {c.container}: timed out after {timeout:.0f}s waiting for {name} to be {condition}"
                    )
        (ready if verdict else waiting).append(c.container)
    return Progress(ready=tuple(sorted(ready)), waiting=tuple(sorted(waiting)))


def _why_never(name: str, condition: str, dep: obs.Container) -> str:
    if dep.exited:
        text = obs.explain_exit(dep)
        prefix = f"container {dep.container} "
        return f"dependency {name} {text[len(prefix):]}" if text.startswith(prefix) else f"dependency {name}: {text}"
    return f"dependency {name} is unhealthy"


def creation_order(containers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Containers ordered so that dependencies (dependsOn, volumesFrom) come first; stable by name."""
    by_name = {c["name"]: dict(c) for c in containers}
    order: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name not in by_name or name in path:
            return
        c = by_name[name]
        for dep in c.get("dependsOn") or []:
            visit(dep.get("containerName", ""), path + (name,))
        for v in c.get("volumesFrom") or []:
            visit(v.get("sourceContainer", ""), path + (name,))
        seen.add(name)
        order.append(c)

    for name in sorted(by_name):
        visit(name, ())
    return order


def independent(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    """Containers that wait on nothing: a new task starts these at once, the rest on later passes."""
    return [c["name"] for c in creation_order(containers) if not c.get("dependsOn")]
