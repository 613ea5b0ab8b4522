"""Semantic rules for one Service, seen together with the task definition and cluster it names.

Owns scheduling strategy and desiredCount, deploymentConfiguration (percentages; the ROLLING strategy
as the only one, since BLUE_GREEN, LINEAR, CANARY and lifecycle hooks shift traffic through a load
balancer reconciler does not have; circuit-breaker settings that have no effect), launch type versus the task
definition's requiresCompatibilities, service placement (constraints, strategies, the per-task limits
counted with the task definition's constraints), load balancer targets, and the cluster policy
(privileged containers, host paths). Auto scaling lives in
semantic_autoscaling.py; resolving the names themselves (and reporting missing targets) in semantic.py.

`ServiceView.taskdef`/`.cluster` hold a target only when it passed the schema; rules that need one skip
quietly when it is None, so a broken or missing target is reported once, elsewhere. No I/O; never
raises on odd values.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.manifests import document
from reconciler.manifests import semantic_taskdef as td

Diagnostics = Iterator[document.Diagnostic]

DEFAULT_MAXIMUM_PERCENT = 200
DEFAULT_MINIMUM_HEALTHY_PERCENT = 100
ROLLING = "ROLLING"
# deploymentConfiguration fields of the traffic-shifting strategies, and what each one is for.
TRAFFIC_SHIFTING = {
    "linearConfiguration": "configures the LINEAR strategy",
    "canaryConfiguration": "configures the CANARY strategy",
    "lifecycleHooks": "run at the stages of a BLUE_GREEN, LINEAR or CANARY deployment",
}
NO_TRAFFIC_SHIFTING = "traffic shifting through a load balancer, which reconciler does not have yet"
BINPACK_FIELDS = ("cpu", "memory")
SPREAD_FIELDS = ("instanceId", "host")


@dataclass(frozen=True)
class ServiceView:
    """A service with the schema-valid task definition and cluster it resolves to (None when not)."""

    doc: document.Document
    taskdef: document.Document | None = None
    cluster: document.Document | None = None

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.doc.spec

    @property
    def strategy(self) -> str:
        return td.string(self.spec.get("schedulingStrategy")) or "REPLICA"

    @property
    def launch_type(self) -> str:
        """The launch type; ECS uses EC2 when neither launchType nor a capacity provider is given."""
        return td.string(self.spec.get("launchType")) or "EC2"


def rule_scheduling(v: ServiceView) -> Diagnostics:
    """DAEMON takes no desiredCount or autoScaling and no FARGATE; REPLICA needs desiredCount unless it scales."""
    spec, doc = v.spec, v.doc
    if v.strategy == "DAEMON":
        if spec.get("desiredCount") is not None:
            yield doc.diagnostic(
                ("spec", "desiredCount"),
                "a DAEMON service runs one task per instance and takes no desiredCount",
            )
        if spec.get("autoScaling") is not None:
            yield doc.diagnostic(("spec", "autoScaling"), "a DAEMON service cannot use autoScaling")
        if spec.get("launchType") == "FARGATE":
            yield doc.diagnostic(
                ("spec", "schedulingStrategy"),
                "schedulingStrategy DAEMON is not available with launchType FARGATE",
            )
    elif spec.get("desiredCount") is None and spec.get("autoScaling") is None:
        yield doc.diagnostic(
            ("spec", "desiredCount"), "a REPLICA service needs desiredCount (or autoScaling to set it)"
        )


def rule_deployment(v: ServiceView) -> Diagnostics:
    """minimumHealthyPercent 0-100, maximumPercent >= 100 for REPLICA, and a warning when a rollout cannot move."""
    doc = v.doc
    at = ("spec", "deploymentConfiguration")
    dc = td.mapping(v.spec.get("deploymentConfiguration"))
    low, high = td.integer(dc.get("minimumHealthyPercent")), td.integer(dc.get("maximumPercent"))
    broken = False
    if low is not None and not 0 <= low <= 100:
        yield doc.diagnostic((*at, "minimumHealthyPercent"), f"minimumHealthyPercent {low} is outside 0-100")
        broken = True
    if v.strategy != "REPLICA":
        return
    if high is not None and high < 100:
        yield doc.diagnostic(
            (*at, "maximumPercent"),
            f"maximumPercent {high} is below 100, which a REPLICA service does not allow",
        )
        broken = True
    if broken:
        return
    desired = td.integer(v.spec.get("desiredCount"))
    if desired is None:
        desired = td.integer(td.mapping(v.spec.get("autoScaling")).get("minCapacity"))
    if not desired or (low is None and high is None):
        return
    most = math.floor(desired * (DEFAULT_MAXIMUM_PERCENT if high is None else high) / 100)
    least = math.ceil(desired * (DEFAULT_MINIMUM_HEALTHY_PERCENT if low is None else low) / 100)
    if most <= desired and least >= desired:
        yield doc.diagnostic(
            (*at, "maximumPercent") if high is not None else (*at, "minimumHealthyPercent"),
            f"with desiredCount {desired} a rolling deployment can neither start a task (at most {most}) "
            f"nor stop one (at least {least} healthy), so it cannot make progress",
            document.WARNING,
        )


def rule_deployment_strategy(v: ServiceView) -> Diagnostics:
    """Only ROLLING deploys here; circuit-breaker tuning without `enable: true` is a warning.

    Alarms, bake time and the circuit breaker work with the ECS (rolling) deployment controller, which
    DAEMON services use too, so they are accepted for both scheduling strategies."""
    doc = v.doc
    at = ("spec", "deploymentConfiguration")
    dc = td.mapping(v.spec.get("deploymentConfiguration"))
    strategy = td.string(dc.get("strategy"))
    if strategy is not None and strategy != ROLLING:
        yield doc.diagnostic(
            (*at, "strategy"),
            f"deploymentConfiguration.strategy {strategy} needs {NO_TRAFFIC_SHIFTING}; use {ROLLING}",
        )
    for key, purpose in TRAFFIC_SHIFTING.items():
        if key in dc:
            yield doc.diagnostic(
                (*at, key),
                f"deploymentConfiguration.{key} {purpose}: that needs {NO_TRAFFIC_SHIFTING}; remove it",
            )
    breaker = td.mapping(dc.get("deploymentCircuitBreaker"))
    if breaker and breaker.get("enable") is not True:
        for key in ("thresholdConfiguration", "resetOnHealthyTask"):
            if key in breaker:
                yield doc.diagnostic(
                    (*at, "deploymentCircuitBreaker", key),
                    f"deploymentCircuitBreaker.{key} has no effect while the circuit breaker is off (enable: false)",
                    document.WARNING,
                )


def rule_launch_type(v: ServiceView) -> Diagnostics:
    """The task definition must be compatible with the service's launch type (EC2 when unset)."""
    if v.taskdef is None:
        return
    compat = td.compatibilities(v.taskdef)
    allowed = compat or ["EC2", "EXTERNAL"]
    if v.launch_type in allowed:
        return
    which = (
        f"launchType {v.launch_type}"
        if v.spec.get("launchType")
        else "the service sets no launchType (so EC2)"
    )
    listed = (
        f"requiresCompatibilities {', '.join(compat)}"
        if compat
        else "no requiresCompatibilities (so EC2 and EXTERNAL only)"
    )
    yield v.doc.diagnostic(
        ("spec", "launchType"), f"{which}, but task definition {v.taskdef.name!r} declares {listed}"
    )


