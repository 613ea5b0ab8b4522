"""Observed state: what runs on the engines, as frozen values parsed from Engine API JSON.

Owns `Container`, `Task`, `InstanceState`, `ClusterState`, the pure parsing of list/inspect JSON into
them (grouping containers into tasks by their task-id label), the derived ECS task status
(lastStatus, health, stop code and reason), and whether a task ever became available (from the start
and finish times and health-probe log of an inspect). It must not call an engine (`observe` fetches
the JSON) nor read a clock: whoever needs "now" passes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from reconciler import labels as L

RUNNING = "RUNNING"
PENDING = "PENDING"
STOPPED = "STOPPED"
UNKNOWN = "UNKNOWN"
HEALTHY = "HEALTHY"
UNHEALTHY = "UNHEALTHY"

_EXITED = re.compile(r"Exited \((-?\d+)\)")
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)


@dataclass(frozen=True)
class Binding:
    container_port: int
    host_port: int
    protocol: str = "tcp"
    bind_ip: str = "0.0.0.0"


@dataclass(frozen=True)
class Container:
    id: str
    name: str  # the engine's container name
    task_id: str
    container: str  # the container definition's name
    role: str
    state: str  # created | running | restarting | paused | exited | dead | removing
    exit_code: int | None = None
    health: str | None = None  # healthy | unhealthy | starting | None (no health check)
    oom_killed: bool | None = None  # known only after an inspect
    error: str | None = None
    created: float = 0.0
    image: str = ""
    bindings: tuple[Binding, ...] = ()
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    labels: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    started_at: float | None = None  # epoch seconds of the last start; None: never started, or not inspected
    finished_at: float | None = None  # epoch seconds of the last exit; None: has not exited (or not inspected)
    # True: passed a health probe (a probe with exit code 0 in the engine's log, or healthy now); False: has a
    # health check that never passed as far as the engine remembers; None: no health check. From a list entry
    # only the current health is known (healthy -> True, starting/unhealthy -> False).
    ever_healthy: bool | None = None

    @property
    def essential(self) -> bool:
        return bool(self.spec.get("essential", True))

    @property
    def has_health_check(self) -> bool:
        return self.ever_healthy is not None or self.health is not None or bool(self.spec.get("healthCheck"))

    def ran_for(self, now: float | None = None) -> float | None:
        """Seconds from the last start to the exit, or to `now` while running; None when not known.

        A running container's FinishedAt is that of an earlier run, so only an exited one's is used."""
        if self.started_at is None:
            return None
        end = now if self.running else self.finished_at if self.exited else None
        if end is None or end < self.started_at:
            return None
        return end - self.started_at

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting", "paused")

    @property
    def exited(self) -> bool:
        return self.state in ("exited", "dead")


@dataclass(frozen=True)
class Task:
    id: str
    cluster: str
    instance: str
    group: str
    family: str
    task_hash: str
    service: str | None
    containers: tuple[Container, ...]
    task_spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    created: float = 0.0
    started_by: str = ""
    revision: int | None = None  # the registered revision it runs (None: started before revisions existed)
    deployment: str = ""  # the deployment that started it

    @property
    def ref(self) -> str:
        """`family:N`, or `family@hash` for a task started before its revision was numbered."""
        return f"{self.family}:{self.revision}" if self.revision is not None else f"{self.family}@{self.task_hash}"

    @property
    def app_containers(self) -> tuple[Container, ...]:
        return tuple(c for c in self.containers if c.role != L.ROLE_PAUSE)

    @property
    def spec(self) -> dict[str, Any]:
        """The canonical spec this task was created from, rebuilt from its containers' labels."""
        containers = sorted((dict(c.spec) for c in self.app_containers), key=lambda c: str(c.get("name", "")))
        task_level = {k: v for k, v in self.task_spec.items() if k != "containerNames"}
        return {**task_level, "containerDefinitions": containers}

    @property
    def expected_containers(self) -> tuple[str, ...]:
        return tuple(self.task_spec.get("containerNames", ()))

    def status(self) -> TaskStatus:
        return task_status(self)

    @property
    def stopped_at(self) -> float | None:
        """When the task stopped: the first exit of an essential container (None if none is known)."""
        ends = [c.finished_at for c in self.app_containers if c.essential and c.exited and c.finished_at is not None]
        return min(ends) if ends else None

    def ever_available(self, min_run: float, now: float | None = None) -> bool:
        """Whether the task ever became available: every essential container with a health check passed a
        probe, and every essential container without one ran for at least `min_run` seconds (callers pass
        the service's health check grace period, or 10 s).

        An essential container still running counts its run up to `now` if given, else up to when the task
        stopped (`stopped_at`). A task missing containers it was created with, or whose start or run time
        is not known (a container never started, or not inspected), did not become available.
        """
        app = self.app_containers
        essential = [c for c in app if c.essential]
        present = {c.container for c in app}
        if not essential or any(n not in present for n in self.expected_containers):
            return False
        stopped = self.stopped_at
        for c in essential:
            if c.has_health_check:
                if not c.ever_healthy:
                    return False
                continue
            ran = c.ran_for(now if now is not None else stopped)
            if ran is None or ran < min_run:
                return False
        return True


