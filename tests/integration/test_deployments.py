"""Deployments with history against a real private Docker engine (issue 10's "done when").

Owns end-to-end evidence that: every applied edit of a task definition registers the next revision (1, 2, 3:
`get task-definitions`, the `io.reconciler.revision` label, `describe task-definition web:2`), a `web:1` pin
runs revision 1 while the manifest is at 3 and a pin to a revision that does not exist is a located error that
changes nothing; a revision whose essential container exits at once trips the circuit breaker, rolls back
(`apply` exits 4 naming what runs), is not started again by a `watch` daemon nor by an `apply` from a fresh
state directory (the history lives on the engines); a rolling deployment at minimumHealthyPercent 100 never
drops below the desired count of healthy tasks (the engine polled every 100 ms); an alarm on a customized
metric (a Prometheus exporter on 127.0.0.1) fails a baking deployment and rolls it back; a deployment survives
its daemon's SIGKILL and is finished, under the same id, by a daemon with an empty state directory.

Every task has the realistic shape: `app` (essential; busybox httpd with a Docker health check at ECS's minimum
interval of 5 s) and `side` (not essential, `dependsOn` app HEALTHY, ignores SIGTERM so every stop waits out its
short stopTimeout). Daemons are `watch` subprocesses (tests/integration/daemon_helpers.py) stopped by their
recorded pids. Must not: assert on speed (times are printed; deadlines only bound waits), touch anything but
the test's engine, its processes and 127.0.0.1, or change reconciler/.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import daemon_helpers as dh
import helpers as h
import pytest
import scaling_helpers as sh

pytestmark = pytest.mark.docker

REVISION = "io.reconciler.revision"  # spelled out: the tests check the product's labels, not its constants
DEPLOYMENT = "io.reconciler.deployment"
PORT = 8080
HEALTH = {
    "command": ["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{PORT}/ || exit 1"],
    "interval": 5,  # the schema's (and ECS's) minimum
    "timeout": 2,
    "retries": 2,
}
STUBBORN = "trap '' TERM; while true; do sleep 1; done"  # ignores SIGTERM: a stop waits out stopTimeout
STOP_TIMEOUT = 2
DEPLOYMENT_FAILED = 4  # ExitStatus.DEPLOYMENT_FAILED, spelled out




# --------------------------------------------------------------------------------------------------------------
# Documents


def containers(rev: str, app_script: str | None = None, health: Mapping[str, Any] = HEALTH) -> list[dict[str, Any]]:
    """app (httpd unless `app_script`, the health check, REV in its environment) and side (dependsOn app HEALTHY)."""
    app = h.container(
        "app", app_script or h.httpd(PORT, f"rev-{rev}"), stopTimeout=STOP_TIMEOUT, environment=h.env(REV=rev),
        healthCheck=dict(health),
    )  # fmt: skip
    side = h.container(
        "side", STUBBORN, stopTimeout=STOP_TIMEOUT, essential=False,
        dependsOn=[{"containerName": "app", "condition": "HEALTHY"}],
    )  # fmt: skip
    return [app, side]


def web(
    rev: str, desired: int = 4, *, pin: str = "", app_script: str | None = None,
    health: Mapping[str, Any] = HEALTH, **deployment: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The TaskDefinition `web` (revision content `rev`) and the Service `web` (taskDefinition web`pin`)."""
    td = h.task_definition("web", *containers(rev, app_script, health))
    svc = h.service("web", f"web{pin}", desired, deploymentConfiguration={"maximumPercent": 200, **deployment})
    return td, svc


BREAKER = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}


# --------------------------------------------------------------------------------------------------------------
# Reading the engine (list shape)


def task_healthy(members) -> bool:
    """ECS's RUNNING and HEALTHY: app and side both exist, app runs and is healthy, side runs."""
    by_name = {c["Labels"].get(h.CONTAINER): c for c in members if c["Labels"].get(h.ROLE) != "pause"}
    app, side = by_name.get("app"), by_name.get("side")
    return (
        len(by_name) == 2 and app is not None and side is not None
        and app["State"] == "running" and "(healthy)" in app["Status"] and side["State"] == "running"
    )  # fmt: skip


