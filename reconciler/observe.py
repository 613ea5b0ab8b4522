"""Observed state of every cluster, fetched from its engines in parallel.

Owns one `info` and one sparse container list per engine (plus an inspect of the few exited containers
and of the other containers of their tasks, for OOM and error details, start and finish times and
health-probe logs), and turning an engine that does not answer into an unreachable
`InstanceState` instead of an exception. Parsing is `model.observed`'s; this module only fetches.
It must not decide anything.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from reconciler import labels
from reconciler.engine import api
from reconciler.model import observed as obs
from reconciler.model import spec

EngineFactory = Callable[[spec.Instance], api.Engine]

_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


class Engines:
    """Connections to the instances of the clusters at hand, made once and shared."""

    def __init__(self, factory: EngineFactory):
        self.factory = factory
        self._engines: dict[str, api.Engine] = {}
        self._lock = threading.Lock()

    def get(self, instance: spec.Instance) -> api.Engine:
        """The connection to `instance`'s engine, made on first use (a failure is retried next time)."""
        key = instance.endpoint
        with self._lock:
            if key not in self._engines:
                self._engines[key] = self.factory(instance)
            return self._engines[key]

    def close(self) -> None:
        for engine in self._engines.values():
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._engines.clear()


def observe_instance(cluster: str, instance: spec.Instance, engines: Engines) -> tuple[obs.InstanceState, list[obs.Task]]:
    try:
        engine = engines.get(instance)
        info = engine.info()
        raw = engine.list_containers(labels.selector(cluster))
        listed = [obs.container_from_list(r) for r in raw]
        # A task with an exited container has stopped: its other containers are inspected too, so whether it
        # ever became available (start times, health-probe logs) is known for all of them.
        stopped = {c.task_id for c in listed if c.exited}
        containers = []
        for c in listed:
            if c.exited or (c.task_id in stopped and c.role != labels.ROLE_PAUSE):
                try:
                    c = dataclasses.replace(obs.container_from_inspect(engine.inspect_container(c.id)), created=c.created)
                except api.NotFound:
                    continue
            containers.append(c)
    except api.EngineError as e:
        return obs.InstanceState(instance.name, instance.endpoint, reachable=False, error=e.message), []
    attributes = {
        "ecs.os-type": info.os_type,
        "ecs.cpu-architecture": _ARCH.get(info.architecture, info.architecture),
        **instance.attributes,
    }
    state = obs.InstanceState(
        name=instance.name,
        endpoint=instance.endpoint,
        reachable=True,
        cpu=info.cpus * 1024,
        memory=info.memory_bytes // (1024 * 1024),
        attributes=attributes,
        server_version=info.server_version,
    )
    return state, obs.group_tasks(cluster, instance.name, containers)


def observe_cluster(cluster: spec.Cluster, engines: Engines) -> obs.ClusterState:
    instances = cluster.all_instances()
    if not instances:
        return obs.ClusterState(cluster.name, {}, ())
    with ThreadPoolExecutor(max_workers=min(32, len(instances))) as pool:
        results = list(pool.map(lambda i: observe_instance(cluster.name, i, engines), instances))
    states = {s.name: s for s, _ in results}
    tasks = tuple(t for _, ts in results for t in ts)
    return obs.ClusterState(cluster.name, states, tasks)


def observe(desired: spec.DesiredState, engines: Engines, clusters: Mapping[str, spec.Cluster] | None = None) -> dict[str, obs.ClusterState]:
    clusters = desired.clusters if clusters is None else clusters
    if len(clusters) <= 1:
        return {name: observe_cluster(c, engines) for name, c in clusters.items()}
    with ThreadPoolExecutor(max_workers=min(8, len(clusters))) as pool:
        states = list(pool.map(lambda c: observe_cluster(c, engines), clusters.values()))
    return {s.cluster: s for s in states}
