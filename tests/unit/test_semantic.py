"""Table tests for the semantic stage (reconciler.manifests.semantic and its rule modules).

Every case starts from BASE, a manifest set with no semantic error (asserted by test_base_is_clean),
applies a few edits, and expects one located error. VALID cases apply edits that must stay clean.
Documents go through loader.load_bytes, so positions are real.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.manifests import document, loader, semantic
from reconciler.manifests import semantic_autoscaling as autoscaling
from reconciler.manifests import semantic_containers as containers
from reconciler.manifests import semantic_service as service
from reconciler.manifests import semantic_taskdef as taskdef

DROP = object()


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def base() -> dict[str, dict[str, Any]]:
    """cluster `default`, EC2 task `web` with its service, Fargate task `api` with its FARGATE service."""
    return {
        "cluster": _doc(
            "Cluster",
            "default",
            {
                "region": "eu-west-1",
                "instances": [
                    {"name": "h1", "endpoint": "unix:///var/run/docker.sock"},
                    {"name": "h2", "endpoint": "tcp://10.0.0.2:2376"},
                ],
                "fargate": {"endpoints": [{"name": "f1", "endpoint": "tcp://10.0.0.9:2376"}]},
            },
        ),
        "web": _doc(
            "TaskDefinition",
            "web",
            {
                "containerDefinitions": [
                    {"name": "app", "image": "nginx", "memory": 256, "portMappings": [{"containerPort": 80}]},
                ],
            },
        ),
        "api": _doc(
            "TaskDefinition",
            "api",
            {
                "requiresCompatibilities": ["FARGATE"],
                "networkMode": "awsvpc",
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [
                    {"name": "api", "image": "api:1", "portMappings": [{"containerPort": 8080}]},
                ],
            },
        ),
        "svc": _doc("Service", "web", {"taskDefinition": "web", "desiredCount": 2}),
        "apisvc": _doc(
            "Service", "api", {"taskDefinition": "api", "desiredCount": 1, "launchType": "FARGATE"}
        ),
    }


def edit(docs: dict[str, dict[str, Any]], key: str, pointer: tuple, value: Any) -> None:
    """Set (or DROP) the node at `pointer` of docs[key]; a key of a missing document adds `value` as one."""
    if key not in docs:
        docs[key] = copy.deepcopy(value)
        return
    node: Any = docs[key]
    for part in pointer[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            node = node[part]
    last = pointer[-1]
    if value is DROP:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(copy.deepcopy(value))
    else:
        node[last] = copy.deepcopy(value)


def load(docs: dict[str, dict[str, Any]]) -> list[document.Document]:
    text = yaml.safe_dump_all(list(docs.values()), sort_keys=False)
    loaded, problems = loader.load_bytes("m.yaml", text.encode())
    assert not problems
    return loaded


def run(*edits: tuple) -> list[document.Diagnostic]:
    docs = base()
    for e in edits:
        edit(docs, *e)
    loaded = load(docs)
    return semantic.check(loaded, loaded)


def errors(diags: list[document.Diagnostic]) -> list[document.Diagnostic]:
    return [d for d in diags if d.severity == document.ERROR]


def show(diags: list[document.Diagnostic]) -> str:
    return "\n".join(d.format() for d in diags) or "(none)"


C = ("spec", "containerDefinitions")
W0 = ("web", (*C, 0))
A0 = ("api", (*C, 0))
SIDE = {"name": "side", "image": "busybox", "memory": 64, "essential": False}
AUTO = ("spec", "autoScaling")


def w(*rest, value):  # edit inside the first container of task `web`
    return ("web", (*C, 0, *rest), value)


def a(*rest, value):  # edit inside the first container of task `api`
    return ("api", (*C, 0, *rest), value)


def steps(*pairs):
    return (
        "svc",
        AUTO,
        {
            "minCapacity": 1,
            "maxCapacity": 5,
            "stepScaling": [
                {
                    "adjustmentType": "ChangeInCapacity",
                    "stepAdjustments": [
                        {
                            "metricIntervalLowerBound": lo,
                            "metricIntervalUpperBound": hi,
                            "scalingAdjustment": 1,
                        }
                        if hi is not None
                        else {"metricIntervalLowerBound": lo, "scalingAdjustment": 1}
                        for lo, hi in pairs
                    ],
                }
            ],
        },
    )


def strip_none_bounds(docs_edit):
    """steps() writes `metricIntervalLowerBound: None`; drop such keys so a null bound is absent."""
    key, pointer, value = docs_edit
    for step in value["stepScaling"][0]["stepAdjustments"]:
        if step.get("metricIntervalLowerBound") is None:
            step.pop("metricIntervalLowerBound", None)
    return key, pointer, value


def sched(**action):
    return (
        "svc",
        AUTO,
        {"minCapacity": 1, "maxCapacity": 5, "scheduled": [{"minCapacity": 1, "maxCapacity": 3, **action}]},
    )


SVC_PC = ("spec", "placementConstraints")
SVC_PS = ("spec", "placementStrategy")
MEMBER_OF = {"type": "memberOf", "expression": "attribute:stack == prod"}
DC = ("spec", "deploymentConfiguration")
WEB_CPU = {"predefinedMetricType": "ECSServiceAverageCPUUtilization", "service": "web"}


def alarm_doc(name: str = "web-cpu", **spec: Any) -> tuple:
    """An edit adding Alarm `name` (on web's CPU unless `metric` is given) as document `alarm-<name>`."""
    body = {
        "metric": WEB_CPU,
        "evaluationPeriods": 3,
        "threshold": 80,
        "comparisonOperator": "GreaterThanThreshold",
    }
    return (f"alarm-{name}", (), _doc("Alarm", name, {**body, **spec}))


def deploy(**fields: Any) -> tuple:
    """An edit setting service web's deploymentConfiguration to `fields`."""
    return ("svc", DC, fields)


WATCH_WEB_CPU = {"alarmNames": ["web-cpu"], "enable": True, "rollback": True}

# (id, edits, subject, pointer, message fragment)
INVALID = [
    # names and references
    (
        "duplicate-name",
        [
            (
                "web2",
                (),
                _doc(
                    "TaskDefinition",
                    "web",
                    {"containerDefinitions": [{"name": "x", "image": "x", "memory": 8}]},
                ),
            )
        ],
        "TaskDefinition/web",
        "/metadata/name",
        "declared twice; the first is at m.yaml:",
    ),
    (
        "duplicate-service-name",
        [("svc2", (), _doc("Service", "web", {"taskDefinition": "web", "desiredCount": 1}))],
        "Service/web",
        "/metadata/name",
        "Service 'web' is declared twice",
    ),
    (
        "family-mismatch",
        [("web", ("spec", "family"), "webx")],
        "TaskDefinition/web",
        "/spec/family",
        "differs from metadata.name",
    ),
    (
        "cluster-unknown",
        [("svc", ("spec", "cluster"), "prod")],
        "Service/web",
        "/spec/cluster",
        "cluster 'prod' is not declared",
    ),
    (
        "cluster-default-missing",
        [("cluster", ("metadata", "name"), "prod")],
        "Service/web",
        "/spec/cluster",
        "sets no cluster, so it belongs to cluster 'default'",
    ),
    (
        "cluster-arn-unknown",
        [("svc", ("spec", "cluster"), "arn:aws:ecs:eu-west-1:1:cluster/prod")],
        "Service/web",
        "/spec/cluster",
        "cluster 'prod' is not declared",
    ),
    (
        "taskdef-unknown",
        [("svc", ("spec", "taskDefinition"), "nope")],
        "Service/web",
        "/spec/taskDefinition",
        "family 'nope' is not declared",
    ),
    (
        "taskdef-unknown-revision",
        [("svc", ("spec", "taskDefinition"), "nope:3")],
        "Service/web",
        "/spec/taskDefinition",
        "family 'nope'",
    ),
    (
        "taskdef-bad-revision",
        [("svc", ("spec", "taskDefinition"), "web:x")],
        "Service/web",
        "/spec/taskDefinition",
        "revision 'x' is not a positive integer",
    ),
    (
        "taskdef-zero-revision",
        [("svc", ("spec", "taskDefinition"), "web:0")],
        "Service/web",
        "/spec/taskDefinition",
        "not a positive integer",
    ),
    # containers
    (
        "container-name-duplicate",
        [("web", (*C, 1), {"name": "app", "image": "x", "memory": 8})],
        "TaskDefinition/web",
        "/spec/containerDefinitions/1/name",
        "container name 'app' is already used",
    ),
    (
        "no-essential-container",
        [w("essential", value=False)],
        "TaskDefinition/web",
        "/spec/containerDefinitions",
        "no container is essential",
    ),
    (
        "no-containers",
        [("web", C, [])],
        "TaskDefinition/web",
        "/spec/containerDefinitions",
        "declares no containers",
    ),
    (
        "memory-reservation-not-below-memory",
        [w("memoryReservation", value=256)],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/memoryReservation",
        "must be less than memory (256 MiB)",
    ),
    (
        "ec2-container-without-memory",
        [w("memory", value=DROP)],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0",
        "sets neither memory nor memoryReservation",
    ),
    (
        "ec2-container-zero-memory",
        [w("memory", value=0)],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0",
        "neither memory",
    ),
    (
        "container-cpu-exceeds-task",
        [("web", ("spec", "cpu"), "256"), w("cpu", value=200), ("web", (*C, 1), {**SIDE, "cpu": 100})],
        "TaskDefinition/web",
        "/spec/cpu",
        "containers reserve 300 CPU units ('app' 200, 'side' 100), more than the task cpu 256",
    ),
    (
        "container-memory-exceeds-task",
        [("web", ("spec", "memory"), "0.25 GB"), ("web", (*C, 1), {**SIDE, "memoryReservation": 32})],
        "TaskDefinition/web",
        "/spec/memory",
        "containers reserve 288 MiB",
    ),
    (
        "task-cpu-unparseable",
        [("web", ("spec", "cpu"), "lots")],
        "TaskDefinition/web",
        "/spec/cpu",
        "task cpu 'lots' is neither CPU units",
    ),
    (
        "task-memory-unparseable",
        [("web", ("spec", "memory"), "2 TB")],
        "TaskDefinition/web",
        "/spec/memory",
        "task memory '2 TB' is neither MiB",
    ),
    (
        "ec2-task-cpu-too-small",
        [("web", ("spec", "cpu"), "64")],
        "TaskDefinition/web",
        "/spec/cpu",
        "outside the EC2 range 128-196608",
    ),
    (
        "ec2-task-cpu-too-large",
        [("web", ("spec", "cpu"), "200 vCPU")],
        "TaskDefinition/web",
        "/spec/cpu",
        "outside the EC2 range",
    ),
    # Fargate
    (
        "fargate-network-mode",
        [("api", ("spec", "networkMode"), "bridge")],
        "TaskDefinition/api",
        "/spec/networkMode",
        "FARGATE requires networkMode awsvpc, not bridge",
    ),
    (
        "fargate-network-mode-unset",
        [("api", ("spec", "networkMode"), DROP)],
        "TaskDefinition/api",
        "/spec/networkMode",
        "default when unset",
    ),
    (
        "fargate-cpu-required",
        [("api", ("spec", "cpu"), DROP)],
        "TaskDefinition/api",
        "/spec/cpu",
        "FARGATE requires a task-level cpu",
    ),
    (
        "fargate-memory-required",
        [("api", ("spec", "memory"), DROP)],
        "TaskDefinition/api",
        "/spec/memory",
        "FARGATE requires a task-level memory",
    ),
    (
        "fargate-size-pair",
        [("api", ("spec", "memory"), "4 GB")],
        "TaskDefinition/api",
        "/spec/memory",
        "task memory 4096 MiB is not valid on FARGATE with cpu 256; allowed memory (MiB): 512, 1024, 2048",
    ),
    (
        "fargate-size-pair-range",
        [("api", ("spec", "cpu"), "1 vCPU"), ("api", ("spec", "memory"), "1024")],
        "TaskDefinition/api",
        "/spec/memory",
        "2048-8192 in steps of 1024",
    ),
    (
        "fargate-cpu-size",
        [("api", ("spec", "cpu"), "384")],
        "TaskDefinition/api",
        "/spec/cpu",
        "not a Fargate size; allowed cpu units: 256, 512",
    ),
    (
        "fargate-privileged",
        [a("privileged", value=True)],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/privileged",
        "FARGATE does not support",
    ),
    (
        "fargate-host-volume",
        [("api", ("spec", "volumes"), [{"name": "d", "host": {"sourcePath": "/data"}}])],
        "TaskDefinition/api",
        "/spec/volumes/0/host/sourcePath",
        "FARGATE does not support host volumes",
    ),
    (
        "fargate-docker-volume",
        [("api", ("spec", "volumes"), [{"name": "d", "dockerVolumeConfiguration": {"scope": "task"}}])],
        "TaskDefinition/api",
        "/spec/volumes/0/dockerVolumeConfiguration",
        "does not support dockerVolumeConfiguration",
    ),
    (
        "fargate-placement-constraints",
        [("api", ("spec", "placementConstraints"), [MEMBER_OF])],
        "TaskDefinition/api",
        "/spec/placementConstraints",
        "FARGATE does not support placement constraints",
    ),
    (
        "fargate-host-port",
        [a("portMappings", 0, "hostPort", value=80)],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/portMappings/0/hostPort",
        "hostPort 80 must be omitted or equal containerPort 8080 in networkMode awsvpc",
    ),
    (
        "fargate-devices",
        [a("linuxParameters", value={"devices": [{"hostPath": "/dev/fuse"}]})],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/linuxParameters/devices",
        "linuxParameters.devices",
    ),
    (
        "fargate-shared-memory",
        [a("linuxParameters", value={"sharedMemorySize": 64})],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/linuxParameters/sharedMemorySize",
        "sharedMemorySize",
    ),
    (
        "fargate-max-swap",
        [a("linuxParameters", value={"maxSwap": 0})],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/linuxParameters/maxSwap",
        "maxSwap",
    ),
    (
        "fargate-swappiness",
        [a("linuxParameters", value={"swappiness": 10})],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/linuxParameters/swappiness",
        "swappiness",
    ),
    (
        "fargate-capabilities",
        [a("linuxParameters", value={"capabilities": {"add": ["SYS_PTRACE", "NET_ADMIN"]}})],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/linuxParameters/capabilities/add/1",
        "adds capability 'NET_ADMIN'; FARGATE allows only SYS_PTRACE",
    ),
    (
        "fargate-ipc-mode",
        [("api", ("spec", "ipcMode"), "task")],
        "TaskDefinition/api",
        "/spec/ipcMode",
        "FARGATE does not support ipcMode",
    ),
    (
        "fargate-pid-mode",
        [("api", ("spec", "pidMode"), "host")],
        "TaskDefinition/api",
        "/spec/pidMode",
        "allows only pidMode task",
    ),
    (
        "fargate-security-options",
        [a("dockerSecurityOptions", value=["no-new-privileges"])],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/dockerSecurityOptions",
        "dockerSecurityOptions",
    ),
    (
        "fargate-stop-timeout",
        [a("stopTimeout", value=300)],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/stopTimeout",
        "stopTimeout 300 s is outside the FARGATE range 2-120",
    ),
    (
        "fargate-start-timeout",
        [a("startTimeout", value=1)],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/startTimeout",
        "startTimeout 1 s",
    ),
    (
        "fargate-daemon",
        [("apisvc", ("spec", "schedulingStrategy"), "DAEMON"), ("apisvc", ("spec", "desiredCount"), DROP)],
        "Service/api",
        "/spec/schedulingStrategy",
        "DAEMON is not available with launchType FARGATE",
    ),
    (
        "fargate-service-taskdef-not-fargate",
        [("svc", ("spec", "launchType"), "FARGATE")],
        "Service/web",
        "/spec/launchType",
        "launchType FARGATE, but task definition 'web' declares no requiresCompatibilities",
    ),
    (
        "launch-type-default-ec2",
        [("apisvc", ("spec", "launchType"), DROP)],
        "Service/api",
        "/spec/launchType",
        "sets no launchType (so EC2), but task definition 'api' declares requiresCompatibilities FARGATE",
    ),
    (
        "fargate-service-constraints",
        [("apisvc", SVC_PC, [{"type": "distinctInstance"}])],
        "Service/api",
        "/spec/placementConstraints",
        "FARGATE services do not support placement constraints",
    ),
    (
        "fargate-service-strategy",
        [("apisvc", SVC_PS, [{"type": "random"}])],
        "Service/api",
        "/spec/placementStrategy",
        "FARGATE services do not support placement strategies",
    ),
    # network modes
    (
        "host-mode-host-port",
        [("web", ("spec", "networkMode"), "host"), w("portMappings", 0, "hostPort", value=8080)],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/portMappings/0/hostPort",
        "must be omitted or equal containerPort 80 in networkMode host",
    ),
    (
        "none-mode-ports",
        [("web", ("spec", "networkMode"), "none")],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/portMappings",
        "networkMode none has no network",
    ),
    (
        "awsvpc-hostname",
        [a("hostname", value="api.local")],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/hostname",
        "sets hostname, which networkMode awsvpc does not allow",
    ),
    (
        "awsvpc-extra-hosts",
        [a("extraHosts", value=[{"hostname": "db", "ipAddress": "10.0.0.1"}])],
        "TaskDefinition/api",
        "/spec/containerDefinitions/0/extraHosts",
        "extraHosts",
    ),
    (
        "links-outside-bridge",
        [("web", ("spec", "networkMode"), "host"), ("web", (*C, 1), SIDE), w("links", value=["side"])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/links",
        "work only in networkMode bridge (not host)",
    ),
    # health checks
    (
        "health-check-command-form",
        [w("healthCheck", value={"command": ["curl", "-f", "localhost"]})],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/healthCheck/command/0",
        "must start with CMD, CMD-SHELL or NONE, not 'curl'",
    ),
    (
        "health-check-command-empty",
        [w("healthCheck", value={"command": []})],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/healthCheck/command",
        "needs a command",
    ),
    (
        "health-check-command-bare",
        [w("healthCheck", value={"command": ["CMD-SHELL"]})],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/healthCheck/command",
        "names nothing to run",
    ),
    # dependsOn
    (
        "depends-on-unknown",
        [w("dependsOn", value=[{"containerName": "db", "condition": "START"}])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0/containerName",
        "depends on 'db', which is not a container",
    ),
    (
        "depends-on-self",
        [w("dependsOn", value=[{"containerName": "app", "condition": "START"}])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0/containerName",
        "depends on itself",
    ),
    (
        "depends-on-cycle",
        [
            ("web", (*C, 1), {**SIDE, "dependsOn": [{"containerName": "app", "condition": "START"}]}),
            w("dependsOn", value=[{"containerName": "side", "condition": "START"}]),
        ],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0",
        "dependsOn forms a cycle: app → side → app",
    ),
    (
        "depends-on-cycle-of-three",
        [
            (
                "web",
                (*C, 1),
                {**SIDE, "name": "b", "dependsOn": [{"containerName": "c", "condition": "START"}]},
            ),
            (
                "web",
                (*C, 2),
                {**SIDE, "name": "c", "dependsOn": [{"containerName": "app", "condition": "START"}]},
            ),
            w("dependsOn", value=[{"containerName": "b", "condition": "START"}]),
        ],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0",
        "app → b → c → app",
    ),
    (
        "depends-on-healthy-without-check",
        [("web", (*C, 1), SIDE), w("dependsOn", value=[{"containerName": "side", "condition": "HEALTHY"}])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0/condition",
        "'side' has no healthCheck",
    ),
    (
        "depends-on-healthy-check-none",
        [
            ("web", (*C, 1), {**SIDE, "healthCheck": {"command": ["NONE"]}}),
            w("dependsOn", value=[{"containerName": "side", "condition": "HEALTHY"}]),
        ],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0/condition",
        "has no healthCheck",
    ),
    (
        "depends-on-complete-essential",
        [
            ("web", (*C, 1), {**SIDE, "essential": True}),
            w("dependsOn", value=[{"containerName": "side", "condition": "COMPLETE"}]),
        ],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0/condition",
        "to COMPLETE, but 'side' is essential",
    ),
    (
        "depends-on-success-default-essential",
        [
            ("web", (*C, 1), {"name": "side", "image": "x", "memory": 8}),
            w("dependsOn", value=[{"containerName": "side", "condition": "SUCCESS"}]),
        ],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/dependsOn/0/condition",
        "to SUCCESS, but 'side' is essential",
    ),
    # references inside a task
    (
        "mount-unknown-volume",
        [w("mountPoints", value=[{"sourceVolume": "data", "containerPath": "/d"}])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/mountPoints/0/sourceVolume",
        "mounts volume 'data', which the task does not declare",
    ),
    (
        "volume-name-duplicate",
        [("web", ("spec", "volumes"), [{"name": "d"}, {"name": "d"}])],
        "TaskDefinition/web",
        "/spec/volumes/1/name",
        "volume name 'd' is already used by volumes[0]",
    ),
    (
        "volumes-from-unknown",
        [w("volumesFrom", value=[{"sourceContainer": "db"}])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/volumesFrom/0/sourceContainer",
        "takes volumes from 'db', which is not a container",
    ),
    (
        "volumes-from-self",
        [w("volumesFrom", value=[{"sourceContainer": "app"}])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/volumesFrom/0/sourceContainer",
        "takes volumes from itself",
    ),
    (
        "link-unknown",
        [w("links", value=["db:database"])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/links/0",
        "links to 'db', which is not another container",
    ),
    (
        "proxy-container-unknown",
        [("web", ("spec", "proxyConfiguration"), {"type": "APPMESH", "containerName": "envoy"})],
        "TaskDefinition/web",
        "/spec/proxyConfiguration/containerName",
        "proxy container 'envoy' is not a container",
    ),
    (
        "inference-accelerator-unknown",
        [w("resourceRequirements", value=[{"type": "InferenceAccelerator", "value": "dev1"}])],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/resourceRequirements/0/value",
        "inference accelerator 'dev1'",
    ),
    # ports
    (
        "host-port-conflict",
        [
            w("portMappings", 0, "hostPort", value=8080),
            ("web", (*C, 1), {**SIDE, "portMappings": [{"containerPort": 9000, "hostPort": 8080}]}),
        ],
        "TaskDefinition/web",
        "/spec/containerDefinitions/1/portMappings/0/hostPort",
        "host port 8080/tcp is already taken by container 'app'",
    ),
    (
        "awsvpc-port-conflict",
        [
            (
                "api",
                (*C, 1),
                {"name": "side", "image": "x", "essential": False, "portMappings": [{"containerPort": 8080}]},
            )
        ],
        "TaskDefinition/api",
        "/spec/containerDefinitions/1/portMappings/0/containerPort",
        "host port 8080/tcp is already taken",
    ),
    (
        "container-port-twice",
        [w("portMappings", 1, value={"containerPort": 80, "protocol": "tcp"})],
        "TaskDefinition/web",
        "/spec/containerDefinitions/0/portMappings/1/containerPort",
        "exposes container port 80/tcp twice",
    ),
    # placement
    (
        "taskdef-member-of-empty",
        [("web", ("spec", "placementConstraints"), [{"type": "memberOf", "expression": "  "}])],
        "TaskDefinition/web",
        "/spec/placementConstraints/0/expression",
        "needs an expression",
    ),
    (
        "service-distinct-instance-expression",
        [("svc", SVC_PC, [{"type": "distinctInstance", "expression": "x == y"}])],
        "Service/web",
        "/spec/placementConstraints/0/expression",
        "distinctInstance constraint takes no expression",
    ),
    (
        "service-member-of-missing",
        [("svc", SVC_PC, [{"type": "memberOf"}])],
        "Service/web",
        "/spec/placementConstraints/0/expression",
        "memberOf constraint needs an expression",
    ),
    (
        "service-plus-taskdef-constraints",
        [("web", ("spec", "placementConstraints"), [MEMBER_OF] * 6), ("svc", SVC_PC, [MEMBER_OF] * 5)],
        "Service/web",
        "/spec/placementConstraints",
        "5 service placement constraints plus 6 from the task definition exceed the limit of 10",
    ),
    (
        "binpack-field",
        [("svc", SVC_PS, [{"type": "binpack", "field": "disk"}])],
        "Service/web",
        "/spec/placementStrategy/0/field",
        "binpack needs field cpu or memory, not 'disk'",
    ),
    (
        "binpack-no-field",
        [("svc", SVC_PS, [{"type": "binpack"}])],
        "Service/web",
        "/spec/placementStrategy/0/field",
        "not None",
    ),
    (
        "spread-field",
        [("svc", SVC_PS, [{"type": "spread", "field": "zone"}])],
        "Service/web",
        "/spec/placementStrategy/0/field",
        "spread needs field instanceId, host or attribute:<name>",
    ),
    (
        "spread-empty-attribute",
        [("svc", SVC_PS, [{"type": "spread", "field": "attribute:"}])],
        "Service/web",
        "/spec/placementStrategy/0/field",
        "spread needs field",
    ),
    # services
    (
        "daemon-desired-count",
        [("svc", ("spec", "schedulingStrategy"), "DAEMON")],
        "Service/web",
        "/spec/desiredCount",
        "takes no desiredCount",
    ),
    (
        "daemon-auto-scaling",
        [
            ("svc", ("spec", "schedulingStrategy"), "DAEMON"),
            ("svc", ("spec", "desiredCount"), DROP),
            ("svc", AUTO, {"minCapacity": 1, "maxCapacity": 2}),
        ],
        "Service/web",
        "/spec/autoScaling",
        "DAEMON service cannot use autoScaling",
    ),
    (
        "replica-desired-count",
        [("svc", ("spec", "desiredCount"), DROP)],
        "Service/web",
        "/spec/desiredCount",
        "REPLICA service needs desiredCount",
    ),
    (
        "maximum-percent-below-100",
        [("svc", ("spec", "deploymentConfiguration"), {"maximumPercent": 50})],
        "Service/web",
        "/spec/deploymentConfiguration/maximumPercent",
        "maximumPercent 50 is below 100",
    ),
    (
        "minimum-healthy-percent-range",
        [("svc", ("spec", "deploymentConfiguration"), {"minimumHealthyPercent": 150})],
        "Service/web",
        "/spec/deploymentConfiguration/minimumHealthyPercent",
        "minimumHealthyPercent 150 is outside 0-100",
    ),
    (
        "load-balancer-container",
        [
            (
                "svc",
                ("spec", "loadBalancers"),
                [{"targetGroupArn": "tg", "containerName": "db", "containerPort": 80}],
            )
        ],
        "Service/web",
        "/spec/loadBalancers/0/containerName",
        "load balancer container 'db' is not in task definition 'web'",
    ),
    (
        "load-balancer-port",
        [
            (
                "svc",
                ("spec", "loadBalancers"),
                [{"targetGroupArn": "tg", "containerName": "app", "containerPort": 443}],
            )
        ],
        "Service/web",
        "/spec/loadBalancers/0/containerPort",
        "maps no containerPort 443",
    ),
    # auto scaling
    (
        "autoscaling-min-above-max",
        [("svc", AUTO, {"minCapacity": 5, "maxCapacity": 2})],
        "Service/web",
        "/spec/autoScaling/minCapacity",
        "minCapacity 5 is greater than maxCapacity 2",
    ),
    (
        "autoscaling-desired-outside",
        [("svc", AUTO, {"minCapacity": 3, "maxCapacity": 6})],
        "Service/web",
        "/spec/desiredCount",
        "desiredCount 2 is outside the autoScaling range 3-6",
    ),
    (
        "scheduled-min-above-max",
        [sched(schedule="rate(1 hour)", minCapacity=4, maxCapacity=2)],
        "Service/web",
        "/spec/autoScaling/scheduled/0/minCapacity",
        "sets minCapacity 4 above maxCapacity 2",
    ),
    (
        "scheduled-no-bounds",
        [("svc", AUTO, {"minCapacity": 1, "maxCapacity": 5, "scheduled": [{"schedule": "rate(1 hour)"}]})],
        "Service/web",
        "/spec/autoScaling/scheduled/0/minCapacity",
        "sets neither minCapacity nor maxCapacity",
    ),
    (
        "scheduled-timezone",
        [sched(schedule="rate(1 hour)", timezone="Europe/Atlantis")],
        "Service/web",
        "/spec/autoScaling/scheduled/0/timezone",
        "'Europe/Atlantis' is not an IANA time zone",
    ),
    (
        "schedule-cron-fields",
        [sched(schedule="cron(0 9 * * ?)")],
        "Service/web",
        "/spec/autoScaling/scheduled/0/schedule",
        "has 5 fields; cron() takes 6",
    ),
    (
        "schedule-plain-cron-fields",
        [sched(schedule="0 9 * *")],
        "Service/web",
        "/spec/autoScaling/scheduled/0/schedule",
        "plain cron expression takes 5",
    ),
    (
        "schedule-rate",
        [sched(schedule="rate(5 weeks)")],
        "Service/web",
        "/spec/autoScaling/scheduled/0/schedule",
        "rate(N minutes|hours|days)",
    ),
    (
        "schedule-at",
        [sched(schedule="at(2024-13-01T00:00:00)")],
        "Service/web",
        "/spec/autoScaling/scheduled/0/schedule",
        "at(yyyy-mm-ddThh:mm:ss)",
    ),
    (
        "schedule-unknown-form",
        [sched(schedule="every(5m)")],
        "Service/web",
        "/spec/autoScaling/scheduled/0/schedule",
        "must be at(...), rate(...)",
    ),
    (
        "step-overlap",
        [steps((0, 10), (5, None))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/1/metricIntervalLowerBound",
        "step 1 overlaps step 0",
    ),
    (
        "step-gap",
        [steps((0, 10), (20, None))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/1/metricIntervalLowerBound",
        "leave a gap between 10 and 20",
    ),
    (
        "step-two-open-upper",
        [steps((0, None), (10, None))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/1/metricIntervalUpperBound",
        "second step without an upper bound",
    ),
    (
        "step-two-open-lower",
        [strip_none_bounds(steps((None, 0), (None, -5), (0, None)))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/1/metricIntervalLowerBound",
        "second step without a lower bound",
    ),
    (
        "step-no-bounds",
        [strip_none_bounds(steps((None, None)))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/0",
        "neither a lower nor an upper bound",
    ),
    (
        "step-bounds-reversed",
        [steps((10, 0), (10, None))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/0/metricIntervalUpperBound",
        "upper bound 0 is not above its lower bound 10",
    ),
    (
        "step-negative-lower",
        [steps((-10, 0), (0, None))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/0/metricIntervalLowerBound",
        "negative lower bound -10",
    ),
    (
        "step-positive-upper",
        [steps((0, 10), (10, 20))],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/1/metricIntervalUpperBound",
        "positive upper bound 20",
    ),
    (
        "step-exact-capacity-negative",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "stepScaling": [
                        {
                            "adjustmentType": "ExactCapacity",
                            "stepAdjustments": [{"metricIntervalLowerBound": 0, "scalingAdjustment": -1}],
                        }
                    ],
                },
            )
        ],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/stepAdjustments/0/scalingAdjustment",
        "ExactCapacity to -1",
    ),
    (
        "step-min-adjustment-magnitude",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "stepScaling": [
                        {
                            "adjustmentType": "ChangeInCapacity",
                            "minAdjustmentMagnitude": 2,
                            "stepAdjustments": [{"metricIntervalLowerBound": 0, "scalingAdjustment": 1}],
                        }
                    ],
                },
            )
        ],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/minAdjustmentMagnitude",
        "only to adjustmentType PercentChangeInCapacity",
    ),
    # clusters and policy
    (
        "instance-name-duplicate",
        [("cluster", ("spec", "instances", 1, "name"), "h1")],
        "Cluster/default",
        "/spec/instances/1/name",
        "instance name 'h1' is already used in this cluster (/spec/instances/0)",
    ),
    (
        "fargate-endpoint-name-duplicate",
        [
            (
                "cluster",
                ("spec", "fargate", "endpoints", 1),
                {"name": "f1", "endpoint": "tcp://10.0.0.10:2376"},
            )
        ],
        "Cluster/default",
        "/spec/fargate/endpoints/1/name",
        "fargate endpoint name 'f1' is already used",
    ),
    (
        "endpoint-in-two-clusters",
        [
            (
                "c2",
                (),
                _doc("Cluster", "other", {"instances": [{"name": "x", "endpoint": "TCP://10.0.0.2:2376/"}]}),
            )
        ],
        "Cluster/other",
        "/spec/instances/0/endpoint",
        "is already used by Cluster 'default' /spec/instances/1 at m.yaml:",
    ),
    (
        "endpoint-twice-in-cluster",
        [("cluster", ("spec", "fargate", "endpoints", 0, "endpoint"), "tcp://10.0.0.2:2376")],
        "Cluster/default",
        "/spec/fargate/endpoints/0/endpoint",
        "already used by Cluster 'default' /spec/instances/1",
    ),
    (
        "policy-privileged",
        [w("privileged", value=True)],
        "Service/web",
        "/spec/taskDefinition",
        "container 'app' of task definition 'web' is privileged, but cluster 'default' does not allow privileged containers",
    ),
    (
        "policy-privileged-false",
        [w("privileged", value=True), ("cluster", ("spec", "policy"), {"allowPrivileged": False})],
        "Service/web",
        "/spec/taskDefinition",
        "does not allow privileged",
    ),
    (
        "policy-host-path",
        [
            ("cluster", ("spec", "policy"), {"allowedHostPaths": ["/data", "/srv/"]}),
            ("web", ("spec", "volumes"), [{"name": "etc", "host": {"sourcePath": "/etc"}}]),
        ],
        "Service/web",
        "/spec/taskDefinition",
        "mounts host path '/etc', which cluster 'default' does not allow (policy.allowedHostPaths: /data, /srv/)",
    ),
    (
        "policy-host-path-prefix-boundary",
        [
            ("cluster", ("spec", "policy"), {"allowedHostPaths": ["/data"]}),
            ("web", ("spec", "volumes"), [{"name": "db", "host": {"sourcePath": "/database"}}]),
        ],
        "Service/web",
        "/spec/taskDefinition",
        "mounts host path '/database'",
    ),
    (
        "policy-host-path-dotdot",
        [
            ("cluster", ("spec", "policy"), {"allowedHostPaths": ["/data"]}),
            ("web", ("spec", "volumes"), [{"name": "x", "host": {"sourcePath": "/data/../etc"}}]),
        ],
        "Service/web",
        "/spec/taskDefinition",
        "mounts host path '/data/../etc'",
    ),
    (
        "policy-host-path-none-allowed",
        [
            ("cluster", ("spec", "policy"), {"allowedHostPaths": []}),
            ("web", ("spec", "volumes"), [{"name": "x", "host": {"sourcePath": "/data"}}]),
        ],
        "Service/web",
        "/spec/taskDefinition",
        "(policy.allowedHostPaths: none)",
    ),
    (
        "scheduled-name-duplicate",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "scheduled": [
                        {"name": "day", "schedule": "cron(0 8 * * ? *)", "minCapacity": 3},
                        {"name": "day", "schedule": "cron(0 20 * * ? *)", "minCapacity": 1},
                    ],
                },
            )
        ],
        "Service/web",
        "/spec/autoScaling/scheduled/1/name",
        "scheduled action name 'day' is already used by scheduled[0]",
    ),
    (
        "policy-name-duplicate",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "targetTracking": [{"policyName": "cpu", "targetValue": 50}],
                    "stepScaling": [
                        {
                            "policyName": "cpu",
                            "adjustmentType": "ChangeInCapacity",
                            "stepAdjustments": [{"metricIntervalLowerBound": 0, "scalingAdjustment": 1}],
                        }
                    ],
                },
            )
        ],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/policyName",
        "policy name 'cpu' is already used by targetTracking[0]",
    ),
    (
        "step-datapoints-to-alarm",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "stepScaling": [
                        {
                            "adjustmentType": "ChangeInCapacity",
                            "evaluationPeriods": 2,
                            "datapointsToAlarm": 3,
                            "stepAdjustments": [{"metricIntervalLowerBound": 0, "scalingAdjustment": 1}],
                        }
                    ],
                },
            )
        ],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/datapointsToAlarm",
        "datapointsToAlarm 3 exceeds evaluationPeriods 2",
    ),
    (
        "step-datapoints-default-periods",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "stepScaling": [
                        {
                            "adjustmentType": "ChangeInCapacity",
                            "datapointsToAlarm": 2,
                            "stepAdjustments": [{"metricIntervalLowerBound": 0, "scalingAdjustment": 1}],
                        }
                    ],
                },
            )
        ],
        "Service/web",
        "/spec/autoScaling/stepScaling/0/datapointsToAlarm",
        "exceeds evaluationPeriods 1 (the default)",
    ),
    # deployments: ROLLING only, alarms resolve
    (
        "deployment-strategy-blue-green",
        [deploy(strategy="BLUE_GREEN", bakeTimeInMinutes=5)],
        "Service/web",
        "/spec/deploymentConfiguration/strategy",
        "deploymentConfiguration.strategy BLUE_GREEN needs traffic shifting through a load balancer, "
        "which reconciler does not have yet; use ROLLING",
    ),
    (
        "deployment-strategy-canary-daemon",
        [
            ("svc", ("spec", "schedulingStrategy"), "DAEMON"),
            ("svc", ("spec", "desiredCount"), DROP),
            deploy(strategy="CANARY"),
        ],
        "Service/web",
        "/spec/deploymentConfiguration/strategy",
        "strategy CANARY needs traffic shifting",
    ),
    (
        "deployment-linear-configuration",
        [deploy(linearConfiguration={"stepPercent": 10})],
        "Service/web",
        "/spec/deploymentConfiguration/linearConfiguration",
        "linearConfiguration configures the LINEAR strategy: that needs traffic shifting through a load "
        "balancer, which reconciler does not have yet; remove it",
    ),
    (
        "deployment-canary-configuration",
        [deploy(canaryConfiguration={})],
        "Service/web",
        "/spec/deploymentConfiguration/canaryConfiguration",
        "canaryConfiguration configures the CANARY strategy",
    ),
    (
        "deployment-lifecycle-hooks",
        [deploy(lifecycleHooks=[{"targetType": "PAUSE", "lifecycleStages": ["PRE_SCALE_UP"]}])],
        "Service/web",
        "/spec/deploymentConfiguration/lifecycleHooks",
        "lifecycleHooks run at the stages of a BLUE_GREEN, LINEAR or CANARY deployment",
    ),
    (
        "deployment-alarm-unknown-did-you-mean",
        [alarm_doc(), deploy(alarms={**WATCH_WEB_CPU, "alarmNames": ["web-cpus"]})],
        "Service/web",
        "/spec/deploymentConfiguration/alarms/alarmNames/0",
        "alarm 'web-cpus' is not declared by any Alarm document (did you mean 'web-cpu'?)",
    ),
    (
        "deployment-alarm-unknown-lists-declared",
        [
            alarm_doc(),
            alarm_doc("api-mem"),
            deploy(alarms={**WATCH_WEB_CPU, "alarmNames": ["web-cpu", "latency"]}),
        ],
        "Service/web",
        "/spec/deploymentConfiguration/alarms/alarmNames/1",
        "alarm 'latency' is not declared by any Alarm document (declared: api-mem, web-cpu)",
    ),
    (
        "deployment-alarm-none-declared",
        [deploy(alarms={**WATCH_WEB_CPU, "enable": False})],
        "Service/web",
        "/spec/deploymentConfiguration/alarms/alarmNames/0",
        "alarm 'web-cpu' is not declared by any Alarm document (no Alarm is declared)",
    ),
    (
        "taskdef-arn-unknown-family",
        [("svc", ("spec", "taskDefinition"), "arn:aws:ecs:eu-west-1:123456789012:task-definition/webb:2")],
        "Service/web",
        "/spec/taskDefinition",
        "task definition family 'webb' is not declared",
    ),
    # alarms
    (
        "alarm-service-unknown",
        [alarm_doc(metric={**WEB_CPU, "service": "wbe"})],
        "Alarm/web-cpu",
        "/spec/metric/service",
        "service 'wbe' is not declared by any Service document (did you mean 'web'?)",
    ),
    (
        "alarm-period-45",
        [alarm_doc(period=45)],
        "Alarm/web-cpu",
        "/spec/period",
        "period 45s is not one CloudWatch takes: 10, 20 or 30 seconds, or a multiple of 60",
    ),
    (
        "alarm-period-90s",
        [alarm_doc(period="90s")],
        "Alarm/web-cpu",
        "/spec/period",
        "period 90s is not one CloudWatch takes",
    ),
    (
        "alarm-window-over-a-day",
        [alarm_doc(period="1h", evaluationPeriods=25)],
        "Alarm/web-cpu",
        "/spec/evaluationPeriods",
        "evaluationPeriods 25 x period 3600s is 90000s, more than the one day (86400s) CloudWatch evaluates",
    ),
    (
        "alarm-datapoints-exceed-periods",
        [alarm_doc(datapointsToAlarm=4)],
        "Alarm/web-cpu",
        "/spec/datapointsToAlarm",
        "datapointsToAlarm 4 exceeds evaluationPeriods 3",
    ),
    (
        "alarm-duplicate-name",
        [alarm_doc(), ("alarm-again", (), _doc("Alarm", "web-cpu", alarm_doc()[2]["spec"]))],
        "Alarm/web-cpu",
        "/metadata/name",
        "Alarm 'web-cpu' is declared twice",
    ),
]


