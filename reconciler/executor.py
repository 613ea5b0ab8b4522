"""Carries out a `Plan` through the engine interface: starts and stops tasks, wave by wave.

Owns the mechanics of one task on one engine (images, the awsvpc namespace holder, the per-task
bridge network, volumes, environment files and secrets resolved against the task definition's manifest
directory, creating containers with their labels, starting them in `dependsOn` order, stopping and
removing them, recording stopped tasks), bounded concurrency per engine with parallelism across
engines, and the deployment discipline of a service: each wave's new tasks must be healthy (one
deadline per wave) before that wave's old tasks are stopped. A task that fails to start, for any
reason, is reported as a failed `ActionResult` and what it made is removed, so nothing is left
half-made that the next run could not finish (leftovers of an engine that stopped answering midway carry
the task's labels: the next plan stops that task). A started task that does not become healthy is left
whole for the next plan to replace. It must not decide what to change (the planner did),
must not put resolved environment or secret values anywhere but the container request, and talks to
engines only through `engine.api` (it never imports the docker SDK).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler import labels as L
from reconciler import observe, resolve, state
from reconciler.engine import api, pause, translate
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec

DEFAULT_START_TIMEOUT = 180.0
POLL = 0.1


@dataclass(frozen=True)
class ActionResult:
    action: str  # start | stop | deploy
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


class Executor:
    def __init__(
        self,
        desired: spec.DesiredState,
        engines: observe.Engines,
        state_dir: state.StateDir | None = None,
        concurrency: int = 8,
        on_result: Callable[[ActionResult], None] | None = None,
        environ: Mapping[str, str] | None = None,
        started_by: str = "reconciler",
        on_progress: Callable[[str], None] | None = None,
    ):
        self.desired = desired
        self.engines = engines
        self.state_dir = state_dir
        self.concurrency = max(1, concurrency)
        self.on_result = on_result or (lambda r: None)
        self.on_progress = on_progress or (lambda line: None)
        self.environ = environ
        self.started_by = started_by
        self._slots: dict[str, threading.Semaphore] = {}
        self._images: dict[tuple[str, str], threading.Lock] = {}
        self._present: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.results: list[ActionResult] = []

    # -- plumbing ---------------------------------------------------------------------------------

    def _slot(self, endpoint: str) -> threading.Semaphore:
        with self._lock:
            return self._slots.setdefault(endpoint, threading.Semaphore(self.concurrency))

    def _report(self, result: ActionResult) -> ActionResult:
        with self._lock:
            self.results.append(result)
        self.on_result(result)
        return result

    def _instance(self, cluster: str, name: str) -> tuple[spec.Cluster, spec.Instance, api.Engine]:
        c = self.desired.clusters[cluster]
        inst = c.instance(name)
        if inst is None:
            raise api.EngineError(name, f"instance {name} is not declared in cluster {cluster}")
        return c, inst, self.engines.get(inst)

    # -- plans ------------------------------------------------------------------------------------

    def apply(self, plan: P.Plan) -> list[ActionResult]:
        """Runs every service's waves; services run in parallel, waves of a service in order."""
        services = [s for s in plan.services if s.steps]
        if not services:
            return []
        workers = min(len(services), 32)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="service") as pool:
            list(pool.map(self._service, services))
        return list(self.results)

    def _service(self, sp: P.ServicePlan) -> None:
        for number, step in enumerate(sp.steps, 1):
            started = self._parallel(self.start_task, step.starts)
            failed = [r for r in started if not r.ok]
            if not failed and step.wait:
                failed = self._wait_healthy(list(zip(step.starts, started, strict=True)))
            stops = step.stops if not failed else tuple(s for s in step.stops if s.already_stopped)
            self._parallel(self.stop_task, stops)
            kept = len(step.stops) - len(stops)
            remaining = len(sp.steps) - number
            if failed and (kept or remaining):
                self._report(
                    ActionResult(
                        "deploy", sp.cluster, sp.service, "-", "", False,
                        f"deployment halted: {len(failed)} new task(s) failed; {kept} old task(s) kept running"
                        + (f", {remaining} wave(s) skipped" if remaining else ""),
                    )
                )
            if failed:
                return

    def _parallel(self, fn: Callable[[Any], ActionResult], actions: Iterable[Any]) -> list[ActionResult]:
        actions = list(actions)
        if not actions:
            return []
        if len(actions) == 1:
            return [fn(actions[0])]
        with ThreadPoolExecutor(max_workers=min(len(actions), 64), thread_name_prefix="action") as pool:
            return list(pool.map(fn, actions))

    def _wait_healthy(self, wave: list[tuple[P.StartTask, ActionResult]]) -> list[ActionResult]:
        """Waits until the wave's new tasks are RUNNING and HEALTHY; returns the ones that did not make it.

        One deadline for the whole wave (the longest health timeout of its task definitions), and every
        round polls all its tasks together: one container list per engine."""
        failed: list[ActionResult] = []

        def fail(r: ActionResult, why: object) -> None:
            failed.append(
                self._report(ActionResult("start", r.cluster, r.service, r.instance, r.task_id, False, f"did not become healthy: {why}"))
            )

        pending: dict[tuple[str, str], list[ActionResult]] = {}  # (endpoint, cluster) -> tasks not yet healthy
        engines: dict[tuple[str, str], api.Engine] = {}
        timeout = 0.0
        for action, r in wave:
            if not r.ok:
                continue
            try:
                _, inst, engine = self._instance(r.cluster, r.instance)
            except api.EngineError as e:
                fail(r, e)
                continue
            pending.setdefault((inst.endpoint, r.cluster), []).append(r)
            engines[inst.endpoint, r.cluster] = engine
            timeout = max(timeout, _health_timeout(action.task_definition.spec))
        deadline = time.monotonic() + timeout
        while pending:
            for key in list(pending):
                cluster = key[1]
                try:
                    raw = engines[key].list_containers({L.MANAGED: "true", L.CLUSTER: cluster})
                except api.EngineError as e:
                    for r in pending.pop(key):
                        fail(r, e)
                    continue
                tasks = {t.id: t for t in obs.group_tasks(cluster, "", [obs.container_from_list(c) for c in raw])}
                still = []
                for r in pending[key]:
                    finished, why = _health_verdict(tasks.get(r.task_id))
                    if not finished:
                        still.append(r)
                    elif why is not None:
                        fail(r, why)
                if still:
                    pending[key] = still
                else:
                    del pending[key]
            if not pending:
                break
            if time.monotonic() > deadline:
                for rs in pending.values():
                    for r in rs:
                        fail(r, "timed out waiting for health checks")
                break
            time.sleep(0.25)
        return failed

    # -- starting a task --------------------------------------------------------------------------

    def start_task(self, action: P.StartTask) -> ActionResult:
        """Starts one task. Whatever goes wrong (an engine error, an unreadable file, a bug), what was made
        is removed and the result is a failed `ActionResult`; this never raises for one task's failure."""
        t0 = time.monotonic()
        task_id = uuid.uuid4().hex
        created: list[str] = []
        extras: list[tuple[str, str]] = []  # ("network" | "volume", name) to remove on failure
        engine: api.Engine | None = None
        done, message = False, ""
        try:
            cluster, inst, engine = self._instance(action.cluster, action.instance)
            with self._slot(inst.endpoint):
                ctx, order = self._prepare(action, cluster, inst, engine, task_id, created, extras)
            self._start_in_order(engine, ctx, order, created)
            done = True
        except Exception as e:  # noqa: BLE001 - one task's failure, whatever it is, is reported, not raised
            message = _failure(e)
        finally:
            if not done and engine is not None:
                self._discard(engine, created, extras)
        if not done:
            return self._report(
                ActionResult("start", action.cluster, action.service, action.instance, task_id, False, message, time.monotonic() - t0)
            )
        return self._report(
            ActionResult("start", action.cluster, action.service, action.instance, task_id, True, action.reason, time.monotonic() - t0)
        )

    def _check_policy(self, cluster: spec.Cluster, td: spec.TaskDefinition) -> None:
        for c in td.containers:
            if c.get("privileged") and not cluster.policy.allow_privileged:
                raise TaskFailed(f"container {c['name']} is privileged but cluster {cluster.name} does not allow it")
        allowed = cluster.policy.allowed_host_paths
        for v in td.spec.get("volumes", []):
            path = (v.get("host") or {}).get("sourcePath")
            if path and allowed is not None and not any(_under(path, a) for a in allowed):
                raise TaskFailed(f"host path {path} of volume {v['name']} is outside the cluster's allowedHostPaths")

    def _ensure_image(self, engine: api.Engine, ref: str, auth: Mapping[str, str] | None) -> None:
        key = (engine.endpoint, ref)
        if key in self._present:
            return
        with self._lock:
            lock = self._images.setdefault(key, threading.Lock())
        with lock:
            if key in self._present:
                return
            if not engine.has_image(ref):
                if ref == pause.PAUSE_IMAGE:
                    arch = engine.info().architecture
                    try:
                        image = pause.image_tar(arch)
                    except ValueError as e:
                        raise TaskFailed(f"networkMode awsvpc needs the pause image: {e}") from None
                    engine.load_image_tar(image, ref)
                else:
                    t0 = time.monotonic()
                    self.on_progress(f"pull   {ref} on {engine.endpoint}: pulling")
                    try:
                        engine.pull_image(ref, auth)
                    except api.EngineError as e:
                        self.on_progress(f"pull   {ref} on {engine.endpoint}: FAILED {e.message}")
                        raise
                    self.on_progress(f"pull   {ref} on {engine.endpoint}: done ({time.monotonic() - t0:.1f}s)")
            self._present.add(key)

    def _prepare(
        self,
        action: P.StartTask,
        cluster: spec.Cluster,
        inst: spec.Instance,
        engine: api.Engine,
        task_id: str,
        created: list[str],
        extras: list[tuple[str, str]],
    ) -> tuple[translate.TaskContext, list[dict[str, Any]]]:
        td = action.task_definition
        self._check_policy(cluster, td)
        containers = [dict(c) for c in td.containers]
        for c in containers:
            self._ensure_image(engine, c["image"], resolve.registry_auth(c, cluster.credentials_file))
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
            started_by=self.started_by,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        mode = td.network_mode
        if mode == "awsvpc":
            self._ensure_image(engine, pause.PAUSE_IMAGE, None)
            holder = engine.create_container(translate.pause_request(ctx, pause.PAUSE_IMAGE))
            created.append(holder)
            engine.start_container(holder)
            ctx = _replace(ctx, namespace_holder=holder)
        elif mode == "bridge" and len(containers) > 1:
            name = translate.network_name(translate.task_owner(ctx), task_id)
            engine.create_network(name, {L.MANAGED: "true", L.CLUSTER: cluster.name, L.TASK: task_id})
            extras.append(("network", name))
            ctx = _replace(ctx, network=name)
        volumes: dict[str, str] = {}
        for v in td.spec.get("volumes", []):
            volumes[v["name"]] = self._volume(engine, ctx, v, extras)
        ctx = _replace(ctx, volumes=volumes)
        order = creation_order(containers)
        ids: dict[str, str] = {}
        for c in order:
            request = translate.container_request(c, _replace(ctx, container_ids=dict(ids)), env[c["name"]])
            try:
                cid = engine.create_container(request)
            except api.EngineError as e:
                if e.status == 409:
                    raise TaskFailed(f"container name {request.name} is taken by a container reconciler does not manage; left alone") from None
                raise
            created.append(cid)
            ids[c["name"]] = cid
        return _replace(ctx, container_ids=ids), order

    def _volume(self, engine: api.Engine, ctx: translate.TaskContext, v: Mapping[str, Any], extras: list[tuple[str, str]]) -> str:
        host = (v.get("host") or {}).get("sourcePath")
        if host:
            return host
        dvc = v.get("dockerVolumeConfiguration") or {}
        if dvc.get("scope") == "shared":
            if not engine.has_volume(v["name"]):
                if not dvc.get("autoprovision"):
                    raise TaskFailed(f"shared volume {v['name']} does not exist and autoprovision is off")
                engine.create_volume(v["name"], dvc.get("driver", "local"), dvc.get("driverOpts") or {},
                                     {**(dvc.get("labels") or {}), L.MANAGED: "true", L.CLUSTER: ctx.cluster})
            return v["name"]
        name = translate.volume_name(translate.task_owner(ctx), ctx.task_id, v["name"])
        engine.create_volume(name, dvc.get("driver", "local"), dvc.get("driverOpts") or {},
                             {**(dvc.get("labels") or {}), L.MANAGED: "true", L.CLUSTER: ctx.cluster, L.TASK: ctx.task_id})
        extras.append(("volume", name))
        return name

    def _start_in_order(self, engine: api.Engine, ctx: translate.TaskContext, order: list[dict[str, Any]], created: list[str]) -> None:
        ids = ctx.container_ids
        for c in order:
            for dep in c.get("dependsOn") or []:
                timeout = float(c.get("startTimeout") or DEFAULT_START_TIMEOUT)
                self._await_condition(engine, ids[dep["containerName"]], dep["containerName"], dep["condition"], timeout)
            with self._slot(engine.endpoint):
                engine.start_container(ids[c["name"]])

    def _await_condition(self, engine: api.Engine, cid: str, name: str, condition: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            c = obs.container_from_inspect(engine.inspect_container(cid))
            if condition == "START" and c.state != "created":
                return
            if c.exited:
                if condition == "COMPLETE" or (condition == "SUCCESS" and c.exit_code == 0):
                    return
                raise TaskFailed(f"dependency {name} {obs.explain_exit(c)}, so condition {condition} cannot be met")
            if condition == "HEALTHY":
                if c.health == "healthy":
                    return
                if c.health == "unhealthy":
                    raise TaskFailed(f"dependency {name} is unhealthy, so condition HEALTHY cannot be met")
            if time.monotonic() > deadline:
                raise TaskFailed(f"timed out after {timeout:.0f}s waiting for {name} to be {condition}")
            time.sleep(POLL)

    def _discard(self, engine: api.Engine, created: list[str], extras: list[tuple[str, str]]) -> None:
        """Removes what a failed start made, so no half-made task is left behind. Best effort: what an
        engine that stops answering midway keeps carries the task's labels, so the next run sees it as
        a stopped task and removes it (its network and volumes through `collect_garbage`)."""
        for cid in reversed(created):
            try:
                engine.remove_container(cid)
            except Exception:  # noqa: BLE001 - best effort; the start's own error is what gets reported
                pass
        for kind, name in extras:
            try:
                (engine.remove_network if kind == "network" else engine.remove_volume)(name)
            except Exception:  # noqa: BLE001 - as above
                pass

    # -- stopping a task --------------------------------------------------------------------------

    def stop_task(self, action: P.StopTask) -> ActionResult:
        t0 = time.monotonic()
        try:
            _, inst, engine = self._instance(action.cluster, action.instance)
            with self._slot(inst.endpoint):
                self._stop(engine, action)
        except api.EngineError as e:
            return self._report(
                ActionResult("stop", action.cluster, action.service, action.instance, action.task_id, False, e.message, time.monotonic() - t0)
            )
        return self._report(
            ActionResult("stop", action.cluster, action.service, action.instance, action.task_id, True, action.reason, time.monotonic() - t0)
        )

    def _stop(self, engine: api.Engine, action: P.StopTask) -> None:
        raw = engine.list_containers({L.MANAGED: "true", L.CLUSTER: action.cluster, L.TASK: action.task_id})
        containers = [obs.container_from_list(r) for r in raw]
        tasks = obs.group_tasks(action.cluster, action.instance, containers)
        if not tasks:
            return
        task = tasks[0]
        app = sorted(task.app_containers, key=lambda c: c.container)
        order = [c["name"] for c in creation_order([dict(c.spec) for c in app if c.spec])]
        by_name = {c.container: c for c in app}
        running = [by_name[n] for n in reversed(order) if n in by_name and by_name[n].running]
        if any(by_name[n].spec.get("dependsOn") for n in by_name):
            for c in running:
                engine.stop_container(c.id, int(c.spec.get("stopTimeout", translate.DEFAULT_STOP_TIMEOUT)))
        else:
            self._parallel_containers(lambda c: engine.stop_container(c.id, int(c.spec.get("stopTimeout", translate.DEFAULT_STOP_TIMEOUT))), running)
        final = []
        for c in task.containers:
            try:
                final.append(obs.container_from_inspect(engine.inspect_container(c.id)))
            except api.NotFound:
                final.append(c)
        self._record(action, task, final)
        self._parallel_containers(lambda c: engine.remove_container(c.id), [c for c in task.containers if c.role != L.ROLE_PAUSE])
        for c in task.containers:
            if c.role == L.ROLE_PAUSE:
                engine.remove_container(c.id)
        spec_ = task.spec
        names = task.expected_containers
        owner = task.service or task.family
        if spec_.get("networkMode", "bridge") == "bridge" and len(names) > 1:
            engine.remove_network(translate.network_name(owner, task.id))
        for v in spec_.get("volumes", []):
            if not (v.get("host") or (v.get("dockerVolumeConfiguration") or {}).get("scope") == "shared"):
                engine.remove_volume(translate.volume_name(owner, task.id, v["name"]))

    def _parallel_containers(self, fn: Callable[[obs.Container], None], containers: list[obs.Container]) -> None:
        if len(containers) <= 1:
            for c in containers:
                fn(c)
            return
        with ThreadPoolExecutor(max_workers=min(len(containers), 10)) as pool:
            list(pool.map(fn, containers))

    def _record(self, action: P.StopTask, task: obs.Task, containers: list[obs.Container]) -> None:
        if self.state_dir is None:
            return
        stopped = obs.Task(**{**task.__dict__, "containers": tuple(containers)})
        status = stopped.status()
        reason = action.reason
        code = action.stop_code
        if action.already_stopped and status.reason:
            reason = status.reason
        entry = describe_task(stopped, last_status=obs.STOPPED)
        entry.update({"desiredStatus": "STOPPED", "stopCode": code, "stoppedReason": reason,
                      "stoppedAt": datetime.now(UTC).isoformat(timespec="seconds")})
        try:
            self.state_dir.record_stopped(action.cluster, entry)
        except OSError:
            pass  # history is a convenience; never fail a stop over it

    # -- housekeeping ------------------------------------------------------------------------------

    def collect_garbage(self, observed: Mapping[str, obs.ClusterState]) -> None:
        """Removes per-task networks and volumes whose task has no containers left (an interrupted run)."""
        for name, cstate in observed.items():
            cluster = self.desired.clusters.get(name)
            if cluster is None:
                continue
            live = {t.id for t in cstate.tasks}
            for inst in cluster.all_instances():
                if not cstate.reachable(inst.name):
                    continue
                try:
                    engine = self.engines.get(inst)
                    for net in engine.list_networks({L.MANAGED: "true", L.CLUSTER: name}):
                        if (net.get("Labels") or {}).get(L.TASK) not in live:
                            engine.remove_network(net["Name"])
                    for vol in engine.list_volumes({L.MANAGED: "true", L.CLUSTER: name}):
                        tid = (vol.get("Labels") or {}).get(L.TASK)
                        if tid and tid not in live:
                            engine.remove_volume(vol["Name"])
                except api.EngineError:
                    continue


def creation_order(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Containers ordered so that dependencies (dependsOn, volumesFrom) come first; stable by name."""
    by_name = {c["name"]: c for c in containers}
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


def _health_verdict(task: obs.Task | None) -> tuple[bool, str | None]:
    """(finished, why it failed): (True, None) once RUNNING and HEALTHY, (False, None) while it may still be."""
    if task is None:
        return True, "its containers are gone"
    status = task.status()
    if status.last_status == obs.STOPPED:
        return True, status.reason or "stopped"
    if status.last_status == obs.RUNNING and status.health == obs.UNHEALTHY:
        return True, "Task failed container health checks"
    if status.last_status == obs.RUNNING and status.health == obs.HEALTHY:
        return True, None
    return False, None


def _health_timeout(task_spec: Mapping[str, Any]) -> float:
    worst = 10.0
    for c in task_spec.get("containerDefinitions", []):
        hc = c.get("healthCheck")
        if hc and c.get("essential", True):
            worst = max(worst, hc.get("startPeriod", 0) + (hc.get("retries", 3) + 1) * (hc.get("interval", 30) + hc.get("timeout", 5)))
    return min(worst + 10.0, 900.0)


def _failure(e: Exception) -> str:
    """The one-line message of a failed start. Expected failures speak for themselves; anything else
    names its type, so a bug reads as one rather than as an engine's answer."""
    if isinstance(e, api.EngineError):
        return e.message
    if isinstance(e, (TaskFailed, resolve.ResolveError)):
        return str(e)
    return f"unexpected {type(e).__name__}: {e}"


def _under(path: str, prefix: str) -> bool:
    """Whether `path` lies inside `prefix`, by whole components after normalising (`/data/../etc` does not)."""
    path, prefix = os.path.normpath(path), os.path.normpath(prefix)
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _replace(ctx: translate.TaskContext, **changes: Any) -> translate.TaskContext:
    return dataclasses.replace(ctx, **changes)


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
        "taskDefinition": f"{task.family}@{task.task_hash}",
        "lastStatus": last_status or status.last_status,
        "desiredStatus": "RUNNING",
        "healthStatus": status.health,
        "startedBy": task.started_by,
        "createdAt": datetime.fromtimestamp(task.created, UTC).isoformat(timespec="seconds") if task.created else None,
        "containers": containers,
    }
    if status.last_status == obs.STOPPED:
        out["stopCode"] = status.stop_code
        out["stoppedReason"] = status.reason
    return out
