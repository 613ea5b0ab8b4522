"""Tests for the schema stage (reconciler.manifests.schema) and the four JSON Schemas in schemas/.

Documents go through loader.load_bytes, so lines and columns are the real ones. The corpus test runs
every real-world task definition in ../shared/ecs-corpus through loader.load_file and the schema.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.manifests import document, loader, schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "ecs-corpus"


def load(text: str, path: str = "m.yaml") -> list[document.Document]:
    docs, diags = loader.load_bytes(path, text.encode())
    assert not diags, [d.format() for d in diags]
    return docs


def check(text: str) -> list[document.Diagnostic]:
    return schema.check(load(text))


def found(text: str) -> list[tuple[int, int, str, str]]:
    """(line, col, pointer, message) of each error."""
    return [(d.line, d.col, d.pointer, d.message) for d in check(text) if d.severity == document.ERROR]


CLUSTER = """\
apiVersion: reconciler/v1
kind: Cluster
metadata:
  name: prod
spec:
  instances:
    - name: h1
      endpoint: unix:///var/run/docker.sock
"""

TASK = """\
apiVersion: reconciler/v1
kind: TaskDefinition
metadata:
  name: web
spec:
  containerDefinitions:
    - name: app
      image: nginx:1.27
      memory: 256
"""

SERVICE = """\
apiVersion: reconciler/v1
kind: Service
metadata:
  name: web
spec:
  taskDefinition: web
  desiredCount: 2
"""

ALARM = """\
apiVersion: reconciler/v1
kind: Alarm
metadata:
  name: web-cpu
spec:
  metric: {predefinedMetricType: ECSServiceAverageCPUUtilization, service: web}
  evaluationPeriods: 3
  threshold: 80
  comparisonOperator: GreaterThanThreshold
"""

# ------------------------------------------------------------------------------------- the schema files


def schema_files() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.schema.json"))}


def test_schema_files_are_draft_2020_12_with_ids() -> None:
    files = schema_files()
    assert set(files) == {
        "cluster.schema.json",
        "taskdefinition.schema.json",
        "service.schema.json",
        "alarm.schema.json",
    }
    for name, s in files.items():
        jsonschema.Draft202012Validator.check_schema(s)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert s["$id"] == f"https://reconciler.dev/schemas/v1/{name}"
        assert s["title"] and s["description"]


def _objects(node: Any, where: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema object that declares properties, with where it is."""
    out = []
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            out.append((where, node))
        for key, value in node.items():
            if key in ("enum", "const"):
                continue
            if key in ("properties", "$defs", "patternProperties"):
                for name, sub in value.items():
                    out.extend(_objects(sub, f"{where}/{key}/{name}"))
            else:
                out.extend(_objects(value, f"{where}/{key}"))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out.extend(_objects(item, f"{where}/{i}"))
    return out


def test_every_property_has_a_description_and_every_object_is_closed() -> None:
    for name, s in schema_files().items():
        objects = _objects(s)
        assert len(objects) >= 5  # the walk finds the objects (the Alarm schema has five)
        for where, obj in objects:
            for prop, sub in obj["properties"].items():
                assert "description" in sub, f"{name}{where}/properties/{prop} has no description"
            assert obj.get("additionalProperties") is False, f"{name}{where} is not closed"
            assert obj.get("patternProperties") == {"^x-": {}}, f"{name}{where} does not allow x- keys"


def test_shared_defs_are_identical_and_refs_stay_in_the_file() -> None:
    files = schema_files()
    everywhere = ("apiVersion", "name", "stringMap", "metadata")
    # Where a file has one of these, it is the Service schema's: one vocabulary for tags, durations and
    # metrics (an Alarm reads the metrics autoScaling reads).
    shared = ("tag", "tags", "duration", "predefinedMetric", "customizedMetric")
    first = files["service.schema.json"]["$defs"]
    for name, s in files.items():
        for key in everywhere:
            assert s["$defs"][key] == first[key], f"$defs/{key} differs in {name}"
        for key in shared:
            assert s["$defs"].get(key, first[key]) == first[key], f"$defs/{key} differs in {name}"
        refs = re.findall(r'"\$ref": "([^"]*)"', json.dumps(s))
        assert refs and all(ref.startswith("#/$defs/") for ref in refs), name
        for ref in refs:
            assert ref.split("/")[-1] in s["$defs"], f"{name}: dangling {ref}"
    assert {"duration", "predefinedMetric", "customizedMetric"} <= set(files["alarm.schema.json"]["$defs"])


def test_container_definition_has_the_42_ecs_fields() -> None:
    container = schema_files()["taskdefinition.schema.json"]["$defs"]["containerDefinition"]
    assert len(container["properties"]) == 42
    assert container["required"] == ["name", "image"]


def test_schemas_load_from_the_project_root_and_compile_without_refs() -> None:
    assert schema.schema_dir() == SCHEMAS
    compiled = schema.schemas()
    assert set(compiled) == {"Cluster", "TaskDefinition", "Service", "Alarm"}
    assert "$ref" not in json.dumps(compiled)
    assert all(p is not None for p in schema._predicates().values()), "fast path disabled for a kind"


def test_remote_references_are_refused_not_fetched() -> None:
    import referencing.exceptions

    with pytest.raises(referencing.exceptions.NoSuchResource):
        schema._refuse_remote("https://reconciler.dev/schemas/v1/common.schema.json")


# ---------------------------------------------------------------------------------------- valid documents