def test_base_is_clean():
    docs = load(base())
    assert [d.kind for d in docs] == ["Cluster", "TaskDefinition", "TaskDefinition", "Service", "Service"]
    assert semantic.check(docs, docs) == []


@pytest.mark.parametrize(
    "edits, subject, pointer, fragment", [pytest.param(*c[1:], id=c[0]) for c in INVALID]
)
def test_invalid(edits, subject, pointer, fragment):
    diags = run(*edits)
    hits = [
        d for d in errors(diags) if d.subject == subject and d.pointer == pointer and fragment in d.message
    ]
    assert hits, f"expected {subject} {pointer}: ...{fragment}... among:\n{show(diags)}"


def test_case_ids_are_unique():
    ids = [c[0] for c in INVALID] + [c[0] for c in VALID]
    assert len(ids) == len(set(ids))


VALID = [
    ("cpu-vcpu-string", [("web", ("spec", "cpu"), "1 vCPU"), ("web", ("spec", "memory"), "0.5GB")]),
    ("task-memory-covers-containers", [("web", ("spec", "memory"), "512"), w("memory", value=DROP)]),
    ("memory-reservation-only", [w("memory", value=DROP), w("memoryReservation", value=128)]),
    ("memory-reservation-below-memory", [w("memoryReservation", value=255)]),
    ("container-cpu-equals-task", [("web", ("spec", "cpu"), "256"), w("cpu", value=256)]),
    (
        "reservation-counts-not-memory",
        [("web", ("spec", "memory"), "300"), w("memory", value=1024), w("memoryReservation", value=300)],
    ),
    ("fargate-not-ec2-no-container-memory", []),
    ("fargate-large-size", [("api", ("spec", "cpu"), "16 vCPU"), ("api", ("spec", "memory"), "120 GB")]),
    (
        "fargate-name-only-volume",
        [
            ("api", ("spec", "volumes"), [{"name": "scratch"}]),
            a("mountPoints", value=[{"sourceVolume": "scratch", "containerPath": "/tmp/s"}]),
        ],
    ),
    (
        "fargate-sys-ptrace",
        [
            a(
                "linuxParameters",
                value={"capabilities": {"add": ["SYS_PTRACE"], "drop": ["ALL"]}, "initProcessEnabled": True},
            )
        ],
    ),
    ("fargate-pid-task", [("api", ("spec", "pidMode"), "task")]),
    ("fargate-host-port-equal", [a("portMappings", 0, "hostPort", value=8080)]),
    ("essential-explicit-true", [w("essential", value=True)]),
    ("one-essential-of-two", [("web", (*C, 1), SIDE)]),
    (
        "bridge-dynamic-ports-repeat",
        [
            w("portMappings", 0, "hostPort", value=0),
            ("web", (*C, 1), {**SIDE, "portMappings": [{"containerPort": 80, "hostPort": 0}]}),
        ],
    ),
    (
        "bridge-same-container-port-two-containers",
        [("web", (*C, 1), {**SIDE, "portMappings": [{"containerPort": 80}]})],
    ),
    ("tcp-and-udp-same-port", [w("portMappings", 1, value={"containerPort": 80, "protocol": "udp"})]),
    ("bridge-links", [("web", (*C, 1), SIDE), w("links", value=["side:s"])]),
    (
        "health-check-ok",
        [
            w(
                "healthCheck",
                value={
                    "command": ["CMD-SHELL", "curl -f localhost"],
                    "interval": 5,
                    "timeout": 60,
                    "retries": 10,
                    "startPeriod": 0,
                },
            )
        ],
    ),
    ("health-check-none", [w("healthCheck", value={"command": ["NONE"]})]),
    (
        "depends-on-ok",
        [
            ("web", (*C, 1), {**SIDE, "healthCheck": {"command": ["CMD", "true"]}}),
            ("web", (*C, 2), {**SIDE, "name": "init"}),
            w(
                "dependsOn",
                value=[
                    {"containerName": "side", "condition": "HEALTHY"},
                    {"containerName": "init", "condition": "SUCCESS"},
                ],
            ),
        ],
    ),
    (
        "depends-on-diamond",
        [
            (
                "web",
                (*C, 1),
                {**SIDE, "name": "b", "dependsOn": [{"containerName": "d", "condition": "START"}]},
            ),
            (
                "web",
                (*C, 2),
                {**SIDE, "name": "c", "dependsOn": [{"containerName": "d", "condition": "START"}]},
            ),
            ("web", (*C, 3), {**SIDE, "name": "d"}),
            w(
                "dependsOn",
                value=[
                    {"containerName": "b", "condition": "START"},
                    {"containerName": "c", "condition": "START"},
                ],
            ),
        ],
    ),
    (
        "volumes-and-mounts",
        [
            ("web", ("spec", "volumes"), [{"name": "d", "host": {"sourcePath": "/srv/d"}}]),
            w("mountPoints", value=[{"sourceVolume": "d", "containerPath": "/d"}]),
            ("web", (*C, 1), {**SIDE, "volumesFrom": [{"sourceContainer": "app"}]}),
        ],
    ),
    (
        "service-placement-ok",
        [
            ("svc", SVC_PC, [{"type": "distinctInstance"}, MEMBER_OF]),
            (
                "svc",
                SVC_PS,
                [
                    {"type": "spread", "field": "attribute:ecs.availability-zone"},
                    {"type": "spread", "field": "instanceId"},
                    {"type": "spread", "field": "host"},
                    {"type": "binpack", "field": "memory"},
                    {"type": "random"},
                ],
            ),
        ],
    ),
    (
        "taskdef-constraints-ten-total",
        [("web", ("spec", "placementConstraints"), [MEMBER_OF] * 5), ("svc", SVC_PC, [MEMBER_OF] * 5)],
    ),
    ("cluster-by-name", [("svc", ("spec", "cluster"), "default")]),
    ("cluster-by-arn", [("svc", ("spec", "cluster"), "arn:aws:ecs:eu-west-1:123456789012:cluster/default")]),
    (
        "taskdef-by-arn",
        [("svc", ("spec", "taskDefinition"), "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:4")],
    ),
    ("family-equal", [("web", ("spec", "family"), "web")]),
    (
        "daemon-ok",
        [
            ("svc", ("spec", "schedulingStrategy"), "DAEMON"),
            ("svc", ("spec", "desiredCount"), DROP),
            ("svc", ("spec", "deploymentConfiguration"), {"maximumPercent": 100, "minimumHealthyPercent": 0}),
        ],
    ),
    (
        "replica-auto-scaling-without-desired",
        [("svc", ("spec", "desiredCount"), DROP), ("svc", AUTO, {"minCapacity": 1, "maxCapacity": 3})],
    ),
    (
        "deployment-ok",
        [
            (
                "svc",
                ("spec", "deploymentConfiguration"),
                {
                    "maximumPercent": 100,
                    "minimumHealthyPercent": 50,
                    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                },
            )
        ],
    ),
    ("launch-type-ec2-explicit", [("svc", ("spec", "launchType"), "EC2")]),
    (
        "launch-type-both",
        [
            ("api", ("spec", "requiresCompatibilities"), ["EC2", "FARGATE"]),
            ("apisvc", ("spec", "launchType"), DROP),
        ],
    ),
    (
        "load-balancer-ok",
        [
            (
                "svc",
                ("spec", "loadBalancers"),
                [{"targetGroupArn": "tg", "containerName": "app", "containerPort": 80}],
            )
        ],
    ),
    (
        "auto-scaling-ok",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 2,
                    "maxCapacity": 2,
                    "targetTracking": [{"targetValue": 50}],
                    "scheduled": [
                        {
                            "schedule": "cron(0 9 ? * MON-FRI *)",
                            "timezone": "Europe/Berlin",
                            "minCapacity": 2,
                        },
                        {"schedule": "0 18 * * 1-5", "maxCapacity": 2},
                        {"schedule": "rate(1 day)", "timezone": "UTC", "maxCapacity": 2},
                        {"schedule": "at(2030-01-01T00:00:00)", "minCapacity": 2, "maxCapacity": 2},
                    ],
                },
            )
        ],
    ),
    ("steps-ok", [strip_none_bounds(steps((None, -10), (-10, 0), (0, 10), (10, None)))]),
    ("steps-scale-out-only", [steps((0, 10), (10, None))]),
    ("steps-unordered", [steps((10, None), (0, 10))]),
    ("steps-scale-in-only", [strip_none_bounds(steps((None, 0)))]),
    (
        "steps-percent-magnitude",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "stepScaling": [
                        {
                            "adjustmentType": "PercentChangeInCapacity",
                            "minAdjustmentMagnitude": 2,
                            "stepAdjustments": [{"metricIntervalLowerBound": 0, "scalingAdjustment": 50}],
                        }
                    ],
                },
            )
        ],
    ),
    (
        "policy-privileged-allowed",
        [w("privileged", value=True), ("cluster", ("spec", "policy"), {"allowPrivileged": True})],
    ),
    (
        "policy-host-paths-absent-allows-all",
        [("web", ("spec", "volumes"), [{"name": "x", "host": {"sourcePath": "/etc"}}])],
    ),
    (
        "policy-host-path-allowed",
        [
            ("cluster", ("spec", "policy"), {"allowedHostPaths": ["/srv/"]}),
            (
                "web",
                ("spec", "volumes"),
                [{"name": "x", "host": {"sourcePath": "/srv/app/data"}}, {"name": "t"}],
            ),
        ],
    ),
    (
        "two-clusters-distinct-endpoints",
        [
            (
                "c2",
                (),
                _doc("Cluster", "other", {"instances": [{"name": "h1", "endpoint": "tcp://10.0.0.3:2376"}]}),
            )
        ],
    ),
    ("same-name-different-kinds", [("svc", ("metadata", "name"), "web")]),
    (
        "fargate-empty-source-path",
        [("api", ("spec", "volumes"), [{"name": "s", "host": {"sourcePath": ""}}])],
    ),
    (
        "names-distinct",
        [
            (
                "svc",
                AUTO,
                {
                    "minCapacity": 1,
                    "maxCapacity": 5,
                    "scheduled": [
                        {"name": "cpu", "schedule": "rate(1 day)", "minCapacity": 1},
                        {"name": "night", "schedule": "rate(1 day)", "minCapacity": 1},
                    ],
                    "targetTracking": [
                        {"policyName": "cpu", "targetValue": 50},
                        {"targetValue": 60},
                        {"targetValue": 70},
                    ],
                    "stepScaling": [
                        {
                            "policyName": "mem",
                            "adjustmentType": "ChangeInCapacity",
                            "evaluationPeriods": 3,
                            "datapointsToAlarm": 3,
                            "stepAdjustments": [{"metricIntervalLowerBound": 0, "scalingAdjustment": 1}],
                        }
                    ],
                },
            )
        ],
    ),
    # deployments with history
    (
        "taskdef-arn-pinned",
        [("svc", ("spec", "taskDefinition"), "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:3")],
    ),
    (
        "taskdef-arn-family",
        [("svc", ("spec", "taskDefinition"), "arn:aws-cn:ecs:cn-north-1:123456789012:task-definition/web")],
    ),
    ("cluster-arn", [("svc", ("spec", "cluster"), "arn:aws:ecs:eu-west-1:123456789012:cluster/default")]),
    (
        "deployment-rolling-everything",
        [
            alarm_doc(),
            deploy(
                strategy="ROLLING",
                bakeTimeInMinutes=1440,
                alarms=WATCH_WEB_CPU,
                deploymentCircuitBreaker={
                    "enable": True,
                    "rollback": True,
                    "thresholdConfiguration": {"type": "COUNT", "value": 1},
                    "resetOnHealthyTask": False,
                },
            ),
        ],
    ),
    (
        "deployment-daemon-breaker-alarms-bake",
        [
            alarm_doc(),
            ("svc", ("spec", "schedulingStrategy"), "DAEMON"),
            ("svc", ("spec", "desiredCount"), DROP),
            deploy(
                bakeTimeInMinutes=3,
                alarms=WATCH_WEB_CPU,
                deploymentCircuitBreaker={
                    "enable": True,
                    "rollback": False,
                    "thresholdConfiguration": {"type": "UNBOUNDED_PERCENT", "value": 150},
                },
            ),
        ],
    ),
    (
        "deployment-alarms-empty-and-off",
        [deploy(alarms={"alarmNames": [], "enable": False, "rollback": False})],
    ),
    ("alarm-short-periods", [alarm_doc(period=10), alarm_doc("b", period=20), alarm_doc("c", period=30)]),
    ("alarm-minute-periods", [alarm_doc(period="5m"), alarm_doc("b", period=120), alarm_doc("c")]),
    ("alarm-a-whole-day", [alarm_doc(period=60, evaluationPeriods=1440, datapointsToAlarm=1440)]),
    (
        "alarm-customized-metric",
        [
            alarm_doc(
                metric={
                    "customizedMetric": {"url": "http://10.0.0.5:9100/metrics", "metricName": "queue_depth"}
                },
                statistic="Sum",
                treatMissingData="breaching",
            )
        ],
    ),
    (
        "alarm-on-a-fargate-service-memory",
        [alarm_doc(metric={"predefinedMetricType": "ECSServiceAverageMemoryUtilization", "service": "api"})],
    ),
]


