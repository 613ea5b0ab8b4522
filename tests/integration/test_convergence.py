"""The convergence engine against a real private Docker engine: plan, apply, drift, deployments, failures.

Owns end-to-end evidence that `plan` / `apply` converge an engine to the manifests and then stay quiet: the
example manifests, replacing a killed or drifted task (with the reason and the field-level diff), pruning,
essential versus non-essential exits, the deployment bounds of a rolling replacement observed live (with and
without health checks), recovery from an apply killed with SIGKILL, the cluster writer lock between two applies,
and one-line failures (missing image, unreachable engine).
Must not: touch an engine the fixtures did not start, or assert on speed (deadlines only bound waits).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import threading
import time
from pathlib import Path

import helpers as h
import pytest

REPO = Path(__file__).resolve().parents[2]


def test_example_manifests_converge_and_then_plan_nothing(engine, run_cli, tmp_path):
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    ws = h.Workspace(tmp_path, run_cli, env={"DOCKER_HOST": engine.endpoint})

    first = ws.apply()
    assert "Apply complete: 3 started, 0 stopped, 0 failed." in first.stdout, first.stdout

    services = ws.services()
    assert {n: (s["runningCount"], s["desiredCount"]) for n, s in services.items()} == {
        "web": (2, 2),
        "worker": (1, 1),
    }
    assert all(s["steady"] for s in services.values())
    with contextlib.closing(engine.client()) as client:
        web = h.by_task(h.managed(client, service="web", cluster="demo"))
        worker = h.by_task(h.managed(client, service="worker", cluster="demo"))
        assert len(web) == 2 and len(worker) == 1
        assert all(sorted(c["Labels"][h.CONTAINER] for c in cs) == ["checker", "web"] for cs in web.values())
        assert all(c["State"] == "running" for cs in [*web.values(), *worker.values()] for c in cs)
        before = {c["Id"] for c in h.managed(client)}

    def checkers_served() -> set[str]:  # each sidecar reaches `web` by name on its task's own network
        lines = ws.cli("logs", "web", "--container", "checker").stdout.splitlines()
        return {line.split("]")[0] for line in lines if "] hello from " in line}

    h.wait_for(lambda: len(checkers_served()) == 2, what="both checkers to fetch their web container's page")

    ws.assert_converged()
    second = ws.apply()
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in second.stdout
    assert "Apply complete" not in second.stdout, "a converged apply must not execute anything"
    with contextlib.closing(engine.client()) as client:
        assert {c["Id"] for c in h.managed(client)} == before


def test_killed_essential_container_is_replaced_with_its_reason(ws):
    ws.write("app.yaml", h.task_definition("app", h.container("app")), h.service("app", "app", 1))
    ws.apply()
    (old_id,) = h.running_task_ids(ws.client, "app")
    old_containers = {c["Id"] for c in h.managed(ws.client, task_id=old_id)}

    ws.client.api.kill(h.container_of(ws.client, old_id, "app")["Id"])  # SIGKILL
    h.wait_for(lambda: not h.running_task_ids(ws.client, "app"), what="the killed task to stop")

    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    assert f"- stop task {old_id[:12]} on i1: Essential container in task exited: container app was killed by SIGKILL (137)" in plan.stdout
    assert "OutOfMemory" not in plan.stdout
    assert "+ start task on i1" in plan.stdout
    assert "Plan: 0 to add, 1 to replace, 0 to remove." in plan.stdout

    ws.apply()
    (new_id,) = h.running_task_ids(ws.client, "app")
    assert new_id != old_id
    assert not {c["Id"] for c in h.managed(ws.client)} & old_containers, "the dead task's containers must be removed"
    ws.assert_converged()


def test_changed_environment_shows_field_diff_and_replaces(ws):
    def write(greeting: str) -> None:
        td = h.task_definition("app", h.container("app", environment=h.env(GREETING=greeting, OTHER="same")))
        ws.write("app.yaml", td, h.service("app", "app", 1))

    write("hello")
    ws.apply()
    (old_id,) = h.running_task_ids(ws.client, "app")

    write("bonjour")
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    assert "containerDefinitions[app].environment[GREETING]: 'hello' -> 'bonjour'" in plan.stdout
    assert "OTHER" not in plan.stdout, "only the changed field is listed"
    assert "Plan: 0 to add, 1 to replace, 0 to remove." in plan.stdout

    ws.apply()
    (new_id,) = h.running_task_ids(ws.client, "app")
    assert new_id != old_id
    assert h.env_of(h.container_of(ws.client, new_id, "app"))["GREETING"] == "bonjour"
    assert h.managed(ws.client, task_id=old_id) == []
    ws.assert_converged()


def test_prune_removes_only_undeclared_services(ws):
    ws.write("keep.yaml", h.task_definition("keep", h.container("keep")), h.service("keep", "keep", 1))
    ws.write("gone.yaml", h.task_definition("gone", h.container("gone")), h.service("gone", "gone", 2))
    ws.apply()
    keep_ids = h.running_task_ids(ws.client, "keep")
    assert len(keep_ids) == 1 and len(h.running_task_ids(ws.client, "gone")) == 2

    ws.remove("gone.yaml")
    plan = ws.plan("--detailed-exitcode")
    assert "! service gone runs but is not in the manifests (apply --prune removes it)" in plan.stdout
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in plan.stdout
    assert plan.exit_code == 0
    ws.apply()
    assert len(h.running_task_ids(ws.client, "gone")) == 2, "without --prune nothing is removed"

    pruned = ws.plan("--prune")
    assert "Plan: 0 to add, 0 to replace, 2 to remove." in pruned.stdout, pruned.stdout
    ws.apply("--prune")
    assert h.managed(ws.client, service="gone") == []
    assert h.running_task_ids(ws.client, "keep") == keep_ids, "the declared service is untouched"
    ws.assert_converged()


def test_non_essential_exit_keeps_task_essential_exit_replaces_it(ws):
    td = h.task_definition(
        "app",
        h.container("app"),
        h.container("once", "echo done; exit 0", essential=False),
    )
    ws.write("app.yaml", td, h.service("app", "app", 1))
    ws.apply()
    (task_id,) = h.wait_for(lambda: h.running_task_ids(ws.client, "app") or None, what="the task")
    once = h.wait_for(
        lambda: (c := h.container_of(ws.client, task_id, "once"))["State"]["Status"] == "exited" and c,
        what="the non-essential container to exit",
    )
    assert once["State"]["ExitCode"] == 0

    (task,) = ws.tasks()
    assert task["lastStatus"] == "RUNNING"
    ws.assert_converged()

    ws.client.api.kill(h.container_of(ws.client, task_id, "app")["Id"], signal="SIGTERM")  # traps it: exit 0
    h.wait_for(
        lambda: h.container_of(ws.client, task_id, "app")["State"]["Status"] == "exited",
        what="the essential container to exit",
    )
    (task,) = ws.tasks()
    assert task["lastStatus"] == "STOPPED"
    assert task["stopCode"] == "EssentialContainerExited"
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2
    assert "Essential container in task exited: container app exited normally (0)" in plan.stdout
    assert "Plan: 0 to add, 1 to replace, 0 to remove." in plan.stdout
    ws.apply()
    (new_id,) = h.running_task_ids(ws.client, "app")
    assert new_id != task_id
    ws.assert_converged()


class _Watcher(threading.Thread):
    """Samples a service's tasks every ~100 ms: (running, healthy, alive = running or being created)."""

    def __init__(self, client, service_name: str):
        super().__init__(daemon=True)
        self.client = client
        self.service_name = service_name
        self.samples: list[tuple[int, int, int]] = []
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.is_set():
                tasks = h.by_task(h.managed(self.client, service=self.service_name)).values()
                running = [cs for cs in tasks if all(c["State"] == "running" for c in cs)]
                healthy = [cs for cs in running if not any("(health: starting)" in c["Status"] or "(unhealthy)" in c["Status"] for c in cs)]
                alive = [cs for cs in tasks if any(c["State"] in ("created", "running", "restarting") for c in cs)]
                self.samples.append((len(running), len(healthy), len(alive)))
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def _redeploy_and_watch(ws, desired: int, min_healthy: int, max_percent: int, **v2_fields) -> list[tuple[int, int, int]]:
    """Runs v1, then applies v2 (a new GREETING, plus `v2_fields`) in the background while a _Watcher samples
    the engine; asserts ECS's bounds held throughout and that exactly `desired` v2 tasks replaced v1's.
    Returns the samples (running, healthy, alive)."""

    def write(greeting: str, **fields) -> None:
        td = h.task_definition("app", h.container("app", environment=h.env(GREETING=greeting), **fields))
        ws.write("app.yaml", td, h.service("app", "app", desired, max_percent=max_percent, min_healthy=min_healthy))

    write("v1")
    ws.apply()
    old = h.running_task_ids(ws.client, "app")
    assert len(old) == desired

    write("v2", **v2_fields)
    watcher = _Watcher(ws.client, "app")
    watcher.start()
    try:
        proc = ws.start("apply", "--yes", log="apply")
        proc.wait(timeout=120)
    finally:
        watcher.stop()
    output = ws.output(proc)
    assert proc.returncode == 0, output
    assert watcher.error is None, watcher.error
    assert watcher.samples, "the watcher took no sample"

    floor_healthy = math.ceil(desired * min_healthy / 100)
    ceiling = desired * max_percent // 100
    low = min(healthy for _, healthy, _ in watcher.samples)
    high = max(alive for _, _, alive in watcher.samples)
    assert low >= floor_healthy, f"healthy tasks dropped to {low} < {floor_healthy}; samples {watcher.samples}\n{output}"
    assert high <= ceiling, f"{high} tasks at once > {ceiling}; samples {watcher.samples}\n{output}"

    new = h.running_task_ids(ws.client, "app")
    assert len(new) == desired and not new & old
    assert h.by_task(h.managed(ws.client, service="app")).keys() == new, "old tasks are removed"
    assert all(h.env_of(h.container_of(ws.client, t, "app"))["GREETING"] == "v2" for t in new)
    ws.assert_converged()
    return watcher.samples


