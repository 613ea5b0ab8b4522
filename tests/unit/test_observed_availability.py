"""Start and finish times and health-probe history from inspect JSON, and whether a task ever became available.

The JSON below has the shape `docker inspect` gives (Engine API 1.41+): RFC 3339 times with nanoseconds,
the zero time for "never", and the last five probes in State.Health.Log, kept after the exit (when Docker
turns the status "unhealthy").
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402

from reconciler import labels as L  # noqa: E402
from reconciler import observe  # noqa: E402
from reconciler.engine import api  # noqa: E402
from reconciler.model import observed as obs  # noqa: E402
from reconciler.model import spec  # noqa: E402

T0 = datetime(2024, 5, 2, 9, 14, 3, tzinfo=UTC).timestamp()  # 2024-05-02T09:14:03Z
NEVER = "0001-01-01T00:00:00Z"


def probe(start: str, code: int) -> dict:
    return {"Start": start, "End": start.replace("Z", "1Z"), "ExitCode": code, "Output": "" if code == 0 else "curl: (7) refused\n"}


def inspect(name: str, status: str, started: str = NEVER, finished: str = NEVER, code: int = 0, health: dict | None = None,
            essential: bool = True, task: str = "t1", health_check: bool | None = None) -> dict:
    """A container's inspect JSON, as Docker returns it (only the keys the reconciler reads, plus a few)."""
    container_spec = {"name": name, "essential": essential}
    if health_check if health_check is not None else health is not None:
        container_spec["healthCheck"] = {"command": ["CMD-SHELL", "true"]}
    state = {"Status": status, "Running": status == "running", "Paused": False, "Restarting": False, "OOMKilled": False,
             "Dead": False, "Pid": 0 if status != "running" else 4242, "ExitCode": code, "Error": "",
             "StartedAt": started, "FinishedAt": finished}
    if health is not None:
        state["Health"] = health
    return {
        "Id": f"{name}-{task}".ljust(64, "0"),
        "Created": "2024-05-02T09:14:02.901233117Z",
        "Name": f"/c1-app-{task}-{name}",
        "State": state,
        "Config": {"Image": "localhost/busybox:static", "Labels": {
            L.MANAGED: "true", L.CLUSTER: "c1", L.TASK: task, L.CONTAINER: name, L.SERVICE: "app",
            L.CONTAINER_SPEC: json.dumps(container_spec)}},
        "NetworkSettings": {"Ports": {}},
    }


# -- times ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2024-05-02T09:14:03Z", T0),
    ("2024-05-02T09:14:03.551520837Z", T0 + 0.551520837),
    ("2024-05-02T09:14:03.5Z", T0 + 0.5),
    ("2024-05-02T11:14:03.25+02:00", T0 + 0.25),
    ("2024-05-02T08:44:03-00:30", T0),
    (NEVER, None),
    ("", None),
    (None, None),
    ("yesterday", None),
    ("2024-13-02T09:14:03Z", None),
])
def test_engine_times_parse_to_epoch_seconds_and_the_zero_time_means_never(text, expected):
    got = obs.parse_time(text)
    assert got == pytest.approx(expected, abs=1e-6) if expected is not None else got is None


# -- one container -------------------------------------------------------------------------------------

HEALTH_LOG_PASSED = {"Status": "unhealthy", "FailingStreak": 0, "Log": [
    probe("2024-05-02T09:14:34.1Z", 0), probe("2024-05-02T09:14:35.1Z", 0), probe("2024-05-02T09:14:36.1Z", 0)]}
HEALTH_LOG_FAILED = {"Status": "unhealthy", "FailingStreak": 3, "Log": [
    probe("2024-05-02T09:14:04.1Z", 1), probe("2024-05-02T09:14:05.1Z", 1), probe("2024-05-02T09:14:06.1Z", 1)]}

