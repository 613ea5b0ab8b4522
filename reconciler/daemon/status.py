"""The daemon's `/status` document: a view of a controller snapshot.

Owns `Snapshot` (a consistent copy of what the controller knows) and the JSON shape of `/status` (readiness, the applied commit, manifest errors, the last successful
reconcile and error, queue depth, per service the desired and observed counts with the work in flight,
tasks, crash-loop state, and the cluster locks). Pure over the snapshot: it must not observe, plan or act.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import views
from reconciler.daemon import crashloop
from reconciler.model import history as H
from reconciler.model import inflight as F
from reconciler.model import observed as obs
from reconciler.model import spec
from reconciler.planning import deployments


@dataclass(frozen=True)
class Snapshot:
    desired: spec.DesiredState | None
    observed: Mapping[str, obs.ClusterState]
    crash: Mapping[str, crashloop.Backoff]
    counts: Mapping[str, tuple[int, str]]
    inflight: F.InFlight
    ready: bool
    revision: str | None
    manifest_errors: tuple[str, ...]
    last_success: float | None
    last_error: str | None
    queue_depth: int
    locks: Mapping[str, Any] | None
    histories: Mapping[str, H.History] = None  # type: ignore[assignment]


def view(snap: Snapshot) -> dict[str, Any]:
    desired = snap.desired
    services = []
    for svc in sorted(desired.services.values(), key=lambda s: (s.cluster, s.name)) if desired else []:
        cstate = snap.observed.get(svc.cluster)
        tasks = cstate.tasks_of(svc.name) if cstate else []
        statuses = [t.status() for t in tasks]
        loop = snap.crash.get(f"{svc.cluster}/{svc.name}")
        count, source = snap.counts.get(svc.name, (svc.desired_count, "manifest"))
        launching = [s for s in snap.inflight.starts_of(svc.cluster, svc.name) if s.task_id not in {t.id for t in tasks}]
        services.append(
            {
                "serviceName": svc.name,
                "cluster": svc.cluster,
                "desiredCount": count,
                "desiredCountSource": source,
                "runningCount": sum(1 for s in statuses if s.last_status == obs.RUNNING),
                "pendingCount": sum(1 for s in statuses if s.last_status == obs.PENDING) + len(launching),
                "stoppingCount": sum(1 for t in tasks if t.id in snap.inflight.stopping),
                "tasks": [
                    {
                        "taskId": t.id,
                        "instance": t.instance,
                        "lastStatus": "DEACTIVATING" if t.id in snap.inflight.stopping else s.last_status,
                        "desiredStatus": "STOPPED" if t.id in snap.inflight.stopping else "RUNNING",
                        "healthStatus": views.health_status(t, s),
                        "taskDefinition": t.ref,
                    }
                    for t, s in zip(tasks, statuses, strict=True)
                ],
                **_deployment(snap, svc, tasks),
                "crashLoop": (
                    {"recentFailures": len(loop.failures), "nextReplacementAt": crashloop.next_attempt(loop)}
                    if loop and loop.failures
                    else None
                ),
            }
        )
    unreachable = sorted(i.endpoint for c in snap.observed.values() for i in c.instances.values() if not i.reachable)
    out: dict[str, Any] = {
        "ready": snap.ready and not unreachable,
        "unreachableEngines": unreachable,
        "appliedCommit": snap.revision,
        "manifests": {"valid": not snap.manifest_errors, "errors": list(snap.manifest_errors)},
        "lastSuccessfulReconcile": snap.last_success,
        "lastError": snap.last_error,
        "queueDepth": snap.queue_depth,
        "services": services,
    }
    if snap.locks is not None:
        out["clusterLocks"] = snap.locks
    return out


def _deployment(snap: Snapshot, svc: spec.Service, tasks: list[obs.Task]) -> dict[str, Any]:
    """The service's revision, deployments and the one-line reason it does not run what it is asked to."""
    history = (snap.histories or {}).get(svc.cluster)
    if history is None:
        return {}
    sh = history.service(svc.name)
    primary = sh.primary
    out: dict[str, Any] = {
        "taskDefinition": primary.task_definition if primary else svc.task_definition_ref,
        "rolloutState": primary.rollout_state if primary else None,
        "deployments": [deployments.deployment_view(d, tasks) for d in sh.deployments if d.status != H.INACTIVE],
        "lastError": None,
    }
    if primary is not None and sh.blocked is not None:
        out["lastError"] = deployments.blocked_line(sh, primary)
    elif primary is not None and primary.rollout_state == H.FAILED:
        out["lastError"] = f"deployment {primary.id} FAILED: {primary.rollout_state_reason}"
    return out
