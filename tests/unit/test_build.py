"""The desired state's hashes: a task definition's hash depends on what it says and on the content of
the files it names, not on where the manifests are checked out nor on the services that use it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler.manifests import build, validate

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
