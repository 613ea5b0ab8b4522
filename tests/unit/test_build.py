"""The desired state built from valid manifests.

A task definition's hash depends on what it says and on the content of the files it names, not on where
the manifests are checked out nor on the services that use it. A service's references (`family:N` pins,
ARNs) and deploymentConfiguration, and Alarm documents, build into the model's values with ECS's defaults."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.manifests import build, validate
from reconciler.model import spec

CLUSTER = """\
apiVersion: reconciler/v1
kind: Cluster
metadata: {name: c1}
spec:
  instances: [{name: i1, endpoint: "unix:///fake/1.sock"}]
  fargate: {endpoints: [{name: f1, endpoint: "unix:///fake/2.sock"}]}
"""

TASKDEF = """\
apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {name: web}
spec:
  requiresCompatibilities: [EC2, FARGATE]
  networkMode: awsvpc
  cpu: "256"
  memory: "512"
  containerDefinitions:
    - name: app
      image: localhost/busybox:static
      environmentFiles: [{type: s3, value: env/app.env}]
      secrets: [{name: TOKEN, valueFrom: "file:token.txt"}]
"""


def service(name: str, launch_type: str) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: reconciler/v1
        kind: Service
        metadata: {{name: {name}}}
        spec: {{cluster: c1, taskDefinition: web, desiredCount: 1, launchType: {launch_type}}}
        """
    )


def checkout(directory: Path, *services: str, env: str = "GREETING=hello\n") -> Path:
    (directory / "env").mkdir(parents=True, exist_ok=True)
    (directory / "env" / "app.env").write_text(env)
    (directory / "m.yaml").write_text("---\n".join([CLUSTER, TASKDEF, *services]))
    return directory


def taskdef(directory: Path):
    result = validate.validate_paths([str(directory)])
    assert result.ok, [d.format() for d in result.errors]
    return build.desired_state(result.documents, {}).task_definitions["web"]


def test_the_same_files_in_another_checkout_hash_the_same(tmp_path):
    one = taskdef(checkout(tmp_path / "commit-1", service("web", "EC2")))
    two = taskdef(checkout(tmp_path / "commit-2", service("web", "EC2")))
    assert one.task_hash == two.task_hash
    (files,) = [c["environmentFiles"] for c in one.containers]
    assert [f["value"] for f in files] == ["env/app.env"]
    assert str(tmp_path) not in repr(one.spec)


def test_an_env_file_edit_is_a_change_and_a_missing_one_is_a_warning(tmp_path):
    before = taskdef(checkout(tmp_path / "a", service("web", "EC2")))
    after = taskdef(checkout(tmp_path / "b", service("web", "EC2"), env="GREETING=bonjour\n"))
    assert before.task_hash != after.task_hash
    (tmp_path / "b" / "env" / "app.env").unlink()
    gone = taskdef(tmp_path / "b")
    assert gone.containers[0]["environmentFiles"][0]["sha256"] == "missing"
    assert any("environment file env/app.env does not exist" in w for w in gone.warnings)


def test_a_fargate_service_does_not_change_the_hash_of_a_shared_task_definition(tmp_path):
    alone = taskdef(checkout(tmp_path / "a", service("web", "EC2")))
    shared = taskdef(checkout(tmp_path / "b", service("web", "EC2"), service("web-fg", "FARGATE")))
    assert alone.task_hash == shared.task_hash
    assert alone.spec == shared.spec
    assert "launchType" not in shared.spec
    assert shared.spec["networkMode"] == "awsvpc"


# ------------------------------------------------------------------------------ deployments with history

DEPLOYED = """\
apiVersion: reconciler/v1
kind: Service
metadata: {name: web}
spec:
  cluster: c1
  taskDefinition: web:3
  desiredCount: 2
  deploymentConfiguration:
    strategy: ROLLING
    bakeTimeInMinutes: 5
    deploymentCircuitBreaker:
      enable: true
      rollback: true
      thresholdConfiguration: {type: COUNT, value: 4}
      resetOnHealthyTask: false
    alarms: {alarmNames: [web-cpu, queue], enable: true, rollback: false}
---
apiVersion: reconciler/v1
kind: Alarm
metadata: {name: web-cpu}
spec:
  metric: {predefinedMetricType: ECSServiceAverageCPUUtilization, service: web, x-note: mine}
  statistic: Maximum
  period: 5m
  evaluationPeriods: 3
  datapointsToAlarm: 2
  threshold: 85
  comparisonOperator: GreaterThanOrEqualToThreshold
  treatMissingData: breaching
  alarmDescription: web is busy
---
apiVersion: reconciler/v1
kind: Alarm
metadata: {name: queue}
spec:
  metric: {customizedMetric: {url: "http://10.0.0.5:9100/metrics", metricName: queue_depth}}
  period: 30
  evaluationPeriods: 2
  threshold: 1000.5
  comparisonOperator: GreaterThanThreshold
"""