FAST_HEALTH = {"command": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:80/"], "interval": 5, "timeout": 2, "retries": 2}


@pytest.mark.parametrize(("min_healthy", "max_percent"), [(50, 150), (100, 200), (100, 125)])
def test_rolling_replacement_respects_deployment_bounds(ws, min_healthy, max_percent):
    # With a health check, so each wave waits one check (5 s), not ECS's 40 s for tasks without one.
    _redeploy_and_watch(ws, 4, min_healthy, max_percent, command=["sh", "-c", h.httpd(80)], healthCheck=FAST_HEALTH)


def test_rolling_replacement_waits_for_health_checks_before_stopping_old_tasks(ws):
    # v1 has no health check (healthy once running); v2 gains one, so each wave's new task is "starting" for one
    # interval, and the old task it replaces must keep running until then.
    samples = _redeploy_and_watch(ws, 2, 100, 150, command=["sh", "-c", h.httpd(80)], healthCheck=FAST_HEALTH)
    assert any(running > healthy for running, healthy, _ in samples), "a new task was seen before it was healthy"


def test_apply_killed_midway_is_finished_by_the_next_apply(ws):
    desired = 8
    td = h.task_definition(
        "app",
        h.container("app"),
        h.container("side", dependsOn=[{"containerName": "app", "condition": "START"}]),
    )  # two containers in bridge mode: each task also has its own network
    ws.write("app.yaml", td, h.service("app", "app", desired))

    proc = ws.start("apply", "--yes", "--concurrency", "1", log="killed-apply")
    h.wait_for(
        lambda: "start  app task" in ws.output(proc) or proc.poll() is not None,
        timeout=60,
        what="the first progress line of apply",
    )
    proc.kill()  # SIGKILL, by its pid
    proc.wait(timeout=10)
    assert proc.returncode == -9, f"apply finished before it was killed:\n{ws.output(proc)}"

    ws.apply()

    tasks = h.by_task(h.managed(ws.client, service="app"))
    running = h.running_task_ids(ws.client, "app")
    assert len(running) == desired, f"{len(running)} running tasks, want {desired}"
    assert tasks.keys() == running, "no half-made or duplicate task is left"
    assert all(sorted(c["Labels"][h.CONTAINER] for c in cs) == ["app", "side"] for cs in tasks.values())
    unlabelled = [c["Names"] for c in ws.client.api.containers(all=True)
                  if c["Labels"].get(h.MANAGED) != "true" and h.HISTORY not in c["Labels"]]
    assert unlabelled == []
    networks = [n for n in ws.client.api.networks() if n["Name"] not in ("bridge", "host", "none")]
    assert sorted(n["Labels"].get(h.TASK) for n in networks) == sorted(running), "one network per live task"
    ws.assert_converged()


def test_missing_image_fails_that_service_only(ws):
    ws.write("good.yaml", h.task_definition("good", h.container("good")), h.service("good", "good", 1))
    ws.write("bad.yaml", h.task_definition("bad", h.container("bad", image=h.MISSING_IMAGE)), h.service("bad", "bad", 1))

    result = ws.apply(check=None)
    assert result.exit_code != 0, result.stdout
    assert "CannotPullContainerError" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
    assert "Apply failed: 1 started, 0 stopped, 1 failed." in result.stdout
    assert len(h.running_task_ids(ws.client, "good")) == 1
    assert h.managed(ws.client, service="bad") == [], "a task that failed to start leaves nothing behind"


@pytest.mark.parametrize("command", ["plan", "apply", "get", "describe"])
def test_unreachable_engine_is_one_line_error(ws, command):
    missing = "unix:///tmp/does-not-exist.sock"
    ws.write("cluster.yaml", h.cluster("test", [missing]))
    ws.write("app.yaml", h.task_definition("app", h.container("app")), h.service("app", "app", 1))
    args = {"plan": ["plan"], "apply": ["apply", "--yes"], "get": ["get", "services"], "describe": ["describe", "service", "app"]}
    result = ws.cli(*args[command])
    assert result.exit_code != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if missing in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: engine unix:///tmp/does-not-exist.sock"), errors[0]


def test_second_apply_is_refused_while_one_holds_the_cluster_lock(ws):
    td = h.task_definition(
        "app",
        h.container("init", "while [ ! -e /tmp/go ]; do sleep 0.1; done", essential=False),
        h.container("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
    )  # the first apply holds the lock until the test lets init finish
    ws.write("app.yaml", td, h.service("app", "app", 1))

    first = ws.start("apply", "--yes", log="first")
    h.wait_for(lambda: "Plan: 1 to add" in ws.output(first), what="the first apply to plan (under the lock)")
    (init,) = h.wait_for(
        lambda: [c for c in h.managed(ws.client, container="init") if c["State"] == "running"],
        what="the init container to run",
    )
    second = ws.cli("apply", "--yes")
    assert second.exit_code != 0
    assert "cluster test is locked by another reconciler" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert first.poll() is None, ws.output(first)

    waiting = ws.start("apply", "--yes", "--lock-wait", "60s", log="waiting")
    exec_id = ws.client.api.exec_create(init["Id"], ["touch", "/tmp/go"])["Id"]
    ws.client.api.exec_start(exec_id)
    assert first.wait(timeout=60) == 0, ws.output(first)
    assert waiting.wait(timeout=60) == 0, ws.output(waiting)
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in ws.output(waiting), "it waited, then found nothing to do"
    assert len(h.running_task_ids(ws.client, "app")) == 1