CONTAINERS = [  # (what, inspect JSON, started_at, finished_at, ever_healthy, ran_for at T0 + 100)
    ("killed after passing probes", inspect("app", "exited", "2024-05-02T09:14:03Z", "2024-05-02T09:14:40.5Z", 137, HEALTH_LOG_PASSED),
     T0, T0 + 37.5, True, 37.5),
    ("never passed a probe", inspect("app", "exited", "2024-05-02T09:14:03Z", "2024-05-02T09:14:07Z", 1, HEALTH_LOG_FAILED),
     T0, T0 + 4, False, 4.0),
    ("healthy now, log already rotated", inspect("app", "running", "2024-05-02T09:14:03Z", NEVER, 0,
                                                 {"Status": "healthy", "FailingStreak": 0, "Log": []}), T0, None, True, 100.0),
    ("still starting", inspect("app", "running", "2024-05-02T09:14:03Z", NEVER, 0, {"Status": "starting", "FailingStreak": 0, "Log": []}),
     T0, None, False, 100.0),
    ("no health check, exited at once", inspect("app", "exited", "2024-05-02T09:14:03.2Z", "2024-05-02T09:14:03.7Z", 1),
     T0 + 0.2, T0 + 0.7, None, 0.5),
    ("restarted: FinishedAt is the earlier run's", inspect("app", "running", "2024-05-02T09:14:03Z", "2024-05-02T09:13:00Z"),
     T0, T0 - 63, None, 100.0),
    ("created, never started", inspect("app", "created"), None, None, None, None),
]


@pytest.mark.parametrize("what, raw, started, finished, ever_healthy, ran", CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_inspect_gives_start_finish_and_whether_a_probe_ever_passed(what, raw, started, finished, ever_healthy, ran):
    c = obs.container_from_inspect(raw)
    assert c.started_at == pytest.approx(started) if started is not None else c.started_at is None
    assert c.finished_at == pytest.approx(finished) if finished is not None else c.finished_at is None
    assert c.ever_healthy is ever_healthy
    assert c.ran_for(T0 + 100) == pytest.approx(ran) if ran is not None else c.ran_for(T0 + 100) is None


@pytest.mark.parametrize("status, ever_healthy", [
    ("Up 3 minutes (healthy)", True), ("Up 3 seconds (health: starting)", False), ("Up 1 hour (unhealthy)", False),
    ("Up 3 minutes", None),
])
def test_a_list_entry_knows_only_the_current_health(status, ever_healthy):
    raw = {"Id": "x", "Names": ["/x"], "State": "running", "Status": status, "Labels": {}, "Created": 1}
    c = obs.container_from_list(raw)
    assert c.ever_healthy is ever_healthy and c.started_at is None and c.finished_at is None


# -- a task --------------------------------------------------------------------------------------------

def task(*containers: dict, names: tuple[str, ...] | None = None) -> obs.Task:
    cs = [obs.container_from_inspect(c) for c in containers]
    t = obs.group_tasks("c1", "i1", cs)[0]
    expected = names if names is not None else tuple(sorted(c.container for c in cs))
    return obs.Task(**{**t.__dict__, "task_spec": {"containerNames": list(expected)}})


AT = "2024-05-02T09:14:03Z"
TASKS = [  # (what, task, min_run, ever_available)
    ("healthy, then SIGKILL", task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 137, HEALTH_LOG_PASSED)), 10, True),
    ("health check never passed", task(inspect("app", "exited", AT, "2024-05-02T09:15:40Z", 137, HEALTH_LOG_FAILED)), 10, False),
    ("no check, ran 37 s", task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 137)), 10, True),
    ("no check, died after 2 s", task(inspect("app", "exited", AT, "2024-05-02T09:14:05Z", 1)), 10, False),
    ("no check, ran 37 s of a 60 s grace", task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 1)), 60, False),
    ("non-essential sidecar crashed early: it does not count",
     task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 137, HEALTH_LOG_PASSED),
          inspect("log", "exited", AT, "2024-05-02T09:14:04Z", 1, essential=False)), 10, True),
    ("essential sidecar without check still running: counted to when the task stopped",
     task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 137, HEALTH_LOG_PASSED),
          inspect("proxy", "running", AT)), 10, True),
    ("essential sidecar started just before the task stopped",
     task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 137, HEALTH_LOG_PASSED),
          inspect("proxy", "running", "2024-05-02T09:14:38Z")), 10, False),
    ("second container never started (dependency never healthy)",
     task(inspect("db", "exited", AT, "2024-05-02T09:14:09Z", 1, HEALTH_LOG_FAILED), inspect("app", "created")), 10, False),
    ("a container it was created with is missing",
     task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 137, HEALTH_LOG_PASSED), names=("app", "db")), 10, False),
    ("health check declared, engine shows none (not inspected)",
     task(inspect("app", "exited", AT, "2024-05-02T09:14:40Z", 137, None, health_check=True)), 10, False),
]


