"""The plan: what would change, as data, every action with its reason.

Owns the actions (`StartTask`, `StopTask`, `StartContainers`: the next containers of a pending task whose
`dependsOn` conditions now hold), `Step` (one reconcile pass's worth of actions, launched together),
`ServicePlan` (per service: the steps, nomad-style counts, what the rollout waits for, the field-level
diff) and `Plan`, plus their text and JSON renderings. Only a plan's first step is acted on: later steps
are the planner's projection of the passes that follow once what the rollout waits for has happened.
It must not decide (the planner does) nor act (`actions` does).
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
    deployment: str = ""  # the deployment (ecs-svc/...) the task belongs to, once the history is known

    @property
    def family(self) -> str:
        return self.task_definition.family

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": "start",
            "cluster": self.cluster,
            "service": self.service,
            "instance": self.instance,
            "taskDefinition": self.task_definition.ref if self.task_definition.revision is not None
            else f"{self.family}@{self.task_definition.task_hash}",
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
class StartContainers:
    """Starts containers of a task that was created earlier and waits on `dependsOn` (its PENDING phase)."""

    cluster: str
    service: str | None
    instance: str
    task_id: str
    containers: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": "start-containers",
            "cluster": self.cluster,
            "service": self.service,
            "instance": self.instance,
            "taskId": self.task_id,
            "containers": list(self.containers),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Step:
    """One pass's actions, launched together. `after` says what must have happened before a projected step
    can begin ("" for the first step: it is what a pass does now)."""

    starts: tuple[StartTask, ...] = ()
    stops: tuple[StopTask, ...] = ()
    advances: tuple[StartContainers, ...] = ()
    after: str = ""

    @property
    def empty(self) -> bool:
        return not (self.starts or self.stops or self.advances)


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
    waiting: tuple[str, ...] = ()  # what the rollout waits for before its next step ("2 new task(s) to become healthy")
    advance: int = 0  # pending tasks whose next containers start now
    deployment: str = ""  # what the service's deployment is doing, in one line (from its cluster's history)

    @property
    def changed(self) -> bool:
        return bool(self.add or self.replace or self.remove or self.advance)

    @property
    def now(self) -> Step:
        """What a pass does now: the first step, unless the rollout is waiting."""
        return self.steps[0] if self.steps and not self.steps[0].after else Step()

    @property
    def settled(self) -> bool:
        """Nothing to do and nothing to wait for."""
        return not self.steps and not self.waiting

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
            "advance": self.advance,
            "waiting": list(self.waiting),
            "deployment": self.deployment,
            "steps": [
                {
                    "starts": [a.to_dict() for a in s.starts],
                    "stops": [a.to_dict() for a in s.stops],
                    "startContainers": [a.to_dict() for a in s.advances],
                    "after": s.after or None,
                }
                for s in self.steps
            ],
        }


@dataclass(frozen=True)
class Plan:
    services: tuple[ServicePlan, ...] = ()
    unreachable: Mapping[str, str] = field(default_factory=dict)  # endpoint -> error
    strangers: tuple[str, ...] = ()  # unlabelled containers whose names clash with ours
    orphans: tuple[str, ...] = ()  # services on the engines that the manifests no longer declare
    one_off: tuple[StartContainers | StopTask, ...] = ()  # one-off tasks (run-task) to move on or clean up

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
        return any(s.changed for s in self.services) or bool(self.one_off)

    @property
    def advance(self) -> int:
        return sum(s.advance for s in self.services) + sum(1 for a in self.one_off if isinstance(a, StartContainers))

    @property
    def settled(self) -> bool:
        """Nothing to do now, nothing any rollout waits for."""
        return not self.changed and all(s.settled for s in self.services)

    def summary(self) -> str:
        line = f"Plan: {self.add} to add, {self.replace} to replace, {self.remove} to remove"
        if self.advance:
            line += f", {self.advance} pending to move on"
        waiting = sum(1 for s in self.services if s.waiting and s.now.empty)
        if waiting:
            line += f"; {waiting} service(s) mid-rollout, waiting"
        return line + "."

    def to_dict(self) -> dict[str, Any]:
        return {
            "services": [s.to_dict() for s in self.services],
            "summary": {"add": self.add, "replace": self.replace, "remove": self.remove, "unplaced": self.unplaced},
            "unreachable": dict(self.unreachable),
            "strangers": list(self.strangers),
            "orphans": list(self.orphans),
            "oneOff": [a.to_dict() for a in self.one_off],
        }

    def render(self) -> str:
        """Human text: per service what changes and why, then the summary line."""
        lines: list[str] = []
        for s in self.services:
            head = f"service {s.service} (cluster {s.cluster}, {s.family}): {s.running} running, desired {s.desired}"
            if s.desired_source != "manifest":
                head += f", {s.desired_source}"
            lines.append(head)
            if s.deployment:
                lines.append(f"  @ {s.deployment}")
            for w in s.warnings:
                lines.append(f"  ! {w}")
            if not s.changed and not s.unplaced and not s.waiting:
                lines.append("  = no changes")
            acting = bool(s.steps) and not s.steps[0].after
            if s.waiting and not acting:
                lines.append(f"  … waiting for {' and '.join(s.waiting)}")
            for step_no, step in enumerate(s.steps, 1):
                prefix = f"  [{step_no}] " if len(s.steps) > 1 else "  "
                if step.after:
                    lines.append(f"  [{step_no}] once {step.after}:")
                for a in step.advances:
                    lines.append(f"{prefix}> start {', '.join(a.containers)} of task {a.task_id[:12]} on {a.instance}: {a.reason}")
                for a in step.starts:
                    lines.append(f"{prefix}+ start task on {a.instance}: {a.reason}")
                for a in step.stops:
                    lines.append(f"{prefix}- stop task {a.task_id[:12]} on {a.instance}: {a.reason}")
                if step_no == 1 and acting and s.waiting:
                    lines.append(f"  … then waits for {' and '.join(s.waiting)}")
            if s.diff:
                lines.append("  ~ changes:")
                lines.extend(f"      {d}" for d in s.diff)
            if s.unplaced:
                lines.append(f"  ! {s.unplaced} task(s) cannot be placed: {s.unplaced_reason}")
        for a in self.one_off:
            if isinstance(a, StartContainers):
                lines.append(f"one-off task {a.task_id[:12]} on {a.instance}: start {', '.join(a.containers)}: {a.reason}")
            else:
                lines.append(f"one-off task {a.task_id[:12]} on {a.instance}: remove: {a.reason}")
        for endpoint, error in sorted(self.unreachable.items()):
            lines.append(f"! engine {endpoint} is unreachable: {error}")
        for name in self.strangers:
            lines.append(f"! container {name} is not managed by reconciler; left alone")
        for name in self.orphans:
            lines.append(f"! service {name} runs but is not in the manifests (apply --prune removes it)")
        lines.append(self.summary())
        return "\n".join(lines)