@pytest.mark.parametrize(
    "text", [CLUSTER, TASK, SERVICE, ALARM], ids=["cluster", "taskdefinition", "service", "alarm"]
)
def test_minimal_documents_pass(text: str) -> None:
    assert check(text) == []


FULL = """\
apiVersion: reconciler/v1
kind: Cluster
metadata:
  name: prod
  labels: {team: infra}
  annotations: {owner: ops}
spec:
  region: eu-west-1
  instances:
    - name: h1
      endpoint: tcp://10.0.0.1:2376
      tls: {ca: ca.pem, cert: cert.pem, key: key.pem, verify: true}
      attributes: {stack: prod, gpu/model: a100, zone.rack: "r 1"}
      availabilityZone: eu-west-1a
      instanceType: m5.large
      resources: {cpu: 2048, memory: 7680}
      status: DRAINING
      publishAddress: 10.0.0.1
    - name: h2
      endpoint: ssh://ops@10.0.0.2
      publishAddress: "::1"
  fargate:
    endpoints:
      - {name: f1, endpoint: tcp://10.0.1.1:2376}
    publishAddress: 0.0.0.0
  policy: {allowPrivileged: false, allowedHostPaths: [/var/log, /data]}
  credentials: {registryCredentialsFile: creds.json}
  settings: [{name: containerInsights, value: enabled}]
  tags: [{key: env, value: prod}]
---
apiVersion: reconciler/v1
kind: Service
metadata:
  name: web
spec:
  cluster: prod
  taskDefinition: web:3
  desiredCount: 3
  launchType: EC2
  schedulingStrategy: REPLICA
  deploymentConfiguration:
    maximumPercent: 200
    minimumHealthyPercent: 50
    deploymentCircuitBreaker:
      enable: true
      rollback: true
      thresholdConfiguration: {type: COUNT, value: 3}
      resetOnHealthyTask: false
    strategy: ROLLING
    bakeTimeInMinutes: 10
    alarms: {alarmNames: [web-cpu, queue], enable: true, rollback: true}
    linearConfiguration: {stepPercent: 10.5, stepBakeTimeInMinutes: 6}
    canaryConfiguration: {canaryPercent: 0.5, canaryBakeTimeInMinutes: 10}
    lifecycleHooks:
      - targetType: AWS_LAMBDA
        hookTargetArn: "arn:aws:lambda:eu-west-1:123456789012:function:check"
        roleArn: "arn:aws:iam::123456789012:role/hooks"
        lifecycleStages: [PRE_SCALE_UP, POST_PRODUCTION_TRAFFIC_SHIFT]
        hookDetails: {any: [thing, 1]}
        timeoutConfiguration: {timeoutInMinutes: 60, action: ROLLBACK}
  placementConstraints:
    - type: distinctInstance
    - {type: memberOf, expression: "attribute:stack == prod"}
  placementStrategy:
    - {type: spread, field: "attribute:ecs.availability-zone"}
    - {type: binpack, field: memory}
  loadBalancers: [{targetGroupArn: "arn:aws:elasticloadbalancing:tg/web", containerName: app, containerPort: 80}]
  healthCheckGracePeriodSeconds: 30
  networkConfiguration:
    awsvpcConfiguration: {subnets: [subnet-1], securityGroups: [sg-1], assignPublicIp: DISABLED}
  enableExecuteCommand: true
  propagateTags: SERVICE
  tags: [{key: app, value: web}]
  platformVersion: LATEST
  serviceRegistries: [{registryArn: "arn:aws:servicediscovery:x", containerName: app, containerPort: 80}]
  autoScaling:
    minCapacity: 1
    maxCapacity: 10
    evaluationPeriod: 30s
    targetTracking:
      - {policyName: cpu, targetValue: 60, predefinedMetric: ECSServiceAverageCPUUtilization,
         scaleOutCooldown: 60, scaleInCooldown: 5m, disableScaleIn: false}
      - targetValue: 100
        customizedMetric: {url: "http://localhost:9100/metrics", metricName: queue_depth, statistic: Maximum}
    stepScaling:
      - policyName: mem-high
        metric: ECSServiceAverageMemoryUtilization
        statistic: Average
        comparisonOperator: GreaterThanOrEqualToThreshold
        threshold: 80
        evaluationPeriods: 3
        datapointsToAlarm: 2
        period: 1m
        adjustmentType: PercentChangeInCapacity
        stepAdjustments:
          - {metricIntervalLowerBound: 0, metricIntervalUpperBound: 10, scalingAdjustment: 50}
          - {metricIntervalLowerBound: 10, scalingAdjustment: 100}
        minAdjustmentMagnitude: 2
        cooldown: 300
    scheduled:
      - {name: night, schedule: "cron(0 22 * * ? *)", timezone: Europe/Berlin, minCapacity: 0, maxCapacity: 2}
      - {name: morning, schedule: "0 6 * * 1-5", startTime: 2025-01-01T00:00:00Z, endTime: 2026-01-01}
      - {name: once, schedule: "at(2025-06-01T12:00:00)", endTime: "2025-07-01T00:00:00+02:00"}
      - {name: often, schedule: "rate(5 minutes)"}
---
apiVersion: reconciler/v1
kind: Service
metadata:
  name: worker
spec:
  cluster: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod"
  taskDefinition: "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:12"
  desiredCount: 1
---
apiVersion: reconciler/v1
kind: Alarm
metadata:
  name: web-cpu
  labels: {team: web}
spec:
  metric: {predefinedMetricType: ECSServiceAverageCPUUtilization, service: web}
  statistic: Maximum
  period: 1m
  evaluationPeriods: 5
  datapointsToAlarm: 3
  threshold: 90.5
  comparisonOperator: GreaterThanOrEqualToThreshold
  treatMissingData: breaching
  alarmDescription: CPU of web too high
---
apiVersion: reconciler/v1
kind: Alarm
metadata:
  name: queue
spec:
  metric:
    customizedMetric: {url: "http://10.0.0.5:9100/metrics", metricName: queue_depth, statistic: Sum}
  period: 30
  evaluationPeriods: 2
  threshold: 1000
  comparisonOperator: LessThanThreshold
"""


