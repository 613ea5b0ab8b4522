"""`FakeEngine`: an in-memory implementation of `reconciler.engine.api.Engine` for unit tests.

Owns a dict of containers in the Engine API's list/inspect shapes, records every call, and lets a test
make a container exit, turn unhealthy or vanish, choose the health a container reports once started
(`health_on_start`) and the engine's architecture. As Docker, a second create of a name is a 409 and
inspect takes a name as well as an id. Files written with `put_file` live in the named volume bound over
their path (`binds` "volume:/path:rw"), so they outlive the container as Docker's do, else in the container;
neither is created, started nor needed running. Like Docker, a container's State carries StartedAt and
FinishedAt (RFC 3339 with nanoseconds, "0001-01-01T00:00:00Z" for never) and, with a health check, a
Health.Log of the last five probes that survives the exit (whose status then turns "unhealthy"); times
come from `clock` (a test may set it). It does not run anything; real behaviour is covered by the
integration tests against private engines.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.engine import api

_ids = itertools.count(1)

NEVER = "0001-01-01T00:00:00Z"  # the Engine API's zero time
MAX_PROBES = 5  # Docker keeps the last five health probes in State.Health.Log


def rfc3339(t: float) -> str:
    """`t` as the Engine API writes times: UTC, nanoseconds, a Z."""
    ns = int(round(t * 1e9))
    whole = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ns % 1_000_000_000:09d}Z"

IMAGE = "localhost/busybox:static"
CLUSTER_MANIFEST = """\
apiVersion: reconciler/v1
kind: Cluster
metadata: {name: c1}
spec:
  instances: [{name: i1, endpoint: "unix:///fake/1.sock"}]
"""
BASE_MANIFEST = CLUSTER_MANIFEST + """\
---
apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {name: app}
spec:
  containerDefinitions: [{name: app, image: localhost/busybox:static, memory: 32}]