def rule_placement(v: ServiceView) -> Diagnostics:
    doc = v.doc
    constraints = td.items(v.spec.get("placementConstraints"))
    strategies = td.items(v.spec.get("placementStrategy"))
    fargate = v.launch_type == "FARGATE"
    if fargate and constraints:
        yield doc.diagnostic(
            ("spec", "placementConstraints"), "FARGATE services do not support placement constraints"
        )
    if fargate and strategies:
        yield doc.diagnostic(
            ("spec", "placementStrategy"), "FARGATE services do not support placement strategies"
        )
    for k, pc in enumerate(constraints):
        pc = td.mapping(pc)
        expression = td.string(pc.get("expression"))
        if pc.get("type") == "distinctInstance" and pc.get("expression") is not None:
            yield doc.diagnostic(
                ("spec", "placementConstraints", k, "expression"),
                "a distinctInstance constraint takes no expression",
            )
        elif pc.get("type") == "memberOf" and not (expression or "").strip():
            yield doc.diagnostic(
                ("spec", "placementConstraints", k, "expression"), "a memberOf constraint needs an expression"
            )
    inherited = len(td.items(v.taskdef.spec.get("placementConstraints"))) if v.taskdef is not None else 0
    if constraints and inherited <= td.MAX_PLACEMENT_CONSTRAINTS < len(constraints) + inherited:
        yield doc.diagnostic(
            ("spec", "placementConstraints"),
            f"{len(constraints)} service placement constraints plus {inherited} from the task definition "
            f"exceed the limit of {td.MAX_PLACEMENT_CONSTRAINTS} per task",
        )
    for k, ps in enumerate(strategies):
        yield from _strategy(doc, k, td.mapping(ps))


