"""The `watch` daemon as a real process against a real private Docker engine.

Owns end-to-end evidence for the daemon mode: manifest edits (atomic-rename saves and in-place writes) converge;
a killed container is replaced from the engine's event stream alone; invalid manifests never tear anything down
and are logged in `validate`'s format; a deleted service is only logged without `--prune` and removed with it;
crash loops back off (and `describe service` shows it); an unhealthy task is replaced; a daemon killed with
SIGKILL mid-apply converges exactly once restarted; an engine restarted under the daemon is resynced; a Git
branch is followed commit by commit and a broken commit is refused; the HTTP endpoints answer; `apply` is locked
out while the daemon runs; SIGTERM exits 0 and leaves the tasks running.

Every daemon is a `python -m reconciler watch ... --log-format json` subprocess on a free loopback port whose log
is read from a file (tests/integration/daemon_helpers.py); it is stopped by its recorded pid at teardown.
Must not: assert on speed (deadlines only bound waits), sleep for fixed long periods (the crash-loop test
observes a fixed window by design), or touch anything but the test's engine and its own processes.
"""

from __future__ import annotations

import re
import time

import daemon_helpers as dh
import helpers as h


def app(desired: int, *containers, name: str = "app", **service_spec):
    """The task definition and service documents of a service `name` (one idle container by default)."""
    return (
        h.task_definition(name, *(containers or (h.container(name),))),
        h.service(name, name, desired, **service_spec),
    )


# --------------------------------------------------------------------------------------------------------------
# Manifest edits


def test_atomic_rename_save_scales_1_to_3(ws, daemons):
    path = ws.write("app.yaml", *app(1))
    d = daemons.start("manifests")
    (first,) = dh.wait_running(ws.client, "app", 1, d)

    dh.write_atomically(path, dh.dump(*app(3)))
    tasks = dh.wait_running(ws.client, "app", 3, d)
    assert first in tasks, "scaling out must not replace the running task"
    assert d.logged("start task"), d.tail()
    assert d.running()


def test_in_place_write_scales_1_to_3(ws, daemons):
    path = ws.write("app.yaml", *app(1))
    d = daemons.start("manifests")
    (first,) = dh.wait_running(ws.client, "app", 1, d)

    dh.write_in_place(path, dh.dump(*app(3)))
    tasks = dh.wait_running(ws.client, "app", 3, d)
    assert first in tasks
    status = dh.wait_for(lambda: (s := d.service_status("app")) and s["runningCount"] == 3 and s, what="/status to say 3 running", daemon=d)
    assert status["desiredCount"] == 3


# --------------------------------------------------------------------------------------------------------------
# Engine events


def test_killed_container_is_replaced_from_the_event_stream(ws, daemons):
    ws.write("app.yaml", *app(1))
    # No periodic resync can run during this test (--resync 10m), and no file changes: only the engine's event
    # stream can bring the replacement; the debug log shows the event that queued it.
    d = daemons.start("manifests", "--resync", "10m", env={"RECONCILER_LOG_LEVEL": "DEBUG"})
    (old,) = dh.wait_running(ws.client, "app", 1, d)
    ws.client.api.kill(h.container_of(ws.client, old, "app")["Id"])

    (new,) = dh.wait_running(ws.client, "app", 1, d, timeout=20)
    assert new != old
    assert d.logged("engine event die for service app"), d.tail()
    assert h.managed(ws.client, task_id=old) == [], "the dead task's container is removed"


# --------------------------------------------------------------------------------------------------------------
# Invalid manifests


BROKEN_YAML = """\
apiVersion: reconciler/v1
kind: Service
metadata: {name: app}
spec:
  cluster: test
  taskDefinition: app
  desiredCount: [3
"""