"""


def manifest(*services: tuple[str, int]) -> str:
    """The shared test cluster (one fake engine) and task definition `app`, plus a Service of `app`
    per (name, desiredCount)."""
    docs = [BASE_MANIFEST]
    for name, count in services:
        docs.append(
            "apiVersion: reconciler/v1\nkind: Service\n"
            f"metadata: {{name: {name}}}\nspec: {{cluster: c1, taskDefinition: app, desiredCount: {count}}}\n"
        )
    return "---\n".join(docs)


class FakeEngine:
    def __init__(
        self,
        endpoint: str = "fake://e1",
        cpus: int = 2,
        memory_mib: int = 4096,
        images: tuple[str, ...] = (),
        architecture: str = "x86_64",
    ):
        self.endpoint = endpoint
        self.architecture = architecture
        self.health_on_start = "healthy"  # what a container with a health check reports once started
        self.cpus = cpus
        self.memory_mib = memory_mib
        self.images = set(images)
        self.containers: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.down = False
        self.fail_pull = False
        self.lock = threading.Lock()
        self.clock: Callable[[], float] = time.time  # the time StartedAt, FinishedAt and probes carry

    # -- test controls ---------------------------------------------------------------------------

    def _check(self) -> None:
        if self.down:
            raise api.Unreachable(self.endpoint, "engine does not answer (connection refused)")

    def exit(self, container_id: str, code: int, oom: bool = False, at: float | None = None) -> None:
        """The container exits with `code` (at `at`, default now), keeping its start time and probe log."""
        c = self.containers[container_id]
        self._stopped(c["State"], code, at)
        c["State"].update({"OOMKilled": oom, "Error": ""})

    def set_health(self, container_id: str, health: str, at: float | None = None) -> None:
        """The container's health turns `health`; healthy and unhealthy log a passing or failing probe."""
        state = self.containers[container_id]["State"]
        self._probe(state, health, self.clock() if at is None else at)

    def _stopped(self, state: dict[str, Any], code: int, at: float | None) -> None:
        state.update({"Status": "exited", "ExitCode": code, "FinishedAt": rfc3339(self.clock() if at is None else at)})
        state.setdefault("StartedAt", NEVER)
        if state.get("Health"):
            state["Health"]["Status"] = "unhealthy"  # as Docker does when it stops probing an exited container

    def _probe(self, state: dict[str, Any], health: str, at: float) -> None:
        h = state.setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
        h["Status"] = health
        if health in ("healthy", "unhealthy"):
            code = 0 if health == "healthy" else 1
            h["Log"] = [*h.get("Log", []), {"Start": rfc3339(at), "End": rfc3339(at + 0.01), "ExitCode": code, "Output": ""}][-MAX_PROBES:]
            h["FailingStreak"] = 0 if code == 0 else h.get("FailingStreak", 0) + 1

    def by_label(self, key: str, value: str) -> list[dict[str, Any]]:
        return [c for c in self.containers.values() if c["Config"]["Labels"].get(key) == value]

    def running(self) -> list[dict[str, Any]]:
        return [c for c in self.containers.values() if c["State"]["Status"] == "running"]

    # -- engine ----------------------------------------------------------------------------------

    def info(self) -> api.EngineInfo:
        self._check()
        return api.EngineInfo(
            self.endpoint, self.cpus, self.memory_mib * 1024 * 1024, architecture=self.architecture, server_version="fake"
        )

    def _summary(self, c: dict[str, Any]) -> dict[str, Any]:
        state = c["State"]
        status = "Up 1 second" if state["Status"] == "running" else f"Exited ({state.get('ExitCode', 0)}) 1 second ago"
        if state["Status"] == "created":
            status = "Created"
        health = (state.get("Health") or {}).get("Status")
        if health and state["Status"] == "running":
            status += f" ({'health: starting' if health == 'starting' else health})"
        ports = []
        for key, binds in (c["HostConfig"].get("port_bindings") or {}).items():
            port, _, proto = key.partition("/")
            host = binds[1] if len(binds) > 1 and binds[1] else 40000 + len(ports)
            ports.append({"PrivatePort": int(port), "PublicPort": host, "Type": proto, "IP": binds[0]})
        return {
            "Id": c["Id"],
            "Names": ["/" + c["Name"]],
            "Image": c["Config"]["Image"],
            "Labels": c["Config"]["Labels"],
            "State": state["Status"],
            "Status": status,
            "Created": c["Created"],
            "Ports": ports,
        }

    def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        self._check()
        with self.lock:
            return [
                self._summary(c)
                for c in self.containers.values()
                if all(c["Config"]["Labels"].get(k) == v for k, v in labels.items())
            ]

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        """By id or, as Docker, by name."""
        self._check()
        c = self.containers.get(container_id) or next(
            (c for c in list(self.containers.values()) if c["Name"] == container_id), None
        )
        if c is None:
            raise api.NotFound(self.endpoint, f"No such container: {container_id}", status=404)
        return {**c, "Name": "/" + c["Name"], "NetworkSettings": {"Ports": {}}}

    def create_container(self, request: api.ContainerCreate) -> str:
        self._check()
        with self.lock:
            if any(c["Name"] == request.name for c in self.containers.values()):
                raise api.EngineError(self.endpoint, f"Conflict. The container name {request.name} is already in use", status=409)
            if request.image not in self.images:
                raise api.NotFound(self.endpoint, f"No such image: {request.image}", status=404)
            cid = f"{next(_ids):064x}"
            self.containers[cid] = {
                "Id": cid,
                "Name": request.name,
                "Created": self.clock(),
                "Config": {"Image": request.image, "Labels": dict(request.labels), "Env": dict(request.environment)},
                "HostConfig": dict(request.host_config),
                "State": {"Status": "created", "ExitCode": 0, "OOMKilled": False, "Error": "", "StartedAt": NEVER, "FinishedAt": NEVER},
                "Request": request,
            }
        self.calls.append(("create", request.name))
        return cid

    def start_container(self, container_id: str) -> None:
        self._check()
        c = self.containers[container_id]
        now = self.clock()
        c["State"].update({"Status": "running", "StartedAt": rfc3339(now)})
        if c["Request"].healthcheck:
            c["State"]["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": []}
            self._probe(c["State"], self.health_on_start, now)
        self.calls.append(("start", c["Name"]))

    def stop_container(self, container_id: str, timeout: int) -> None:
        self._check()
        c = self.containers.get(container_id)
        if c and c["State"]["Status"] == "running":
            self._stopped(c["State"], 143, None)
        self.calls.append(("stop", container_id))

    def remove_container(self, container_id: str) -> None:
        self._check()
        with self.lock:
            self.containers.pop(container_id, None)
        self.calls.append(("remove", container_id))

    def _files(self, container_id: str, path: str) -> tuple[dict[str, bytes], str]:
        """Where the container's file `path` lives: the files of the named volume bound over it, or the
        container's own; and its key there. NotFound for a missing container."""
        c = self.containers[self.inspect_container(container_id)["Id"]]
        for bind in c["HostConfig"].get("binds") or ():
            source, target = bind.split(":")[:2]
            inside = target.rstrip("/") + "/"
            if path.startswith(inside) and source in self.volumes:
                return self.volumes[source].setdefault("Files", {}), path[len(inside):]
        return c.setdefault("Files", {}), path

    def put_file(self, container_id: str, path: str, data: bytes) -> None:
        files, key = self._files(container_id, path)
        files[key] = bytes(data)
        self.calls.append(("put_file", path))

    def get_file(self, container_id: str, path: str) -> bytes | None:
        files, key = self._files(container_id, path)
        self.calls.append(("get_file", path))
        return files.get(key)

    def has_image(self, ref: str) -> bool:
        self._check()
        return ref in self.images

    def pull_image(self, ref: str, auth: Mapping[str, str] | None = None) -> None:
        self._check()
        self.calls.append(("pull", ref))
        if self.fail_pull:
            raise api.ImageUnavailable(self.endpoint, f"CannotPullContainerError: pull access denied for {ref}")
        self.images.add(ref)

    def load_image_tar(self, data: bytes, ref: str) -> None:
        self._check()
        self.calls.append(("load", ref))
        self.images.add(ref)

    def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        self.networks[name] = {"Name": name, "Labels": dict(labels)}
        return name

    def remove_network(self, name: str) -> None:
        self.networks.pop(name, None)

    def list_networks(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return [n for n in self.networks.values() if all(n["Labels"].get(k) == v for k, v in labels.items())]

    def create_volume(self, name: str, driver: str, driver_opts: Mapping[str, str], labels: Mapping[str, str]) -> None:
        self.volumes[name] = {"Name": name, "Labels": dict(labels)}

    def has_volume(self, name: str) -> bool:
        return name in self.volumes

    def remove_volume(self, name: str) -> None:
        self.volumes.pop(name, None)

    def list_volumes(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return [v for v in self.volumes.values() if all(v["Labels"].get(k) == val for k, val in labels.items())]

    def logs(self, container_id: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        yield b"fake log line\n"

    def stats(self, container_id: str) -> dict[str, Any]:
        return {}

    def exec(self, container_id: str, command: list[str], interactive: bool = False) -> int:
        return 0

    def events(self, labels: Mapping[str, str], since: float | None = None, until: float | None = None) -> Iterator[dict[str, Any]]:
        return iter(())

    def close(self) -> None:
        pass


def drive(desired: Any, connections: Any, now: float | None = None, max_passes: int = 200,
          tick: Callable[[float], None] | None = None, step: float = 0.0, **options: Any) -> list[Any]:
    """Runs reconcile passes on fake engines until every service is settled and no one-off task needs
    moving on, as `apply` and the daemon do: each pass snapshots the runner's work in flight, observes,
    plans, launches each service's first step (and the one-off tasks' actions), then waits for the
    actions to end. Returns the plans, the first one first. Fails when an action fails or the passes do
    not settle. `now` defaults to a minute from the wall clock (the fake engine's), so tasks without a
    health check are past ECS's 40 s; with `step`, time moves on that much between passes and `tick`
    is told the new time (to move the fake engines' clock along)."""
    from reconciler import observe
    from reconciler.actions.runner import Runner
    from reconciler.model import plan as P
    from reconciler.planning import planner

    runner = Runner(connections, environ={})
    plans = []
    at = time.time() + 60 if now is None else now
    try:
        for _ in range(max_passes):
            inflight = runner.inflight()
            observed = observe.observe(desired, connections)
            plan = planner.plan(desired, observed, at, planner.Options(inflight=inflight, **options))
            plans.append(plan)
            if all(sp.settled for sp in plan.services) and not plan.one_off and runner.idle():
                return plans
            if now is None:
                at = time.time() + 60
            else:
                at += step
                if tick:
                    tick(at)
            for sp in plan.services:
                if not sp.now.empty:
                    runner.launch(desired, sp.now)
            if plan.one_off:
                runner.launch(desired, P.Step(stops=tuple(a for a in plan.one_off if isinstance(a, P.StopTask)),
                                              advances=tuple(a for a in plan.one_off if isinstance(a, P.StartContainers))))
            runner.drain(30)
            failed = [r.line() for r in runner.results if not r.ok]
            assert not failed, failed
        raise AssertionError(f"not settled after {max_passes} passes: {plans[-1].render()}")
    finally:
        runner.shutdown()


def drain_controller(ctl: Any) -> list[str]:
    """Steps a daemon controller as its workers would, until no key is ready and no action is in flight;
    returns the keys it passed over, each once, in the order first seen."""
    seen: list[str] = []
    while True:
        key = ctl.queue.get(0)
        if key is None:
            if ctl.runner.idle():
                return seen
            ctl.runner.drain(30)
            continue
        if key not in seen:
            seen.append(key)
        ctl.process(key)