@pytest.mark.parametrize("edits", [pytest.param(c[1], id=c[0]) for c in VALID])
def test_valid(edits):
    diags = run(*edits)
    assert not errors(diags), show(diags)


# ---------------------------------------------------------------- behaviour beyond one rule


def test_duplicate_reports_only_later_documents_with_first_location():
    docs = base()
    docs["web2"] = _doc(
        "TaskDefinition", "web", {"containerDefinitions": [{"name": "x", "image": "x", "memory": 8}]}
    )
    docs["web3"] = copy.deepcopy(docs["web2"])
    loaded = load(docs)
    dupes = [d for d in semantic.check(loaded, loaded) if d.pointer == "/metadata/name"]
    first_line = loaded[1].locate(("metadata", "name"))[0]
    assert [d.line for d in dupes] == [
        loaded[5].locate(("metadata", "name"))[0],
        loaded[6].locate(("metadata", "name"))[0],
    ]
    assert all(f"first is at m.yaml:{first_line}" in d.message for d in dupes)


def test_reference_to_schema_broken_document_is_not_missing_and_not_cross_checked():
    docs = base()
    edit(docs, "svc", ("spec", "taskDefinition"), "ghost")
    edit(docs, "svc", ("spec", "cluster"), "broken")
    edit(docs, "svc", ("spec", "launchType"), "FARGATE")  # would clash with a valid 'ghost'
    docs["ghost"] = _doc(
        "TaskDefinition", "ghost", {"containerDefinitions": "not a list", "privileged": True}
    )
    docs["broken"] = _doc("Cluster", "broken", {"instances": 7})
    loaded = load(docs)
    valid = [d for d in loaded if d.name not in ("ghost", "broken")]
    diags = semantic.check(valid, loaded)
    assert not [d for d in diags if d.subject == "Service/web"], show(diags)
    assert not [d for d in diags if d.subject in ("TaskDefinition/ghost", "Cluster/broken")]


