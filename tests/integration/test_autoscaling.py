"""Per-service auto scaling by the `watch` daemon, against a real private Docker engine.

Owns end-to-end evidence for the issue "Per-service scaling rules": target tracking on CPU scales a service out
to its maxCapacity under load and back in to minCapacity once the load stops (after the short cooldown and
stabilization window the manifest sets), with `describe service` and `plan` reporting the scaled count as set
by autoscaling and not as drift; target tracking on memory scales out; a scheduled action raising minCapacity
raises the count; a daemon restarted after a scale-out keeps the count (the state file is reused, nothing
flaps back to the manifest's desiredCount); a customized metric served over HTTP on 127.0.0.1 scales out and,
when it drops, back in.

Every daemon is `python -m reconciler watch manifests --listen off --scaling-period 1s --resync 30s` in a
subprocess whose log goes to a file (tests/integration/scaling_helpers.py, daemon_helpers.py); it is killed by
its recorded pid at teardown. Must not: assert on speed (deadlines only bound waits), or reach anything but the
test's engine and 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import time

import daemon_helpers as dh
import helpers as h
import scaling_helpers as sh

CPU = "ECSServiceAverageCPUUtilization"
MEMORY = "ECSServiceAverageMemoryUtilization"
WAIT = 60.0  # upper bound of any single wait; not a speed assertion
AUTOSCALED = "set by autoscaling: "




def scaled_to(ws, daemon: dh.Daemon, service: str, count: int, timeout: float = WAIT) -> set[str]:
    """Waits until exactly `count` tasks of `service` run (and nothing else of it is left on the engine)."""
    try:
        return dh.wait_running(ws.client, service, count, daemon, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- scaling decisions of {service}:\n{sh.decisions_text(ws.state, service)}") from None


def assert_scaled_view(ws, service: str, count: int, direction: str) -> dict:
    """`describe service` says the count was set by autoscaling and lists a decision in `direction`; `plan`
    shows the count as set by autoscaling and plans nothing (the scaled count is not drift)."""
    view = ws.describe_service(service)
    assert view["desiredCount"] == count, view
    assert view["desiredCountSource"].startswith(AUTOSCALED), view["desiredCountSource"]
    decisions = view["autoScaling"]["lastDecisions"]
    assert any(d["direction"] == direction and d["desired"] == count for d in decisions), decisions
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 0, h.describe_run(["plan", "--detailed-exitcode"], plan)
    assert f"desired {count}, {AUTOSCALED}" in plan.stdout, plan.stdout
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in plan.stdout, plan.stdout
    return view


# --------------------------------------------------------------------------------------------------------------
# Predefined metrics


def test_cpu_load_scales_out_to_max_and_back_in_when_idle(ws, daemons):
    ws.write(
        "cpu.yaml",
        *sh.autoscaled(
            "cpu",
            h.container("cpu", sh.BURN, cpu=128, memory=32),
            1,
            {
                "minCapacity": 1,
                "maxCapacity": 3,
                "evaluationPeriod": "3s",
                "scaleInStabilization": "3s",
                "targetTracking": [sh.target(CPU, 50, scale_out=2, scale_in=3)],
            },
        ),
    )
    d = sh.watch(daemons)
    scaled_to(ws, d, "cpu", 3)
    view = assert_scaled_view(ws, "cpu", 3, "out")
    out = next(x for x in view["autoScaling"]["lastDecisions"] if x["direction"] == "out")
    assert "CPU" in out["reason"], out

    for c in sh.app_containers(ws.client, "cpu"):
        code, output = sh.exec_in(ws.client, c["Id"], "touch", "/tmp/idle")
        assert code == 0, output
    scaled_to(ws, d, "cpu", 1)
    assert_scaled_view(ws, "cpu", 1, "in")
    assert d.logged("service cpu: "), d.tail()


def test_memory_held_scales_out(ws, daemons):
    ws.write(
        "mem.yaml",
        *sh.autoscaled(
            "mem",
            h.container("mem", sh.hold_memory(), memoryReservation=32, memory=64),
            1,
            {
                "minCapacity": 1,
                "maxCapacity": 3,
                "evaluationPeriod": "3s",
                "scaleInStabilization": "3s",
                "targetTracking": [sh.target(MEMORY, 30)],
            },
        ),
    )
    d = sh.watch(daemons)
    scaled_to(ws, d, "mem", 3)
    view = assert_scaled_view(ws, "mem", 3, "out")
    out = [x for x in view["autoScaling"]["lastDecisions"] if x["direction"] == "out"]
    assert out and all("memory" in x["reason"] for x in out), out


# --------------------------------------------------------------------------------------------------------------
# Scheduled actions


def test_scheduled_action_raises_min_capacity(ws, daemons):
    block = {"minCapacity": 1, "maxCapacity": 3, "evaluationPeriod": "3s", "scaleInStabilization": "3s"}
    path = ws.write("sched.yaml", *sh.autoscaled("sched", h.container("sched"), 1, block))
    d = sh.watch(daemons)
    scaled_to(ws, d, "sched", 1)
    # A scheduled action fires when its schedule fired since the previous evaluation, so it is added once the
    # daemon has evaluated (a fire before the first evaluation would be in the past and never fire).
    dh.wait_for(
        lambda: ((sh.scaling_entry(ws.state, "sched") or {}).get("state") or {}).get("lastEvaluation"),
        WAIT, what="the daemon's first scaling evaluation of sched", daemon=d,
    )  # fmt: skip
    fire = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=5)
    action = {"name": "raise", "schedule": f"at({fire:%Y-%m-%dT%H:%M:%S})", "timezone": "UTC", "minCapacity": 2}
    dh.write_atomically(path, dh.dump(*sh.autoscaled("sched", h.container("sched"), 1, {**block, "scheduled": [action]})))

    scaled_to(ws, d, "sched", 2)
    view = assert_scaled_view(ws, "sched", 2, "out")
    raised = next(x for x in view["autoScaling"]["lastDecisions"] if x["direction"] == "out")
    assert "scheduled action 'raise' raised minCapacity to 2" in raised["reason"], raised
    assert raised["time"] >= fire.timestamp(), f"scaled at {raised['time']}, before the action's time {fire}"


# --------------------------------------------------------------------------------------------------------------
# Customized metrics and restarts


def queue_service(url: str, scale_in: int = 3) -> tuple[dict, ...]:
    return sh.autoscaled(
        "worker",
        h.container("worker"),
        1,
        {
            "minCapacity": 1,
            "maxCapacity": 3,
            "evaluationPeriod": "3s",
            "scaleInStabilization": "3s",
            "targetTracking": [sh.target({"url": url, "metricName": "queue_depth"}, 10, scale_in=scale_in)],
        },
    )


def test_customized_metric_scales_out_and_back_in(ws, daemons):
    with sh.MetricServer("queue_depth", 40) as metric:
        ws.write("worker.yaml", *queue_service(metric.url))
        d = sh.watch(daemons)
        scaled_to(ws, d, "worker", 3)
        view = assert_scaled_view(ws, "worker", 3, "out")
        assert any("queue_depth" in x["reason"] for x in view["autoScaling"]["lastDecisions"]), view["autoScaling"]

        metric.value = 0
        scaled_to(ws, d, "worker", 1)
        assert_scaled_view(ws, "worker", 1, "in")
        assert metric.requests > 0


def test_restart_keeps_the_scaled_count_and_reuses_the_state_file(ws, daemons):
    with sh.MetricServer("queue_depth", 30) as metric:
        ws.write("worker.yaml", *queue_service(metric.url))
        first = sh.watch(daemons)
        before = scaled_to(ws, first, "worker", 3)
        metric.value = 10  # on target at 3 tasks: no change; at the manifest's desiredCount 1 it would stay at 1
        entry = dh.wait_for(
            lambda: (e := sh.scaling_entry(ws.state, "worker")) and e["desiredCount"] == 3 and e,
            WAIT, what="the scaled count 3 in the state file", daemon=first,
        )  # fmt: skip
        scale_out = [x for x in entry["decisions"] if x["direction"] == "out"]
        assert scale_out, entry
        assert first.stop() == 0, first.tail()

        restarted_at = time.time()
        second = sh.watch(daemons)
        # A few evaluation rounds and a full reconcile pass of the new daemon.
        second.wait_logged("watching", timeout=WAIT)
        dh.wait_for(
            lambda: ((sh.scaling_entry(ws.state, "worker") or {}).get("state") or {}).get("lastEvaluation", 0)
            > restarted_at + 3,
            WAIT, what="evaluations of the restarted daemon", daemon=second,
        )  # fmt: skip
        assert scaled_to(ws, second, "worker", 3) == before, "tasks were replaced across the restart"
        assert not second.logged("stop task"), second.tail()
        after = sh.scaling_entry(ws.state, "worker")
        assert after is not None and after["desiredCount"] == 3, after
        kept = [x for x in after["decisions"] if x["direction"] == "out"]
        assert kept[: len(scale_out)] == scale_out, "the restarted daemon forgot the persisted decisions"
        assert_scaled_view(ws, "worker", 3, "out")