def desired(tmp_path: Path, *texts: str):
    (tmp_path / "m.yaml").write_text("---\n".join(texts))
    result = validate.validate_paths([str(tmp_path)])
    assert result.ok, [d.format() for d in result.errors]
    return build.desired_state(result.documents, {})


def test_deployment_configuration_builds_into_the_service(tmp_path):
    svc = desired(tmp_path, CLUSTER, TASKDEF, DEPLOYED).services["web"]
    assert (svc.task_definition, svc.revision, svc.task_definition_ref) == ("web", 3, "web:3")
    assert svc.strategy == spec.ROLLING
    assert svc.bake_time == 300.0
    assert (svc.circuit_breaker, svc.rollback) == (True, True)
    assert svc.threshold == spec.Threshold(spec.COUNT, 4)
    assert svc.reset_on_healthy_task is False
    assert svc.alarms == spec.DeploymentAlarms(names=("web-cpu", "queue"), enable=True, rollback=False)


def test_deployment_defaults_are_ecs_ones(tmp_path):
    svc = desired(tmp_path, CLUSTER, TASKDEF, service("web", "EC2")).services["web"]
    assert (svc.task_definition, svc.revision, svc.task_definition_ref) == ("web", None, "web")
    assert svc.strategy == spec.ROLLING
    assert svc.bake_time == 0.0
    assert svc.threshold == spec.Threshold(spec.BOUNDED_PERCENT, 50)
    assert svc.reset_on_healthy_task is True
    assert svc.alarms == spec.DeploymentAlarms()


def test_alarms_build_with_periods_in_seconds_and_plain_metrics(tmp_path):
    alarms = desired(tmp_path, CLUSTER, TASKDEF, DEPLOYED).alarms
    assert set(alarms) == {"web-cpu", "queue"}
    cpu = alarms["web-cpu"]
    assert cpu == spec.Alarm(
        name="web-cpu",
        metric={"predefinedMetricType": "ECSServiceAverageCPUUtilization", "service": "web"},
        threshold=85.0,
        comparison_operator="GreaterThanOrEqualToThreshold",
        statistic="Maximum",
        period=300,
        evaluation_periods=3,
        datapoints_to_alarm=2,
        treat_missing_data="breaching",
        description="web is busy",
        source=str(tmp_path / "m.yaml"),
    )
    queue = alarms["queue"]
    assert queue.metric == {
        "customizedMetric": {"url": "http://10.0.0.5:9100/metrics", "metricName": "queue_depth"}
    }
    assert (queue.period, type(queue.period), queue.threshold) == (30, int, 1000.5)
    assert (queue.statistic, queue.datapoints_to_alarm, queue.treat_missing_data, queue.description) == (
        "Average",
        None,
        "missing",
        "",
    )


@pytest.mark.parametrize(
    "cluster, task_definition, expected",
    [
        ("c1", "web", ("c1", "web", None)),
        ("c1", "web:12", ("c1", "web", 12)),
        (
            "arn:aws:ecs:eu-west-1:123456789012:cluster/c1",
            "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:7",
            ("c1", "web", 7),
        ),
        (
            "arn:aws-us-gov:ecs:us-gov-west-1:123456789012:cluster/c1",
            "arn:aws:ecs:eu-west-1:123456789012:task-definition/web",
            ("c1", "web", None),
        ),
    ],
)
def test_reference_forms_parse(tmp_path, cluster, task_definition, expected):
    svc_text = textwrap.dedent(
        f"""\
        apiVersion: reconciler/v1
        kind: Service
        metadata: {{name: web}}
        spec: {{cluster: "{cluster}", taskDefinition: "{task_definition}", desiredCount: 1}}
        """
    )
    svc = desired(tmp_path, CLUSTER, TASKDEF, svc_text).services["web"]
    assert (svc.cluster, svc.task_definition, svc.revision) == expected
