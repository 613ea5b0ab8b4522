"""`get`, `describe` and `logs`: read-only views of services, tasks and container instances.

Owns rendering observed state in ECS's own shapes (describe-services, describe-tasks,
describe-container-instances) as JSON, and as readable tables by default; `find_task` (a task by id
prefix, shared with tasks.py); and `logs`, which copies container log streams to stdout concurrently and
reports a broken stream as one error line (exit 1) after the others have ended. It must not change
anything: no engine writes, no state directory writes, no planning.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from reconciler import observe, views
from reconciler.commands import common
from reconciler.commands.history import load as load_histories
from reconciler.commands.history import service_history
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.model import history as H
from reconciler.model import observed as obs
from reconciler.model import spec
from reconciler.planning import resources


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)] if rows else [len(h) for h in headers]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers)] + [fmt.format(*[str(x) for x in r]) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _service_view(session: common.Session, svc: spec.Service, history: H.History | None = None) -> dict[str, Any]:
    cstate = session.observed.get(svc.cluster)
    tasks = cstate.tasks_of(svc.name) if cstate else []
    statuses = [t.status() for t in tasks]
    running = sum(1 for s in statuses if s.last_status == obs.RUNNING)
    pending = sum(1 for s in statuses if s.last_status == obs.PENDING)
    desired, source = session.env.state().scaled_counts([svc]).get(svc.name, (svc.desired_count, "manifest"))
    if svc.scheduling_strategy == spec.DAEMON:
        desired = len([i for i in session.desired.clusters[svc.cluster].all_instances() if i.status == spec.ACTIVE])
    view: dict[str, Any] = {
        "serviceName": svc.name,
        "cluster": svc.cluster,
        "status": "ACTIVE",
        "taskDefinition": svc.task_definition_ref,
        "desiredCount": desired,
        "desiredCountSource": source,
        "runningCount": running,
        "pendingCount": pending,
        "launchType": svc.launch_type,
        "schedulingStrategy": svc.scheduling_strategy,
        "deploymentConfiguration": {
            "maximumPercent": svc.maximum_percent,
            "minimumHealthyPercent": svc.minimum_healthy_percent,
            "deploymentCircuitBreaker": {"enable": svc.circuit_breaker, "rollback": svc.rollback},
            "strategy": svc.strategy,
            **({"bakeTimeInMinutes": svc.bake_time / 60} if svc.bake_time else {}),
            **({"alarms": {"alarmNames": list(svc.alarms.names), "enable": svc.alarms.enable, "rollback": svc.alarms.rollback}}
               if svc.alarms.names else {}),
        },
        "placementConstraints": [{"type": c.type, **({"expression": c.expression} if c.expression else {})} for c in svc.constraints],
        "placementStrategy": [{"type": s.type, **({"field": s.field} if s.field else {})} for s in svc.strategies],
    }
    primary = history.service(svc.name).primary if history is not None else None
    if history is not None:
        view.update(service_history(session, svc, history))
    hashes = {t.task_hash for t in tasks if t.status().last_status != obs.STOPPED}
    if primary is None:
        view["state"] = "steady" if running == desired and len(hashes) <= 1 and pending == 0 else "converging"
    elif primary.rollout_state == H.FAILED:
        view["state"] = "FAILED"
    elif primary.rollback_of:
        view["state"] = "rolled back" if primary.rollout_state == H.COMPLETED else "rolling back"
    elif primary.rollout_state == H.IN_PROGRESS:
        view["state"] = "deploying"
    else:
        view["state"] = "steady" if running == desired and hashes <= {primary.task_hash} and pending == 0 else "converging"
    blocked = history.service(svc.name).blocked if history is not None else None
    if blocked is not None and view["state"] == "steady":
        view["state"] = "rolled back"
    view["steady"] = view["state"] == "steady"
    return view


def get(env: Environment, what: str, paths: Sequence[str], cluster: str | None, as_json: bool) -> ExitStatus:
    session = common.open_session(env, paths, cluster)
    try:
        unreachable = session.report_unreachable()
        if what == "services":
            _get_services(env, session, cluster, as_json)
        elif what == "tasks":
            _get_tasks(env, session, cluster, as_json)
        elif what == "instances":
            _get_instances(env, session, cluster, as_json)
        else:
            raise UserError(f"get {what}: expected services, tasks or instances")
    finally:
        session.close()
    return ExitStatus.ERROR if unreachable else ExitStatus.OK


def _get_services(env: Environment, session: common.Session, cluster: str | None, as_json: bool) -> None:
    services = [s for s in sorted(session.desired.services.values(), key=lambda s: (s.cluster, s.name)) if cluster in (None, s.cluster)]
    hs = _histories(env, session, {s.cluster for s in services})
    views = [_service_view(session, s, hs.get(s.cluster)) for s in services]
    if as_json:
        env.out(json.dumps({"services": views}, indent=2, sort_keys=True))
        return
    rows = [
        [v["serviceName"], v["cluster"], v["taskDefinition"].rpartition("/")[2], v["desiredCount"], v["runningCount"],
         v["pendingCount"], v["state"]]
        for v in views
    ]
    env.out(_table(rows, ["SERVICE", "CLUSTER", "TASK DEFINITION", "DESIRED", "RUNNING", "PENDING", "STATE"]))


def _histories(env: Environment, session: common.Session, clusters: set[str]) -> dict[str, H.History]:
    """The clusters' histories; one that cannot be read is left out with a warning (the view still shows
    what runs)."""
    out: dict[str, H.History] = {}
    for name in sorted(clusters):
        try:
            out.update(load_histories(session, [name]))
        except UserError as e:
            cstate = session.observed.get(name)
            if cstate is None or all(i.reachable for i in cstate.instances.values()):  # else said already
                env.err(f"warning: {e.message}")
    return out


def _all_tasks(session: common.Session, cluster: str | None) -> list[obs.Task]:
    return [t for c in sorted(session.observed.values(), key=lambda c: c.cluster) if cluster in (None, c.cluster) for t in c.tasks]


def _ports(task: dict[str, Any]) -> str:
    out = []
    for c in task["containers"]:
        for b in c["networkBindings"]:
            out.append(f"{b['bindIP']}:{b['hostPort']}->{b['containerPort']}/{b['protocol']}")
    return ",".join(sorted(set(out))) or "-"


def _get_tasks(env: Environment, session: common.Session, cluster: str | None, as_json: bool) -> None:
    tasks = [views.describe_task(t) for t in _all_tasks(session, cluster)]
    if as_json:
        env.out(json.dumps({"tasks": tasks}, indent=2, sort_keys=True))
        return
    rows = [
        [t["taskId"][:12], t["group"], t["taskDefinition"], t["containerInstance"], t["lastStatus"], t["healthStatus"],
         ",".join(c["name"] for c in t["containers"]), _ports(t)]
        for t in tasks
    ]
    env.out(_table(rows, ["TASK", "GROUP", "TASK DEFINITION", "INSTANCE", "STATUS", "HEALTH", "CONTAINERS", "PORTS"]))


def _instance_views(session: common.Session, cluster: str | None) -> list[dict[str, Any]]:
    views = []
    for name in sorted(session.desired.clusters):
        if cluster not in (None, name):
            continue
        c = session.desired.clusters[name]
        cstate = session.observed.get(name)
        for inst in c.all_instances():
            istate = cstate.instances.get(inst.name) if cstate else None
            tasks = [t for t in (cstate.tasks if cstate else ()) if t.instance == inst.name]
            live = [t for t in tasks if t.status().last_status == obs.RUNNING]
            cpu = inst.cpu if inst.cpu is not None else (istate.cpu if istate else 0)
            memory = inst.memory if inst.memory is not None else (istate.memory if istate else 0)
            used = [resources.reservation(t.spec) for t in live]
            views.append(
                {
                    "cluster": name,
                    "containerInstance": inst.name,
                    "endpoint": inst.endpoint,
                    "launchType": "FARGATE" if inst.fargate else "EC2",
                    "status": inst.status,
                    "agentConnected": bool(istate and istate.reachable),
                    "error": istate.error if istate else None,
                    "registeredResources": {"CPU": cpu, "MEMORY": memory},
                    "remainingResources": {
                        "CPU": cpu - sum(u["cpu"] for u in used),
                        "MEMORY": memory - sum(u["memory"] for u in used),
                        "PORTS": sorted(f"{p}/{proto}" for u in used for p, proto in u["ports"]),
                    },
                    "runningTasksCount": len(live),
                    "pendingTasksCount": sum(1 for t in tasks if t.status().last_status == obs.PENDING),
                    "attributes": dict(sorted({**(istate.attributes if istate else {}), **inst.attributes}.items())),
                    "versionInfo": {"dockerVersion": istate.server_version if istate else ""},
                }
            )
    return views


def _get_instances(env: Environment, session: common.Session, cluster: str | None, as_json: bool) -> None:
    views = _instance_views(session, cluster)
    if as_json:
        env.out(json.dumps({"containerInstances": views}, indent=2, sort_keys=True))
        return
    rows = []
    for v in views:
        reg, rem = v["registeredResources"], v["remainingResources"]
        attrs = ",".join(f"{k}={val}" for k, val in v["attributes"].items() if not k.startswith(("ecs.os-type", "ecs.cpu-arch")))
        rows.append(
            [v["containerInstance"], v["cluster"], v["endpoint"], v["status"], "yes" if v["agentConnected"] else "NO",
             f"{rem['CPU']}/{reg['CPU']}", f"{rem['MEMORY']}/{reg['MEMORY']}", v["runningTasksCount"], v["pendingTasksCount"], attrs or "-"]
        )
    env.out(_table(rows, ["INSTANCE", "CLUSTER", "ENDPOINT", "STATUS", "CONNECTED", "CPU FREE/REG", "MEM FREE/REG", "RUNNING", "PENDING", "ATTRIBUTES"]))


def find_task(session: common.Session, task_id: str) -> obs.Task:
    matches = [t for c in session.observed.values() for t in c.tasks if t.id.startswith(task_id)]
    if not matches:
        raise UserError(f"no running task with id {task_id}")
    if len(matches) > 1:
        raise UserError(f"task id {task_id} is ambiguous ({len(matches)} tasks); give more characters")
    return matches[0]


def describe(env: Environment, what: str, name: str, paths: Sequence[str]) -> ExitStatus:
    session = common.open_session(env, paths)
    try:
        unreachable = session.report_unreachable()
        if what == "service":
            svc = session.desired.services.get(name)
            if svc is None:
                raise UserError(f"no service named {name} in the manifests")
            view = _service_view(session, svc, _histories(env, session, {svc.cluster}).get(svc.cluster))
            cstate = session.observed.get(svc.cluster)
            view["tasks"] = [views.describe_task(t) for t in (cstate.tasks_of(name) if cstate else [])]
            stopped = [e for e in env.state().stopped_tasks(svc.cluster) if e.get("group") == svc.group]
            view["stoppedTasks"] = stopped[-10:]
            scaling = env.state().scaling(svc.cluster).get(name)
            if svc.auto_scaling and isinstance(scaling, dict):
                view["autoScaling"] = {
                    "minCapacity": svc.auto_scaling.get("minCapacity"),
                    "maxCapacity": svc.auto_scaling.get("maxCapacity"),
                    "lastDecisions": list(scaling.get("decisions") or [])[-5:],
                }
            backoff = env.state().backoff(svc.cluster).get(name)
            if backoff:
                view["crashLoopBackoff"] = backoff
            env.out(json.dumps({"services": [view], "failures": []}, indent=2, sort_keys=True))
        elif what == "task":
            try:
                task = views.describe_task(find_task(session, name))
            except UserError:
                history = [e for c in session.desired.clusters for e in env.state().stopped_tasks(c) if str(e.get("taskId", "")).startswith(name)]
                if not history:
                    raise
                task = history[-1]
            env.out(json.dumps({"tasks": [task]}, indent=2, sort_keys=True))
        else:
            raise UserError(f"describe {what}: expected service or task")
    finally:
        session.close()
    return ExitStatus.ERROR if unreachable else ExitStatus.OK


def logs(env: Environment, target: str, paths: Sequence[str], container: str | None, follow: bool, tail: int | None) -> ExitStatus:
    session = common.open_session(env, paths)
    try:
        if target in session.desired.services:
            svc = session.desired.services[target]
            tasks = session.observed[svc.cluster].tasks_of(target)
        else:
            tasks = [find_task(session, target)]
        streams = []
        for task in tasks:
            cluster = session.desired.clusters[task.cluster]
            inst = cluster.instance(task.instance)
            engine = session.engines.get(inst)
            for c in task.app_containers:
                if container in (None, c.container):
                    streams.append((f"{task.id[:12]}/{c.container}", engine, c.id))
        if not streams:
            raise UserError(f"no container {container} in {target}" if container else f"no containers for {target}")
        errors = _pump_all(env, streams, follow, tail)
    except observe.api.EngineError as e:
        raise UserError(f"engine {e.endpoint}: {e.message}") from None
    finally:
        session.close()
    for line in errors:
        env.err(f"error: {line}")
    return ExitStatus.ERROR if errors else ExitStatus.OK


def _pump_all(env: Environment, streams: list[tuple[str, Any, str]], follow: bool, tail: int | None) -> list[str]:
    """Copies every container's log stream to stdout, one thread each, prefixed by task/container when
    there are several. A stream that breaks does not stop the others: its error is returned, one line
    per stream, for the caller to report once all have ended."""
    prefix = len(streams) > 1
    lock = threading.Lock()
    errors: list[str] = []

    def emit(label: str, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        env.out(f"[{label}] {text}" if prefix else text)

    def pump(label: str, engine: Any, cid: str) -> None:
        buffer = b""
        try:
            for chunk in engine.logs(cid, follow, tail):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                with lock:
                    for line in lines:
                        emit(label, line)
        except observe.api.EngineError as e:
            problem = f"logs of {label}: engine {e.endpoint}: {e.message}"
        except Exception as e:  # noqa: BLE001 - reported after the join instead of a thread traceback
            problem = f"logs of {label}: {type(e).__name__}: {e}"
        else:
            problem = None
        with lock:
            if buffer:
                emit(label, buffer)
            if problem:
                errors.append(problem)

    threads = [threading.Thread(target=pump, args=s, daemon=True) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return errors
