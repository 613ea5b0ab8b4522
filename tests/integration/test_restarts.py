"""Crashes and restarts of everything around the tasks, against a real private Docker engine.

Owns end-to-end evidence that reconciler's passes recover from being cut short and from the engine going away:
a `watch` daemon SIGKILLed again and again during rolling deployments keeps `minimumHealthyPercent` (measured
on the engine every 100 ms) and converges exactly once left alone; an `apply` SIGKILLed during the starts of
two-container tasks leaves tasks that `get tasks` calls PENDING and `plan` still has work for, and the next
apply finishes them; an engine restarted under the daemon is reconverged, and replacing a killed task after
that is not held back by a crash-loop backoff; healthy tasks killed again and again are no crash loop.

Every task has the realistic shape: `app` (essential; a busybox httpd with a Docker health check at ECS's
minimum interval of 5 s, or no check where speed matters) and `side` with `dependsOn` on app (HEALTHY or START),
a sidecar that ignores SIGTERM (so every stop waits out its short stopTimeout). Kill moments come from seeded
random delays, printed with the seed; $RESTARTS_SEED replaces every default seed, to replay or explore.
Must not: assert on speed (times are printed; deadlines only bound waits), touch anything but the test's
engine and the processes it started (stopped by their recorded pids), or change reconciler/.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import Any

import daemon_helpers as dh
import helpers as h
import pytest

pytestmark = pytest.mark.docker

PORT = 8080
HEALTH = {
    "command": ["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{PORT}/ || exit 1"],
    "interval": 5,  # the schema's (and ECS's) minimum
    "timeout": 2,
    "retries": 2,
}
# A sidecar that ignores SIGTERM: sh as PID 1 with TERM ignored, and so are its children. A stop waits out
# the container's stopTimeout and ends in SIGKILL.
STUBBORN = "trap '' TERM; while true; do sleep 1; done"
STOP_TIMEOUT = 5


def seeded(default: int) -> int:
    """The seed of a test's kill moments: `default`, or $RESTARTS_SEED to explore or replay other moments."""
    return int(os.environ.get("RESTARTS_SEED", default))




# --------------------------------------------------------------------------------------------------------------
# Documents


def two_containers(
    rev: str, condition: str = "HEALTHY", side_essential: bool = False, health: bool = True
) -> list[dict[str, Any]]:
    """app (httpd, health check unless told otherwise, REV in its environment) and side (dependsOn app, ignores SIGTERM)."""
    app = h.container(
        "app", h.httpd(PORT, f"rev-{rev}"), stopTimeout=STOP_TIMEOUT, environment=h.env(REV=rev),
        healthCheck=HEALTH if health else None,
    )  # fmt: skip
    side = h.container(
        "side", STUBBORN, stopTimeout=STOP_TIMEOUT, essential=side_essential,
        dependsOn=[{"containerName": "app", "condition": condition}],
    )  # fmt: skip
    return [app, side]