def test_missing_reference_is_reported_when_nothing_declares_it():
    docs = base()
    edit(docs, "svc", ("spec", "taskDefinition"), "ghost")
    loaded = load(docs)
    diags = semantic.check(loaded, loaded)
    assert [d.pointer for d in diags if d.subject == "Service/web"] == ["/spec/taskDefinition"]


def test_revision_reference_gives_a_notice_only():
    diags = run(("svc", ("spec", "taskDefinition"), "web:3"))
    assert [(d.severity, d.pointer) for d in diags] == [(document.NOTICE, "/spec/taskDefinition")]
    assert "revision 3 of 'web'" in diags[0].message


def test_unset_cluster_without_any_cluster_document():
    docs = base()
    del docs["cluster"]
    loaded = load(docs)
    diags = semantic.check(loaded, loaded)
    assert {d.message for d in diags} == {
        "the service sets no cluster, so it belongs to cluster 'default', which is not declared (no Cluster is declared)"
    }


def test_every_problem_is_reported_at_once():
    diags = run(
        w("memoryReservation", value=512),
        ("svc", ("spec", "desiredCount"), DROP),
        ("api", ("spec", "memory"), "3 GB"),
        ("cluster", ("spec", "instances", 1, "name"), "h1"),
    )
    assert sorted(d.pointer for d in errors(diags)) == [
        "/spec/containerDefinitions/0/memoryReservation",
        "/spec/desiredCount",
        "/spec/instances/1/name",
        "/spec/memory",
    ]


