"""The two-container task shape the daemon, apply and destroy benchmarks share (not a benchmark itself).

`app`: busybox httpd on 8080, essential, with the Docker health check `CMD-SHELL wget -q -O- http://127.0.0.1:8080/
|| exit 1` every 5 s (ECS's minimum interval). It runs under a shell that exits on SIGTERM, as a well-behaved web
server does (busybox `httpd -f` as PID 1 would ignore SIGTERM, and serves 404 for `/` without an index.html, so
the probe needs the index file). `sidecar`: `sleep 3600` as PID 1, which has no SIGTERM handler, so in a container
it ignores SIGTERM and every stop of it waits out its whole stopTimeout (checked by `sidecar_ignores_sigterm`);
not essential (only `app` is); it starts once `app` is HEALTHY (`dependsOn`). Bridge network mode, so reconciler
gives each task its own network.

Also: the same shape made directly with the docker SDK (for the floors; `sdk_rollout` brings up a set of such tasks,
optionally replacing an old set as a rolling deployment would), the engine's container events with their receipt
time, small grouping helpers over reconciler's labels, `clear` and `start_engine_with_pool`. Must not import
reconciler.

Address pools: each bridge-mode task with several containers gets its own network, and a stock dockerd's default
address pools (172.17-31.0.0/16 and 192.168.0.0/16 in /20s, less what the host uses) hold about 30 networks: the
31st task fails to start ("could not find an available, non-overlapping IPv4 address pool among the defaults").
Benchmarks of 50 such tasks start their engine with `--default-address-pool` (`start_engine_with_pool`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

IMAGE = "localhost/busybox:static"
APP_SCRIPT = "mkdir -p /www && echo ok > /www/index.html; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
SIDECAR_COMMAND = ["sleep", "3600"]  # PID 1 without a handler: SIGTERM is ignored
HEALTH_SHELL = "wget -q -O- http://127.0.0.1:8080/ || exit 1"
HEALTH_INTERVAL = 5
HEALTH_TIMEOUT = 5
HEALTH_RETRIES = 3

SERVICE = "io.reconciler.service"
TASK = "io.reconciler.task-id"
CONTAINER = "io.reconciler.container"
MANAGED = "io.reconciler.managed"
NS = 1_000_000_000
ADDRESS_POOL = "base=10.200.0.0/16,size=24"  # 256 networks; inside the engine's own network namespace only


# --------------------------------------------------------------------------------------------------------------
# Manifests


def container_definitions(stop_timeout: int | None = None) -> list[dict[str, Any]]:
    """app + sidecar; stopTimeout left out (ECS's default, 30 s) unless given."""
    app: dict[str, Any] = {
        "name": "app",
        "image": IMAGE,
        "essential": True,
        "memoryReservation": 16,
        "command": ["sh", "-c", APP_SCRIPT],
        "healthCheck": {
            "command": ["CMD-SHELL", HEALTH_SHELL],
            "interval": HEALTH_INTERVAL,
            "timeout": HEALTH_TIMEOUT,
            "retries": HEALTH_RETRIES,
        },
    }
    sidecar: dict[str, Any] = {
        "name": "sidecar",
        "image": IMAGE,
        "essential": False,
        "memoryReservation": 16,
        "command": list(SIDECAR_COMMAND),
        "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}],
    }
    if stop_timeout is not None:
        app["stopTimeout"] = sidecar["stopTimeout"] = stop_timeout
    return [app, sidecar]


def documents(endpoint: str, service: str, count: int, stop_timeout: int | None = None, cluster: str = "bench") -> list[dict]:
    return [
        {"apiVersion": "reconciler/v1", "kind": "Cluster", "metadata": {"name": cluster},
         "spec": {"instances": [{"name": "e1", "endpoint": endpoint}]}},
        {"apiVersion": "reconciler/v1", "kind": "TaskDefinition", "metadata": {"name": service},
         "spec": {"networkMode": "bridge", "containerDefinitions": container_definitions(stop_timeout)}},
        {"apiVersion": "reconciler/v1", "kind": "Service", "metadata": {"name": service},
         "spec": {"cluster": cluster, "taskDefinition": service, "desiredCount": count}},
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------------------
# The same task made with the docker SDK (floors)


def sdk_healthcheck() -> dict[str, Any]:
    return {"test": ["CMD-SHELL", HEALTH_SHELL], "interval": HEALTH_INTERVAL * NS, "timeout": HEALTH_TIMEOUT * NS,
            "retries": HEALTH_RETRIES}


def sdk_create_task(client, name: str, stop_timeout: int = 30, labels: dict[str, str] | None = None) -> tuple[str, str, str]:
    """Creates the per-task network and both containers (nothing started): (network, app id, sidecar id)."""
    labels = {"bench": "floor", **(labels or {})}
    net = client.api.create_network(f"{name}-net", driver="bridge", labels=labels)["Id"]
    ids = []
    for cname, command, health in (("app", ["sh", "-c", APP_SCRIPT], sdk_healthcheck()), ("sidecar", SIDECAR_COMMAND, None)):
        c = client.api.create_container(
            IMAGE, command, name=f"{name}-{cname}", labels={**labels, "bench.container": cname}, stop_timeout=stop_timeout,
            healthcheck=health, host_config=client.api.create_host_config(mem_reservation="16m", network_mode=f"{name}-net"),
            networking_config=client.api.create_networking_config({f"{name}-net": client.api.create_endpoint_config(aliases=[cname])}),
        )
        ids.append(c["Id"])
    return net, ids[0], ids[1]


@dataclasses.dataclass(frozen=True)
class SdkTask:
    network: str
    app: str
    sidecar: str


def sdk_stop_task(client, task: SdkTask, stop_timeout: int) -> None:
    """What reconciler does to stop one such task: sidecar first (its dependent), then app, each with its stop
    timeout; then both containers and the network removed."""
    client.api.stop(task.sidecar, timeout=stop_timeout)
    client.api.stop(task.app, timeout=stop_timeout)
    for cid in (task.sidecar, task.app):
        client.api.remove_container(cid)
    client.api.remove_network(task.network)


def sdk_rollout(
    client, n: int, prefix: str, stop_timeout: int = 30, old: list[SdkTask] | tuple[SdkTask, ...] = (),
    threads: int = 8, stop_threads: int = 64, timeout: float = 300.0,
) -> tuple[float, float, list[SdkTask]]:
    """Brings up `n` tasks of this shape with the SDK, as fast as `threads` workers can: per task create the network
    and both containers and start app; on app's `health_status: healthy` event start sidecar (every create and start
    goes through the `threads` pool; nobody holds a thread while a health check is pending). With `old` (running
    tasks of this shape), each time a new task is up (its sidecar started) one old task starts stopping on a pool of
    `stop_threads` (`sdk_stop_task`): the most a rolling deployment with minimumHealthyPercent 100 may stop, and
    maximumPercent 200 lets all `n` new tasks start at once.

    Returns (seconds until the last new sidecar started, seconds until the last old task was removed (0.0 without
    `old`), the new tasks), all timed from the first engine call."""
    jobs: queue.Queue = queue.Queue()
    pending: dict[str, SdkTask] = {}  # app id -> its task, until app is healthy
    made: list[SdkTask] = []
    to_stop = list(old)
    lock = threading.Lock()
    counts = {"up": 0, "stopped": 0}
    marks = {"up": 0.0, "stopped": 0.0}
    done = threading.Event()
    failures: list[BaseException] = []
    events = Events(client)
    stops = ThreadPoolExecutor(max(1, stop_threads), thread_name_prefix="floor-stop")

    def finished() -> bool:
        return counts["up"] == n and counts["stopped"] == len(old)

    def stop(task: SdkTask) -> None:
        try:
            sdk_stop_task(client, task, stop_timeout)
        except BaseException as e:  # noqa: BLE001 - reported after the run
            failures.append(e)
            done.set()
            return
        with lock:
            counts["stopped"] += 1
            if counts["stopped"] == len(old):
                marks["stopped"] = time.perf_counter() - t0
            if finished():
                done.set()

    def watch() -> None:
        while not done.is_set():
            try:
                _, event = events.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if action(event) == "health_status: healthy":
                with lock:
                    task = pending.pop(event.get("id"), None)
                if task:
                    jobs.put(("sidecar", task))

    def work() -> None:
        while not done.is_set():
            try:
                kind, arg = jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if kind == "task":
                    task = SdkTask(*sdk_create_task(client, f"{prefix}{arg}", stop_timeout=stop_timeout))
                    with lock:
                        pending[task.app] = task
                        made.append(task)
                    client.api.start(task.app)
                else:
                    client.api.start(arg.sidecar)
                    with lock:
                        counts["up"] += 1
                        if counts["up"] == n:
                            marks["up"] = time.perf_counter() - t0
                        victim = to_stop.pop(0) if to_stop else None
                        if finished():
                            done.set()
                    if victim is not None:
                        stops.submit(stop, victim)
            except BaseException as e:  # noqa: BLE001 - reported after the run
                failures.append(e)
                done.set()

    time.sleep(0.2)  # the event stream is connected
    t0 = time.perf_counter()
    for i in range(n):
        jobs.put(("task", i))
    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    watcher = threading.Thread(target=watch, daemon=True)
    for t in [watcher, *workers]:
        t.start()
    if not done.wait(timeout=timeout):
        failures.append(TimeoutError(f"the SDK rollout brought up {counts['up']} of {n} tasks and removed "
                                     f"{counts['stopped']} of {len(old)} old ones in {timeout:.0f} s"))
    done.set()
    for t in [watcher, *workers]:
        t.join()
    stops.shutdown(wait=True)
    events.close()
    if failures:
        raise RuntimeError(f"the SDK floor failed: {failures[0]!r}")
    return marks["up"], marks["stopped"], made


def sidecar_ignores_sigterm(client, timeout: int = 2) -> float:
    """Seconds a `docker stop -t timeout` of the sidecar command takes (about `timeout` when SIGTERM is ignored)."""
    c = client.api.create_container(IMAGE, SIDECAR_COMMAND, stop_timeout=timeout)
    try:
        client.api.start(c["Id"])
        time.sleep(0.3)
        t0 = time.monotonic()
        client.api.stop(c["Id"], timeout=timeout)
        return time.monotonic() - t0
    finally:
        client.api.remove_container(c["Id"], force=True)


# --------------------------------------------------------------------------------------------------------------
# Engine events with their receipt time


class Events:
    """Container events of one engine, each with the monotonic time it was received. `next` consumes the queue
    and keeps everything it read in `history` (so nothing read while waiting for one event is lost)."""

    def __init__(self, client):
        self.queue: queue.Queue = queue.Queue()
        self.history: list[tuple[float, dict]] = []
        self._stream = client.api.events(decode=True, filters={"type": "container"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream raises once closed
            for event in self._stream:
                self.queue.put((time.monotonic(), event))

    def pump(self) -> None:
        """Moves whatever arrived into `history`."""
        while True:
            try:
                self.history.append(self.queue.get_nowait())
            except queue.Empty:
                return

    def next(self, match, timeout: float = 30.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching engine event")
            try:
                item = self.queue.get(timeout=left)
            except queue.Empty:
                raise TimeoutError("no matching engine event") from None
            self.history.append(item)
            if match(item[1]):
                return item

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()


def action(event: dict) -> str:
    return str(event.get("Action") or event.get("status") or "")


def attr(event: dict, key: str) -> str | None:
    return ((event.get("Actor") or {}).get("Attributes") or {}).get(key)


# --------------------------------------------------------------------------------------------------------------
# What runs


def tasks_of(client, service: str) -> dict[str, dict[str, dict]]:
    """{task id: {container name: list entry}} of a reconciler service (any state)."""
    out: dict[str, dict[str, dict]] = {}
    for c in client.api.containers(all=True, filters={"label": [f"{SERVICE}={service}"]}):
        labels = c.get("Labels") or {}
        if labels.get(TASK):
            out.setdefault(labels[TASK], {})[labels.get(CONTAINER, "")] = c
    return out


def healthy(entry: dict | None) -> bool:
    return bool(entry) and entry["State"] == "running" and "(healthy)" in entry.get("Status", "")


def starting(entry: dict | None) -> bool:
    return bool(entry) and entry["State"] == "running" and "(health: starting)" in entry.get("Status", "")


def task_up(members: dict[str, dict]) -> bool:
    """app running and healthy, sidecar running."""
    side = members.get("sidecar")
    return healthy(members.get("app")) and bool(side) and side["State"] == "running"


def count_up(client, service: str) -> int:
    return sum(1 for m in tasks_of(client, service).values() if task_up(m))


def settled(client, service: str, count: int) -> bool:
    """Exactly `count` tasks, each with app healthy and sidecar running, and nothing else of the service."""
    tasks = tasks_of(client, service)
    return len(tasks) == count and all(task_up(m) and len(m) == 2 for m in tasks.values())


def clear(client, volumes: bool = False) -> None:
    """Every container and every network but the engine's own (per-task networks too: a later apply would otherwise
    spend its time sweeping them as leftovers); with `volumes`, every volume too (reconciler's history lives in one)."""
    ids = [c["Id"] for c in client.api.containers(all=True)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.api.remove_container(i, force=True), ids))
    nets = [x["Id"] for x in client.api.networks() if x["Name"] not in ("bridge", "host", "none")]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client.api.remove_network, nets))
    if volumes:
        names = [v["Name"] for v in (client.api.volumes() or {}).get("Volumes") or []]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda v: client.api.remove_volume(v, force=True), names))


def start_engine_with_pool(engines_lib, directory: Path, pool: str = ADDRESS_POOL):
    """One private engine (tests/engines.py) whose dockerd runs with `--default-address-pool pool`.

    tests/engines.py runs `nsenter ... dockerd ARGS` by name, so a `dockerd` first on PATH that execs the real one
    with the extra flag does it; after the exec the process is the real dockerd with the engine's own arguments,
    which is what engines.py checks before it signals anything."""
    real = shutil.which("dockerd")
    if real is None:
        raise RuntimeError("dockerd not found")
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "dockerd"
    wrapper.write_text(f'#!/bin/sh\nexec {real} --default-address-pool {pool} "$@"\n')
    wrapper.chmod(0o755)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{directory}:{old}"
    try:
        (engine,) = engines_lib.start_engines(1)
    finally:
        os.environ["PATH"] = old
    return engine
