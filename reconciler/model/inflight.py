"""Work in flight: what the reconciler has launched and not yet seen finish, as frozen values.

Owns `PendingStart` (a task being created and started: it counts toward its service's desired count and
holds its CPU, memory and host ports before the engine lists it), and `InFlight`, the snapshot the
planner plans against together with the observation (Kubernetes' ReplicaSet expectations). Task ids are
chosen before a start is launched, so an expectation is met the moment the observation lists that id.
It must not track anything itself (`actions.runner` does) nor decide.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PendingStart:
    cluster: str
    service: str | None
    instance: str
    task_id: str
    task_hash: str
    group: str
    cpu: int = 0
    memory: int = 0
    ports: frozenset[tuple[int, str]] = frozenset()


@dataclass(frozen=True)
class InFlight:
    starts: tuple[PendingStart, ...] = ()
    stopping: frozenset[str] = frozenset()  # task ids being stopped (STOPPING / DEACTIVATING)
    advancing: frozenset[str] = frozenset()  # task ids whose next containers are being started

    def starts_of(self, cluster: str, service: str | None = None) -> list[PendingStart]:
        return [s for s in self.starts if s.cluster == cluster and (service is None or s.service == service)]

    def busy(self, task_id: str) -> bool:
        return task_id in self.stopping or task_id in self.advancing

    def of_cluster(self, cluster: str) -> bool:
        return any(s.cluster == cluster for s in self.starts)


NOTHING = InFlight()