def test_invalid_yaml_stops_nothing_and_is_logged_then_the_fix_converges(ws, daemons, run_cli):
    td, svc = app(2)
    ws.write("app-td.yaml", td)
    path = ws.write("app.yaml", svc)
    d = daemons.start("manifests")
    before = dh.wait_running(ws.client, "app", 2, d)
    containers_before = {c["Id"] for c in h.managed(ws.client, service="app")}

    dh.write_atomically(path, BROKEN_YAML)
    checked = run_cli("validate", "manifests", cwd=ws.root)
    assert checked.exit_code == 1, checked
    expected = [line for line in checked.stderr.splitlines() if line.startswith("manifests/")]
    assert expected and all(re.match(r"^manifests/app\.yaml:\d+:\d+: ", line) for line in expected), checked
    d.wait_logged("manifests are invalid")
    errors = [e for e in d.entries() if e.get("level") == "error"]
    for line in expected:
        assert any(e["msg"] == line for e in errors), f"validate's line {line!r} not logged as is:\n{d.tail()}"
    status = d.status()
    assert status["manifests"]["valid"] is False
    assert status["manifests"]["errors"] == expected

    # Nothing is stopped, and the daemon keeps converging to the last valid manifests meanwhile.
    assert {c["Id"] for c in h.managed(ws.client, service="app")} == containers_before
    victim = sorted(before)[0]
    ws.client.api.kill(h.container_of(ws.client, victim, "app")["Id"])
    during = dh.wait_running(ws.client, "app", 2, d)
    assert victim not in during and (before - {victim}) <= during

    dh.write_atomically(path, dh.dump(app(3)[1]))
    after = dh.wait_running(ws.client, "app", 3, d)
    assert during <= after
    d.wait_logged("manifests are valid again")
    assert d.status()["manifests"] == {"valid": True, "errors": []}


# --------------------------------------------------------------------------------------------------------------
# Deleted services and --prune


def test_deleted_service_is_kept_and_logged_without_prune_and_removed_with_it(ws, daemons):
    ws.write("keep.yaml", *app(1, name="keep"))
    ws.write("gone.yaml", *app(2, name="gone"))
    d = daemons.start("manifests")
    (keep,) = dh.wait_running(ws.client, "keep", 1, d)
    gone = dh.wait_running(ws.client, "gone", 2, d)

    ws.remove("gone.yaml")
    entry = d.wait_logged("service gone runs but is no longer declared")
    assert entry["level"] == "warning" and "--prune" in entry["msg"]
    assert dh.running_tasks(ws.client, "gone") == gone, "without --prune nothing may be removed"
    assert dh.running_tasks(ws.client, "keep") == {keep}
    assert d.stop() == 0

    pruning = daemons.start("manifests", "--prune")
    dh.wait_running(ws.client, "gone", 0, pruning)
    assert dh.running_tasks(ws.client, "keep") == {keep}
    assert h.managed(ws.client, service="gone") == []


# --------------------------------------------------------------------------------------------------------------
# Crash loops and health checks


def test_crash_loop_backs_off_and_describe_service_shows_it(ws, daemons):
    window = 25.0
    ws.write("crash.yaml", *app(1, h.container("crash", "exit 1"), name="crash"))
    since = time.time()
    d = daemons.start("manifests")
    # The engine replays events between since and until, so this call observes the whole window.
    starts = [
        e for e in ws.client.api.events(
            since=since, until=since + window, decode=True,
            filters={"type": "container", "event": "start", "label": [f"{h.SERVICE}=crash"]},
        )
    ]  # fmt: skip
    tasks = {e["Actor"]["Attributes"][h.TASK] for e in starts}
    # Without backoff a container exiting at once is replaced a few times a second (dozens in the window);
    # with 10 s doubling: the first task, an immediate replacement, one after 10 s, the next 20 s later.
    assert 2 <= len(tasks) <= 4, f"{len(tasks)} tasks started in {window:.0f} s:\n{d.tail()}"
    assert d.logged("service crash is crash-looping; next replacement in"), d.tail()

    backoff = ws.describe_service("crash").get("crashLoopBackoff")
    assert backoff, ws.describe_service("crash")
    assert backoff["recentFailures"] >= 1 and backoff["backoffSeconds"] >= 10, backoff
    assert backoff["nextReplacementAt"] > since
    assert d.service_status("crash")["crashLoop"]["recentFailures"] >= 1