def test_documents_using_every_field_pass() -> None:
    assert check(FULL) == []


def test_x_keys_are_allowed_in_closed_objects_but_not_special_in_maps() -> None:
    text = """\
apiVersion: reconciler/v1
kind: TaskDefinition
x-defaults: &log {logDriver: awslogs, options: {awslogs-group: g, awslogs-region: eu-west-1}}
metadata:
  name: web
  x-owner: me
spec:
  x-note: anything goes here
  containerDefinitions:
    - name: app
      image: nginx
      x-comment: [1, 2]
      logConfiguration: *log
      dockerLabels: {x-team: infra}
      portMappings: [{containerPort: 80, x-why: web}]
"""
    assert check(text) == []
    assert found(text.replace("x-note", "y-note")) == [(8, 3, "/spec/y-note", "unknown field 'y-note'")]


# ------------------------------------------------------------------------------------------ error table

# (id, document text, expected (line, col, pointer, message) of every error)
CASES: list[tuple[str, str, list[tuple[int, int, str, str]]]] = [
    (
        "typo-did-you-mean",
        SERVICE + "  desiredCont: 3\n",
        [(8, 3, "/spec/desiredCont", "unknown field 'desiredCont' (did you mean 'desiredCount'?)")],
    ),
    (
        "case-did-you-mean",
        TASK.replace("      image:", "      Image:"),
        [
            (7, 7, "/spec/containerDefinitions/0", "missing required field 'image'"),
            (8, 7, "/spec/containerDefinitions/0/Image", "unknown field 'Image' (did you mean 'image'?)"),
        ],
    ),
    (
        "unsupported-ecs-field",
        SERVICE + "  serviceName: web\n",
        [(8, 3, "/spec/serviceName", "unknown field 'serviceName' (the service name is metadata.name)")],
    ),
    (
        "wrong-type",
        SERVICE.replace("desiredCount: 2", 'desiredCount: "3"'),
        [(7, 3, "/spec/desiredCount", 'expected integer, got string "3"')],
    ),
    (
        "wrong-type-null",
        TASK.replace("memory: 256", "memory: null"),
        [
            (
                9,
                7,
                "/spec/containerDefinitions/0/memory",
                "expected integer, got null (leave the field out to unset it)",
            )
        ],
    ),
    (
        "wrong-type-float",
        TASK.replace("memory: 256", "memory: 256.0"),
        [(9, 7, "/spec/containerDefinitions/0/memory", "expected integer, got number 256.0")],
    ),
    (
        "wrong-type-bool-is-not-integer",
        SERVICE.replace("desiredCount: 2", "desiredCount: yes"),
        [(7, 3, "/spec/desiredCount", "expected integer, got boolean true")],
    ),
    (
        "env-value-must-be-string",
        TASK + "      environment: [{name: A, value: 3}]\n",
        [(10, 31, "/spec/containerDefinitions/0/environment/0/value", "expected string, got integer 3")],
    ),
    (
        "enum",
        TASK + "  networkMode: Bridge\n",
        [(10, 3, "/spec/networkMode", "must be one of: bridge, host, awsvpc, none (got 'Bridge')")],
    ),
    (
        "enum-in-list",
        TASK + "      ulimits: [{name: nofiles, softLimit: 1, hardLimit: 2}]\n",
        [
            (
                10,
                18,
                "/spec/containerDefinitions/0/ulimits/0/name",
                "must be one of: core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, "
                "rtprio, rttime, sigpending, stack (got 'nofiles')",
            )
        ],
    ),
    (
        "dependson-condition",
        TASK + "      dependsOn: [{containerName: db, condition: RUNNING}]\n",
        [
            (
                10,
                39,
                "/spec/containerDefinitions/0/dependsOn/0/condition",
                "must be one of: START, COMPLETE, SUCCESS, HEALTHY (got 'RUNNING')",
            )
        ],
    ),
    (
        "required",
        TASK.replace("      image: nginx:1.27\n", ""),
        [(7, 7, "/spec/containerDefinitions/0", "missing required field 'image'")],
    ),
    (
        "health-check-ranges",
        TASK
        + "      healthCheck: {command: [CMD, /ok], interval: 1, timeout: 61, retries: 11, startPeriod: 301}\n",
        [
            (10, 42, "/spec/containerDefinitions/0/healthCheck/interval", "must be at least 5 (got 1)"),
            (10, 55, "/spec/containerDefinitions/0/healthCheck/timeout", "must be at most 60 (got 61)"),
            (10, 68, "/spec/containerDefinitions/0/healthCheck/retries", "must be at most 10 (got 11)"),
            (10, 81, "/spec/containerDefinitions/0/healthCheck/startPeriod", "must be at most 300 (got 301)"),
        ],
    ),
    (
        "too-many-containers",
        TASK.replace(
            "  containerDefinitions:\n    - name: app\n      image: nginx:1.27\n      memory: 256\n",
            "  containerDefinitions:\n" + "".join(f"    - {{name: c{i}, image: x}}\n" for i in range(12)),
        ),
        [(6, 3, "/spec/containerDefinitions", "must have at most 10 items (got 12)")],
    ),
    (
        "no-containers",
        TASK.replace(
            "  containerDefinitions:\n    - name: app\n      image: nginx:1.27\n      memory: 256\n",
            "  containerDefinitions: []\n",
        ),
        [(6, 3, "/spec/containerDefinitions", "must have at least 1 item (got 0)")],
    ),
    (
        "task-cpu-string-form",
        TASK + "  cpu: 1 core\n",
        [(10, 3, "/spec/cpu", 'must be CPU units ("1024") or vCPUs ("1 vCPU", ".25 vCPU") (got \'1 core\')')],
    ),
    (
        "task-memory-type",
        TASK + "  memory: [512]\n",
        [(10, 3, "/spec/memory", "expected integer or string, got array")],
    ),
    (
        "name-pattern",
        TASK.replace("name: app", "name: my app"),
        [
            (
                7,
                7,
                "/spec/containerDefinitions/0/name",
                "must be 1-255 letters, digits, '_' or '-' (got 'my app')",
            )
        ],
    ),
    (
        "task-definition-reference",
        SERVICE.replace("taskDefinition: web", "taskDefinition: web:latest"),
        [
            (
                6,
                3,
                "/spec/taskDefinition",
                "must be family, family:N with N >= 1, or arn:aws:ecs:REGION:ACCOUNT:task-definition/family[:N], "
                "e.g. web or web:3 (got 'web:latest')",
            )
        ],
    ),
    (
        "task-definition-revision-zero",
        SERVICE.replace("taskDefinition: web", "taskDefinition: web:0"),
        [
            (
                6,
                3,
                "/spec/taskDefinition",
                "must be family, family:N with N >= 1, or arn:aws:ecs:REGION:ACCOUNT:task-definition/family[:N], "
                "e.g. web or web:3 (got 'web:0')",
            )
        ],
    ),
    (
        "cluster-arn-needs-a-12-digit-account",
        SERVICE + "  cluster: arn:aws:ecs:eu-west-1:123:cluster/prod\n",
        [
            (
                8,
                3,
                "/spec/cluster",
                "must be a cluster name (1-255 letters, digits, '_' or '-') or arn:aws:ecs:REGION:ACCOUNT:cluster/NAME "
                "(got 'arn:aws:ecs:eu-west-1:123:cluster/prod')",
            )
        ],
    ),
    (
        "circuit-breaker-threshold",
        SERVICE
        + "  deploymentConfiguration:\n    deploymentCircuitBreaker:\n      enable: true\n      rollback: false\n"
        + "      thresholdConfiguration: {type: COUNT, value: 0}\n      resetOnHealthyTask: 1\n",
        [
            (
                12,
                45,
                "/spec/deploymentConfiguration/deploymentCircuitBreaker/thresholdConfiguration/value",
                "must be at least 1 (got 0)",
            ),
            (
                13,
                7,
                "/spec/deploymentConfiguration/deploymentCircuitBreaker/resetOnHealthyTask",
                "expected boolean, got integer 1",
            ),
        ],
    ),
    (
        "deployment-strategy-bake-time-alarms",
        SERVICE
        + "  deploymentConfiguration:\n    strategy: BLUEGREEN\n    bakeTimeInMinutes: 1441\n"
        + "    alarms: {alarmNames: [a], enable: true}\n",
        [
            (
                9,
                5,
                "/spec/deploymentConfiguration/strategy",
                "must be one of: ROLLING, BLUE_GREEN, LINEAR, CANARY (got 'BLUEGREEN')",
            ),
            (10, 5, "/spec/deploymentConfiguration/bakeTimeInMinutes", "must be at most 1440 (got 1441)"),
            (11, 5, "/spec/deploymentConfiguration/alarms", "missing required field 'rollback'"),
        ],
    ),
    (
        "alarm-metric-forms",
        "---\n".join(
            [
                ALARM.replace("{predefinedMetricType: ECSServiceAverageCPUUtilization, service: web}", "{}"),
                ALARM.replace("service: web}", "service: web, customizedMetric: {url: 'http://x/'}}"),
                ALARM.replace(", service: web}", "}"),
                ALARM.replace(
                    "predefinedMetricType: ECSServiceAverageCPUUtilization, ",
                    "customizedMetric: {url: 'http://x/'}, ",
                ),
            ]
        ),
        [
            (6, 3, "/spec/metric", "missing required field 'predefinedMetricType' or 'customizedMetric'"),
            (16, 3, "/spec/metric", "set only one of 'predefinedMetricType' or 'customizedMetric'"),
            (26, 3, "/spec/metric", "missing required field 'service' (it goes with 'predefinedMetricType')"),
            (36, 3, "/spec/metric", "missing required field 'predefinedMetricType' (it goes with 'service')"),
        ],
    ),
    (
        "alarm-cloudwatch-fields-that-do-not-apply",
        ALARM
        + "  alarmActions: [arn]\n  namespace: AWS/ECS\n  extendedStatistic: p99\n  metrics: []\n  treshold: 3\n",
        [
            (
                10,
                3,
                "/spec/alarmActions",
                "unknown field 'alarmActions' (alarms here take no actions: a Service's deploymentConfiguration.alarms "
                "names the alarm, and its ALARM state fails that service's deployment)",
            ),
            (
                11,
                3,
                "/spec/namespace",
                "unknown field 'namespace' (there is no CloudWatch here: metric says what to read, as "
                "predefinedMetricType with service or as customizedMetric)",
            ),
            (
                12,
                3,
                "/spec/extendedStatistic",
                "unknown field 'extendedStatistic' (percentile statistics are not supported: use statistic)",
            ),
            (
                13,
                3,
                "/spec/metrics",
                "unknown field 'metrics' (metric math is not supported: an alarm watches one metric)",
            ),
            (14, 3, "/spec/treshold", "unknown field 'treshold' (did you mean 'threshold'?)"),
        ],
    ),
    (
        "alarm-fields",
        ALARM.replace("  threshold: 80\n", "")
        + "  period: 1 minute\n  statistic: p99\n  treatMissingData: zero\n  datapointsToAlarm: 0\n",
        [
            (5, 1, "/spec", "missing required field 'threshold'"),
            (
                9,
                3,
                "/spec/period",
                'must be seconds or a duration such as "500ms", "90s", "5m" or "1h30m" (got \'1 minute\')',
            ),
            (
                10,
                3,
                "/spec/statistic",
                "must be one of: SampleCount, Average, Sum, Minimum, Maximum (got 'p99')",
            ),
            (
                11,
                3,
                "/spec/treatMissingData",
                "must be one of: breaching, notBreaching, ignore, missing (got 'zero')",
            ),
            (12, 3, "/spec/datapointsToAlarm", "must be at least 1 (got 0)"),
        ],
    ),
    (
        "launch-type-external",
        SERVICE + "  launchType: EXTERNAL\n",
        [(8, 3, "/spec/launchType", "must be one of: EC2, FARGATE (got 'EXTERNAL')")],
    ),
    (
        "placement-limits",
        SERVICE + "  placementStrategy: [" + ", ".join(["{type: random}"] * 6) + "]\n",
        [(8, 3, "/spec/placementStrategy", "must have at most 5 items (got 6)")],
    ),
    (
        "circuit-breaker-needs-both",
        SERVICE + "  deploymentConfiguration: {deploymentCircuitBreaker: {enable: true}}\n",
        [
            (
                8,
                29,
                "/spec/deploymentConfiguration/deploymentCircuitBreaker",
                "missing required field 'rollback'",
            )
        ],
    ),
    (
        "autoscaling-bounds-required",
        SERVICE + "  autoScaling: {maxCapacity: 3}\n",
        [(8, 3, "/spec/autoScaling", "missing required field 'minCapacity'")],
    ),
    (
        "target-tracking-needs-a-metric",
        SERVICE + "  autoScaling: {minCapacity: 1, maxCapacity: 3, targetTracking: [{targetValue: 50}]}\n",
        [
            (
                8,
                66,
                "/spec/autoScaling/targetTracking/0",
                "missing required field 'predefinedMetric' or 'customizedMetric'",
            )
        ],
    ),
    (
        "target-tracking-one-metric-only",
        SERVICE
        + "  autoScaling:\n    minCapacity: 1\n    maxCapacity: 3\n    targetTracking:\n"
        + "      - targetValue: 50\n        predefinedMetric: ECSServiceAverageCPUUtilization\n"
        + "        customizedMetric: {url: 'http://x/metrics'}\n",
        [
            (
                12,
                9,
                "/spec/autoScaling/targetTracking/0",
                "set only one of 'predefinedMetric' or 'customizedMetric'",
            )
        ],
    ),
    (
        "any-of-picks-the-branch-of-the-right-type",
        SERVICE
        + "  autoScaling:\n    minCapacity: 1\n    maxCapacity: 3\n    stepScaling:\n"
        + "      - {metric: CPU, comparisonOperator: GreaterThanThreshold, threshold: 1,"
        + " adjustmentType: ChangeInCapacity, stepAdjustments: [{scalingAdjustment: 1}]}\n"
        + "      - {metric: {url: 3}, comparisonOperator: GreaterThanThreshold, threshold: 1,"
        + " adjustmentType: ChangeInCapacity, stepAdjustments: [{scalingAdjustment: 1}]}\n"
        + "      - {metric: 7, comparisonOperator: GreaterThanThreshold, threshold: 1,"
        + " adjustmentType: ChangeInCapacity, stepAdjustments: [{scalingAdjustment: 1}]}\n",
        [
            (
                12,
                10,
                "/spec/autoScaling/stepScaling/0/metric",
                "must be one of: ECSServiceAverageCPUUtilization, ECSServiceAverageMemoryUtilization (got 'CPU')",
            ),
            (13, 19, "/spec/autoScaling/stepScaling/1/metric/url", "expected string, got integer 3"),
            (14, 10, "/spec/autoScaling/stepScaling/2/metric", "expected string or object, got integer 7"),
        ],
    ),
    (
        "duration-and-schedule",
        SERVICE
        + "  autoScaling:\n    minCapacity: 1\n    maxCapacity: 3\n    evaluationPeriod: 1 minute\n"
        + "    scheduled: [{name: a, schedule: 'cron(0 22 * * ?)'}]\n",
        [
            (
                11,
                5,
                "/spec/autoScaling/evaluationPeriod",
                'must be seconds or a duration such as "500ms", "90s", "5m" or "1h30m" (got \'1 minute\')',
            ),
            (
                12,
                27,
                "/spec/autoScaling/scheduled/0/schedule",
                "must be at(yyyy-mm-ddThh:mm:ss), rate(<n> minutes|hours|days), cron(<6 fields>) or a 5-field "
                "cron expression (got 'cron(0 22 * * ?)')",
            ),
        ],
    ),
    (
        "cluster-shapes",
        CLUSTER
        + "      endpoint2: x\n"
        + "      attributes: {bad name: x, ok: ' lead'}\n"
        + "      publishAddress: 1.2.3.400\n"
        + "  policy: {allowedHostPaths: [data]}\n"
        + "  capacityProviders: [FARGATE]\n",
        [
            (9, 7, "/spec/instances/0/endpoint2", "unknown field 'endpoint2' (did you mean 'endpoint'?)"),
            (
                10,
                20,
                "/spec/instances/0/attributes/bad name",
                "invalid name 'bad name': must be 1-128 letters, digits, '-', '_', '/', '\\' or '.'",
            ),
            (
                10,
                33,
                "/spec/instances/0/attributes/ok",
                "must be 1-128 letters, digits, '-', '_', '.', '@', '/', '\\', ':' or spaces, not starting or "
                "ending with a space (got ' lead')",
            ),
            (11, 7, "/spec/instances/0/publishAddress", "must be an IPv4 or IPv6 address (got '1.2.3.400')"),
            (12, 31, "/spec/policy/allowedHostPaths/0", "must be an absolute path (got 'data')"),
            (
                13,
                3,
                "/spec/capacityProviders",
                "unknown field 'capacityProviders' (capacity providers are not supported: use instances and "
                "fargate)",
            ),
        ],
    ),
    (
        "cluster-endpoint-and-attribute-count",
        CLUSTER.replace("unix:///var/run/docker.sock", "http://h1:2375")
        + "      attributes: {"
        + ", ".join(f"a{i}: v" for i in range(11))
        + "}\n",
        [
            (
                8,
                7,
                "/spec/instances/0/endpoint",
                "must be a Docker endpoint URL: unix://, tcp:// or ssh:// (got 'http://h1:2375')",
            ),
            (9, 7, "/spec/instances/0/attributes", "must have at most 10 entries (got 11)"),
        ],
    ),
    (
        "tags",
        SERVICE + "  tags: [{key: 'aws:owner', value: x}, {value: y}]\n",
        [
            (8, 11, "/spec/tags/0/key", "must not start with the reserved prefix 'aws:' (got 'aws:owner')"),
            (8, 40, "/spec/tags/1", "missing required field 'key'"),
        ],
    ),
    (
        "labels-are-string-maps",
        SERVICE.replace("  name: web\n", "  name: web\n  labels: {tier: 1}\n"),
        [(5, 12, "/metadata/labels/tier", "expected string, got integer 1")],
    ),
]


