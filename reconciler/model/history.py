"""A cluster's history: registered task-definition revisions, service deployments and service events.

Owns the typed, frozen shapes of that history (`Revision`, `Deployment`, `Event`, `ServiceHistory`,
`History`) and their JSON form (`to_json` / `from_json`, the document `ledger` keeps on the cluster's
engines). Names and values are ECS's: `family:N` revisions ACTIVE or INACTIVE, deployments `ecs-svc/<digits>`
PRIMARY / ACTIVE / INACTIVE with a rolloutState IN_PROGRESS / COMPLETED / FAILED, and the last 100 events
of a service. It must not decide anything (`deployments` moves a history on) nor do I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.model import spec

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
PRIMARY = "PRIMARY"

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"

EVENT_LIMIT = 100  # ECS keeps the latest 100 events of a service
DEPLOYMENT_LIMIT = 20  # deployments kept per service (INACTIVE ones beyond this are forgotten)
FAILED_IDS_LIMIT = 256  # task ids remembered per deployment so a failure is counted once

ACCOUNT = "000000000000"  # the account part of the ARNs we show (there is no AWS account here)
REGION = "local"


def arn(kind: str, name: str, region: str | None = None) -> str:
    """An ECS-shaped ARN, e.g. `arn:aws:ecs:local:000000000000:task-definition/web:3`."""
    return f"arn:aws:ecs:{region or REGION}:{ACCOUNT}:{kind}/{name}"


def timestamp(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Revision:
    """One registered revision of a task-definition family: the canonical spec exactly as it ran."""

    family: str
    number: int
    task_hash: str
    spec: Mapping[str, Any] = field(repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    registered_at: float = 0.0
    status: str = ACTIVE
    source: str = ""  # the manifest it was registered from (environment files are read relative to it)

    @property
    def ref(self) -> str:
        return f"{self.family}:{self.number}"

    def task_definition(self, warnings: tuple[str, ...] = ()) -> spec.TaskDefinition:
        """This revision as the planner and launcher take a task definition."""
        return spec.TaskDefinition(family=self.family, spec=self.spec, task_hash=self.task_hash, raw=self.raw,
                                   warnings=warnings, source=self.source, revision=self.number)


@dataclass(frozen=True)
class Deployment:
    """One deployment of a service (ECS's `deployments[]` item, without the counts observed live)."""

    id: str
    family: str
    revision: int
    task_hash: str
    fingerprint: str  # what the service runs: revision and the deployment-relevant settings
    desired_count: int
    created_at: float
    updated_at: float
    status: str = PRIMARY
    rollout_state: str = IN_PROGRESS
    rollout_state_reason: str = ""
    launch_type: str = spec.EC2
    failed_tasks: int = 0
    failed_ids: tuple[str, ...] = ()  # tasks already counted (a failure counts once)
    healthy_ids: tuple[str, ...] = ()  # new tasks already seen healthy (each resets the count once)
    steady_at: float | None = None  # when every task of it was running and healthy: the bake starts
    rollback_of: str | None = None  # the deployment this one rolls back

    @property
    def task_definition(self) -> str:
        return f"{self.family}:{self.revision}"

    @property
    def done(self) -> bool:
        return self.rollout_state != IN_PROGRESS


@dataclass(frozen=True)
class Event:
    id: str
    created_at: float
    message: str


@dataclass(frozen=True)
class Blocked:
    """The manifests ask for what a deployment that FAILED ran: the service stays where it is until they
    ask for something else."""

    fingerprint: str
    deployment: str
    reason: str
    at: float
    ref: str


@dataclass(frozen=True)
class ServiceHistory:
    deployments: tuple[Deployment, ...] = ()  # newest first
    events: tuple[Event, ...] = ()  # newest first, at most EVENT_LIMIT
    blocked: Blocked | None = None

    @property
    def primary(self) -> Deployment | None:
        return next((d for d in self.deployments if d.status == PRIMARY), None)

    def deployment(self, deployment_id: str) -> Deployment | None:
        return next((d for d in self.deployments if d.id == deployment_id), None)

    def last_completed(self, excluding: str | None = None) -> Deployment | None:
        return next((d for d in self.deployments if d.rollout_state == COMPLETED and d.id != excluding), None)


@dataclass(frozen=True)
class History:
    """Everything a cluster remembers, as one versioned document (`generation` is the ledger's)."""

    cluster: str
    revisions: Mapping[str, tuple[Revision, ...]] = field(default_factory=dict)  # family -> oldest first
    services: Mapping[str, ServiceHistory] = field(default_factory=dict)
    generation: int = 0

    def revisions_of(self, family: str) -> tuple[Revision, ...]:
        return self.revisions.get(family, ())

    def revision(self, family: str, number: int) -> Revision | None:
        return next((r for r in self.revisions_of(family) if r.number == number), None)

    def latest(self, family: str) -> Revision | None:
        revs = self.revisions_of(family)
        return revs[-1] if revs else None

    def by_hash(self, family: str, task_hash: str) -> Revision | None:
        """The newest revision of `family` with this spec."""
        return next((r for r in reversed(self.revisions_of(family)) if r.task_hash == task_hash), None)

    def service(self, name: str) -> ServiceHistory:
        return self.services.get(name) or ServiceHistory()

    def with_service(self, name: str, sh: ServiceHistory) -> History:
        return dataclasses.replace(self, services={**self.services, name: sh})


def describe_revisions(revs: tuple[Revision, ...]) -> str:
    """`1-3`, `1, 4-6`: which revision numbers exist, for error messages."""
    numbers = [r.number for r in revs]
    if not numbers:
        return "none"
    out: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)


