"""Building one task on one engine, and starting the next containers of a task that waits on `dependsOn`.

Owns the mechanics of a new task: the cluster policy check at start, its images, the awsvpc namespace
holder, the per-task bridge network, volumes, environment files and secrets resolved against the task
definition's manifest directory, creating every container with its labels, and starting the containers
that wait on nothing (and those whose only conditions are START of containers it just started). The rest
start on later passes, once the planner sees their conditions hold. A start that fails, for any reason,
is a failed `ActionResult` and everything it made is removed, so nothing is left half-made that the next
pass could not finish (what an engine that stopped answering midway keeps carries the task's labels, and
the next pass finishes or removes it). It must not decide what to start, must not wait for a condition,
and must not put resolved environment or secret values anywhere but the container request.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler import labels as L
from reconciler import observe, resolve
from reconciler.actions.images import Images
from reconciler.actions.result import ActionResult, TaskFailed, failure
from reconciler.clock import SYSTEM, Clock
from reconciler.engine import api, pause, translate
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import dependencies

Slot = Callable[[str], threading.Semaphore]  # endpoint -> the semaphore that bounds creates on it


@dataclasses.dataclass
class _Made:
    """What a start made so far, in order: removed again if the start fails."""

    containers: list[str] = dataclasses.field(default_factory=list)
    extras: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # ("network" | "volume", name)


class Launcher:
    def __init__(
        self,
        engines: observe.Engines,
        images: Images,
        slot: Slot,
        environ: Mapping[str, str] | None = None,
        started_by: str = "reconciler",
        clock: Clock = SYSTEM,
    ):
        self.engines = engines
        self.images = images
        self.slot = slot
        self.environ = environ
        self.started_by = started_by
        self.clock = clock

    def start(self, desired: spec.DesiredState, action: P.StartTask, task_id: str) -> ActionResult:
        """Creates task `task_id` and starts its first containers. Never raises for one task's failure."""
        t0 = self.clock.monotonic()
        made = _Made()
        engine: api.Engine | None = None
        try:
            cluster, inst, engine = instance(desired, self.engines, action.cluster, action.instance)
            with self.slot(inst.endpoint):
                ctx, order = self._create(action, cluster, inst, engine, task_id, made)
                self._start_first(engine, ctx, order)
        except Exception as e:  # noqa: BLE001 - one task's failure, whatever it is, is reported, not raised
            if engine is not None:
                discard(engine, made)
            return ActionResult("start", action.cluster, action.service, action.instance, task_id, False, failure(e),
                                self.clock.monotonic() - t0)
        return ActionResult("start", action.cluster, action.service, action.instance, task_id, True, action.reason,
                            self.clock.monotonic() - t0)

    def advance(self, desired: spec.DesiredState, action: P.StartContainers) -> ActionResult:
        """Starts the named created containers of a pending task (their conditions hold)."""
        t0 = self.clock.monotonic()
        try:
            _, inst, engine = instance(desired, self.engines, action.cluster, action.instance)
            raw = engine.list_containers(L.selector(action.cluster, task=action.task_id))
            ids = {(r.get("Labels") or {}).get(L.CONTAINER): r["Id"] for r in raw}
            with self.slot(inst.endpoint):
                for name in action.containers:
                    if name not in ids:
                        raise TaskFailed(f"container {name} of the task is gone")
                    engine.start_container(ids[name])
        except Exception as e:  # noqa: BLE001 - reported; the next pass sees what the engine has
            return ActionResult("advance", action.cluster, action.service, action.instance, action.task_id, False,
                                failure(e), self.clock.monotonic() - t0)
        return ActionResult("advance", action.cluster, action.service, action.instance, action.task_id, True,
                            f"started {', '.join(action.containers)}: {action.reason}", self.clock.monotonic() - t0)

    # -- building ------------------------------------------------------------------------------------

    def _create(
        self, action: P.StartTask, cluster: spec.Cluster, inst: spec.Instance, engine: api.Engine, task_id: str, made: _Made
    ) -> tuple[translate.TaskContext, list[dict[str, Any]]]:
        td = action.task_definition
        check_policy(cluster, td)
        containers = [dict(c) for c in td.containers]
        for c in containers:
            self.images.ensure(engine, c["image"], resolve.registry_auth(c, cluster.credentials_file))
        base_dir = os.path.dirname(td.source)
        env = {c["name"]: resolve.environment(c, self.environ, base_dir) for c in containers}
        ctx = translate.TaskContext(
            cluster=cluster.name,
            instance=inst.name,
            task_id=task_id,
            family=td.family,
            task_hash=td.task_hash,
            group=action.group or (f"service:{action.service}" if action.service else f"family:{td.family}"),
            service=action.service,
            task_spec=td.spec,
            publish_address=inst.publish_address,
            started_by=action.deployment or self.started_by,
            created_at=datetime.fromtimestamp(self.clock.now(), UTC).isoformat(timespec="seconds"),
            revision=td.revision,
            deployment=action.deployment,
        )
        mode = td.network_mode
        if mode == "awsvpc":
            self.images.ensure(engine, pause.PAUSE_IMAGE, None)
            holder = engine.create_container(translate.pause_request(ctx, pause.PAUSE_IMAGE))
            made.containers.append(holder)
            engine.start_container(holder)
            ctx = dataclasses.replace(ctx, namespace_holder=holder)
        elif mode == "bridge" and len(containers) > 1:
            name = translate.network_name(translate.task_owner(ctx), task_id)
            engine.create_network(name, L.selector(cluster.name, task=task_id))
            made.extras.append(("network", name))
            ctx = dataclasses.replace(ctx, network=name)
        volumes = {v["name"]: self._volume(engine, ctx, v, made) for v in td.spec.get("volumes", [])}
        ctx = dataclasses.replace(ctx, volumes=volumes)
        order = dependencies.creation_order(containers)
        ids: dict[str, str] = {}
        for c in order:
            request = translate.container_request(c, dataclasses.replace(ctx, container_ids=dict(ids)), env[c["name"]])
            cid = self._create_container(engine, request)
            made.containers.append(cid)
            ids[c["name"]] = cid
        return dataclasses.replace(ctx, container_ids=ids), order

    def _create_container(self, engine: api.Engine, request: api.ContainerCreate) -> str:
        for attempt in (1, 2):
            try:
                return engine.create_container(request)
            except api.NotFound:
                if attempt == 2:
                    raise
                self.images.forget(engine, request.image)  # removed behind our back: pull it again
                self.images.ensure(engine, request.image, None)
            except api.EngineError as e:
                if e.status == 409:
                    raise TaskFailed(f"container name {request.name} is taken by a container reconciler does not manage; left alone") from None
                raise
        raise AssertionError("unreachable")

    def _volume(self, engine: api.Engine, ctx: translate.TaskContext, v: Mapping[str, Any], made: _Made) -> str:
        host = (v.get("host") or {}).get("sourcePath")
        if host:
            return host
        dvc = v.get("dockerVolumeConfiguration") or {}
        if dvc.get("scope") == "shared":
            if not engine.has_volume(v["name"]):
                if not dvc.get("autoprovision"):
                    raise TaskFailed(f"shared volume {v['name']} does not exist and autoprovision is off")
                engine.create_volume(v["name"], dvc.get("driver", "local"), dvc.get("driverOpts") or {},
                                     {**(dvc.get("labels") or {}), **L.selector(ctx.cluster)})
            return v["name"]
        name = translate.volume_name(translate.task_owner(ctx), ctx.task_id, v["name"])
        engine.create_volume(name, dvc.get("driver", "local"), dvc.get("driverOpts") or {},
                             {**(dvc.get("labels") or {}), **L.selector(ctx.cluster, task=ctx.task_id)})
        made.extras.append(("volume", name))
        return name

    def _start_first(self, engine: api.Engine, ctx: translate.TaskContext, order: list[dict[str, Any]]) -> None:
        """Starts the containers that wait on nothing, then those whose every condition is START of a
        container started here; anything else is left for a later pass."""
        started: set[str] = set()
        for c in order:
            deps = c.get("dependsOn") or []
            if all(d.get("condition") == "START" and d.get("containerName") in started for d in deps):
                engine.start_container(ctx.container_ids[c["name"]])
                started.add(c["name"])