def test_lines_point_at_the_offending_field():
    text = b"""\
apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {name: web}
spec:
  containerDefinitions:
    - name: app
      image: nginx
      memory: 128
      memoryReservation: 256
"""
    docs, _ = loader.load_bytes("t.yaml", text)
    (diag,) = semantic.check(docs, docs)
    assert (diag.line, diag.col, diag.pointer) == (9, 7, "/spec/containerDefinitions/0/memoryReservation")


def test_missing_field_is_located_at_its_parent():
    diags = run(("api", ("spec", "cpu"), DROP))
    (diag,) = [d for d in diags if d.pointer == "/spec/cpu"]
    docs = load(base())
    assert diag.line == docs[2].locate(("spec",))[0]


def test_fargate_warnings_for_log_configuration():
    diags = run(a("logConfiguration", value={"logDriver": "json-file"}))
    assert [(d.severity, d.pointer) for d in diags] == [
        (document.WARNING, "/spec/containerDefinitions/0/logConfiguration/logDriver")
    ]
    diags = run(
        a(
            "logConfiguration",
            value={"logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-region": "r"}},
        )
    )
    assert [(d.severity, d.pointer) for d in diags] == [
        (document.WARNING, "/spec/containerDefinitions/0/logConfiguration/options/awslogs-stream-prefix")
    ]
    diags = run(w("logConfiguration", value={"logDriver": "awslogs", "options": {"awslogs-region": "r"}}))
    assert [(d.severity, d.pointer) for d in diags] == [
        (document.WARNING, "/spec/containerDefinitions/0/logConfiguration/options/awslogs-group")
    ]


