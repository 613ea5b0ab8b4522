"""Validated documents to the typed desired state (`model.spec.DesiredState`).

Owns the translation from manifest vocabulary to model values: defaults ECS applies (cluster
`default`, deployment percentages, REPLICA, the ROLLING strategy, a circuit breaker threshold of
BOUNDED_PERCENT 50), references in every ECS form (`family:N` pins a revision, ARNs mean their names),
Alarm documents (period in whole seconds), the local engine as the pool of a cluster that declares no
engines, and fingerprints of local files a container reads (environment files) so their edits count as
changes. A fingerprint is the path as written plus a hash of the content, never the resolved path, so
the same manifests checked out in another directory (the daemon's Git mode) hash the same; the files
are read at container creation, relative to the manifest's directory (`resolve`, from `actions.launch`).
A task definition is built from its own document only, whatever services use it.
It must not validate (that happened before) nor talk to engines.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

from reconciler.engine import translate
from reconciler.manifests import document, references
from reconciler.model import normalize, spec, units

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def default_endpoint(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def _tls(raw: Any, base: str) -> spec.TLS | None:
    if not isinstance(raw, Mapping):
        return None

    def path(key: str) -> str | None:
        value = raw.get(key)
        return os.path.normpath(os.path.join(base, value)) if isinstance(value, str) else None

    return spec.TLS(ca=path("ca"), cert=path("cert"), key=path("key"), verify=bool(raw.get("verify", True)))


def _instance(raw: Mapping[str, Any], base: str, fargate: bool, publish_default: str) -> spec.Instance:
    attributes = {str(k): str(v) for k, v in (raw.get("attributes") or {}).items()}
    if raw.get("availabilityZone"):
        attributes["ecs.availability-zone"] = str(raw["availabilityZone"])
    if raw.get("instanceType"):
        attributes["ecs.instance-type"] = str(raw["instanceType"])
    resources = raw.get("resources") or {}
    return spec.Instance(
        name=raw["name"],
        endpoint=raw["endpoint"],
        tls=_tls(raw.get("tls"), base),
        attributes=attributes,
        cpu=resources.get("cpu"),
        memory=resources.get("memory"),
        status=raw.get("status", spec.ACTIVE),
        publish_address=raw.get("publishAddress", publish_default),
        fargate=fargate,
    )


def cluster(doc: document.Document, environ: Mapping[str, str] | None = None) -> spec.Cluster:
    s = doc.spec
    base = os.path.dirname(doc.path)
    instances = tuple(_instance(i, base, False, "0.0.0.0") for i in s.get("instances") or [])
    pool = s.get("fargate") or {}
    pool_publish = pool.get("publishAddress", "0.0.0.0")
    fargate = tuple(_instance(i, base, True, pool_publish) for i in pool.get("endpoints") or [])
    if not instances and not fargate:
        fargate = (spec.Instance(name=spec.LOCAL_INSTANCE, endpoint=default_endpoint(environ), fargate=True),)
    policy = s.get("policy") or {}
    hosts = policy.get("allowedHostPaths")
    creds = (s.get("credentials") or {}).get("registryCredentialsFile")
    return spec.Cluster(
        name=doc.name,
        region=s.get("region"),
        instances=instances,
        fargate=fargate,
        policy=spec.Policy(
            allow_privileged=bool(policy.get("allowPrivileged", False)),
            allowed_host_paths=tuple(hosts) if isinstance(hosts, list) else None,
        ),
        credentials_file=os.path.normpath(os.path.join(base, creds)) if isinstance(creds, str) else None,
        source=doc.path,
    )


def _file_fingerprints(raw: Mapping[str, Any], base: str) -> dict[str, Any]:
    """Environment files named by a local path keep their path as written and gain a content hash
    (`sha256`, or `missing`); the file is read relative to `base`, the manifest's directory."""
    containers = []
    for c in raw.get("containerDefinitions") or []:
        files = []
        for f in c.get("environmentFiles") or []:
            value = f.get("value", "")
            if value.startswith("arn:"):
                files.append(dict(f))
                continue
            try:
                with open(os.path.join(base, value), "rb") as fh:
                    sha = hashlib.sha256(fh.read()).hexdigest()[:16]
            except OSError:
                sha = "missing"
            files.append({**f, "sha256": sha})
        containers.append({**c, "environmentFiles": files} if files else c)
    return {**raw, "containerDefinitions": containers}


def task_definition(doc: document.Document) -> spec.TaskDefinition:
    raw = dict(doc.spec)
    resolved = _file_fingerprints(raw, os.path.dirname(doc.path))
    canonical = normalize.task_definition(resolved)
    warnings = tuple(_local_warnings(canonical))
    return spec.TaskDefinition(
        family=doc.name,
        spec=canonical,
        task_hash=normalize.task_hash(canonical),
        raw=raw,
        warnings=warnings,
        source=doc.path,
    )