def instance(
    desired: spec.DesiredState, engines: observe.Engines, cluster_name: str, name: str
) -> tuple[spec.Cluster, spec.Instance, api.Engine]:
    cluster = desired.clusters.get(cluster_name)
    inst = cluster.instance(name) if cluster else None
    if cluster is None or inst is None:
        raise api.EngineError(name, f"instance {name} is not declared in cluster {cluster_name}")
    return cluster, inst, engines.get(inst)


def check_policy(cluster: spec.Cluster, td: spec.TaskDefinition) -> None:
    for c in td.containers:
        if c.get("privileged") and not cluster.policy.allow_privileged:
            raise TaskFailed(f"container {c['name']} is privileged but cluster {cluster.name} does not allow it")
    allowed = cluster.policy.allowed_host_paths
    for v in td.spec.get("volumes", []):
        path = (v.get("host") or {}).get("sourcePath")
        if path and allowed is not None and not any(_under(path, a) for a in allowed):
            raise TaskFailed(f"host path {path} of volume {v['name']} is outside the cluster's allowedHostPaths")


def _under(path: str, prefix: str) -> bool:
    """Whether `path` lies inside `prefix`, by whole components after normalising (`/data/../etc` does not)."""
    path, prefix = os.path.normpath(path), os.path.normpath(prefix)
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def discard(engine: api.Engine, made: _Made) -> None:
    """Removes what a failed start made. Best effort: what an engine that stops answering midway keeps
    carries the task's labels, so the next pass sees it and removes it (its network and volumes in `gc`)."""
    for cid in reversed(made.containers):
        try:
            engine.remove_container(cid)
        except Exception:  # noqa: BLE001 - best effort; the start's own error is what gets reported
            pass
    for kind, name in made.extras:
        try:
            (engine.remove_network if kind == "network" else engine.remove_volume)(name)
        except Exception:  # noqa: BLE001 - as above
            pass
