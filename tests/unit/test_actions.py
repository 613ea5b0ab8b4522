"""Actions on a fake engine: failed starts leave nothing behind, files resolve against the manifest's
directory, a new task starts only the containers that wait on nothing, the names of per-task networks and
volumes are the same on creation and removal, and the runner keeps the books on work in flight."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import textwrap
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402
from fakes import FakeEngine  # noqa: E402

from reconciler import observe  # noqa: E402
from reconciler.actions.images import Images  # noqa: E402
from reconciler.actions.launch import Launcher  # noqa: E402
from reconciler.actions.result import ActionResult  # noqa: E402
from reconciler.actions.runner import Runner  # noqa: E402
from reconciler.actions.stop import Stopper  # noqa: E402
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


def _slot(endpoint: str) -> threading.Semaphore:
    return threading.Semaphore(8)


def start(engine: FakeEngine, directory: Path, environ=None) -> tuple[tuple, P.StartTask, ActionResult]:
    state = desired(directory)
    engines = observe.Engines(lambda inst: engine)
    launcher = Launcher(engines, Images(), _slot, environ=environ or {})
    action = P.StartTask("c1", "app", "i1", state.task_definitions["app"], "test")
    return (state, engines), action, launcher.start(state, action, "t" * 32)


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
    code = "import sys, reconciler.actions.runner; sys.exit('docker' in sys.modules)"
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
    (state, engines), _, result = start(engine, write(tmp_path / "m", TWO_CONTAINERS))
    assert result.ok, result.message
    tid = result.task_id
    assert list(engine.networks) == [f"app-net-{tid[:12]}"]
    assert list(engine.volumes) == [f"app-vol-data-{tid[:12]}"]
    stopped = Stopper(engines, _slot).stop(state, P.StopTask("c1", "app", "i1", tid, "test"))
    assert stopped.ok, stopped.message
    assert nothing_left(engine)


DEPENDS = """\
containerDefinitions:
  - name: app
    image: localhost/busybox:static
    memory: 32
    healthCheck: {command: [CMD, "true"]}
  - {name: init, image: localhost/busybox:static, memory: 16, essential: false}
  - name: side
    image: localhost/busybox:static
    memory: 16
    dependsOn: [{containerName: app, condition: HEALTHY}]
  - name: logs
    image: localhost/busybox:static
    memory: 16
    dependsOn: [{containerName: init, condition: START}]
"""


def test_a_new_task_starts_what_waits_on_nothing_or_on_a_start_it_made_and_leaves_the_rest_created(tmp_path):
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    _, _, result = start(engine, write(tmp_path / "m", DEPENDS))
    assert result.ok, result.message
    states = {c["Config"]["Labels"]["io.reconciler.container"]: c["State"]["Status"] for c in engine.containers.values()}
    assert states == {"app": "running", "init": "running", "logs": "running", "side": "created"}


def test_the_runner_tracks_starts_and_stops_in_flight_until_they_end(tmp_path):
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    state = desired(write(tmp_path / "m", TWO_CONTAINERS))
    gate = threading.Event()
    real_create = engine.create_container
    engine.create_container = lambda request: gate.wait(10) and real_create(request)
    runner = Runner(observe.Engines(lambda inst: engine), environ={})
    try:
        (task_id,) = runner.launch(state, P.Step(starts=(P.StartTask("c1", "app", "i1", state.task_definitions["app"], "t"),)))
        inflight = runner.inflight()
        assert [s.task_id for s in inflight.starts] == [task_id] and inflight.starts[0].memory == 64
        assert not runner.idle()
        gate.set()
        assert runner.drain(10)
        assert runner.inflight().starts == () and [r.ok for r in runner.results] == [True]
        runner.launch(state, P.Step(stops=(P.StopTask("c1", "app", "i1", task_id, "test"),)))
        assert runner.drain(10)
        assert nothing_left(engine) and runner.inflight().stopping == frozenset()
    finally:
        runner.shutdown()


def test_stops_of_many_tasks_run_at_once_however_small_the_create_concurrency(tmp_path):
    engine = FakeEngine(ENDPOINT, images=(IMAGE,))
    state = desired(write(tmp_path / "m", "containerDefinitions: [{name: app, image: localhost/busybox:static, memory: 8}]\n"))
    runner = Runner(observe.Engines(lambda inst: engine), environ={}, concurrency=1)
    try:
        ids = runner.launch(state, P.Step(starts=tuple(P.StartTask("c1", "app", "i1", state.task_definitions["app"], "t")
                                                       for _ in range(12))))
        assert runner.drain(10)
        stopping = threading.Barrier(12, timeout=10)  # every stop must be inside the engine at the same time
        real_stop = engine.stop_container
        engine.stop_container = lambda cid, timeout: (stopping.wait(), real_stop(cid, timeout))
        runner.launch(state, P.Step(stops=tuple(P.StopTask("c1", "app", "i1", t, "test") for t in ids)))
        assert runner.drain(20)
        assert all(r.ok for r in runner.results), [r.line() for r in runner.results if not r.ok]
        assert not engine.containers
    finally:
        runner.shutdown()


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
