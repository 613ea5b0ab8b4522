"""Desired state: typed, frozen values built from validated manifests.

Owns the shapes the planner reads (`Cluster`, `Instance`, `TaskDefinition`, `Service`, `DesiredState`).
It must not parse files, talk to engines or decide anything: `manifests.build` fills these values and
`planning` reads them. A task definition keeps its normalized ECS spec as plain JSON data (see
`normalize`), treated as immutable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIVE = "ACTIVE"
DRAINING = "DRAINING"
EC2 = "EC2"
FARGATE = "FARGATE"
REPLICA = "REPLICA"
DAEMON = "DAEMON"

LOCAL_INSTANCE = "local"


@dataclass(frozen=True)
class TLS:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class Instance:
    """A container instance: one Docker engine reached through `endpoint`."""

    name: str
    endpoint: str
    tls: TLS | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    cpu: int | None = None  # registered CPU units override; None: from the engine
    memory: int | None = None  # registered MiB override; None: from the engine
    status: str = ACTIVE
    publish_address: str = "0.0.0.0"
    fargate: bool = False  # a managed-pool endpoint rather than a declared EC2 instance


@dataclass(frozen=True)
class Policy:
    allow_privileged: bool = False
    allowed_host_paths: tuple[str, ...] | None = None  # None: no restriction


@dataclass(frozen=True)
class Cluster:
    name: str
    region: str | None = None
    instances: tuple[Instance, ...] = ()
    fargate: tuple[Instance, ...] = ()
    policy: Policy = Policy()
    credentials_file: str | None = None
    source: str = ""

    def all_instances(self) -> tuple[Instance, ...]:
        return self.instances + self.fargate

    def instance(self, name: str) -> Instance | None:
        return next((i for i in self.all_instances() if i.name == name), None)


@dataclass(frozen=True)
class TaskDefinition:
    """A task definition family at its current revision.

    `spec` is the normalized ECS spec (see `normalize.task_definition`); `task_hash` identifies it and
    is what running tasks are compared against. `raw` is the spec as written, for `describe`.
    """

    family: str
    spec: Mapping[str, Any]
    task_hash: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    warnings: tuple[str, ...] = ()
    source: str = ""

    @property
    def containers(self) -> list[Mapping[str, Any]]:
        return list(self.spec.get("containerDefinitions", ()))

    @property
    def network_mode(self) -> str:
        return self.spec.get("networkMode", "bridge")


@dataclass(frozen=True)
class Constraint:
    type: str
    expression: str | None = None


@dataclass(frozen=True)
class Strategy:
    type: str
    field: str | None = None


@dataclass(frozen=True)
class Service:
    name: str
    cluster: str
    task_definition: str  # family
    desired_count: int
    launch_type: str = EC2
    scheduling_strategy: str = REPLICA
    maximum_percent: int = 200
    minimum_healthy_percent: int = 100
    circuit_breaker: bool = False
    rollback: bool = False
    constraints: tuple[Constraint, ...] = ()
    strategies: tuple[Strategy, ...] = ()
    health_check_grace_period: int = 0
    auto_scaling: Mapping[str, Any] | None = None
    source: str = ""

    @property
    def group(self) -> str:
        return f"service:{self.name}"


@dataclass(frozen=True)
class DesiredState:
    clusters: Mapping[str, Cluster] = field(default_factory=dict)
    task_definitions: Mapping[str, TaskDefinition] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)

    def services_of(self, cluster: str) -> list[Service]:
        return sorted((s for s in self.services.values() if s.cluster == cluster), key=lambda s: s.name)
