"""The executor on a fake engine: failed starts leave nothing behind, files resolve against the manifest's
directory, a wave shares one health deadline, and the names of per-task networks and volumes are the same
on creation and removal."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402
from fakes import FakeEngine  # noqa: E402

from reconciler import executor, observe  # noqa: E402
from reconciler.engine import pause  # noqa: E402
from reconciler.manifests import build, validate  # noqa: E402
from reconciler.model import plan as P  # noqa: E402

IMAGE = "localhost/busybox:static"
ENDPOINT = "unix:///fake/1.sock"


def write(directory: Path, taskdef: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "m.yaml").write_text(
        fakes.CLUSTER_MANIFEST
        + "---\napiVersion: reconciler/v1\nkind: TaskDefinition\nmetadata: {name: app}\nspec:\n"
        + textwrap.indent(textwrap.dedent(taskdef), "  ")
    )
    return directory


def desired(directory: Path):
    result = validate.validate_paths([str(directory)])
    assert result.ok, [d.format() for d in result.errors]
    return build.desired_state(result.documents, {})


def start(engine: FakeEngine, directory: Path, environ=None) -> tuple[executor.Executor, P.StartTask, executor.ActionResult]:
    state = desired(directory)
    ex = executor.Executor(state, observe.Engines(lambda inst: engine), environ=environ or {})
    action = P.StartTask("c1", "app", "i1", state.task_definitions["app"], "test")
    return ex, action, ex.start_task(action)


def nothing_left(engine: FakeEngine) -> bool:
    return not engine.containers and not engine.networks and not engine.volumes


TWO_CONTAINERS = """\
containerDefinitions:
  - {name: app, image: localhost/busybox:static, memory: 32, mountPoints: [{sourceVolume: data, containerPath: /data}]}
  - {name: side, image: localhost/busybox:static, memory: 32, essential: false}
