"""Crash-loop backoff as pure values on a fake clock: tests as data.

Each scenario is a list of steps at fake times, played the way the controller uses the module:
`die` is a task of the service seen dead at that time and about to be replaced (young: it died before it
ever became available), `start_failed` a start action that failed, `start` a plan that starts tasks
after failed starts (`admit(..., retry=True)`). Each step says the wait it expects.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402

from reconciler import labels as L  # noqa: E402
from reconciler import observe, state  # noqa: E402
from reconciler.daemon import crashloop as CL  # noqa: E402
from reconciler.engine import api  # noqa: E402
from reconciler.model import observed as obs  # noqa: E402
from reconciler.model import spec  # noqa: E402

T = 1_700_000_000.0


def play(steps):
    """Plays (kind, at, expected wait) steps; returns the final state and the waits seen."""
    s = CL.Backoff()
    waits = []
    for kind, at, _ in steps:
        if kind == "die_young":
            w, s = CL.admit(s, 1, T + at)
        elif kind == "die_available":
            w, s = CL.admit(s, 0, T + at)
        elif kind == "start_failed":
            s, w = CL.record_failures(s, 1, T + at), 0.0
        elif kind == "start":
            w, s = CL.admit(s, 0, T + at, retry=True)
        else:
            raise AssertionError(kind)
        waits.append(w)
    return s, waits


def crash_loop(rounds: int, lifetime: float = 0.5):
    """A task that dies `lifetime` s after each start, replaced as soon as the backoff lets it: the steps
    of its deaths and of the re-asks when the wait is over, with the waits expected (10 s doubling, capped)."""
    steps, t, delay = [], 0.0, 0.0
    for i in range(rounds):
        if delay:
            steps.append(("die_young", t, delay - lifetime))  # seen dead: wait for the rest of the delay
            t += delay - lifetime
        steps.append(("die_young", t, 0.0))  # the wait is over: replaced now, the round recorded
        t += lifetime
        delay = min(10.0 * 2**i, 300.0)
    return steps


SCENARIOS = {
    "healthy tasks killed 37 s apart are replaced at once, every time": (
        [("die_available", 37.0 * i, 0.0) for i in range(12)], 0),
    "quick deaths wait 10, 20, 40 ... s, capped at 300": (crash_loop(9), 9),
    "the first quick death is replaced at once, the second waits 10 s": (
        [("die_young", 0, 0.0), ("die_young", 1, 9.0), ("die_young", 10, 0.0), ("die_young", 11, 19.0)], 2),
    "600 s without a failure forgets them (the next one starts from 10 s again)": (
        crash_loop(5) + [("die_young", 150 + 601, 0.0), ("die_young", 150 + 602, 9.0)], 1),
    "less than 600 s without a failure keeps them": (
        crash_loop(5) + [("die_young", 150 + 599, 0.0), ("die_young", 150 + 600, 299.0)], 6),
    "a healthy task killed while the service backs off is replaced at once": (
        [("die_young", 0, 0.0), ("die_young", 1, 9.0), ("die_available", 2, 0.0), ("die_young", 3, 7.0)], 1),
    "a failed start counts: its retry waits 10, then 20 s": (
        [("start_failed", 0, 0.0), ("start", 1, 9.0), ("start", 10, 0.0), ("start_failed", 12, 0.0), ("start", 13, 19.0),
         ("start", 32, 0.0)], 2),
    "a failed start and a quick death add up": (
        [("start_failed", 0, 0.0), ("start", 10, 0.0), ("die_young", 11, 9.0), ("die_young", 20, 0.0), ("die_young", 21, 19.0)], 2),
    "starts that retry nothing go ahead at once": ([("start", 0, 0.0), ("start", 1, 0.0)], 0),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_backoff_scenarios(name):
    steps, failures = SCENARIOS[name]
    final, waits = play(steps)
    assert waits == pytest.approx([w for _, _, w in steps]), list(zip(steps, waits, strict=True))
    assert len(final.failures) == failures


@pytest.mark.parametrize("failures, delay", [(0, 0), (1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (7, 300), (500, 300)])
def test_delay_doubles_from_10_s_to_5_min(failures, delay):
    assert CL.delay(CL.Backoff(failures=(T,) * failures, last_attempt=T)) == delay


def test_forget_old_and_wait_read_no_clock_of_their_own():
    s = CL.record_failures(CL.record_failures(CL.Backoff(), 1, T), 1, T + 10)
    assert CL.next_attempt(s) == T + 30 and CL.wait(s, T + 25) == 5 and CL.wait(s, T + 31) == 0
    assert CL.forget_old(s, T + 10 + 600) == s
    assert CL.forget_old(s, T + 10 + 601).failures == () and CL.wait(s, T + 10 + 601) == 0
    assert CL.record_failures(s, 0, T + 50) == s


def test_a_wait_is_announced_once_per_next_attempt():
    s = CL.Backoff()
    assert CL.should_announce(s) == (False, s)
    s = CL.record_failures(s, 1, T)
    said, s = CL.should_announce(s)
    assert said and s.announced == T + 10
    assert CL.should_announce(s)[0] is False  # asked again by the re-checks of the same event
    _, s = CL.admit(s, 1, T + 10)
    assert CL.should_announce(s)[0] is True  # a new next attempt


def test_the_state_file_keeps_its_format_and_reads_back_what_matters(tmp_path):
    s = CL.record_failures(CL.record_failures(CL.Backoff(), 1, T), 1, T + 10)
    entry = CL.to_json(s)
    assert entry == {"recentFailures": 2, "nextReplacementAt": T + 30, "backoffSeconds": 20.0}
    store = state.StateDir(str(tmp_path))
    store.save_backoff("c1", CL.states_to_json({"web": s, "idle": CL.Backoff()}))
    assert json.loads((tmp_path / "c1.backoff.json").read_text()) == {"web": entry}
    back = CL.states_from_json(store.backoff("c1"))["web"]
    assert CL.to_json(back) == entry
    for now in (T + 15, T + 30, T + 10 + 601):
        assert CL.wait(back, now) == CL.wait(s, now)
    assert CL.delay(CL.record_failures(back, 1, T + 40)) == CL.delay(CL.record_failures(s, 1, T + 40)) == 40


@pytest.mark.parametrize("entry", [None, "x", {}, {"recentFailures": "many"}, {"recentFailures": 0, "nextReplacementAt": T}])
def test_a_malformed_entry_is_no_backoff(entry):
    assert CL.from_json(entry) == CL.Backoff()


@pytest.mark.parametrize("grace, min_run", [(None, 10), (0, 10), (30, 30)])
def test_the_minimum_run_is_the_grace_period_or_10_s(grace, min_run):
    assert CL.min_run_seconds(grace) == min_run


# -- which deaths count, from tasks observed on a fake engine -----------------------------------------------

def observed_task(engine, task_id: str) -> obs.Task:
    _, tasks = observe.observe_instance("c1", spec.Instance("i1", "fake://e1"), observe.Engines(lambda i: engine))
    return next(t for t in tasks if t.id == task_id)


def start_task(engine, task_id: str, names=("app",), healthcheck=False, start=True) -> dict[str, str]:
    ids = {}
    for n in names:
        ids[n] = engine.create_container(api.ContainerCreate(
            name=f"c1-app-{task_id}-{n}", image=fakes.IMAGE, healthcheck={"test": ["CMD", "true"]} if healthcheck else None,
            labels={L.MANAGED: "true", L.CLUSTER: "c1", L.TASK: task_id, L.CONTAINER: n, L.SERVICE: "app",
                    L.CONTAINER_SPEC: json.dumps({"name": n}), L.TASK_SPEC: json.dumps({"containerNames": list(names)})}))
        if start:
            engine.start_container(ids[n])
    return ids


def run(engine, clock, seconds):
    clock[0] += seconds


def case_killed_after_healthy(engine, clock):
    ids = start_task(engine, "t", healthcheck=True)
    run(engine, clock, 2)
    engine.exit(ids["app"], 137)


def case_health_never_passed(engine, clock):
    engine.health_on_start = "starting"
    ids = start_task(engine, "t", healthcheck=True)
    run(engine, clock, 40)
    engine.set_health(ids["app"], "unhealthy")
    engine.exit(ids["app"], 137)


def case_quick_exit(engine, clock):
    ids = start_task(engine, "t")
    run(engine, clock, 1)
    engine.exit(ids["app"], 1)


def case_ran_past_grace(engine, clock):
    ids = start_task(engine, "t")
    run(engine, clock, 37)
    engine.exit(ids["app"], 137, oom=True)


def case_engine_restart(engine, clock):
    ids = start_task(engine, "t", names=("app", "proxy"), healthcheck=True)
    run(engine, clock, 120)
    for cid in ids.values():
        engine.exit(cid, 143)


def case_dependency_never_started(engine, clock):
    ids = start_task(engine, "t", names=("app", "db"), start=False)
    engine.start_container(ids["db"])
    run(engine, clock, 3)
    engine.exit(ids["db"], 1)


def case_running(engine, clock):
    start_task(engine, "t")
    run(engine, clock, 1)


DEATHS = [  # (case, counts as a crash-loop failure)
    (case_killed_after_healthy, False),
    (case_health_never_passed, True),
    (case_quick_exit, True),
    (case_ran_past_grace, False),
    (case_engine_restart, False),
    (case_dependency_never_started, True),
    (case_running, False),
]


@pytest.mark.parametrize("case, counts", DEATHS, ids=[c.__name__[5:] for c, _ in DEATHS])
def test_only_a_task_that_never_became_available_counts(case, counts):
    engine = fakes.FakeEngine(images=(fakes.IMAGE,))
    clock = [T]
    engine.clock = lambda: clock[0]
    case(engine, clock)
    task = observed_task(engine, "t")
    assert CL.is_crash_failure(task, CL.min_run_seconds(None)) is counts
    assert CL.crash_failures([task]) == ([task] if counts else [])