def _local_warnings(canonical: Mapping[str, Any]) -> list[str]:
    """What a task definition asks for that a plain Docker engine cannot honour."""
    out = []
    for c in canonical.get("containerDefinitions", []):
        name = c.get("name")
        driver = (c.get("logConfiguration") or {}).get("logDriver")
        if driver and driver not in translate.LOCAL_LOG_DRIVERS:
            out.append(f"container {name}: log driver {driver} is not available locally; using json-file")
        for s in c.get("secrets") or []:
            if not str(s.get("valueFrom", "")).startswith(("file:", "env:", "/")):
                out.append(
                    f"container {name}: secret {s.get('name')} from {s.get('valueFrom')} cannot be resolved locally "
                    "(use file:PATH or env:NAME); it is not set"
                )
        for f in c.get("environmentFiles") or []:
            if str(f.get("value", "")).startswith("arn:"):
                out.append(f"container {name}: environment file {f['value']} is in S3 and is not read locally")
            elif f.get("sha256") == "missing":
                out.append(f"container {name}: environment file {f['value']} does not exist")
        for key in ("resourceRequirements", "firelensConfiguration", "credentialSpecs"):
            if c.get(key):
                out.append(f"container {name}: {key} is not supported on plain Docker and is ignored")
    for v in canonical.get("volumes", []):
        for key in ("efsVolumeConfiguration", "fsxWindowsFileServerVolumeConfiguration", "s3filesVolumeConfiguration"):
            if v.get(key):
                out.append(f"volume {v.get('name')}: {key} is not available locally; an empty task volume is used")
    return out


def _threshold(raw: Any) -> spec.Threshold:
    if not isinstance(raw, Mapping):
        return spec.Threshold()
    return spec.Threshold(type=raw["type"], value=int(raw["value"]))


def _deployment_alarms(raw: Any) -> spec.DeploymentAlarms:
    if not isinstance(raw, Mapping):
        return spec.DeploymentAlarms()
    return spec.DeploymentAlarms(
        names=tuple(raw.get("alarmNames") or ()),
        enable=bool(raw.get("enable", False)),
        rollback=bool(raw.get("rollback", False)),
    )


def service(doc: document.Document) -> spec.Service:
    s = doc.spec
    deployment = s.get("deploymentConfiguration") or {}
    breaker = deployment.get("deploymentCircuitBreaker") or {}
    strategy = s.get("schedulingStrategy", spec.REPLICA)
    scaling = s.get("autoScaling")
    desired = s.get("desiredCount")
    if desired is None and isinstance(scaling, Mapping):
        desired = scaling.get("minCapacity", 0)
    family, revision = references.task_definition(s.get("taskDefinition")) or ("", None)
    return spec.Service(
        name=doc.name,
        cluster=references.cluster_name(s.get("cluster")) or references.DEFAULT_CLUSTER,
        task_definition=family,
        revision=references.revision_number(revision),
        desired_count=int(desired or 0),
        launch_type=s.get("launchType", spec.EC2),
        scheduling_strategy=strategy,
        maximum_percent=deployment.get("maximumPercent", 100 if strategy == spec.DAEMON else 200),
        minimum_healthy_percent=deployment.get("minimumHealthyPercent", 0 if strategy == spec.DAEMON else 100),
        circuit_breaker=bool(breaker.get("enable", False)),
        rollback=bool(breaker.get("rollback", False)),
        threshold=_threshold(breaker.get("thresholdConfiguration")),
        reset_on_healthy_task=bool(breaker.get("resetOnHealthyTask", True)),
        strategy=deployment.get("strategy", spec.ROLLING),
        bake_time=60.0 * deployment.get("bakeTimeInMinutes", 0),
        alarms=_deployment_alarms(deployment.get("alarms")),
        constraints=tuple(
            spec.Constraint(c["type"], c.get("expression")) for c in s.get("placementConstraints") or []
        ),
        strategies=tuple(spec.Strategy(p["type"], p.get("field")) for p in s.get("placementStrategy") or []),
        health_check_grace_period=int(s.get("healthCheckGracePeriodSeconds", 0) or 0),
        auto_scaling=scaling if isinstance(scaling, Mapping) else None,
        source=doc.path,
    )


def alarm(doc: document.Document) -> spec.Alarm:
    s = doc.spec
    periods = int(s["evaluationPeriods"])
    datapoints = s.get("datapointsToAlarm")
    return spec.Alarm(
        name=doc.name,
        metric=dict(s["metric"]),
        threshold=float(s["threshold"]),
        comparison_operator=s["comparisonOperator"],
        statistic=s.get("statistic", "Average"),
        period=int(units.parse_duration(s.get("period", 60))),
        evaluation_periods=periods,
        datapoints_to_alarm=None if datapoints is None else int(datapoints),
        treat_missing_data=s.get("treatMissingData", "missing"),
        description=s.get("alarmDescription", ""),
        source=doc.path,
    )


FREE_FORM_MAPS = frozenset({"dockerLabels", "options", "driverOpts", "labels", "annotations", "attributes"})


def without_extensions(value: Any, parent: str | None = None) -> Any:
    """`value` without the users' `x-` keys (anchors and notes), except inside free-form maps, whose
    keys are data (a docker label may well start with x-)."""
    if isinstance(value, Mapping):
        free = parent in FREE_FORM_MAPS
        return {k: v if free else without_extensions(v, k) for k, v in value.items() if free or not str(k).startswith("x-")}
    if isinstance(value, list):
        return [without_extensions(v, parent) for v in value]
    return value


def desired_state(documents: list[document.Document], environ: Mapping[str, str] | None = None) -> spec.DesiredState:
    """The desired state of valid documents."""
    documents = [
        document.Document(d.path, d.index, without_extensions(d.body), d.positions) for d in documents
    ]
    clusters = {d.name: cluster(d, environ) for d in documents if d.kind == "Cluster"}
    services = {d.name: service(d) for d in documents if d.kind == "Service"}
    tds = {d.name: task_definition(d) for d in documents if d.kind == "TaskDefinition"}
    alarms = {d.name: alarm(d) for d in documents if d.kind == "Alarm"}
    return spec.DesiredState(clusters=clusters, task_definitions=tds, services=services, alarms=alarms)