def test_deployment_that_cannot_progress_is_a_warning():
    diags = run(
        ("svc", ("spec", "desiredCount"), 1),
        ("svc", ("spec", "deploymentConfiguration"), {"maximumPercent": 150}),
    )
    assert [(d.severity, d.pointer) for d in diags] == [
        (document.WARNING, "/spec/deploymentConfiguration/maximumPercent")
    ]
    assert "cannot make progress" in diags[0].message
    assert (
        run(
            ("svc", ("spec", "desiredCount"), 2),
            ("svc", ("spec", "deploymentConfiguration"), {"maximumPercent": 150}),
        )
        == []
    )


def test_circuit_breaker_settings_without_enable_are_warnings():
    breaker = {
        "enable": False,
        "rollback": False,
        "thresholdConfiguration": {"type": "COUNT", "value": 3},
        "resetOnHealthyTask": True,
    }
    diags = run(deploy(deploymentCircuitBreaker=breaker))
    at = "/spec/deploymentConfiguration/deploymentCircuitBreaker"
    assert [(d.severity, d.pointer) for d in diags] == [
        (document.WARNING, f"{at}/thresholdConfiguration"),
        (document.WARNING, f"{at}/resetOnHealthyTask"),
    ]
    assert diags[0].message == (
        "deploymentCircuitBreaker.thresholdConfiguration has no effect while the circuit breaker is off (enable: false)"
    )
    assert run(deploy(deploymentCircuitBreaker={**breaker, "enable": True})) == []