def test_unhealthy_task_is_replaced(ws, daemons):
    health = {"command": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"], "interval": 5, "timeout": 2, "retries": 2}
    # interval 5: the schema's minimum (ECS allows 5-300 s), so unhealthy comes 10-15 s after the page goes.
    ws.write("web.yaml", *app(1, h.container("web", h.httpd(8080), healthCheck=health), name="web"))
    d = daemons.start("manifests")
    (old,) = dh.wait_running(ws.client, "web", 1, d)
    web = h.container_of(ws.client, old, "web")["Id"]
    dh.wait_for(lambda: h.container_of(ws.client, old, "web")["State"]["Health"]["Status"] == "healthy",
                timeout=60, what="the web task to turn healthy", daemon=d)

    exec_id = ws.client.api.exec_create(web, ["rm", "/www/index.html"])["Id"]
    ws.client.api.exec_start(exec_id)
    assert ws.client.api.exec_inspect(exec_id)["ExitCode"] == 0

    def replaced():
        running = dh.running_tasks(ws.client, "web")
        return running and old not in running and len(h.by_task(h.managed(ws.client, service="web"))) == 1 and running

    (new,) = dh.wait_for(replaced, timeout=120, what="the unhealthy task to be replaced", daemon=d)
    assert new != old
    assert any("health checks" in m for m in d.messages()), d.tail()


# --------------------------------------------------------------------------------------------------------------
# Crashes: the daemon's and the engine's


def test_daemon_killed_mid_apply_converges_exactly_after_restart(ws, daemons):
    # Two containers in bridge mode: every task gets a network of its own, made before its containers.
    containers = (h.container("app"), h.container("side"))
    path = ws.write("app.yaml", *app(1, *containers))
    d = daemons.start("manifests")
    dh.wait_running(ws.client, "app", 1, d, exact_containers=2)

    dh.write_atomically(path, dh.dump(*app(8, *containers)))
    dh.wait_for(lambda: len(h.managed(ws.client, service="app")) > 2 or len(dh.task_networks(ws.client)) > 1,
                timeout=30, interval=0.01, what="the apply of 8 to begin", daemon=d)
    d.kill()
    assert d.proc.returncode == -9
    interrupted = dh.running_tasks(ws.client, "app")
    assert len(interrupted) < 8, "the daemon must be killed during the apply (it had finished already)"

    again = daemons.start("manifests")
    tasks = dh.wait_running(ws.client, "app", 8, again, timeout=90, exact_containers=2)
    assert interrupted <= tasks, "tasks that were running before the kill are kept"
    by_task = h.by_task(h.managed(ws.client, service="app"))
    assert set(by_task) == tasks
    assert all(sorted(c["Labels"][h.CONTAINER] for c in cs) == ["app", "side"] for cs in by_task.values()), by_task

    def networks_settled():
        nets = dh.task_networks(ws.client)
        return {n["Labels"].get(h.TASK) for n in nets} == tasks and len(nets) == 8

    dh.wait_for(networks_settled, timeout=30, what="exactly one network per running task (no leftovers)", daemon=again)
    ws.assert_converged()


def test_engine_restart_under_the_daemon_is_resynced(ws, daemons, engine):
    ws.write("app.yaml", *app(2))
    d = daemons.start("manifests")
    dh.wait_running(ws.client, "app", 2, d)

    engine.stop()
    d.wait_logged("engine event stream lost")
    engine.start()
    d.wait_logged("engine answers again; resyncing", timeout=60)
    tasks = dh.wait_running(ws.client, "app", 2, d, timeout=90)
    assert len(h.by_task(h.managed(ws.client, service="app"))) == 2, "no duplicates, no stopped leftovers"
    dh.wait_for(lambda: "reconciler_engine_up{" in d.get("/metrics")[1] and
                re.search(r'reconciler_engine_up\{[^}]*\} 1\.0', d.get("/metrics")[1]), what="engine_up 1 again", daemon=d)
    ws.assert_converged()
    assert tasks == dh.running_tasks(ws.client, "app")


# --------------------------------------------------------------------------------------------------------------
# Git


def test_git_source_applies_commits_and_stays_on_the_last_good_one(ws, daemons, engine, tmp_path):
    repo = dh.GitRepo(tmp_path)
    cluster = dh.dump(h.cluster("test", [engine.endpoint]))
    first = repo.commit({"cluster.yaml": cluster, "app.yaml": dh.dump(*app(1))}, "app: one task")
    d = daemons.start("--git", str(repo.bare), "--branch", "main", "--interval", "1s")
    (one,) = dh.wait_running(ws.client, "app", 1, d)
    assert d.status()["appliedCommit"] == first

    second = repo.commit({"app.yaml": dh.dump(*app(2))}, "app: two tasks")
    two = dh.wait_running(ws.client, "app", 2, d, timeout=60)
    assert one in two
    dh.wait_for(lambda: d.status()["appliedCommit"] == second, what="/status appliedCommit to be the second commit", daemon=d)
    entry = d.wait_logged(f"applying commit {second[:12]}: app: two tasks")
    assert entry["commit"] == second
    metrics = d.get("/metrics")[1]
    assert f'reconciler_applied_commit_info{{commit="{second}"}} 1.0' in metrics, metrics
    assert first not in metrics

    td, svc = app(3)
    svc["spec"]["desiredCont"] = svc["spec"].pop("desiredCount")  # a typo: a schema error with a hint
    broken = repo.commit({"app.yaml": dh.dump(td, svc)}, "app: broken")
    entry = d.wait_logged(f"commit {broken[:12]} is invalid", timeout=60)
    assert entry["level"] == "error" and f"staying on last good commit {second[:12]}" in entry["msg"], entry
    assert any(re.match(r"^\S*app\.yaml:\d+:\d+: .*desiredCont", m) for m in d.messages()), d.tail()
    assert d.status()["appliedCommit"] == second
    assert dh.running_tasks(ws.client, "app") == two
    assert len(h.managed(ws.client, service="app")) == 2


# --------------------------------------------------------------------------------------------------------------
# The HTTP listener, the writer lock, SIGTERM


def test_http_endpoints_answer(ws, daemons):
    ws.write("app.yaml", *app(1))
    d = daemons.start("manifests")
    dh.wait_running(ws.client, "app", 1, d)

    assert d.get("/healthz")[:2] == (200, "ok\n")
    assert d.get("/readyz")[:2] == (200, "ok\n")
    code, metrics, content_type = d.get("/metrics")
    assert code == 200 and content_type.startswith("text/plain"), content_type
    assert re.search(r'^reconciler_tasks\{[^}]*service="app"[^}]*\} ', metrics, re.M), metrics
    assert re.search(r"^reconciler_engine_up\{", metrics, re.M), metrics
    status = dh.wait_for(lambda: (s := d.service_status("app")) and s["runningCount"] == 1 and d.status(), daemon=d,
                         what="/status to show the running task")
    assert status["ready"] is True and status["manifests"]["valid"] is True
    (svc,) = status["services"]
    assert svc["desiredCount"] == 1 and svc["cluster"] == "test" and len(svc["tasks"]) == 1
    assert d.get("/nope")[0] == 404


def test_apply_is_locked_out_while_the_daemon_runs(ws, daemons):
    ws.write("app.yaml", *app(1))
    d = daemons.start("manifests")

    result = ws.apply(check=None)
    assert result.exit_code == 1, h.describe_run(["apply"], result)
    assert f"cluster test is locked by another reconciler (pid {d.pid}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

    began = time.monotonic()
    waited = ws.apply("--lock-wait", "1s", check=None)
    assert waited.exit_code == 1, h.describe_run(["apply", "--lock-wait", "1s"], waited)
    assert time.monotonic() - began >= 1.0, "--lock-wait 1s must wait before failing"
    assert "is locked by another reconciler" in waited.stderr, waited.stderr


def test_sigterm_exits_0_and_leaves_the_tasks_running(ws, daemons):
    ws.write("app.yaml", *app(2))
    d = daemons.start("manifests")
    tasks = dh.wait_running(ws.client, "app", 2, d)
    containers = {c["Id"] for c in h.managed(ws.client, service="app")}

    assert d.stop(timeout=10) == 0, d.tail()
    assert d.logged("stopped; running tasks are left running"), d.tail()
    assert dh.running_tasks(ws.client, "app") == tasks
    assert {c["Id"] for c in h.managed(ws.client, service="app")} == containers
    # The lock is released: apply runs (and has nothing to do).
    result = ws.apply()
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in result.stdout
    assert d.proc.poll() == 0
