"""Observed tasks rendered in ECS's shapes (describe-tasks), for `describe`, `get`, the stopped-task history
and the daemon's views. Pure: it must not call an engine or decide anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from reconciler import labels as L
from reconciler.model import history as H
from reconciler.model import observed as obs


def health_status(task: obs.Task, status: obs.TaskStatus) -> str:
    """The task's healthStatus as ECS reports it: UNKNOWN when none of its essential containers has a
    health check (the planner's HEALTHY for such a task means only "nothing says otherwise")."""
    if any(c.essential and c.spec.get("healthCheck") for c in task.app_containers):
        return status.health
    return "UNKNOWN"


def describe_task(task: obs.Task, last_status: str | None = None) -> dict[str, Any]:
    """A task in the shape of ECS describe-tasks."""
    status = task.status()
    containers = []
    for c in task.app_containers:
        entry: dict[str, Any] = {
            "name": c.container,
            "image": c.image,
            "runtimeId": c.id,
            "lastStatus": "RUNNING" if c.running else ("STOPPED" if c.exited else "PENDING"),
            "healthStatus": {"healthy": "HEALTHY", "unhealthy": "UNHEALTHY"}.get(c.health or "", "UNKNOWN"),
            "networkBindings": [
                {"bindIP": b.bind_ip, "containerPort": b.container_port, "hostPort": b.host_port, "protocol": b.protocol}
                for b in c.bindings
            ],
            "essential": c.essential,
        }
        if c.exited:
            entry["exitCode"] = c.exit_code
            entry["reason"] = obs.explain_exit(c)
        containers.append(entry)
    pause_bindings = [b for c in task.containers if c.role == L.ROLE_PAUSE for b in c.bindings]
    if pause_bindings:
        for entry in containers:
            ports = {p.get("containerPort") for p in next((dict(c.spec) for c in task.app_containers if c.container == entry["name"]), {}).get("portMappings", [])}
            entry["networkBindings"] = [
                {"bindIP": b.bind_ip, "containerPort": b.container_port, "hostPort": b.host_port, "protocol": b.protocol}
                for b in pause_bindings if b.container_port in ports
            ]
    out = {
        "taskId": task.id,
        "cluster": task.cluster,
        "containerInstance": task.instance,
        "group": task.group,
        "taskDefinition": task.ref,
        **({"taskDefinitionArn": H.arn("task-definition", task.ref)} if task.revision is not None else {}),
        "lastStatus": last_status or status.last_status,
        "desiredStatus": "RUNNING",
        "healthStatus": health_status(task, status),
        "startedBy": task.started_by,
        "createdAt": datetime.fromtimestamp(task.created, UTC).isoformat(timespec="seconds") if task.created else None,
        "containers": containers,
    }
    if status.last_status == obs.STOPPED:
        out["stopCode"] = status.stop_code
        out["stoppedReason"] = status.reason
    return out