def documents(
    name: str,
    desired: int,
    rev: str,
    *,
    condition: str = "HEALTHY",
    side_essential: bool = False,
    health: bool = True,
    **service_spec: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    td = h.task_definition(name, *two_containers(rev, condition, side_essential, health))
    return td, h.service(name, name, desired, **service_spec)


# --------------------------------------------------------------------------------------------------------------
# Reading tasks off the engine (list shape; one call per look)


def _spec(c: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(c["Labels"].get(h.CONTAINER_SPEC) or "{}")


def app_members(members) -> list[Mapping[str, Any]]:
    return [c for c in members if c["Labels"].get(h.ROLE) != "pause"]


def task_healthy(members, names=("app", "side")) -> bool:
    """ECS's RUNNING and HEALTHY: the task is whole (every container it is made of exists), none is still
    `created` (that is PENDING), every essential container runs, and those with a health check are healthy."""
    app = app_members(members)
    if sorted(c["Labels"].get(h.CONTAINER) for c in app) != sorted(names):
        return False
    if any(c["State"] == "created" for c in app):
        return False
    for c in app:
        if not h.essential(c):
            continue
        if c["State"] != "running":
            return False
        if _spec(c).get("healthCheck") and "(healthy)" not in c["Status"]:
            return False
    return True


def snapshot(client, service: str) -> dict[str, list[str]]:
    """task id (12) -> ["app:running(healthy)", "side:created", ...], for messages."""
    out = {}
    for task_id, members in sorted(h.by_task(h.managed(client, service=service)).items()):
        out[task_id[:12]] = sorted(
            f"{c['Labels'].get(h.CONTAINER)}:{c['State']}"
            + ("(healthy)" if "(healthy)" in c["Status"] else "(starting)" if "health: starting" in c["Status"]
               else "(unhealthy)" if "(unhealthy)" in c["Status"] else "")
            for c in members
        )  # fmt: skip
    return out


def settled(client, service: str, desired: int, rev: str | None = None) -> set[str] | None:
    """The task ids when exactly `desired` tasks of `service` exist, each whole, RUNNING and HEALTHY (of revision
    `rev`, by app's REV), with exactly two containers each, none `created`, and one per-task network per task and
    no other; else None."""
    containers = h.managed(client, service=service)
    tasks = h.by_task(containers)
    if len(tasks) != desired or len(containers) != 2 * desired:
        return None
    if not all(task_healthy(members) for members in tasks.values()):
        return None
    if rev is not None:
        for members in tasks.values():
            (app,) = [c for c in members if c["Labels"].get(h.CONTAINER) == "app"]
            if h.env_of(client.api.inspect_container(app["Id"])).get("REV") != rev:
                return None
    networks = [n for n in dh.task_networks(client) if n["Labels"].get(h.SERVICE, service) == service]
    if sorted(n["Labels"].get(h.TASK) for n in networks) != sorted(tasks):
        return None
    return set(tasks) or None


def assert_whole(client, service: str, desired: int) -> None:
    """Exactly `desired` tasks, each made of app and side (one of each), no container `created`, no duplicate
    container, and exactly one per-task network per task."""
    containers = h.managed(client, service=service)
    tasks = h.by_task(containers)
    assert len(tasks) == desired, f"{len(tasks)} tasks, want {desired}: {snapshot(client, service)}"
    for task_id, members in tasks.items():
        names = sorted(c["Labels"][h.CONTAINER] for c in app_members(members))
        assert names == ["app", "side"], f"task {task_id[:12]} is not whole (or has duplicates): {names}"
    created = [c["Names"] for c in containers if c["State"] == "created"]
    assert created == [], f"containers left in created: {created}"
    networks = dh.task_networks(client)
    assert sorted(n["Labels"].get(h.TASK) for n in networks) == sorted(tasks), (
        f"per-task networks {[n['Name'] for n in networks]} do not match the tasks {sorted(tasks)}"
    )
    unlabelled = [c["Names"] for c in client.api.containers(all=True) if c["Labels"].get(h.MANAGED) != "true"
                  and not any(k.startswith(("io.reconciler.lock", h.HISTORY)) for k in c["Labels"])]  # fmt: skip
    assert unlabelled == [], f"containers reconciler does not own: {unlabelled}"


def quiet(client, service: str, still: float = 1.0, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The service's containers once the engine has stopped changing them for `still` seconds: requests a
    killed client had sent (creates, starts) are still carried out by the engine after the client is gone."""

    def look():
        containers = h.managed(client, service=service)
        return containers, sorted((c["Id"], c["State"]) for c in containers)

    containers, key = look()
    since = time.monotonic()
    deadline = since + timeout
    while time.monotonic() - since < still:
        assert time.monotonic() < deadline, (
            f"the engine kept changing {service}'s containers for {timeout:.0f}s"
        )
        time.sleep(0.2)
        containers, now = look()
        if now != key:
            key, since = now, time.monotonic()
    return containers


def created_ids(containers) -> set[str]:
    """Tasks with a container in `created`."""
    return {c["Labels"][h.TASK] for c in containers if c["State"] == "created"}


def late_starts(client, service: str, since: float) -> list[str]:
    """Containers of `service` the engine started after `since` (epoch seconds): "task:container +seconds"."""
    out = []
    for c in h.managed(client, service=service):
        started = client.api.inspect_container(c["Id"])["State"]["StartedAt"]
        if started.startswith("0001-"):
            continue
        at = h.parse_time(started).timestamp()
        if at > since:
            out.append(f"{c['Labels'][h.TASK][:12]}:{c['Labels'][h.CONTAINER]} +{at - since:.2f}s")
    return out


def bugs_logged(daemons: dh.Daemons) -> list[str]:
    """Log entries of every daemon of the test that report a bug of reconciler: an unexpected exception, or any
    entry carrying a traceback (its last line is kept)."""
    out = []
    for d in daemons.started:
        for e in d.entries():
            msg = str(e.get("msg", ""))
            trace = str(e.get("exception") or e.get("exc_info") or "")
            if "unexpected" in msg or "Traceback" in msg or trace:
                last = trace.strip().splitlines()[-1] if trace.strip() else ""
                out.append(f"{d.log_path.name}: {msg[:200]} [{last}]")
    return out


def assert_no_bugs_logged(daemons: dh.Daemons) -> None:
    bugs = bugs_logged(daemons)
    assert not bugs, f"the daemon logged {len(bugs)} bug(s) (tracebacks), e.g.:\n" + "\n".join(bugs[:5])


def crash_loop_lines(d: dh.Daemon) -> list[str]:
    return [m for m in d.messages() if "crash-looping" in m]


class HealthPoller(threading.Thread):
    """Samples the engine every 100 ms: (monotonic time, healthy tasks, tasks with a container alive, tasks
    with a container `created`) of one service; `mark` records events (kills, restarts) on the same clock."""

    def __init__(self, client, service: str):
        super().__init__(daemon=True)
        self.client = client
        self.service = service
        self.samples: list[tuple[float, int, int, int]] = []
        self.marks: list[tuple[float, str]] = []
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            while not self._done.is_set():
                tasks = h.by_task(h.managed(self.client, service=self.service)).values()
                healthy = sum(1 for members in tasks if task_healthy(members))
                alive = sum(
                    1 for members in tasks if any(c["State"] in ("created", "running") for c in members)
                )
                created = sum(1 for members in tasks if any(c["State"] == "created" for c in members))
                self.samples.append((time.monotonic(), healthy, alive, created))
                self._done.wait(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def mark(self, what: str) -> None:
        self.marks.append((time.monotonic(), what))

    def stop(self) -> None:
        self._done.set()
        self.join(10)

    def timeline(self, around: float | None = None, span: float = 8.0) -> str:
        """Samples (as healthy/alive/created) and marks in time order, relative to the first sample."""
        if not self.samples:
            return "(no samples)"
        t0 = self.samples[0][0]
        rows = [(t, f"{healthy}/{alive}/{created}") for t, healthy, alive, created in self.samples]
        rows += [(t, f"<< {what} >>") for t, what in self.marks]
        rows.sort()
        if around is not None:
            rows = [r for r in rows if abs(r[0] - around) <= span]
        return " ".join(f"{t - t0:.1f}:{text}" for t, text in rows)


# --------------------------------------------------------------------------------------------------------------
# 1. The daemon killed again and again in the middle of rolling deployments


@pytest.mark.parametrize(
    ("desired", "min_healthy", "side_essential", "revisions", "kills_per_revision", "seed"),
    [(5, 50, True, 3, 4, 20240611), (4, 100, False, 2, 4, 77)],  # 12 + 8 = 20 rounds
    ids=["min50-essential-side", "min100"],
)
def test_daemon_killed_mid_rollout_keeps_minimum_healthy_and_converges(
    ws, daemons, desired, min_healthy, side_essential, revisions, kills_per_revision, seed
):
    seed = seeded(seed)
    rng = random.Random(seed)
    spec = {"max_percent": 200, "min_healthy": min_healthy, "side_essential": side_essential}
    path = ws.write("app.yaml", *documents("app", desired, "0", **spec))
    d = daemons.start("manifests")
    dh.wait_for(
        lambda: settled(ws.client, "app", desired, "0"), timeout=90, what="revision 0 to settle", daemon=d
    )

    floor = math.ceil(desired * min_healthy / 100)
    poller = HealthPoller(ws.client, "app")
    poller.start()
    kills: list[tuple[str, float, float]] = []  # (revision, delay, when)
    mid = 0  # kills that found the rollout unfinished
    try:
        for n in range(1, revisions + 1):
            rev = str(n)
            dh.write_atomically(path, dh.dump(*documents("app", desired, rev, **spec)))
            poller.mark(f"rev {rev} written")
            for _ in range(kills_per_revision):
                delay = rng.uniform(0.2, 4.0)  # from the write, or from the restarted daemon's readiness
                time.sleep(delay)
                d.check_alive()
                d.kill()
                poller.mark(f"kill (rev {rev}, after {delay:.2f}s)")
                kills.append((rev, delay, time.monotonic()))
                mid += not settled(ws.client, "app", desired, rev)
                d = daemons.start("manifests")
                poller.mark("daemon ready")
            dh.wait_for(lambda rev=rev: settled(ws.client, "app", desired, rev), timeout=120,
                        what=f"revision {rev} to settle", daemon=d)  # fmt: skip
            poller.mark(f"rev {rev} settled")
    finally:
        poller.stop()
    assert poller.error is None, f"the poller failed: {poller.error!r}"
    print(
        f"seed {seed}: {len(kills)} kills at delays {[round(k[1], 2) for k in kills]}, {mid} of them mid-rollout; "
        f"{len(poller.samples)} samples"
    )
    assert mid >= revisions, (
        "every rollout must have been cut at least once (its first kill comes before health)"
    )

    reached = next((i for i, s in enumerate(poller.samples) if s[1] >= desired), None)
    assert reached is not None, "the service never had its desired count healthy"
    low_t, low, _, _ = min(poller.samples[reached:], key=lambda s: s[1])
    high = max(s[2] for s in poller.samples)
    print(f"healthy tasks: lowest {low} (floor {floor}); most tasks alive at once {high} "
          f"(maximumPercent bound {desired * 2})")  # fmt: skip
    assert low >= floor, (
        f"healthy tasks of the service dropped to {low} < ceil({desired} * {min_healthy}%) = {floor}\n"
        f"timeline around it (healthy/alive/created): {poller.timeline(low_t)}\n{bugs_logged(daemons)}"
    )

    # Left alone, everything is exactly the last revision: whole tasks, nothing half-made or duplicated.
    tasks = settled(ws.client, "app", desired, str(revisions))
    assert tasks, snapshot(ws.client, "app")
    assert_whole(ws.client, "app", desired)
    ws.assert_converged()
    assert_no_bugs_logged(daemons)


# --------------------------------------------------------------------------------------------------------------
# 2. apply killed during the starts of two-container tasks


def test_apply_killed_during_starts_is_pending_then_finished(ws):
    desired, rounds, seed = 8, 5, seeded(4242)
    rng = random.Random(seed)
    # side is essential here and waits for app to be HEALTHY, so every start has a long PENDING phase.
    ws.write("app.yaml", *documents("app", desired, "0", side_essential=True))
    seen_pending = pending_whole = 0
    report = []
    for n in range(rounds):
        # A new revision each round: every apply has 8 starts to make (a rolling replacement within the default
        # 200 % / 100 %), on top of whatever the previous killed apply left.
        ws.write("app.yaml", *documents("app", desired, str(n), side_essential=True))
        delay = rng.uniform(0.8, 6.0)
        proc = ws.start("apply", "--yes", log=f"apply-{n}")
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.kill()  # SIGKILL, by its pid
        proc.wait(timeout=10)
        killed_at = time.time()
        containers = quiet(ws.client, "app")
        report.append(f"round {n}: killed after {delay:.2f}s (finished first: {finished}), "
                      f"{len(h.by_task(containers))} tasks, {len(created_ids(containers))} with a created container")  # fmt: skip
        if not created_ids(containers):
            continue
        seen_pending += 1
        # Containers only go created -> running -> exited, so one `created` both before and after a CLI call was
        # `created` throughout it: only those are judged (the engine may still carry out a start the killed apply
        # had sent, even after a second of quiet; such late starts are reported below).
        listed = {t["taskId"]: t for t in ws.tasks()}
        after = h.managed(ws.client, service="app")
        state = snapshot(ws.client, "app")
        for task_id in created_ids(containers) & created_ids(after):
            task = listed.get(task_id)
            assert task is not None, f"get tasks does not list task {task_id[:12]}: {sorted(listed)}\n{state}"
            # A task with a container left in `created` is never RUNNING. One that is whole and has nothing exited
            # is PENDING (the next pass starts the rest); one missing containers, or whose app exited (a stop cut
            # short), is STOPPED.
            assert task["lastStatus"] != "RUNNING", (
                f"task {task_id[:12]} has a created container: {state}\n{task}"
            )
            members = [c for c in after if c["Labels"][h.TASK] == task_id]
            whole = sorted(c["Labels"][h.CONTAINER] for c in members) == ["app", "side"]
            if whole and not any(c["State"] in ("exited", "dead") for c in members):
                pending_whole += 1
                assert task["lastStatus"] == "PENDING", f"task {task_id[:12]}: {task['lastStatus']}; {state}"
        before_plan = h.managed(ws.client, service="app")
        plan = ws.plan("--detailed-exitcode")
        still = created_ids(before_plan) & created_ids(h.managed(ws.client, service="app"))
        if still:
            assert "= no changes" not in plan.stdout, f"plan says nothing to do while {state}:\n{plan.stdout}"
            assert plan.exit_code == 2 or "waiting for" in plan.stdout, (
                f"plan neither acts nor waits on the pending tasks ({state}); exit {plan.exit_code}:\n{plan.stdout}"
            )
        report.append(f"  plan (exit {plan.exit_code}): " + " | ".join(plan.stdout.splitlines()[:4]))
        late = late_starts(ws.client, "app", killed_at)
        if late:
            report.append(f"  started by the engine after the kill: {late}")
    print("\n".join(report))
    assert seen_pending and pending_whole, (
        f"no kill caught a task with a created container (seed {seed}):\n" + "\n".join(report)
    )

    final = ws.apply(timeout=180)
    assert "Traceback" not in final.stderr, final.stderr
    last = str(rounds - 1)
    assert settled(ws.client, "app", desired, last), f"{snapshot(ws.client, 'app')}\n{final.stdout}"
    assert_whole(ws.client, "app", desired)
    ws.assert_converged()
    assert all(t["lastStatus"] == "RUNNING" for t in ws.tasks())


# --------------------------------------------------------------------------------------------------------------
# 3. The engine restarted under the daemon


def test_engine_restart_under_the_daemon_reconverges_and_a_kill_is_no_crash_loop(ws, daemons, engine):
    desired = 3
    # side: non-essential, started once app has started, ignores SIGTERM (the engine's shutdown waits it out).
    ws.write("app.yaml", *documents("app", desired, "1", condition="START"))
    d = daemons.start("manifests")
    before = dh.wait_for(
        lambda: settled(ws.client, "app", desired), timeout=90, what="3 healthy tasks", daemon=d
    )

    began = time.monotonic()
    engine.stop()
    stopped = time.monotonic()
    d.wait_logged("engine event stream lost")
    engine.start()  # returns once the engine answers ping
    answered = time.monotonic()
    d.wait_logged("engine answers again; resyncing", timeout=60)
    marks: dict[str, float] = {}

    def progress():
        running = h.running_task_ids(ws.client, "app")
        if len(running - before) >= 1:
            marks.setdefault("first replacement running", time.monotonic())
        if len(running - before) >= desired:
            marks.setdefault("all replacements running", time.monotonic())
        return settled(ws.client, "app", desired)

    after = dh.wait_for(progress, timeout=60, interval=0.05, what="3 healthy replacement tasks", daemon=d)
    marks["healthy and settled"] = time.monotonic()
    print(f"engine stop took {stopped - began:.1f}s; after ping answered: "
          + ", ".join(f"{k} +{v - answered:.2f}s" for k, v in marks.items()))  # fmt: skip
    assert not after & before, "the engine restart stopped every container; all tasks are new"
    assert_whole(ws.client, "app", desired)
    assert crash_loop_lines(d) == [], "tasks that were healthy when the engine went away are no crash loop"

    victim = sorted(after)[0]
    ws.client.api.kill(h.container_of(ws.client, victim, "app")["Id"])  # SIGKILL
    killed = time.monotonic()
    times: dict[str, float] = {}

    def replaced():
        running = h.running_task_ids(ws.client, "app")
        if victim not in running and len(running) == desired:
            times.setdefault("replacement running", time.monotonic())
        return victim not in running and settled(ws.client, "app", desired)

    final = dh.wait_for(replaced, timeout=60, interval=0.05, what="the killed task to be replaced", daemon=d)
    times["replacement healthy"] = time.monotonic()
    print("after the kill: " + ", ".join(f"{k} +{v - killed:.2f}s" for k, v in times.items()))
    assert (after - {victim}) <= final
    assert crash_loop_lines(d) == [], f"a healthy task killed once is not a crash loop:\n{d.tail()}"
    ws.assert_converged()
    assert_no_bugs_logged(daemons)


# --------------------------------------------------------------------------------------------------------------
# 4. Healthy tasks killed again and again are no crash loop


def test_tasks_killed_after_the_grace_period_are_replaced_every_time(ws, daemons):
    grace = 2
    # No health check: available once every essential container ran `grace` seconds. side is essential too.
    ws.write("app.yaml", *documents("app", 1, "1", condition="START", side_essential=True, health=False,
                                    healthCheckGracePeriodSeconds=grace))  # fmt: skip
    d = daemons.start("manifests")
    (task,) = dh.wait_for(lambda: settled(ws.client, "app", 1), timeout=60, what="the task", daemon=d)
    seen = {task}
    for n in range(3):

        def ran_past_grace(task=task) -> bool:
            starts = [
                h.parse_time(h.container_of(ws.client, task, name)["State"]["StartedAt"])
                for name in ("app", "side")
            ]
            return all(time.time() - s.timestamp() > grace + 1 for s in starts)

        dh.wait_for(ran_past_grace, timeout=30, what=f"task {task[:12]} to run past {grace}s", daemon=d)
        ws.client.api.kill(h.container_of(ws.client, task, "app")["Id"])  # SIGKILL
        killed = time.monotonic()
        marks: dict[str, float] = {}

        def replaced(task=task, marks=marks):
            if h.running_task_ids(ws.client, "app") - {task}:
                marks.setdefault("replacement running", time.monotonic())
            return (s := settled(ws.client, "app", 1)) and task not in s and s

        (new,) = dh.wait_for(
            replaced, timeout=60, interval=0.05, what=f"kill {n + 1}: a replacement task", daemon=d
        )
        marks["old task gone, replacement settled"] = (
            time.monotonic()
        )  # the old side waits out its stopTimeout
        print(f"kill {n + 1}: " + ", ".join(f"{k} +{v - killed:.2f}s" for k, v in marks.items()))
        assert new not in seen
        seen.add(new)
        assert crash_loop_lines(d) == [], (
            f"kill {n + 1} of a task that ran past its grace period counted as a crash"
        )
        task = new
    backoff = ws.describe_service("app").get("crashLoopBackoff")
    assert not backoff or not backoff.get("recentFailures"), backoff
    assert_whole(ws.client, "app", 1)
    assert_no_bugs_logged(daemons)


# --------------------------------------------------------------------------------------------------------------
# 5. A task left PENDING by a killed apply is work `plan --detailed-exitcode` reports


def test_plan_detailed_exitcode_reports_a_pending_task_as_a_change(ws):
    # app is healthy only once the test creates /tmp/ok (startPeriod: failures until then do not count, so it
    # stays `starting`); side waits for app HEALTHY. An apply killed meanwhile leaves every side `created`:
    # nothing but a later reconciler pass will start them, so the engine is not converged.
    gated = {**HEALTH, "command": ["CMD-SHELL", f"test -e /tmp/ok && wget -q -O /dev/null http://127.0.0.1:{PORT}/"],
             "startPeriod": 120}  # fmt: skip
    td, svc = documents("app", 2, "1", side_essential=True)
    td["spec"]["containerDefinitions"][0]["healthCheck"] = gated
    ws.write("app.yaml", td, svc)
    proc = ws.start("apply", "--yes", log="apply")

    def started_apps_waiting_sides():
        tasks = h.by_task(h.managed(ws.client, service="app"))
        states = [sorted((c["Labels"][h.CONTAINER], c["State"]) for c in cs) for cs in tasks.values()]
        return len(tasks) == 2 and all(s == [("app", "running"), ("side", "created")] for s in states)

    h.wait_for(started_apps_waiting_sides, timeout=60, what="both apps running and both sides created")
    proc.kill()  # SIGKILL, by its pid
    proc.wait(timeout=10)
    quiet(ws.client, "app")
    assert started_apps_waiting_sides(), snapshot(ws.client, "app")
    assert {t["lastStatus"] for t in ws.tasks()} == {"PENDING"}
    waiting = ws.plan("--detailed-exitcode")
    print(f"plan while the sides wait (exit {waiting.exit_code}):\n{waiting.stdout}")

    for task_id in h.by_task(h.managed(ws.client, service="app")):
        app_id = h.container_of(ws.client, task_id, "app")["Id"]
        ws.client.api.exec_start(ws.client.api.exec_create(app_id, ["touch", "/tmp/ok"])["Id"])
    h.wait_for(lambda: all("(healthy)" in c["Status"] for c in h.managed(ws.client, container="app")),
               timeout=30, what="both apps to turn healthy")  # fmt: skip
    ready = ws.plan("--detailed-exitcode")
    print(f"plan once the apps are healthy (exit {ready.exit_code}):\n{ready.stdout}")
    assert ready.exit_code == 2 and ready.stdout.count("> start side of task") == 2, ready.stdout
    ws.apply()
    assert settled(ws.client, "app", 2, "1"), snapshot(ws.client, "app")
    assert_whole(ws.client, "app", 2)
    ws.assert_converged()

    assert "= no changes" not in waiting.stdout, waiting.stdout
    assert waiting.exit_code == 2, (
        f"`plan --detailed-exitcode` exited {waiting.exit_code} (no changes) while both tasks were PENDING with "
        f"their side containers `created`, which only a later apply or daemon pass starts:\n{waiting.stdout}"
    )