def healthy_tasks(client, service: str = "web") -> dict[str, str]:
    """task id -> revision label of the service's RUNNING and HEALTHY tasks."""
    return {
        task_id: members[0]["Labels"].get(REVISION, "")
        for task_id, members in h.by_task(h.managed(client, service=service)).items()
        if task_healthy(members)
    }


def settled(client, desired: int, revision: str, service: str = "web") -> set[str] | None:
    """The task ids once exactly `desired` tasks of the service exist, all RUNNING and HEALTHY, of `revision`
    (by label), with two containers each and nothing else of the service left; else None."""
    found = h.managed(client, service=service)
    tasks = h.by_task(found)
    if len(tasks) != desired or len(found) != 2 * desired:
        return None
    if not all(task_healthy(m) for m in tasks.values()):
        return None
    if {c["Labels"].get(REVISION) for c in found} != {revision}:
        return None
    return set(tasks) or None


def snapshot(client, service: str = "web") -> dict[str, list[str]]:
    """task id (12) -> ["rev 1 app:running(healthy)", ...], for messages."""
    out = {}
    for task_id, members in sorted(h.by_task(h.managed(client, service=service)).items()):
        out[task_id[:12]] = sorted(
            f"rev {c['Labels'].get(REVISION)} {c['Labels'].get(h.CONTAINER)}:{c['State']}"
            + ("(healthy)" if "(healthy)" in c["Status"] else "(starting)" if "health: starting" in c["Status"] else "")
            for c in members
        )
    return out


def wait_settled(ws, desired: int, revision: str, timeout: float = 90, daemon: dh.Daemon | None = None) -> set[str]:
    return dh.wait_for(lambda: settled(ws.client, desired, revision), timeout=timeout, daemon=daemon,
                       what=f"{desired} healthy tasks of web:{revision} and nothing else")  # fmt: skip


def creates(client, since: float, until: float, **labels: str) -> list[dict[str, Any]]:
    """The engine's `create` events of managed containers with these labels between since and until (epoch s),
    replayed by the engine (a call with `until` in the future blocks until then)."""
    wanted = [f"{h.MANAGED}=true"] + [f"io.reconciler.{k}={v}" for k, v in labels.items()]
    return list(client.api.events(since=since, until=until, decode=True,
                                  filters={"type": "container", "event": "create", "label": wanted}))  # fmt: skip


def deployments(ws) -> list[dict[str, Any]]:
    """`get deployments web --json` (every deployment the history keeps), newest first."""
    return ws.json("get", "deployments", "web", "--json")["deployments"]


def elsewhere(ws, run_cli, name: str) -> h.Workspace:
    """The workspace's manifests and engine seen from another, empty state directory (a new CI machine)."""
    other = h.Workspace(ws.root, run_cli)
    other.state = ws.root / name
    return other


def last_line(result) -> str:
    lines = result.stdout.rstrip().splitlines()
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------------------------------------------
# 1. Revisions, pins, and a pin to a revision that does not exist