@pytest.mark.parametrize("text, expected", [(t, e) for _, t, e in CASES], ids=[c[0] for c in CASES])
def test_errors(text: str, expected: list[tuple[int, int, str, str]]) -> None:
    assert found(text) == expected


def test_diagnostic_format_names_file_position_subject_and_pointer() -> None:
    (d,) = schema.check(load(SERVICE + "  desiredCont: 3\n", path="svc/web.yaml"))
    assert d.format() == (
        "svc/web.yaml:8:3: Service/web: /spec/desiredCont: unknown field 'desiredCont' (did you mean 'desiredCount'?)"
    )


# --------------------------------------------------------------------------------------------- envelope

ENVELOPE_CASES = [
    (
        "missing-api-version",
        SERVICE.replace("apiVersion: reconciler/v1\n", ""),
        [(1, 1, "/", "missing required field 'apiVersion' (expected 'reconciler/v1')")],
    ),
    (
        "unknown-api-version",
        SERVICE.replace("reconciler/v1", "reconciler/v2"),
        [(1, 1, "/apiVersion", "unknown apiVersion 'reconciler/v2' (expected 'reconciler/v1')")],
    ),
    (
        "kind-case",
        SERVICE.replace("kind: Service", "kind: service"),
        [(2, 1, "/kind", "unknown kind 'service' (did you mean 'Service'?)")],
    ),
    (
        "kind-typo",
        TASK.replace("kind: TaskDefinition", "kind: TaskDef"),
        [(2, 1, "/kind", "unknown kind 'TaskDef' (did you mean 'TaskDefinition'?)")],
    ),
    (
        "kind-unknown",
        SERVICE.replace("kind: Service", "kind: Deployment"),
        [
            (
                2,
                1,
                "/kind",
                "unknown kind 'Deployment' (expected one of: Cluster, TaskDefinition, Service, Alarm)",
            )
        ],
    ),
    (
        "kind-missing",
        SERVICE.replace("kind: Service\n", ""),
        [(1, 1, "/", "missing required field 'kind' (one of: Cluster, TaskDefinition, Service, Alarm)")],
    ),
    (
        "name-missing",
        SERVICE.replace("  name: web\n", "  labels: {a: b}\n"),
        [(3, 1, "/metadata", "missing required field 'metadata.name'")],
    ),
    (
        "metadata-missing",
        SERVICE.replace("metadata:\n  name: web\n", ""),
        [(1, 1, "/", "missing required field 'metadata.name'")],
    ),
    (
        "spec-missing-and-unknown-top-level-key",
        "apiVersion: reconciler/v1\nkind: Cluster\nmetadata: {name: c}\nSpec: {}\n",
        [
            (1, 1, "/", "missing required field 'spec'"),
            (4, 1, "/Spec", "unknown field 'Spec' (did you mean 'spec'?)"),
        ],
    ),
]