def test_pinned_arn_gives_the_revision_notice_only():
    diags = run(
        ("svc", ("spec", "taskDefinition"), "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:7")
    )
    assert [(d.severity, d.pointer) for d in diags] == [(document.NOTICE, "/spec/taskDefinition")]
    assert "revision 7 of 'web'" in diags[0].message


def test_an_alarm_whose_service_failed_the_schema_is_not_reported_missing():
    docs = base()
    edit(docs, *alarm_doc(metric={**WEB_CPU, "service": "broken"}))
    docs["broken"] = _doc("Service", "broken", {"taskDefinition": 3})
    loaded = load(docs)
    valid = [d for d in loaded if d.name != "broken"]
    assert semantic.check(valid, loaded) == []


def test_cycle_reported_once_per_cycle():
    diags = run(
        (
            "web",
            (*C, 1),
            {**SIDE, "name": "b", "dependsOn": [{"containerName": "app", "condition": "START"}]},
        ),
        w("dependsOn", value=[{"containerName": "b", "condition": "START"}]),
        ("web", (*C, 2), {**SIDE, "name": "c", "dependsOn": [{"containerName": "c2", "condition": "START"}]}),
        ("web", (*C, 3), {**SIDE, "name": "c2", "dependsOn": [{"containerName": "c", "condition": "START"}]}),
    )
    cycles = sorted(d.message for d in diags if "cycle" in d.message)
    assert cycles == ["dependsOn forms a cycle: app → b → app", "dependsOn forms a cycle: c → c2 → c"]


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({}, []),
        ({0: [(1, 0)]}, []),
        ({0: [(1, 0)], 1: [(0, 0)]}, [[0, 1]]),
        ({2: [(1, 0)], 1: [(2, 0)]}, [[1, 2]]),
        ({0: [(1, 0)], 1: [(2, 0)], 2: [(0, 0)]}, [[0, 1, 2]]),
        ({0: [(1, 0), (2, 1)], 1: [(3, 0)], 2: [(3, 0)]}, []),
        ({0: [(1, 0)], 1: [(0, 0), (2, 1)], 2: [(1, 0)]}, [[0, 1], [1, 2]]),
    ],
)
def test_cycles(edges, expected):
    assert containers._cycles(edges) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "at(2025-06-01T09:30:00)",
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(2 hours)",
        "rate(1 day)",
        "cron(15 12 * * ? *)",
        "cron(0 9 ? * MON-FRI *)",
        "cron(0/15 8-17 ? * 2-6 2025)",
        "cron(0 0 L * ? *)",
        "cron(0 0 15W * ? *)",
        "cron(0 0 ? * 6L *)",
        "cron(0 0 ? * MON#1 *)",
        "cron(0 0 1,15 JAN,JUL ? *)",
        "*/5 * * * *",
        "0 9 * * 1-5",
        "0 0 1 jan sun",
        "30 2 * * 0,7",
    ],
)
def test_schedule_valid(expression):
    assert autoscaling.schedule_error(expression) is None