@dataclass(frozen=True)
class TaskStatus:
    last_status: str  # RUNNING | PENDING | STOPPED
    health: str  # HEALTHY | UNHEALTHY | UNKNOWN
    stop_code: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class InstanceState:
    name: str
    endpoint: str
    reachable: bool
    error: str | None = None
    cpu: int = 0  # registered CPU units
    memory: int = 0  # registered MiB
    attributes: Mapping[str, str] = field(default_factory=dict)
    server_version: str = ""
    unreachable_since: float | None = None  # when the engine was first seen not answering


@dataclass(frozen=True)
class UnknownTask:
    """A task last seen on an instance whose engine does not answer now: its state is unknown."""

    id: str
    instance: str
    service: str
    task_hash: str


@dataclass(frozen=True)
class ClusterState:
    cluster: str
    instances: Mapping[str, InstanceState]
    tasks: tuple[Task, ...]
    unknown: tuple[UnknownTask, ...] = ()

    def tasks_of(self, service: str) -> list[Task]:
        return [t for t in self.tasks if t.service == service]

    def reachable(self, instance: str) -> bool:
        state = self.instances.get(instance)
        return bool(state and state.reachable)


# -- parsing -----------------------------------------------------------------------------------------


def _json_label(labels: Mapping[str, str], key: str) -> dict[str, Any]:
    try:
        value = json.loads(labels.get(key) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _health_from_status(status: str) -> str | None:
    m = _HEALTH.search(status or "")
    if not m:
        return None
    return "starting" if m.group(1) == "health: starting" else m.group(1)


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an Engine API timestamp (RFC 3339, nanoseconds allowed); None for the zero time
    ("0001-01-01T00:00:00Z", Docker's "never"), an empty or malformed value."""
    m = _RFC3339.fullmatch(str(value or "").strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if year <= 1:
        return None
    offset = timedelta(0)
    if m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if m.group(9) == "-":
            offset = -offset
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    fraction = m.group(7) or ""
    return moment.timestamp() + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _ever_healthy(health: Mapping[str, Any] | None) -> bool | None:
    """From an inspect's State.Health: did any probe pass? None when there is no health check.

    Docker sets an exited container's status to "unhealthy" when it stops probing, and keeps the last
    five probes in `Log`, so a passing probe in the log (or a healthy status) is the evidence."""
    if not health:
        return None
    status = health.get("Status")
    if status in (None, "", "none"):
        return None
    if status == "healthy":
        return True
    return any(isinstance(p, Mapping) and p.get("ExitCode") == 0 for p in health.get("Log") or [])


def _bindings(ports: Iterable[Mapping[str, Any]]) -> tuple[Binding, ...]:
    out = set()
    for p in ports or []:
        if p.get("PublicPort"):
            out.add(Binding(int(p["PrivatePort"]), int(p["PublicPort"]), p.get("Type", "tcp"), p.get("IP", "0.0.0.0")))
    return tuple(sorted(out, key=lambda b: (b.container_port, b.protocol, b.bind_ip)))


def container_from_list(raw: Mapping[str, Any]) -> Container:
    """A container from one entry of the Engine API's container list (`GET /containers/json`)."""
    labels = raw.get("Labels") or {}
    status = raw.get("Status") or ""
    m = _EXITED.search(status)
    names = raw.get("Names") or ["/?"]
    health = _health_from_status(status)
    return Container(
        id=raw.get("Id", ""),
        name=names[0].lstrip("/"),
        task_id=labels.get(L.TASK, ""),
        container=labels.get(L.CONTAINER, ""),
        role=labels.get(L.ROLE, L.ROLE_CONTAINER),
        state=raw.get("State") or "unknown",
        exit_code=int(m.group(1)) if m else None,
        health=health,
        ever_healthy=None if health is None else health == "healthy",  # a list entry knows only the current health
        created=float(raw.get("Created") or 0),
        image=raw.get("Image", ""),
        bindings=_bindings(raw.get("Ports") or []),
        spec=_json_label(labels, L.CONTAINER_SPEC),
        labels=labels,
    )


def container_from_inspect(raw: Mapping[str, Any]) -> Container:
    """A container from `GET /containers/{id}/json`: adds OOM and error details, start and finish times
    and the health-probe log the list lacks."""
    labels = (raw.get("Config") or {}).get("Labels") or {}
    state = raw.get("State") or {}
    ports = []
    for key, binds in ((raw.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        for b in binds or []:
            ports.append({"PrivatePort": port, "PublicPort": b.get("HostPort"), "Type": proto, "IP": b.get("HostIp")})
    health = (state.get("Health") or {}).get("Status")
    return Container(
        id=raw.get("Id", ""),
        name=(raw.get("Name") or "/?").lstrip("/"),
        task_id=labels.get(L.TASK, ""),
        container=labels.get(L.CONTAINER, ""),
        role=labels.get(L.ROLE, L.ROLE_CONTAINER),
        state=state.get("Status") or "unknown",
        exit_code=state.get("ExitCode") if state.get("Status") in ("exited", "dead") else None,
        health=health if health in ("healthy", "unhealthy", "starting") else None,
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or None,
        image=(raw.get("Config") or {}).get("Image", ""),
        bindings=_bindings(ports),
        spec=_json_label(labels, L.CONTAINER_SPEC),
        labels=labels,
        started_at=parse_time(state.get("StartedAt")),
        finished_at=parse_time(state.get("FinishedAt")),
        ever_healthy=_ever_healthy(state.get("Health")),
    )


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def group_tasks(cluster: str, instance: str, containers: Iterable[Container]) -> list[Task]:
    """Containers grouped into tasks by their task-id label."""
    by_task: dict[str, list[Container]] = {}
    for c in containers:
        if c.task_id:
            by_task.setdefault(c.task_id, []).append(c)
    tasks = []
    for task_id, members in sorted(by_task.items()):
        members.sort(key=lambda c: (c.role != L.ROLE_PAUSE, c.container))
        labels = members[0].labels
        tasks.append(
            Task(
                id=task_id,
                cluster=cluster,
                instance=instance,
                group=labels.get(L.GROUP, ""),
                family=labels.get(L.FAMILY, ""),
                task_hash=labels.get(L.TASK_HASH, ""),
                service=labels.get(L.SERVICE) or None,
                containers=tuple(members),
                task_spec=_json_label(labels, L.TASK_SPEC),
                created=min(c.created for c in members),
                started_by=labels.get(L.STARTED_BY, ""),
                revision=_int_label(labels, L.REVISION),
                deployment=labels.get(L.DEPLOYMENT, ""),
            )
        )
    return tasks


# -- derived status ----------------------------------------------------------------------------------


def explain_exit(container: Container) -> str:
    """Why a container stopped, in words: OOM versus SIGKILL for 137, and the usual signal codes."""
    code = container.exit_code
    limit = container.spec.get("memory")
    if container.oom_killed:
        where = f" (memory limit {limit} MiB)" if limit else ""
        return f"OutOfMemoryError: container {container.container} killed due to memory usage{where}"
    if container.error:
        return f"container {container.container} failed: {container.error}"
    meanings = {
        0: "exited normally (0)",
        1: "exited with an application error (1)",
        125: "could not be run by the container runtime (125)",
        126: "command is not executable (126)",
        127: "command not found (127)",
        130: "interrupted by SIGINT (130)",
        134: "aborted by SIGABRT (134)",
        137: "was killed by SIGKILL (137)",
        139: "crashed with a segmentation fault, SIGSEGV (139)",
        143: "was stopped by SIGTERM (143)",
    }
    if code is None:
        return f"container {container.container} stopped"
    text = meanings.get(code)
    if text is None:
        text = f"exited with signal {code - 128} ({code})" if 128 < code < 160 else f"exited with code {code}"
    return f"container {container.container} {text}"


def task_status(task: Task) -> TaskStatus:
    """ECS lastStatus and health of a task from its containers.

    STOPPED when an essential container exited, or when containers the task was created with are
    missing; PENDING while any container is created but not started (waiting on `dependsOn`, or an
    interrupted start the next pass finishes); RUNNING when every essential container runs.
    Health follows ECS: UNHEALTHY if any essential container is, else UNKNOWN if any essential one is
    not known healthy, else HEALTHY. Essential containers without a health check count as healthy once
    running (the task would otherwise never become healthy).
    """
    app = task.app_containers
    essential = [c for c in app if c.essential]
    for c in essential:
        if c.exited:
            return TaskStatus(STOPPED, UNKNOWN, "EssentialContainerExited", f"Essential container in task exited: {explain_exit(c)}")
    present = {c.container for c in app}
    missing = [n for n in task.expected_containers if n not in present]
    if missing or not essential:
        what = ", ".join(missing) or "all"
        return TaskStatus(STOPPED, UNKNOWN, "TaskFailedToStart", f"containers missing from the task: {what}")
    pause = [c for c in task.containers if c.role == L.ROLE_PAUSE]
    if any(not p.running for p in pause):
        return TaskStatus(STOPPED, UNKNOWN, "TaskFailedToStart", "the task's network namespace holder stopped")
    if any(c.state == "created" for c in app):  # ECS: PENDING until every container has been started
        return TaskStatus(PENDING, UNKNOWN, None, "containers created but not all started")
    if all(c.running for c in essential):
        if any(c.health == "unhealthy" for c in essential):
            return TaskStatus(RUNNING, UNHEALTHY, None, "Task failed container health checks")
        if any(c.health == "starting" for c in essential):
            return TaskStatus(RUNNING, UNKNOWN)
        return TaskStatus(RUNNING, HEALTHY)
    return TaskStatus(PENDING, UNKNOWN)