@pytest.mark.parametrize(
    "text, expected", [(t, e) for _, t, e in ENVELOPE_CASES], ids=[c[0] for c in ENVELOPE_CASES]
)
def test_envelope(text: str, expected: list[tuple[int, int, str, str]]) -> None:
    assert found(text) == expected


def test_wrong_api_version_still_reports_the_spec() -> None:
    text = SERVICE.replace("reconciler/v1", "v1") + "  desiredCont: 3\n"
    assert [m for *_, m in found(text)] == [
        "unknown apiVersion 'v1' (expected 'reconciler/v1')",
        "unknown field 'desiredCont' (did you mean 'desiredCount'?)",
    ]


def test_bare_task_definition_without_family() -> None:
    docs, _ = loader.load_bytes("td.json", b'{"containerDefinitions": [{"name": "a", "image": "b"}]}')
    assert [(d.pointer, d.message) for d in schema.check(docs)] == [
        (
            "/metadata/name",
            "missing required field 'family' (a bare ECS task definition takes its name from family)",
        )
    ]


# ------------------------------------------------------------------------------------------ read-only keys

DESCRIBE_OUTPUT = {
    "taskDefinition": {
        "taskDefinitionArn": "arn:aws:ecs:us-west-2:123456789012:task-definition/hello_world:8",
        "family": "hello_world",
        "revision": 8,
        "status": "ACTIVE",
        "containerDefinitions": [
            {
                "name": "wordpress",
                "image": "wordpress",
                "cpu": 10,
                "memory": 500,
                "essential": True,
                "links": ["mysql"],
                "portMappings": [{"containerPort": 80, "hostPort": 80}],
                "environment": [],
                "mountPoints": [],
                "volumesFrom": [],
            },
        ],
        "volumes": [],
        "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}],
        "compatibilities": ["EXTERNAL", "EC2"],
        "registeredAt": "2024-05-01T10:00:00.000Z",
        "registeredBy": "arn:aws:iam::123456789012:user/admin",
        "deregisteredAt": "2024-06-01T10:00:00.000Z",
        "deleteRequestedAt": "2024-06-02T10:00:00.000Z",
    },
    "tags": [{"key": "env", "value": "test"}],
}


