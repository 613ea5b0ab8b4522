"""The plan: what would change, as data, every action with its reason.

Owns `StartTask`, `StopTask`, `Step` (one wave of a deployment: starts, then stops once the starts are
healthy), `ServicePlan` (per service, with nomad-style counts and the field-level diff) and `Plan`,
plus their text and JSON renderings. It must not decide (the planner does) nor act (the executor does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import spec


@dataclass(frozen=True)
class StartTask:
    cluster: str
    service: str | None
    instance: str
    task_definition: spec.TaskDefinition = field(repr=False)
    reason: str
    launch_type: str = spec.EC2
    group: str = ""

    @property
    def family(self) -> str:
        return self.task_definition.family

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": "start",
            "cluster": self.cluster,
            "service": self.service,
            "instance": self.instance,
            "taskDefinition": f"{self.family}@{self.task_definition.task_hash}",
            "reason": self.reason,
        }


@dataclass(frozen=True)
class StopTask:
    cluster: str
    service: str | None
    instance: str
    task_id: str
    reason: str
    stop_code: str = "ServiceSchedulerInitiated"
    already_stopped: bool = False  # only its containers are left to remove

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": "stop",
            "cluster": self.cluster,
            "service": self.service,
            "instance": self.instance,
            "taskId": self.task_id,
            "reason": self.reason,
            "stopCode": self.stop_code,
        }


@dataclass(frozen=True)
class Step:
    """One wave: start these, wait until they are healthy when `wait`, then stop those."""

    starts: tuple[StartTask, ...] = ()
    stops: tuple[StopTask, ...] = ()
    wait: bool = False


@dataclass(frozen=True)
class ServicePlan:
    cluster: str
    service: str
    family: str
    desired: int
    running: int
    steps: tuple[Step, ...] = ()
    add: int = 0
    replace: int = 0
    remove: int = 0
    unplaced: int = 0
    unplaced_reason: str | None = None
    diff: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    desired_source: str = "manifest"
    pruned: bool = False  # the service is gone from the manifests

    @property
    def changed(self) -> bool:
        return bool(self.add or self.replace or self.remove)

    @property
    def starts(self) -> list[StartTask]:
        return [a for s in self.steps for a in s.starts]

    @property
    def stops(self) -> list[StopTask]:
        return [a for s in self.steps for a in s.stops]

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "service": self.service,
            "taskDefinition": self.family,
            "desiredCount": self.desired,
            "desiredCountSource": self.desired_source,
            "runningCount": self.running,
            "add": self.add,
            "replace": self.replace,
            "remove": self.remove,
            "unplaced": self.unplaced,
            "unplacedReason": self.unplaced_reason,
            "diff": list(self.diff),
            "warnings": list(self.warnings),
            "pruned": self.pruned,
            "steps": [
                {"starts": [a.to_dict() for a in s.starts], "stops": [a.to_dict() for a in s.stops], "wait": s.wait}
                for s in self.steps
            ],
        }


@dataclass(frozen=True)
class Plan:
    services: tuple[ServicePlan, ...] = ()
    unreachable: Mapping[str, str] = field(default_factory=dict)  # endpoint -> error
    strangers: tuple[str, ...] = ()  # unlabelled containers whose names clash with ours
    orphans: tuple[str, ...] = ()  # services on the engines that the manifests no longer declare

    @property
    def add(self) -> int:
        return sum(s.add for s in self.services)

    @property
    def replace(self) -> int:
        return sum(s.replace for s in self.services)

    @property
    def remove(self) -> int:
        return sum(s.remove for s in self.services)

    @property
    def unplaced(self) -> int:
        return sum(s.unplaced for s in self.services)

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.services)

    def summary(self) -> str:
        return f"Plan: {self.add} to add, {self.replace} to replace, {self.remove} to remove."

    def to_dict(self) -> dict[str, Any]:
        return {
            "services": [s.to_dict() for s in self.services],
            "summary": {"add": self.add, "replace": self.replace, "remove": self.remove, "unplaced": self.unplaced},
            "unreachable": dict(self.unreachable),
            "strangers": list(self.strangers),
            "orphans": list(self.orphans),
        }

    def render(self) -> str:
        """Human text: per service what changes and why, then the summary line."""
        lines: list[str] = []
        for s in self.services:
            head = f"service {s.service} (cluster {s.cluster}, {s.family}): {s.running} running, desired {s.desired}"
            if s.desired_source != "manifest":
                head += f", {s.desired_source}"
            lines.append(head)
            for w in s.warnings:
                lines.append(f"  ! {w}")
            if not s.changed and not s.unplaced:
                lines.append("  = no changes")
            for step_no, step in enumerate(s.steps, 1):
                prefix = f"  [{step_no}] " if len(s.steps) > 1 else "  "
                for a in step.starts:
                    lines.append(f"{prefix}+ start task on {a.instance}: {a.reason}")
                for a in step.stops:
                    lines.append(f"{prefix}- stop task {a.task_id[:12]} on {a.instance}: {a.reason}")
            if s.diff:
                lines.append("  ~ changes:")
                lines.extend(f"      {d}" for d in s.diff)
            if s.unplaced:
                lines.append(f"  ! {s.unplaced} task(s) cannot be placed: {s.unplaced_reason}")
        for endpoint, error in sorted(self.unreachable.items()):
            lines.append(f"! engine {endpoint} is unreachable: {error}")
        for name in self.strangers:
            lines.append(f"! container {name} is not managed by reconciler; left alone")
        for name in self.orphans:
            lines.append(f"! service {name} runs but is not in the manifests (apply --prune removes it)")
        lines.append(self.summary())
        return "\n".join(lines)