# -- JSON ------------------------------------------------------------------------------------------------


def to_json(h: History) -> dict[str, Any]:
    return {
        "cluster": h.cluster,
        "revisions": {
            family: [
                {"family": r.family, "revision": r.number, "taskHash": r.task_hash, "spec": r.spec, "raw": r.raw,
                 "registeredAt": r.registered_at, "status": r.status, "source": r.source}
                for r in revs
            ]
            for family, revs in sorted(h.revisions.items())
        },
        "services": {
            name: {
                "deployments": [_deployment_json(d) for d in sh.deployments],
                "events": [{"id": e.id, "createdAt": e.created_at, "message": e.message} for e in sh.events],
                "blocked": dataclasses.asdict(sh.blocked) if sh.blocked else None,
            }
            for name, sh in sorted(h.services.items())
        },
    }


def _deployment_json(d: Deployment) -> dict[str, Any]:
    out = dataclasses.asdict(d)
    out["failed_ids"] = list(d.failed_ids)
    out["healthy_ids"] = list(d.healthy_ids)
    return out


def from_json(cluster: str, doc: Mapping[str, Any] | None, generation: int = 0) -> History:
    """The history in `doc`; a missing or foreign document is an empty history. Unknown keys are ignored
    (a newer reconciler may have written them)."""
    if not isinstance(doc, Mapping):
        return History(cluster, generation=generation)
    revisions: dict[str, tuple[Revision, ...]] = {}
    for family, revs in (doc.get("revisions") or {}).items():
        revisions[family] = tuple(
            Revision(family=r["family"], number=int(r["revision"]), task_hash=r["taskHash"], spec=r.get("spec") or {},
                     raw=r.get("raw") or {}, registered_at=float(r.get("registeredAt", 0.0)),
                     status=r.get("status", ACTIVE), source=r.get("source", ""))
            for r in revs
        )
    services: dict[str, ServiceHistory] = {}
    names = {f.name for f in dataclasses.fields(Deployment)}
    for name, raw in (doc.get("services") or {}).items():
        deployments = []
        for d in raw.get("deployments") or []:
            values = {k: v for k, v in d.items() if k in names}
            values["failed_ids"] = tuple(values.get("failed_ids") or ())
            values["healthy_ids"] = tuple(values.get("healthy_ids") or ())
            deployments.append(Deployment(**values))
        events = tuple(Event(e["id"], float(e["createdAt"]), e["message"]) for e in raw.get("events") or [])
        blocked = raw.get("blocked")
        services[name] = ServiceHistory(tuple(deployments), events, Blocked(**blocked) if isinstance(blocked, Mapping) else None)
    return History(cluster, revisions, services, generation)