def test_read_only_keys_of_describe_output_are_notices() -> None:
    docs, _ = loader.load_bytes("td.json", json.dumps(DESCRIBE_OUTPUT, indent=2).encode())
    out = schema.check(docs)
    assert all(d.severity == document.NOTICE for d in out)
    assert [d.pointer for d in out] == [f"/spec/{k}" for k in schema.READ_ONLY_TASK_DEFINITION_FIELDS]
    assert out[1].message == "read-only field 'revision' from describe-task-definition output is ignored"
    assert (out[1].line, out[1].col) == (5, 5)


def test_read_only_keys_in_a_manifest_are_notices_too() -> None:
    out = check(TASK + "  revision: 3\n  status: ACTIVE\n")
    assert [(d.severity, d.line, d.pointer) for d in out] == [
        (document.NOTICE, 10, "/spec/revision"),
        (document.NOTICE, 11, "/spec/status"),
    ]


# ------------------------------------------------------------------------------------------------ corpus

# Files of the corpus with a defect ECS itself rejects, and why. Every other file must pass.
CORPUS_DEFECTS = {
    "009.json": "nulls for unset fields (secretOptions, memory, taskRoleArn): `aws ecs register-task-definition` "
    "rejects null ('Invalid type for parameter ... value: None'). Its CodeDeploy image placeholder <IMAGE1_NAME> "
    "is not a schema error",
    "011.json": "an unrendered envsubst template: family, container name, cpu and memory are ${...} placeholders",
    "023.json": "mountPoints[0].readOnly is null, which the ECS API rejects as a boolean",
    "055.json": "no family: RegisterTaskDefinition requires one (the file is an ecspresso template fragment)",
    "057.json": "an old console JSON export: 42 fields set to null, which the ECS API rejects",
}
CORPUS_DEFECT_POINTERS = {
    "009.json": {
        "/spec/containerDefinitions/0/logConfiguration/secretOptions",
        "/spec/containerDefinitions/0/memory",
        "/spec/taskRoleArn",
    },
    "011.json": {"/metadata/name", "/spec/cpu", "/spec/memory", "/spec/containerDefinitions/0/name"},
    "023.json": {"/spec/containerDefinitions/0/mountPoints/0/readOnly"},
    "055.json": {"/metadata/name"},
}


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        pytest.fail(f"ECS corpus not found at {CORPUS}")
    files = sorted(CORPUS.glob("*.json"))
    if not files:
        pytest.fail(f"ECS corpus at {CORPUS} holds no .json files")
    return files