def test_edits_register_revisions_a_pin_runs_revision_1_and_a_missing_pin_is_a_located_error(ws):
    desired = 2
    began = time.monotonic()
    for n in (1, 2, 3):
        ws.write("web.yaml", *web(str(n), desired))
        result = ws.apply(timeout=180)
        print(f"apply of edit {n}: last line: {last_line(result)}")
        wait_settled(ws, desired, str(n), timeout=10)
        listed = ws.json("get", "task-definitions", "--json")["taskDefinitions"]
        assert [(t["family"], t["revision"]) for t in listed] == [("web", r) for r in range(1, n + 1)], listed
    print(f"three edits applied in {time.monotonic() - began:.1f}s")
    listed = ws.json("get", "task-definitions", "--json")["taskDefinitions"]
    for t in listed:
        assert t["taskDefinitionArn"].endswith(f"task-definition/web:{t['revision']}"), t
        (app,) = [c for c in t["containerDefinitions"] if c["name"] == "app"]
        assert {"name": "REV", "value": str(t["revision"])} in app["environment"], app

    two = ws.json("describe", "task-definition", "web:2")["taskDefinition"]
    assert two["family"] == "web" and two["revision"] == 2, two
    assert re.fullmatch(r"arn:aws:ecs:[^:]+:\d+:task-definition/web:2", two["taskDefinitionArn"]), two
    assert two["status"] == "ACTIVE"
    assert sorted(c["name"] for c in two["containerDefinitions"]) == ["app", "side"], two
    (app2,) = [c for c in two["containerDefinitions"] if c["name"] == "app"]
    assert {"name": "REV", "value": "2"} in app2["environment"], app2

    # A pin to revision 1 while the manifest's spec is revision 3: revision 1 runs, nothing new is registered.
    ws.write("web.yaml", *web("3", desired, pin=":1"))
    ws.apply(timeout=180)
    pinned = wait_settled(ws, desired, "1", timeout=10)
    for task_id in pinned:
        assert h.env_of(h.container_of(ws.client, task_id, "app"))["REV"] == "1"
    assert [t["revision"] for t in ws.json("get", "task-definitions", "--json")["taskDefinitions"]] == [1, 2, 3]
    (svc,) = ws.json("get", "services", "--json")["services"]
    assert svc["taskDefinition"].endswith(":task-definition/web:1") and svc["steady"], svc

    # A pin to a revision that does not exist: plan and apply exit 1 with a located error; nothing changes.
    path = ws.write("web.yaml", *web("3", desired, pin=":9"))
    before = sorted(c["Id"] for c in h.managed(ws.client, service="web"))
    expected = re.compile(
        rf"{re.escape(path.name)}:\d+:\d+: .*/spec/taskDefinition: .*no revision 9 of web; revisions: 1-3"
    )
    for command in ("plan", "apply"):
        result = ws.cli(command, *(("--yes",) if command == "apply" else ()))
        assert result.exit_code == 1, h.describe_run([command], result)
        assert expected.search(result.stderr), h.describe_run([command], result)
        assert "Traceback" not in result.stderr
    assert sorted(c["Id"] for c in h.managed(ws.client, service="web")) == before
    assert settled(ws.client, desired, "1") == pinned
    assert [t["revision"] for t in ws.json("get", "task-definitions", "--json")["taskDefinitions"]] == [1, 2, 3]




# --------------------------------------------------------------------------------------------------------------
# 2. The circuit breaker: a revision that exits at once fails, rolls back, and is never started again


def deploy_failing_revision(ws, desired: int = 4):
    """web:1 settled with `desired` tasks, then web:2 (app exits 1 at once) applied with the circuit breaker and
    rollback; returns that apply's result once it is checked to exit 4 naming the live revision."""
    ws.write("web.yaml", *web("1", desired, **BREAKER))
    ws.apply(timeout=180)
    good = wait_settled(ws, desired, "1", timeout=10)
    ws.write("web.yaml", *web("2", desired, app_script="exit 1", **BREAKER))
    began = time.monotonic()
    result = ws.apply(timeout=180, check=None)
    print(f"apply of the failing revision: exit {result.exit_code} after {time.monotonic() - began:.1f}s")
    assert result.exit_code == DEPLOYMENT_FAILED, h.describe_run(["apply", "--yes"], result)
    assert "running web:1 after rollback" in last_line(result), h.describe_run(["apply", "--yes"], result)
    after = wait_settled(ws, desired, "1", timeout=30)
    print(f"tasks of web:1 kept through the failed deployment: {len(good & after)} of {desired}")
    return result


