"""Semantic checks: what a manifest set can get wrong once every document has the right shape.

Owns `check(valid, all_docs)`, the third stage of the validation pipeline (loader -> schema -> here), and
the rules that span documents: unique names per kind, Service -> Cluster, Service -> TaskDefinition,
Service -> Alarm (deploymentConfiguration.alarms) and Alarm -> Service (a predefined metric's service)
references, and cluster-wide rules (instance and fargate endpoint names unique together, each endpoint
in one place only). Rules about one task definition live in semantic_taskdef.py (task level) and
semantic_containers.py (containers of a task), about a service with its task definition and cluster
(including the cluster policy) in semantic_service.py, about auto scaling in semantic_autoscaling.py,
and about one Alarm in semantic_alarm.py.
This module runs them all and returns every problem at once, each located at the offending field with
a one-sentence message.

Rules run only on `valid` documents (the schema accepted their shape), but names resolve against
`all_docs`, so a reference to a document that merely failed the schema is not reported as missing; such a
target is skipped for deeper cross-checks. Every access is defensive: no rule raises on odd values.

It must not do I/O. In particular the TLS files (`tls.ca`, `tls.cert`, `tls.key`) and
`registryCredentialsFile` that a cluster names are not checked for existence here; the command that
connects to the hosts does that, where reading the file system is expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from reconciler.manifests import document, references
from reconciler.manifests import semantic_alarm as alarm
from reconciler.manifests import semantic_autoscaling as autoscaling
from reconciler.manifests import semantic_containers as containers
from reconciler.manifests import semantic_service as service
from reconciler.manifests import semantic_taskdef as taskdef

Diagnostics = Iterator[document.Diagnostic]
DEFAULT_CLUSTER = references.DEFAULT_CLUSTER
KINDS = ("Cluster", "TaskDefinition", "Service", "Alarm")


def _key(doc: document.Document) -> tuple[str, int]:
    return (doc.path, doc.index)


def _where(doc: document.Document, pointer: document.Pointer = ("metadata", "name")) -> str:
    return f"{doc.path}:{doc.locate(pointer)[0]}"


@dataclass
class Context:
    """The documents of one check, indexed by kind and name."""

    valid: list[document.Document]
    all_docs: list[document.Document]
    # kind -> every declared name (all_docs: a document that failed the schema still declares its name)
    declared: dict[str, set[str]] = field(default_factory=dict)
    # kind -> name -> the first schema-valid document of that name, for cross-checks
    targets: dict[str, dict[str, document.Document]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for doc in [*self.all_docs, *self.valid]:
            self.declared.setdefault(doc.kind, set()).add(doc.name)
        for doc in self.valid:
            self.targets.setdefault(doc.kind, {}).setdefault(doc.name, doc)

    def of_kind(self, kind: str) -> list[document.Document]:
        return [d for d in self.valid if d.kind == kind]


def cluster_reference(doc: document.Document) -> str | None:
    """The cluster name a service names: `default` when unset; the name part of an ARN."""
    return references.cluster_name(doc.spec.get("cluster"))


def task_definition_reference(doc: document.Document) -> tuple[str, str | None] | None:
    """(family, revision or None) from `family`, `family:N` or a task-definition ARN."""
    return references.task_definition(doc.spec.get("taskDefinition"))


def _not_declared(name: str, kind: str, declared: set[str]) -> str:
    """`<name> is not declared by any <kind> document`, with a did-you-mean or what is declared."""
    names = sorted(declared - {"?"})
    guess = document.guess(name, names)
    if guess:
        hint = f" (did you mean {guess!r}?)"
    elif names:
        hint = f" (declared: {', '.join(names)})"
    else:
        hint = f" (no {kind} is declared)"
    return f"{name!r} is not declared by any {kind} document{hint}"


# ---------------------------------------------------------------- cross-document rules


def rule_unique_names(ctx: Context) -> Diagnostics:
    """Names are unique per kind; the second and later documents are reported, naming the first."""
    valid = {_key(d) for d in ctx.valid}
    first: dict[tuple[str, str], document.Document] = {}
    for doc in ctx.all_docs:
        if doc.name == "?" or doc.kind not in KINDS:
            continue
        earlier = first.setdefault((doc.kind, doc.name), doc)
        if earlier is not doc and _key(doc) in valid:
            yield doc.diagnostic(
                ("metadata", "name"),
                f"{doc.kind} {doc.name!r} is declared twice; the first is at {_where(earlier)}",
            )


def rule_references(ctx: Context) -> Diagnostics:
    """A service's cluster and task definition name documents of the manifest set."""
    clusters = sorted(ctx.declared.get("Cluster", set()) - {"?"})
    families = ctx.declared.get("TaskDefinition", set())
    for doc in ctx.of_kind("Service"):
        cluster = cluster_reference(doc)
        if cluster is not None and cluster not in clusters:
            known = f" (declared: {', '.join(clusters)})" if clusters else " (no Cluster is declared)"
            if doc.spec.get("cluster") is None:
                message = f"the service sets no cluster, so it belongs to cluster {DEFAULT_CLUSTER!r}, which is not declared{known}"
            else:
                message = f"cluster {cluster!r} is not declared by any Cluster document{known}"
            yield doc.diagnostic(("spec", "cluster"), message)
        ref = task_definition_reference(doc)
        if ref is None:
            if doc.spec.get("taskDefinition") is None:
                yield doc.diagnostic(("spec", "taskDefinition"), "the service names no taskDefinition")
            continue
        family, revision = ref
        if family not in families:
            yield doc.diagnostic(
                ("spec", "taskDefinition"),
                f"task definition family {family!r} is not declared by any TaskDefinition document",
            )
        elif revision is not None and references.revision_number(revision) is None:
            yield doc.diagnostic(
                ("spec", "taskDefinition"), f"task definition revision {revision!r} is not a positive integer"
            )
        elif revision is not None:
            yield doc.diagnostic(
                ("spec", "taskDefinition"),
                f"revision {revision} of {family!r} cannot be checked here; the checks used the family's current definition",
                document.NOTICE,
            )