def test_corpus_is_present() -> None:
    assert len(corpus_files()) >= 30
    assert set(CORPUS_DEFECTS) <= {p.name for p in corpus_files()}


@pytest.mark.parametrize("name", [p.name for p in sorted(CORPUS.glob("*.json"))] or ["<missing>"])
def test_corpus_file(name: str) -> None:
    path = next((p for p in corpus_files() if p.name == name), None)
    assert path is not None
    docs, diags = loader.load_file(str(path))
    assert not diags, [d.format() for d in diags]
    assert len(docs) == 1 and docs[0].kind == "TaskDefinition"
    errors = [d for d in schema.check(docs) if d.severity == document.ERROR]
    if name not in CORPUS_DEFECTS:
        assert errors == [], [d.format() for d in errors]
        return
    assert errors, f"{name} is listed as defective but passes: remove it from CORPUS_DEFECTS"
    if name in CORPUS_DEFECT_POINTERS:
        assert {d.pointer for d in errors} == CORPUS_DEFECT_POINTERS[name], [d.format() for d in errors]
    else:
        assert all("got null" in d.message for d in errors), [d.format() for d in errors]


# ----------------------------------------------------------------------------------- robustness, order


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["Cluster", "TaskDefinition", "Service", "Other"]), spec=JSONISH, meta=JSONISH)
def test_never_raises_on_any_body(kind: str, spec: Any, meta: Any) -> None:
    body = {"apiVersion": "reconciler/v1", "kind": kind, "metadata": meta, "spec": spec}
    out = schema.check([document.Document(path="f.yaml", index=0, body=body)])
    assert all(isinstance(d, document.Diagnostic) for d in out)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [1],
        "text",
        3,
        {},
        {"apiVersion": 1, "kind": ["Service"], "metadata": "x", "spec": 3},
        {
            "apiVersion": "reconciler/v1",
            "kind": "Service",
            "metadata": {"name": "a"},
            "spec": {1: 2, None: 3, "taskDefinition": ("a",), "desiredCount": complex(1, 2), "tags": {b"k"}},
        },
        {
            "apiVersion": "reconciler/v1",
            "kind": "TaskDefinition",
            "metadata": {"name": "a"},
            "spec": {
                "containerDefinitions": [{"name": "a", "image": "b", "cpu": float("nan"), "memory": object()}]
            },
        },
    ],
)
def test_never_raises_on_odd_python_values(body: Any) -> None:
    out = schema.check([document.Document(path="f.yaml", index=0, body=body)])
    assert out and all(d.severity == document.ERROR for d in out)
    assert not any("cannot check document" in d.message for d in out), [d.format() for d in out]