def test_a_failing_revision_trips_the_breaker_rolls_back_and_is_not_started_again(ws, daemons, run_cli):
    desired = 4
    deploy_failing_revision(ws, desired)

    rollback, failed = deployments(ws)[:2]
    assert failed["taskDefinition"].endswith("task-definition/web:2"), failed
    assert failed["rolloutState"] == "FAILED" and failed["failedTasks"] >= 3, failed
    assert "circuit breaker" in failed["rolloutStateReason"], failed
    assert rollback["taskDefinition"].endswith("task-definition/web:1"), rollback
    assert rollback["status"] == "PRIMARY" and rollback["rolloutState"] == "COMPLETED", rollback
    assert rollback.get("rollbackOf") == failed["id"], rollback
    svc = ws.describe_service("web")
    messages = [e["message"] for e in svc["events"]]
    assert any(f"(deployment {failed['id']}) deployment failed" in m for m in messages), messages
    assert any(f"(deployment {rollback['id']}) rolling back to deployment" in m for m in messages), messages
    assert "manifest asks web:2" in svc.get("deploymentNote", ""), svc.get("deploymentNote")
    (listed,) = ws.json("get", "services", "--json")["services"]
    assert listed["state"] == "rolled back" and listed["steady"] is False, listed
    assert "rolled back" in ws.cli("get", "services", check=0).stdout

    # Under the daemon: for 60 s no task of the failed revision starts, while a killed task of web:1 is replaced.
    d = daemons.start("manifests")
    since = time.time()
    victim = sorted(settled(ws.client, desired, "1"))[0]
    ws.client.api.kill(h.container_of(ws.client, victim, "app")["Id"])
    dh.wait_for(lambda: (s := settled(ws.client, desired, "1")) and victim not in s, timeout=60, daemon=d,
                what="the killed task of web:1 to be replaced by one of web:1")  # fmt: skip
    of_failed = creates(ws.client, since, since + 60, service="web", revision="2")  # blocks until since + 60
    of_rollback = creates(ws.client, since, since + 60, service="web", revision="1")
    print(f"in 60 s under watch: {len(of_failed)} container(s) of web:2 created, {len(of_rollback)} of web:1")
    assert of_failed == [], f"the daemon started the failed revision again:\n{d.tail()}"
    assert len(of_rollback) >= 2, "the killed task's replacement (app and side) is of web:1"
    assert [x["id"] for x in deployments(ws)[:2]] == [rollback["id"], failed["id"]], "no new deployment"
    assert d.stop() == 0, d.tail()

    # A new CI machine: an empty state directory still sees the history, and apply exits 4 starting nothing.
    since = time.time()
    again = elsewhere(ws, run_cli, "ci-state").apply(timeout=180, check=DEPLOYMENT_FAILED)
    until = time.time()
    assert "running web:1 after rollback" in last_line(again), again.stdout
    assert creates(ws.client, since, until + 1, service="web") == [], again.stdout
    reader = elsewhere(ws, run_cli, "reader-state")
    assert [x["id"] for x in deployments(reader)[:2]] == [rollback["id"], failed["id"]]
    assert [t["revision"] for t in reader.json("get", "task-definitions", "--json")["taskDefinitions"]] == [1, 2]
    assert settled(ws.client, desired, "1"), snapshot(ws.client)


def test_describe_service_shows_the_failed_deployment_and_its_rollback(ws):
    deploy_failing_revision(ws)
    shown = {d["rolloutState"]: d for d in ws.describe_service("web")["deployments"]}
    assert set(shown) == {"FAILED", "COMPLETED"}, shown
    assert shown["FAILED"]["failedTasks"] >= 3 and shown["COMPLETED"].get("rollbackOf") == shown["FAILED"]["id"], shown


# --------------------------------------------------------------------------------------------------------------
# 3. A rolling deployment at minimumHealthyPercent 100 never goes below the desired count of healthy tasks


def census(client, service: str = "web") -> tuple[int, int]:
    """(RUNNING and HEALTHY tasks, tasks with a container created or running) of the service, in one list call."""
    tasks = h.by_task(h.managed(client, service=service)).values()
    alive = sum(1 for members in tasks if any(c["State"] in ("created", "running") for c in members))
    return sum(1 for members in tasks if task_healthy(members)), alive


def timeline(samples, around: float, span: float = 3.0) -> str:
    """healthy/alive samples within `span` s of `around`, in seconds from the first sample."""
    t0 = samples[0][0]
    return " ".join(f"{t - t0:.1f}:{healthy}/{alive}" for t, (healthy, alive) in samples if abs(t - around) <= span)