volumes: [{name: data, dockerVolumeConfiguration: {scope: task}}]
"""


def test_an_unexpected_error_after_containers_exist_removes_the_whole_task(tmp_path):
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    real_start = engine.start_container
    started = []

    def start_then_break(cid):
        if started:
            raise RuntimeError("boom")
        started.append(cid)
        real_start(cid)

    engine.start_container = start_then_break
    _, _, result = start(engine, write(tmp_path / "m", TWO_CONTAINERS))
    assert not result.ok
    assert result.message == "unexpected RuntimeError: boom"
    assert started, "the first container had started"
    assert nothing_left(engine), (engine.containers, engine.networks, engine.volumes)


def test_an_env_file_that_is_not_utf8_fails_the_task_naming_the_file_not_its_content(tmp_path):
    directory = write(tmp_path / "m", """\
        containerDefinitions:
          - name: app
            image: localhost/busybox:static
            memory: 32
            environmentFiles: [{type: s3, value: app.env}]
        """)
    (directory / "app.env").write_bytes(b"TOKEN=s3cr\xff\xfet\n")
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    _, _, result = start(engine, directory)
    assert not result.ok
    assert "app.env is not UTF-8 text" in result.message
    assert "s3cr" not in result.message and "TOKEN" not in result.message
    assert nothing_left(engine)


def test_a_secret_file_that_is_not_utf8_fails_the_task_naming_the_file(tmp_path):
    directory = write(tmp_path / "m", """\
        containerDefinitions:
          - name: app
            image: localhost/busybox:static
            memory: 32
            secrets: [{name: TOKEN, valueFrom: "file:token.txt"}]
        """)
    (directory / "token.txt").write_bytes(b"\xff\xfe")
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    _, _, result = start(engine, directory)
    assert not result.ok
    assert "secret TOKEN" in result.message and "token.txt is not UTF-8 text" in result.message


def test_awsvpc_on_an_architecture_without_a_pause_binary_fails_cleanly(tmp_path):
    directory = write(tmp_path / "m", """\
        networkMode: awsvpc
        containerDefinitions: [{name: app, image: localhost/busybox:static, memory: 32}]
        """)
    engine = FakeEngine(ENDPOINT, images=(IMAGE,), architecture="s390x")
    _, _, result = start(engine, directory)
    assert not result.ok
    assert "no pause binary for architecture s390x" in result.message
    assert nothing_left(engine)


def test_the_pause_image_is_a_tarball_made_without_the_docker_sdk(tmp_path):
    with tarfile.open(fileobj=io.BytesIO(pause.image_tar("x86_64"))) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.mode) == ("pause", 0o755)
        assert tar.extractfile(member).read().startswith(b"\x7fELF")
    code = "import sys, reconciler.executor; sys.exit('docker' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

    directory = write(tmp_path / "m", """\
        networkMode: awsvpc
        containerDefinitions: [{name: app, image: localhost/busybox:static, memory: 32}]
        """)
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    _, _, result = start(engine, directory)
    assert result.ok, result.message
    assert ("load", pause.PAUSE_IMAGE) in engine.calls


def test_env_files_and_secret_files_resolve_against_the_manifest_directory(tmp_path, monkeypatch):
    directory = write(tmp_path / "m", """\
        containerDefinitions:
          - name: app
            image: localhost/busybox:static
            memory: 32
            environmentFiles: [{type: s3, value: conf/app.env}]
            secrets: [{name: TOKEN, valueFrom: "file:conf/token.txt"}]
        """)
    (directory / "conf").mkdir()
    (directory / "conf" / "app.env").write_text("GREETING=hello\n")
    (directory / "conf" / "token.txt").write_text("s3cret\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    _, _, result = start(engine, directory)
    assert result.ok, result.message
    (container,) = engine.containers.values()
    assert container["Config"]["Env"] == {"GREETING": "hello", "TOKEN": "s3cret"}


def test_network_and_volume_of_a_task_are_removed_with_it(tmp_path):
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    ex, _, result = start(engine, write(tmp_path / "m", TWO_CONTAINERS))
    assert result.ok, result.message
    tid = result.task_id
    assert list(engine.networks) == [f"app-net-{tid[:12]}"]
    assert list(engine.volumes) == [f"app-vol-data-{tid[:12]}"]
    stopped = ex.stop_task(P.StopTask("c1", "app", "i1", tid, "test"))
    assert stopped.ok, stopped.message
    assert nothing_left(engine)


def test_a_wave_shares_one_health_deadline_and_polls_its_tasks_together(tmp_path, monkeypatch):
    directory = write(tmp_path / "m", """\
        containerDefinitions:
          - name: app
            image: localhost/busybox:static
            memory: 32
            healthCheck: {command: [CMD, "true"]}
        """)
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    engine.health_on_start = "starting"
    monkeypatch.setattr(executor, "_health_timeout", lambda spec: 0.6)
    state = desired(directory)
    ex = executor.Executor(state, observe.Engines(lambda inst: engine), environ={})
    actions = [P.StartTask("c1", "app", "i1", state.task_definitions["app"], "test") for _ in range(4)]
    wave = [(a, ex.start_task(a)) for a in actions]
    assert all(r.ok for _, r in wave)
    lists = []
    real_list = engine.list_containers
    engine.list_containers = lambda labels: lists.append(labels) or real_list(labels)
    t0 = time.monotonic()
    failed = ex._wait_healthy(wave)
    elapsed = time.monotonic() - t0
    assert len(failed) == 4
    assert all("timed out waiting for health checks" in r.message for r in failed)
    assert elapsed < 1.5, f"{elapsed:.1f}s: the tasks waited one after the other"
    assert len(lists) <= elapsed / 0.25 + 2, "one list per engine per round"


def test_a_wave_reports_each_task_once_it_is_healthy_or_failed(tmp_path):
    directory = write(tmp_path / "m", """\
        containerDefinitions:
          - name: app
            image: localhost/busybox:static
            memory: 32
            healthCheck: {command: [CMD, "true"]}
        """)
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    engine.health_on_start = "starting"
    state = desired(directory)
    ex = executor.Executor(state, observe.Engines(lambda inst: engine), environ={})
    actions = [P.StartTask("c1", "app", "i1", state.task_definitions["app"], "test") for _ in range(2)]
    wave = [(a, ex.start_task(a)) for a in actions]
    good, bad = (engine.by_label("io.reconciler.task-id", r.task_id)[0]["Id"] for _, r in wave)
    engine.set_health(good, "healthy")
    engine.set_health(bad, "unhealthy")
    failed = ex._wait_healthy(wave)
    assert [r.task_id for r in failed] == [wave[1][1].task_id]
    assert "Task failed container health checks" in failed[0].message


@pytest.mark.parametrize("broken", ["info", "create_network"])
def test_an_engine_that_stops_answering_midway_fails_the_start_without_raising(tmp_path, broken):
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))

    def down(*args, **kwargs):
        engine.down = True
        engine._check()

    setattr(engine, broken, down)
    directory = write(tmp_path / "m", TWO_CONTAINERS if broken == "create_network" else """\
        networkMode: awsvpc
        containerDefinitions: [{name: app, image: localhost/busybox:static, memory: 32}]
        """)
    _, _, result = start(engine, directory)
    assert not result.ok
    assert "engine does not answer" in result.message