def rule_alarm_references(ctx: Context) -> Diagnostics:
    """A service's deploymentConfiguration.alarms names Alarm documents; a predefined alarm metric a Service."""
    alarms = ctx.declared.get("Alarm", set())
    for doc in ctx.of_kind("Service"):
        at = ("spec", "deploymentConfiguration", "alarms", "alarmNames")
        dc = taskdef.mapping(doc.spec.get("deploymentConfiguration"))
        for k, name in enumerate(taskdef.items(taskdef.mapping(dc.get("alarms")).get("alarmNames"))):
            if isinstance(name, str) and name not in alarms:
                yield doc.diagnostic((*at, k), "alarm " + _not_declared(name, "Alarm", alarms))
    services = ctx.declared.get("Service", set())
    for doc in ctx.of_kind("Alarm"):
        metric = taskdef.mapping(doc.spec.get("metric"))
        name = metric.get("service")
        if isinstance(name, str) and name not in services:
            yield doc.diagnostic(
                ("spec", "metric", "service"), "service " + _not_declared(name, "Service", services)
            )


def _endpoint_key(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme in ("tcp", "ssh", "http", "https"):
        return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"
    return value.strip().rstrip("/")


def rule_clusters(ctx: Context) -> Diagnostics:
    """Names unique per cluster across `instances` and `fargate.endpoints` together; every endpoint used
    once across clusters."""
    endpoints: dict[str, tuple[document.Document, document.Pointer]] = {}
    for doc in ctx.of_kind("Cluster"):
        spec = doc.spec
        hosts: list[tuple[document.Pointer, Mapping]] = [
            (("spec", "instances", i), taskdef.mapping(x))
            for i, x in enumerate(taskdef.items(spec.get("instances")))
        ]
        fargate = [
            (("spec", "fargate", "endpoints", i), taskdef.mapping(x))
            for i, x in enumerate(taskdef.items(taskdef.mapping(spec.get("fargate")).get("endpoints")))
        ]
        names: dict[str, document.Pointer] = {}  # one namespace: the model finds instances by name in both
        for group, what in ((hosts, "instance"), (fargate, "fargate endpoint")):
            for at, host in group:
                name = taskdef.string(host.get("name"))
                if name is None:
                    continue
                if name in names:
                    yield doc.diagnostic(
                        (*at, "name"),
                        f"{what} name {name!r} is already used in this cluster ({document.pointer_str(names[name])})",
                    )
                else:
                    names[name] = at
        for at, host in hosts + fargate:
            endpoint = taskdef.string(host.get("endpoint"))
            if endpoint is None:
                continue
            key = _endpoint_key(endpoint)
            if key in endpoints:
                other, other_at = endpoints[key]
                yield doc.diagnostic(
                    (*at, "endpoint"),
                    f"endpoint {endpoint!r} is already used by Cluster {other.name!r} "
                    f"{document.pointer_str(other_at)} at {_where(other, (*other_at, 'endpoint'))}",
                )
            else:
                endpoints[key] = (doc, at)


# ---------------------------------------------------------------- per-document rule groups


def rule_task_definitions(ctx: Context) -> Diagnostics:
    for doc in ctx.of_kind("TaskDefinition"):
        for rule in (*taskdef.RULES, *containers.RULES):
            yield from rule(doc)


def _view(ctx: Context, doc: document.Document) -> service.ServiceView:
    ref = task_definition_reference(doc)
    cluster = cluster_reference(doc)
    return service.ServiceView(
        doc=doc,
        taskdef=ctx.targets.get("TaskDefinition", {}).get(ref[0]) if ref else None,
        cluster=ctx.targets.get("Cluster", {}).get(cluster) if cluster is not None else None,
    )


def rule_services(ctx: Context) -> Diagnostics:
    for doc in ctx.of_kind("Service"):
        view = _view(ctx, doc)
        for rule in service.RULES:
            yield from rule(view)
        for auto_rule in autoscaling.RULES:
            yield from auto_rule(doc)


def rule_alarms(ctx: Context) -> Diagnostics:
    for doc in ctx.of_kind("Alarm"):
        for rule in alarm.RULES:
            yield from rule(doc)


RULES: tuple[Callable[[Context], Diagnostics], ...] = (
    rule_unique_names,
    rule_references,
    rule_alarm_references,
    rule_clusters,
    rule_task_definitions,
    rule_services,
    rule_alarms,
)


def check(valid: list[document.Document], all_docs: list[document.Document]) -> list[document.Diagnostic]:
    """Every semantic problem of the manifest set, each located at the offending field."""
    ctx = Context(valid=list(valid), all_docs=list(all_docs))
    return [d for rule in RULES for d in rule(ctx)]