def test_a_rolling_deployment_at_minimum_healthy_100_keeps_every_task_healthy(ws):
    desired = 4
    ws.write("web.yaml", *web("1", desired, minimumHealthyPercent=100))
    ws.apply(timeout=180)
    old = wait_settled(ws, desired, "1", timeout=10)

    ws.write("web.yaml", *web("2", desired, minimumHealthyPercent=100))
    with h.Sampler(lambda: census(ws.client), interval=0.1) as polls:  # the first poll is taken before apply
        began = time.monotonic()
        result = ws.apply(timeout=180)
        ended = time.monotonic()
        polls.wait_past(ended)
    during = [s for s in polls.samples if began <= s[0] <= ended]
    low_t, (low, _) = min(polls.samples, key=lambda s: s[1][0])
    print(f"apply took {ended - began:.1f}s; {len(during)} polls during it; healthy tasks at least {low}; "
          f"most tasks alive at once {max(alive for _, (_, alive) in polls.samples)}")  # fmt: skip
    assert low >= desired, (
        f"healthy tasks dropped to {low} < {desired} (healthy/alive around it: {timeline(polls.samples, low_t)})\n"
        f"{result.stdout}"
    )
    new = wait_settled(ws, desired, "2", timeout=10)
    assert not new & old, "every task was replaced"
    newest, previous = deployments(ws)[:2]
    assert newest["taskDefinition"].endswith("task-definition/web:2"), newest
    assert (newest["status"], newest["rolloutState"], newest["failedTasks"]) == ("PRIMARY", "COMPLETED", 0), newest
    assert previous["taskDefinition"].endswith("task-definition/web:1") and previous["status"] == "INACTIVE", previous
    assert "web runs web:2" in last_line(result) and "COMPLETED" in last_line(result), result.stdout


# --------------------------------------------------------------------------------------------------------------
# 4. An alarm on a customized metric that goes into ALARM during the bake fails the deployment and rolls it back