def _strategy(doc: document.Document, k: int, ps: Mapping[str, Any]) -> Diagnostics:
    kind, field = ps.get("type"), ps.get("field")
    at = ("spec", "placementStrategy", k, "field")
    if kind == "binpack" and field not in BINPACK_FIELDS:
        yield doc.diagnostic(at, f"binpack needs field cpu or memory, not {field!r}")
    elif kind == "spread" and not (
        field in SPREAD_FIELDS
        or (isinstance(field, str) and field.startswith("attribute:") and field[len("attribute:") :].strip())
    ):
        yield doc.diagnostic(at, f"spread needs field instanceId, host or attribute:<name>, not {field!r}")


def rule_load_balancers(v: ServiceView) -> Diagnostics:
    """Each load balancer names a container of the task definition and one of its container ports."""
    if v.taskdef is None:
        return
    by_name = dict((td.string(c.get("name")), c) for _, c in reversed(td.containers(v.taskdef)))
    for k, lb in enumerate(td.items(v.spec.get("loadBalancers"))):
        lb = td.mapping(lb)
        name, port = lb.get("containerName"), td.integer(lb.get("containerPort"))
        at = ("spec", "loadBalancers", k)
        if not isinstance(name, str):
            continue
        if name not in by_name:
            yield v.doc.diagnostic(
                (*at, "containerName"),
                f"load balancer container {name!r} is not in task definition {v.taskdef.name!r}",
            )
            continue
        ports = [
            td.integer(td.mapping(pm).get("containerPort"))
            for pm in td.items(by_name[name].get("portMappings"))
        ]
        if port is not None and port not in ports:
            yield v.doc.diagnostic(
                (*at, "containerPort"),
                f"container {name!r} maps no containerPort {port} for the load balancer",
            )


def host_path_allowed(path: str, prefixes: list[Any]) -> bool:
    """`path` is at or below one of `prefixes`, compared by whole path components after normalising."""
    if not path.startswith("/"):
        return False
    norm = "/" + posixpath.normpath(path).lstrip("/")
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            continue
        base = "/" + posixpath.normpath(prefix).lstrip("/")
        if base == "/" or norm == base or norm.startswith(base + "/"):
            return True
    return False


def rule_cluster_policy(v: ServiceView) -> Diagnostics:
    """Privileged containers need policy.allowPrivileged; host volumes must sit under policy.allowedHostPaths.

    allowedHostPaths absent means no restriction; an empty list allows no host path at all.
    """
    if v.taskdef is None or v.cluster is None:
        return
    policy = td.mapping(v.cluster.spec.get("policy"))
    at = ("spec", "taskDefinition")
    family, cluster = v.taskdef.name, v.cluster.name
    if policy.get("allowPrivileged") is not True:
        for i, c in td.containers(v.taskdef):
            if c.get("privileged") is True:
                yield v.doc.diagnostic(
                    at,
                    f"container {td.label(c, i)} of task definition {family!r} is privileged, "
                    f"but cluster {cluster!r} does not allow privileged containers (policy.allowPrivileged)",
                )
    allowed = policy.get("allowedHostPaths")
    if not isinstance(allowed, list):
        return
    for volume in td.items(v.taskdef.spec.get("volumes")):
        volume = td.mapping(volume)
        path = td.host_source_path(volume)
        if path is not None and not host_path_allowed(path, allowed):
            permitted = ", ".join(str(p) for p in allowed) if allowed else "none"
            yield v.doc.diagnostic(
                at,
                f"volume {volume.get('name')!r} of task definition {family!r} mounts host path {path!r}, "
                f"which cluster {cluster!r} does not allow (policy.allowedHostPaths: {permitted})",
            )


RULES: tuple[Callable[[ServiceView], Diagnostics], ...] = (
    rule_scheduling,
    rule_deployment,
    rule_deployment_strategy,
    rule_launch_type,
    rule_placement,
    rule_load_balancers,
    rule_cluster_policy,
)