@pytest.mark.parametrize(
    "expression, fragment",
    [
        ("", "must be at(...)"),
        (None, "must be at(...)"),
        (5, "must be at(...)"),
        ("at(2025-06-01 09:30:00)", "at(yyyy-mm-ddThh:mm:ss)"),
        ("at(2025-02-30T00:00:00)", "at(yyyy-mm-ddThh:mm:ss)"),
        ("rate(0 minutes)", "N > 0"),
        ("rate(5)", "rate(N minutes|hours|days)"),
        ("rate(1 week)", "rate(N"),
        ("cron(0 9 * * ? * *)", "has 7 fields"),
        ("cron(0 9 * * MON-FRI *)", "'?' in exactly one"),
        ("cron(0 9 ? * ? *)", "'?' in exactly one"),
        ("cron(60 9 ? * * *)", "'60' is not valid in the minute field (allowed 0-59)"),
        ("cron(0 24 ? * * *)", "hour field"),
        ("cron(0 0 32 * ? *)", "day-of-month"),
        ("cron(0 0 ? 13 * *)", "month field"),
        ("cron(0 0 ? * 8 *)", "day-of-week field"),
        ("cron(0 0 ? * 0 *)", "day-of-week field"),
        ("cron(0 0 ? * * 1969)", "year field"),
        ("cron(*/0 0 ? * * *)", "bad step '0'"),
        ("cron(1,,2 0 ? * * *)", "empty list item"),
        ("0 9 * * ?", "'?' is not allowed in the day-of-week field"),
        ("0 9 L * *", "'L' is not valid"),
        ("0 9 * *", "has 4 fields"),
        ("0 9 * * 1 2", "has 6 fields"),
        ("0 9 * * FOO", "'FOO' is not valid"),
        ("every(5 minutes)", "must be at(...), rate(...), cron(...)"),
    ],
)
def test_schedule_invalid(expression, fragment):
    problem = autoscaling.schedule_error(expression)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize(
    "name, ok",
    [
        ("UTC", True),
        ("Europe/Berlin", True),
        ("America/Argentina/Buenos_Aires", True),
        ("Europe/Atlantis", False),
        ("", False),
        (None, False),
        ("../etc/passwd", False),
        ("/etc/localtime", False),
        ("europe/berlin", False),
    ],
)
def test_timezone(name, ok):
    assert (autoscaling.timezone_error(name) is None) == ok


@pytest.mark.parametrize(
    "path, prefixes, ok",
    [
        ("/data", ["/data"], True),
        ("/data/x/y", ["/data"], True),
        ("/data/x", ["/data/"], True),
        ("/database", ["/data"], False),
        ("/data/../etc", ["/data"], False),
        ("//data/x", ["/data"], True),
        ("/etc", ["/"], True),
        ("/etc", [], False),
        ("data", ["/data", "data"], False),
        ("/data", ["data", 7], False),
    ],
)
def test_host_path_allowed(path, prefixes, ok):
    assert service.host_path_allowed(path, prefixes) == ok


# ---------------------------------------------------------------- robustness

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=True), st.text(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
_field_names = st.sampled_from(
    [
        "containerDefinitions",
        "networkMode",
        "cpu",
        "memory",
        "volumes",
        "placementConstraints",
        "requiresCompatibilities",
        "cluster",
        "taskDefinition",
        "desiredCount",
        "launchType",
        "schedulingStrategy",
        "deploymentConfiguration",
        "placementStrategy",
        "loadBalancers",
        "autoScaling",
        "instances",
        "fargate",
        "policy",
        "family",
        "pidMode",
        "ipcMode",
        "proxyConfiguration",
        "serviceName",
        "metric",
        "period",
        "evaluationPeriods",
        "datapointsToAlarm",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Cluster", "TaskDefinition", "Service", "Alarm", "Other"]),
            st.sampled_from(["a", "b", "default"]),
            st.dictionaries(_field_names, _values, max_size=6),
        ),
        max_size=5,
    )
)
def test_check_never_raises_on_odd_values(entries):
    docs = [
        document.Document(path="f.yaml", index=i, body=_doc(k, n, s)) for i, (k, n, s) in enumerate(entries)
    ]
    for diag in semantic.check(docs, docs):
        assert diag.message and diag.pointer.startswith("/")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            list(base()["web"]["spec"]["containerDefinitions"][0])
            + [
                "dependsOn",
                "healthCheck",
                "linuxParameters",
                "links",
                "mountPoints",
                "volumesFrom",
                "essential",
                "memoryReservation",
                "privileged",
                "logConfiguration",
                "hostname",
            ]
        ),
        _values,
        max_size=6,
    )
)
def test_container_rules_never_raise(container):
    body = _doc(
        "TaskDefinition",
        "t",
        {
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "containerDefinitions": [container, {"name": "x", **container}],
        },
    )
    doc = document.Document(path="f.yaml", index=0, body=body)
    for td_rule in (*taskdef.RULES, *containers.RULES):
        list(td_rule(doc))
    service_doc = document.Document(
        path="f.yaml", index=1, body=_doc("Service", "s", {"loadBalancers": [container]})
    )
    for rule in service.RULES:
        list(rule(service.ServiceView(service_doc, doc, None)))