def alarm(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "reconciler/v1", "kind": "Alarm", "metadata": {"name": "errors"},
        "spec": {
            "metric": {"customizedMetric": {"url": url, "metricName": "errors"}},
            "statistic": "Maximum", "period": 10, "evaluationPeriods": 1, "threshold": 1,
            "comparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    }  # fmt: skip


def events_of(ws) -> list[str]:
    """`events web --json`: the service's event messages, oldest first."""
    out = ws.cli("events", "web", "--json", check=0).stdout
    return [json.loads(line)["message"] for line in out.splitlines() if line.strip()]


def test_an_alarm_in_alarm_during_the_bake_fails_the_deployment_and_rolls_it_back(ws):
    desired = 4
    alarms = {"alarms": {"alarmNames": ["errors"], "enable": True, "rollback": True}}
    with sh.MetricServer("errors", 0) as metric:
        ws.write("alarm.yaml", alarm(metric.url))
        # web:1 without a bake (so it completes at once), web:2 with one minute of bake time.
        ws.write("web.yaml", *web("1", desired, **BREAKER, **alarms))
        ws.apply(timeout=180)
        wait_settled(ws, desired, "1", timeout=10)

        ws.write("web.yaml", *web("2", desired, bakeTimeInMinutes=1, **BREAKER, **alarms))
        proc = ws.start("apply", "--yes", "--timeout", "5m", log="apply-2")
        began = time.monotonic()

        def baking():
            assert proc.poll() is None, f"apply ended before the bake:\n{ws.output(proc)}"
            newest = deployments(ws)[0]
            return (
                settled(ws.client, desired, "2") and newest["taskDefinition"].endswith("web:2")
                and newest["rolloutState"] == "IN_PROGRESS" and any("baking" in m for m in events_of(ws))
                and newest
            )  # fmt: skip

        baked = h.wait_for(baking, timeout=90, interval=0.5, what="web:2 healthy and baking")
        print(f"web:2 healthy and baking after {time.monotonic() - began:.1f}s; metric errors -> 5")
        metric.value = 5
        switched = time.monotonic()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"apply did not end within 120 s of the alarm:\n{ws.output(proc)}")
        out = ws.output(proc)
        print(f"apply ended {time.monotonic() - switched:.1f}s after the switch (the rollback bakes too), exit "
              f"{proc.returncode}: {out.rstrip().splitlines()[-1]}")  # fmt: skip
        assert proc.returncode == DEPLOYMENT_FAILED, out
        assert "running web:1 after rollback" in out.rstrip().splitlines()[-1], out

        failed = next(d for d in deployments(ws) if d["id"] == baked["id"])
        assert failed["rolloutState"] == "FAILED" and "alarm(s) errors in ALARM state" in failed["rolloutStateReason"], failed
        primary = deployments(ws)[0]
        assert primary["rollbackOf"] == baked["id"] and primary["rolloutState"] == "COMPLETED", primary
        assert primary["taskDefinition"].endswith("task-definition/web:1"), primary
        wait_settled(ws, desired, "1", timeout=30)
        (row,) = ws.json("get", "alarms", "--json")["MetricAlarms"]
        assert row["AlarmName"] == "errors" and row["StateValue"] == "ALARM", row
        assert metric.requests > 0


# --------------------------------------------------------------------------------------------------------------
# 5. A deployment survives its daemon's SIGKILL and is finished, under the same id, by a fresh daemon


def start_daemon(daemons: dh.Daemons, state, *args: str) -> dh.Daemon:
    """`daemons.start("manifests", ...)` with another state directory (killed at teardown with the others)."""
    d = dh.Daemon(daemons.root, state, ["manifests", *args], daemons.root / f"daemon-{len(daemons.started) + 1}.log")
    daemons.started.append(d)
    d.start()
    d.wait_ready()
    return d


def test_a_deployment_resumes_under_the_same_id_after_the_daemon_is_killed(ws, daemons, run_cli):
    desired = 4
    path = ws.write("web.yaml", *web("1", desired))
    first = daemons.start("manifests")
    wait_settled(ws, desired, "1", daemon=first)
    dh.wait_for(lambda: deployments(ws)[0]["rolloutState"] == "COMPLETED", timeout=30, daemon=first,
                what="web:1's deployment to complete")  # fmt: skip

    # web:2 serves only after 8 s: its first probe fails within the start period, the second passes.
    slow = f"sleep 8; {h.httpd(PORT, 'rev-2')}"
    dh.write_atomically(path, dh.dump(*web("2", desired, app_script=slow, health={**HEALTH, "startPeriod": 30})))

    def in_progress():
        newest = deployments(ws)[0]
        started = h.managed(ws.client, service="web", revision="2")
        return newest["taskDefinition"].endswith("web:2") and newest["rolloutState"] == "IN_PROGRESS" and started and newest

    moving = dh.wait_for(in_progress, timeout=60, daemon=first, what="web:2's deployment IN_PROGRESS with tasks")
    first.kill()
    healthy_at_kill = healthy_tasks(ws.client)
    print(f"killed the daemon with {deployments(ws)[0]['id']} IN_PROGRESS; healthy tasks by revision: "
          f"{sorted(healthy_at_kill.values())}")  # fmt: skip
    assert "2" not in healthy_at_kill.values(), "the kill must come before web:2's tasks are healthy"

    fresh = start_daemon(daemons, ws.root / "empty-state")
    reader = elsewhere(ws, run_cli, "reader-state")  # sees only what the engine holds
    dh.wait_for(lambda: deployments(reader)[0]["rolloutState"] == "COMPLETED", timeout=90, daemon=fresh,
                what=f"deployment {moving['id']} to complete")  # fmt: skip
    wait_settled(ws, desired, "2", timeout=30, daemon=fresh)
    listed = deployments(reader)
    of_two = [d for d in listed if d["taskDefinition"].endswith("task-definition/web:2")]
    assert [d["id"] for d in of_two] == [moving["id"]], listed
    assert of_two[0]["status"] == "PRIMARY" and of_two[0]["rolloutState"] == "COMPLETED", of_two
    assert {c["Labels"].get(DEPLOYMENT) for c in h.managed(ws.client, service="web")} == {moving["id"]}
    ws.assert_converged()
    assert not any("Traceback" in d.log_text() for d in daemons.started), daemons.logs()
