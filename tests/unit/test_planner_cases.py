"""The planner's data-driven cases: every tests/planner_cases/*.yaml, planned and then carried out.

For each case (format in tests/planner_cases/README.md):

* `test_plan`: the case's world is loaded into fake engines, observed and planned once (with the case's
  `now`, work in flight and options); the compact plan must match the case's `expect` (reasons are
  substrings), else the failure shows a unified diff and the rendered plan. A case marked `xfail` holds
  the behaviour believed correct: it is reported as xfail while the planner differs, and fails once the
  planner does what it expects (remove the mark then).
* `test_settles`: the idempotence check. The work in flight finishes and health checks that were
  starting pass (`World.settle`); `World.passes` then runs reconcile passes as `fakes.drive` does (observe,
  plan, launch the first step, wait; and, as the daemon, the one-off tasks' actions) until everything is
  settled, an hour after the case's `now`; planning again must find nothing to do.

`UPDATE_PLANNER_CASES=1` rewrites the `expect` of cases that do not match (never of an xfail case):
review every rewritten expectation against ECS semantics before committing it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import plancases  # noqa: E402

PATHS = plancases.discover()
UPDATE = os.environ.get(plancases.UPDATE_ENV, "").strip() not in ("", "0")


def test_the_cases_are_there_and_described():
    assert len(PATHS) >= 30
    for path in PATHS:
        case = plancases.load(path)
        assert case.description, f"{path.name}: say what the case shows in `description`"
        assert case.expect is not None or UPDATE, f"{path.name}: no expectation ({plancases.UPDATE_ENV}=1 writes one)"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_plan(path: Path, tmp_path: Path):
    case = plancases.load(path)
    world = plancases.World(case, tmp_path)
    plan = world.plan()
    actual = plancases.summarize(plan)
    diff = plancases.mismatch(actual, case.expect or {})
    if case.xfail:
        if diff is None:
            pytest.fail(f"{path.name} is marked xfail ({case.xfail}) but the planner now does what it expects: "
                        "remove the mark", pytrace=False)
        pytest.xfail(f"{case.xfail}\n{diff}")
    if diff is None:
        return
    if UPDATE:
        plancases.rewrite_expectation(case, actual)
        return
    pytest.fail(f"{path.name}: the plan differs from the expectation (- expected, + actual)\n{diff}\n\n"
                f"the plan:\n{plan.render()}", pytrace=False)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_settles(path: Path, tmp_path: Path):
    case = plancases.load(path)
    world = plancases.World(case, tmp_path)
    world.settle()
    later = case.now + plancases.SETTLE_AFTER
    world.now = later
    plans = world.passes(later)
    again = world.plan_with(later)
    assert not again.changed and all(sp.settled for sp in again.services), (
        f"{path.name}: after {len(plans)} passes the plan still has something to do:\n{again.render()}")
    if "settled" in case.data:
        assert world.running_per_instance() == case.data["settled"], world.running_per_instance()


PER_TASK = {"io.reconciler.task-id", "io.reconciler.created-at", "io.reconciler.started-by"}


@pytest.mark.parametrize("name", ["depends-on-healthy-advances-when-app-is-healthy", "awsvpc-namespace-holder-stopped"])
def test_loaded_tasks_carry_the_labels_a_start_gives(name: str, tmp_path: Path):
    """The loader's containers are what `apply` would have made: same labels but for the per-task ones."""
    from reconciler.actions.runner import Runner
    from reconciler.model import plan as P

    world = plancases.World(plancases.load(plancases.CASES / f"{name}.yaml"), tmp_path)
    engine = next(iter(world.engines.values()))
    loaded = {c["Config"]["Labels"]["io.reconciler.container"]: c["Config"]["Labels"] for c in engine.containers.values()}
    svc = world.desired.services["app"]
    td = world.desired.task_definitions[svc.task_definition]
    runner = Runner(world.connections(), environ={})
    try:
        (task_id,) = runner.launch(world.desired, P.Step(starts=(P.StartTask("c1", "app", "i1", td, "test", group=svc.group),)))
        runner.drain(30)
        assert all(r.ok for r in runner.results), [r.line() for r in runner.results]
    finally:
        runner.shutdown()
    started = {c["Config"]["Labels"]["io.reconciler.container"]: c["Config"]["Labels"]
               for c in engine.by_label("io.reconciler.task-id", task_id)}
    assert set(loaded) == set(started)
    for container, labels in started.items():
        strip = lambda d: {k: v for k, v in d.items() if k not in PER_TASK}  # noqa: E731
        assert strip(loaded[container]) == strip(labels), container
