"""Helpers for the real-engine placement tests: a Cluster of several private engines, and counting what each
engine runs.

Owns: Cluster documents whose instances are given engines with small, fixed registered resources (so capacity
tests do not depend on the host), the `Fleet` a placement test works in (a `helpers.Workspace` plus one docker
client per engine), per-engine task counts by reconciler's labels, and `CountSampler`, which samples a
service's task count across engines while an apply runs elsewhere. Must not: start, stop or reset engines
(tests/conftest.py does), or reach any engine but the ones a test was given.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import helpers as h

# The workload of the issue: traps SIGTERM, so a stop takes well under the 1 s stopTimeout.
SLEEPER = "trap 'exit 0' TERM; sleep 3600 & wait"


def instance(
    name: str,
    endpoint: str,
    az: str = "a",
    attributes: Mapping[str, str] | None = None,
    cpu: int = 1024,
    memory: int = 512,
    **fields: Any,
) -> dict[str, Any]:
    """One container instance with registered resources overridden (cpu units, MiB)."""
    out: dict[str, Any] = {
        "name": name,
        "endpoint": endpoint,
        "availabilityZone": az,
        "attributes": dict(attributes or {}),
        "resources": {"cpu": cpu, "memory": memory},
    }
    out.update(fields)
    return out


def cluster(
    name: str, instances: Sequence[Mapping[str, Any]], fargate: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"instances": [dict(i) for i in instances]}
    if fargate is not None:
        body["fargate"] = {"endpoints": [dict(e) for e in fargate]}
    return {"apiVersion": "reconciler/v1", "kind": "Cluster", "metadata": {"name": name}, "spec": body}


def sleeper(name: str = "app", **fields: Any) -> dict[str, Any]:
    """A busybox container running SLEEPER with stopTimeout 1 (and a 16 MiB reservation unless overridden)."""
    return h.container(name, SLEEPER, **fields)


class Fleet:
    """A workspace whose cluster spans several engines, with one docker client per engine (assertions only)."""

    def __init__(self, engines: Sequence[Any], root: Path, run_cli: Callable[..., Any]):
        self.engines = list(engines)
        self.ws = h.Workspace(root, run_cli)
        self._stack = contextlib.ExitStack()
        self.clients = [self._stack.enter_context(contextlib.closing(e.client())) for e in self.engines]

    def close(self) -> None:
        try:
            self.ws.stop_background()
        finally:
            self._stack.close()

    # ---- what runs where
    def _clients(self, only: Sequence[int] | None) -> list[Any]:
        return self.clients if only is None else [self.clients[i] for i in only]

    def running(self, service: str, only: Sequence[int] | None = None) -> list[set[str]]:
        """Per engine (fixture order; `only`: these indexes): ids of the service's tasks whose essential
        containers all run."""
        return [h.running_task_ids(c, service) for c in self._clients(only)]

    def counts(self, service: str, only: Sequence[int] | None = None) -> list[int]:
        return [len(ids) for ids in self.running(service, only)]

    def containers(self, service: str, only: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
        """Per engine: every managed container of the service, any state."""
        return [h.managed(c, service=service) for c in self._clients(only)]

    def describe(self, service: str, only: Sequence[int] | None = None) -> str:
        """Per engine: container name and state, for failure messages."""
        parts = []
        engines = self.engines if only is None else [self.engines[i] for i in only]
        for engine, found in zip(engines, self.containers(service, only), strict=True):
            listed = ", ".join(f"{c['Names'][0].lstrip('/')}={c['State']}" for c in found) or "-"
            parts.append(f"{engine.name}: {listed}")
        return "; ".join(parts)


def alive(containers: Iterable[Mapping[str, Any]]) -> set[str]:
    """Task ids with a container being created, running or restarting."""
    return {
        task_id
        for task_id, members in h.by_task(containers).items()
        if any(c["State"] in ("created", "running", "restarting") for c in members)
    }


def running(containers: Iterable[Mapping[str, Any]]) -> set[str]:
    """Task ids whose application containers all run."""
    out = set()
    for task_id, members in h.by_task(containers).items():
        app = [c for c in members if c["Labels"].get(h.ROLE) != "pause" and h.essential(c)]
        if app and all(c["State"] == "running" for c in app):
            out.add(task_id)
    return out


class CountSampler(threading.Thread):
    """Samples a service's tasks across engines every ~50 ms while tasks move from `leaving` engines (where
    they are only stopped) to `arriving` engines (where they are only started).

    Engines cannot be read at one instant, so each sample reads the leaving engines, then the arriving ones,
    then the leaving ones again. With the counts on leaving engines only falling and those on arriving engines
    only rising, `arriving + leaving_before` is at least the true running count at the moment the arriving
    engines were read (a minimum-healthy check on it never fails falsely), and `arriving + leaving_after` is
    at most the true alive count then (a maximum check on it never fails falsely).
    """

    def __init__(self, clients: Sequence[Any], service: str, leaving: Sequence[int], arriving: Sequence[int]):
        super().__init__(daemon=True)
        self.clients = list(clients)
        self.service = service
        self.leaving = list(leaving)
        self.arriving = list(arriving)
        self.samples: list[tuple[int, int]] = []  # (running upper bound, alive lower bound)
        self.error: BaseException | None = None
        self._done = threading.Event()

    def _read(self, indexes: Sequence[int]) -> list[dict[str, Any]]:
        return [c for i in indexes for c in h.managed(self.clients[i], service=self.service)]

    def run(self) -> None:
        try:
            while not self._done.is_set():
                before = self._read(self.leaving)
                arriving = self._read(self.arriving)
                after = self._read(self.leaving)
                self.samples.append(
                    (
                        len(running(before)) + len(running(arriving)),
                        len(alive(after)) + len(alive(arriving)),
                    )
                )
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self) -> None:
        self._done.set()
        self.join(30)
