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
    revision: int | None = None  # the registered revision number, once the cluster's history knows it

    @property
    def ref(self) -> str:
        """`family:N` once registered, else `family` (a spec not yet registered)."""
        return f"{self.family}:{self.revision}" if self.revision is not None else self.family

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


ROLLING = "ROLLING"
BOUNDED_PERCENT = "BOUNDED_PERCENT"
UNBOUNDED_PERCENT = "UNBOUNDED_PERCENT"
COUNT = "COUNT"


@dataclass(frozen=True)
class Threshold:
    """`deploymentCircuitBreaker.thresholdConfiguration`: how many failed tasks trip the breaker."""

    type: str = BOUNDED_PERCENT
    value: int = 50


@dataclass(frozen=True)
class DeploymentAlarms:
    """`deploymentConfiguration.alarms`: alarms (the `Alarm` kind) whose ALARM state fails a deployment."""

    names: tuple[str, ...] = ()
    enable: bool = False
    rollback: bool = False


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
    threshold: Threshold = Threshold()
    reset_on_healthy_task: bool = True
    strategy: str = ROLLING
    bake_time: float = 0.0  # seconds (bakeTimeInMinutes x 60)
    alarms: DeploymentAlarms = DeploymentAlarms()
    constraints: tuple[Constraint, ...] = ()
    strategies: tuple[Strategy, ...] = ()
    health_check_grace_period: int = 0
    auto_scaling: Mapping[str, Any] | None = None
    source: str = ""
    revision: int | None = None  # `taskDefinition: family:N` pins revision N; None runs the latest

    @property
    def task_definition_ref(self) -> str:
        """The task definition as the manifest names it: `family` or `family:N`."""
        return self.task_definition if self.revision is None else f"{self.task_definition}:{self.revision}"

    @property
    def group(self) -> str:
        return f"service:{self.name}"


@dataclass(frozen=True)
class Alarm:
    """A metric alarm in CloudWatch's PutMetricAlarm vocabulary (the `Alarm` kind).

    `metric` is a metric source as auto scaling reads them: `{"predefinedMetricType": ...,
    "service": NAME}` for a service's CPU or memory utilisation, or `{"customizedMetric": {"url": ...,
    "metricName": ..., "statistic": ...}}`. `period` is in seconds.
    """

    name: str
    metric: Mapping[str, Any]
    threshold: float
    comparison_operator: str
    statistic: str = "Average"
    period: int = 60
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None  # None: evaluation_periods
    treat_missing_data: str = "missing"
    description: str = ""
    source: str = ""


@dataclass(frozen=True)
class DesiredState:
    clusters: Mapping[str, Cluster] = field(default_factory=dict)
    task_definitions: Mapping[str, TaskDefinition] = field(default_factory=dict)
    services: Mapping[str, Service] = field(default_factory=dict)
    alarms: Mapping[str, Alarm] = field(default_factory=dict)
    # What each service runs, when it is not its family's current spec: a pinned or rolled-back revision
    # (set by `deployments.resolve` from the cluster's history; absent: `task_definitions[family]`).
    running: Mapping[str, TaskDefinition] = field(default_factory=dict)

    def task_definition_of(self, svc: Service) -> TaskDefinition | None:
        """The task definition `svc` runs: its resolved revision, else its family's current spec."""
        return self.running.get(svc.name) or self.task_definitions.get(svc.task_definition)

    def services_of(self, cluster: str) -> list[Service]:
        return sorted((s for s in self.services.values() if s.cluster == cluster), key=lambda s: s.name)