def test_order_is_deterministic_and_follows_the_file() -> None:
    text = FULL.replace("desiredCount: 3", "desiredCount: -1").replace("status: DRAINING", "status: Draining")
    text += "\n---\n" + TASK.replace("memory: 256", "memory: 1") + "  networkMode: Bridge\n"
    first = schema.check(load(text))
    assert first == schema.check(load(text))
    for doc_diags in ([d for d in first if d.subject == s] for s in {d.subject for d in first}):
        positions = [(d.line, d.col) for d in doc_diags]
        assert positions == sorted(positions)
    assert [d.subject for d in first] == sorted(
        (d.subject for d in first), key=["Cluster/prod", "Service/web", "TaskDefinition/web"].index
    )


# ------------------------------------------------------------------------------- fast path == jsonschema


@functools.cache
def _bodies() -> tuple[dict[str, Any], ...]:
    """The documents of FULL and TASK, then the corpus (its defective files included): loaded once."""
    return tuple(
        [d.body for d in load(FULL)]
        + [d.body for d in load(TASK)]
        + [d.body for p in sorted(CORPUS.glob("*.json")) for d in loader.load_file(str(p))[0]]
    )


MUTATIONS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.sampled_from(["bridge", "EC2", "x-y", "web:3", "1 vCPU", "5m", "cron(0 1 * * ? *)", "tcp://h", "CMD"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["name", "x-a", "type", "url"]), st.text(max_size=3), max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_agrees_with_jsonschema(data: st.DataObject) -> None:
    body = copy.deepcopy(data.draw(st.sampled_from(_bodies())))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(body)[1:]))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            parent.pop(path[-1])
        else:
            parent[path[-1]] = data.draw(MUTATIONS)
        if isinstance(parent, dict) and data.draw(st.booleans()):
            parent[data.draw(st.sampled_from(["x-k", "name", "extra", "type", "value"]))] = data.draw(
                MUTATIONS
            )
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in schema.SCHEMA_FILES:
        return
    fast = schema._predicates()[kind](body)
    doc = document.Document(path="f.yaml", index=0, body=body)
    slow = schema._schema_diagnostics(doc, schema._validators()[kind], set()) == []
    assert fast == slow


# -------------------------------------------------------------------------------------------- performance


def test_two_thousand_documents_report_only_the_corpus_defects() -> None:
    """A large mixed batch: only the known-defective corpus files are reported (speed is benchmarked
    in tests/benchmarks/validate_bench.py, never asserted here)."""
    services = [b for b in (d.body for d in load(FULL)) if b["kind"] == "Service"]
    tasks = _bodies()[2:]
    docs = []
    for i in range(1000):
        docs.append(document.Document(path=f"s{i}.yaml", index=0, body=copy.deepcopy(services[0])))
        docs.append(document.Document(path=f"t{i}.json", index=0, body=tasks[i % len(tasks)]))
    out = schema.check(docs)
    assert len({d.subject for d in out if d.severity == document.ERROR}) <= 5  # the corpus defects only


def test_yaml_samples_in_this_file_are_yaml() -> None:
    for text in (CLUSTER, TASK, SERVICE, ALARM, FULL):
        assert list(yaml.safe_load_all(text))