@pytest.mark.parametrize("what, t, min_run, available", TASKS, ids=[c[0] for c in TASKS])
def test_a_task_ever_became_available_when_every_essential_container_did(what, t, min_run, available):
    assert t.ever_available(min_run) is available


def test_a_running_task_counts_its_run_up_to_now():
    t = task(inspect("app", "running", AT))
    assert not t.ever_available(10)  # neither stopped nor a `now`: not known
    assert not t.ever_available(10, now=T0 + 5)
    assert t.ever_available(10, now=T0 + 11)


# -- the fake engine and the observation -----------------------------------------------------------------

def request(name: str, task_id: str, healthcheck: bool) -> api.ContainerCreate:
    return api.ContainerCreate(
        name=f"c1-app-{task_id}-{name}", image=fakes.IMAGE, healthcheck={"test": ["CMD", "true"]} if healthcheck else None,
        labels={L.MANAGED: "true", L.CLUSTER: "c1", L.TASK: task_id, L.CONTAINER: name, L.SERVICE: "app",
                L.CONTAINER_SPEC: json.dumps({"name": name, "essential": True}),
                L.TASK_SPEC: json.dumps({"containerNames": []})})


def test_the_fake_engine_keeps_start_finish_and_probe_log_of_an_exited_container_as_docker_does():
    engine = fakes.FakeEngine(images=(fakes.IMAGE,))
    now = [T0]
    engine.clock = lambda: now[0]
    cid = engine.create_container(request("app", "t1", healthcheck=True))
    assert engine.inspect_container(cid)["State"]["StartedAt"] == NEVER
    engine.start_container(cid)
    now[0] = T0 + 37
    engine.exit(cid, 137)
    state = engine.inspect_container(cid)["State"]
    assert state["StartedAt"] == "2024-05-02T09:14:03.000000000Z" and state["FinishedAt"] == "2024-05-02T09:14:40.000000000Z"
    assert state["Health"]["Status"] == "unhealthy" and [p["ExitCode"] for p in state["Health"]["Log"]] == [0]
    c = obs.container_from_inspect(engine.inspect_container(cid))
    assert (c.started_at, c.finished_at, c.ever_healthy, c.exit_code) == (T0, T0 + 37, True, 137)


def test_the_fake_engine_keeps_the_last_five_probes():
    engine = fakes.FakeEngine(images=(fakes.IMAGE,))
    engine.health_on_start = "starting"
    cid = engine.create_container(request("app", "t1", healthcheck=True))
    engine.start_container(cid)
    for _ in range(6):
        engine.set_health(cid, "unhealthy")
    health = engine.inspect_container(cid)["State"]["Health"]
    assert len(health["Log"]) == 5 and health["FailingStreak"] == 6
    engine.set_health(cid, "healthy")
    engine.exit(cid, 1)
    assert obs.container_from_inspect(engine.inspect_container(cid)).ever_healthy is True


def test_observe_inspects_every_container_of_a_stopped_task_and_only_those():
    engine = fakes.FakeEngine(images=(fakes.IMAGE,))
    ids = {}
    for task_id, names in (("dead", ("app", "proxy")), ("live", ("app",))):
        for n in names:
            ids[task_id, n] = engine.create_container(request(n, task_id, healthcheck=False))
            engine.start_container(ids[task_id, n])
    engine.exit(ids["dead", "app"], 1)
    inspected = []
    real = engine.inspect_container
    engine.inspect_container = lambda cid: inspected.append(cid) or real(cid)
    instance = spec.Instance(name="i1", endpoint="fake://e1")
    _, tasks = observe.observe_instance("c1", instance, observe.Engines(lambda i: engine))
    assert sorted(inspected) == sorted([ids["dead", "app"], ids["dead", "proxy"]])
    dead = next(t for t in tasks if t.id == "dead")
    assert all(c.started_at is not None for c in dead.containers)
    assert next(t for t in tasks if t.id == "live").containers[0].started_at is None  # from the list alone
