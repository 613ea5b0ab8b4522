"""The planner against a fake engine: decisions, reasons, deployment waves and idempotence.

Each scenario builds manifests, lets reconcile passes carry the plan out on `FakeEngine` (the runner, as
`apply` and the daemon do), and checks that planning again yields nothing to do (the pyinfra idempotence
check).
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import FakeEngine, drive  # noqa: E402

from reconciler import labels, observe  # noqa: E402
from reconciler.actions.runner import Runner  # noqa: E402
from reconciler.manifests import build, validate  # noqa: E402
from reconciler.model import plan as P  # noqa: E402
from reconciler.planning import planner  # noqa: E402

IMAGE = "localhost/busybox:static"


def manifests(tmp_path: Path, desired: int = 3, env: str = "hello", extra: str = "", service_extra: str = "") -> Path:
    container_extra = textwrap.indent(extra, " " * 6)
    service_lines = textwrap.indent(service_extra, " " * 2)
    (tmp_path / "m.yaml").write_text(
        f"""\
apiVersion: reconciler/v1
kind: Cluster
metadata: {{name: c1}}
spec:
  instances:
    - {{name: i1, endpoint: "unix:///fake/1.sock", availabilityZone: a}}
    - {{name: i2, endpoint: "unix:///fake/2.sock", availabilityZone: b}}
---
apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {{name: app}}
spec:
  containerDefinitions:
    - name: app
      image: {IMAGE}
      memory: 64
      environment: [{{name: GREETING, value: {env}}}]
{container_extra}
---
apiVersion: reconciler/v1
kind: Service
metadata: {{name: app}}
spec:
  cluster: c1
  taskDefinition: app
  desiredCount: {desired}
{service_lines}
"""
    )
    return tmp_path


class World:
    """Fake engines behind the instances of the manifests, with plan/apply helpers."""

    def __init__(self):
        self.engines = {f"unix:///fake/{i}.sock": FakeEngine(f"unix:///fake/{i}.sock", images=(IMAGE,)) for i in (1, 2)}

    def connections(self) -> observe.Engines:
        return observe.Engines(lambda inst: self.engines[inst.endpoint])

    def desired(self, path: Path):
        result = validate.validate_paths([str(path)])
        assert result.ok, [d.format() for d in result.errors]
        return build.desired_state(result.documents, {})

    def plan(self, path: Path, now: float = 1e9, **options) -> tuple[P.Plan, object]:
        desired = self.desired(path)
        engines = self.connections()
        observed = observe.observe(desired, engines)
        return planner.plan(desired, observed, now, planner.Options(**options)), desired

    def apply(self, path: Path, **options) -> P.Plan:
        """Passes until settled; returns the first pass's plan (the one `apply` shows)."""
        return drive(self.desired(path), self.connections(), **options)[0]

    def tasks(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for endpoint, e in self.engines.items():
            for c in e.running():
                out.setdefault(c["Config"]["Labels"][labels.TASK], []).append(endpoint)
        return out


@pytest.fixture
def world() -> World:
    return World()


def test_creates_missing_tasks_spread_over_zones_then_nothing_to_do(world, tmp_path):
    path = manifests(tmp_path, desired=4)
    first = world.apply(path)
    assert (first.add, first.replace, first.remove) == (4, 0, 0)
    per_engine = [len(e.running()) for e in world.engines.values()]
    assert per_engine == [2, 2]
    again, _ = world.plan(path)
    assert not again.changed
    assert again.summary() == "Plan: 0 to add, 0 to replace, 0 to remove."


def test_scale_in_stops_surplus_with_reason(world, tmp_path):
    world.apply(manifests(tmp_path, desired=4))
    plan, _ = world.plan(manifests(tmp_path, desired=1))
    assert (plan.add, plan.replace, plan.remove) == (0, 0, 3)
    assert all("scale-in" in s.reason for s in plan.services[0].stops)
    world.apply(manifests(tmp_path, desired=1))
    assert len(world.tasks()) == 1


def test_spec_change_replaces_with_field_diff(world, tmp_path):
    world.apply(manifests(tmp_path, desired=2))
    plan, _ = world.plan(manifests(tmp_path, desired=2, env="bonjour"))
    svc = plan.services[0]
    assert (plan.add, plan.replace, plan.remove) == (0, 2, 0)
    assert "containerDefinitions[app].environment[GREETING]: 'hello' -> 'bonjour'" in svc.diff
    assert all("task definition app changed" in s.reason for s in svc.starts)
    world.apply(manifests(tmp_path, desired=2, env="bonjour"))
    after, _ = world.plan(manifests(tmp_path, desired=2, env="bonjour"))
    assert not after.changed


def test_reordered_and_defaulted_fields_are_no_change(world, tmp_path):
    world.apply(manifests(tmp_path, desired=1))
    same = manifests(tmp_path, desired=1, extra="essential: true\nportMappings: []\nmountPoints: []")
    plan, _ = world.plan(same)
    assert not plan.changed, plan.render()


def test_exited_essential_container_is_replaced_with_its_reason(world, tmp_path):
    path = manifests(tmp_path, desired=1)
    world.apply(path)
    engine = next(e for e in world.engines.values() if e.running())
    engine.exit(engine.running()[0]["Id"], 137, oom=True)
    plan, _ = world.plan(path)
    assert (plan.add, plan.replace, plan.remove) == (0, 1, 0)
    stop = plan.services[0].stops[0]
    assert stop.stop_code == "EssentialContainerExited"
    assert "OutOfMemoryError" in stop.reason and "64 MiB" in stop.reason


@pytest.mark.parametrize(
    "desired,max_pct,min_pct",
    [(4, 200, 100), (4, 150, 50), (4, 100, 50), (4, 100, 100), (3, 133, 66), (1, 100, 0), (5, 120, 80)],
)
def test_rolling_waves_respect_deployment_bounds(world, tmp_path, desired, max_pct, min_pct):
    deploy = f"deploymentConfiguration: {{maximumPercent: {max_pct}, minimumHealthyPercent: {min_pct}}}"
    world.apply(manifests(tmp_path, desired=desired, service_extra=deploy))
    plan, _ = world.plan(manifests(tmp_path, desired=desired, env="new", service_extra=deploy))
    steps = plan.services[0].steps
    upper = max(desired * max_pct // 100, 1)
    lower = math.ceil(desired * min_pct / 100)
    forced = max_pct == 100 and min_pct == 100
    running, available = desired, desired
    for step in steps:
        # A step's stops happen while its starts are not yet healthy: only what was available counts.
        running += len(step.starts)
        assert running <= max(upper, desired), f"above maximumPercent in {steps}"
        available -= len(step.stops)
        assert forced or available >= lower, f"below minimumHealthyPercent in {steps}"
        running -= len(step.stops)
        available += len(step.starts)  # by the next step, which waits for them
    assert sum(len(s.starts) for s in steps) == desired
    assert sum(len(s.stops) for s in steps) == desired


def test_unplaceable_task_is_reported_not_dropped(world, tmp_path):
    path = manifests(tmp_path, desired=1, extra="cpu: 100000")
    plan, _ = world.plan(path)
    svc = plan.services[0]
    assert svc.unplaced == 1
    assert "insufficient cpu" in svc.unplaced_reason, svc.unplaced_reason


def test_prune_only_when_asked(world, tmp_path):
    world.apply(manifests(tmp_path, desired=2))
    (tmp_path / "m.yaml").write_text((tmp_path / "m.yaml").read_text().split("---\napiVersion: reconciler/v1\nkind: Service")[0])
    plan, _ = world.plan(tmp_path)
    assert plan.orphans == ("app",) and not plan.changed
    pruned, _ = world.plan(tmp_path, prune=True)
    assert pruned.remove == 2 and pruned.services[0].pruned


def test_unreachable_engine_is_reported_and_others_planned(world, tmp_path):
    path = manifests(tmp_path, desired=2)
    world.engines["unix:///fake/2.sock"].down = True
    plan, _ = world.plan(path)
    assert plan.unreachable == {"unix:///fake/2.sock": "engine does not answer (connection refused)"}
    assert [s.instance for s in plan.services[0].starts] == ["i1", "i1"]


def test_failed_start_leaves_nothing_behind(world, tmp_path):
    path = manifests(tmp_path, desired=1)
    for e in world.engines.values():
        e.images.clear()
        e.fail_pull = True
    plan, desired = world.plan(path)
    runner = Runner(world.connections(), environ={})
    runner.launch(desired, plan.services[0].now)
    runner.drain(10)
    runner.shutdown()
    results = runner.results
    assert not results[0].ok and "CannotPullContainerError" in results[0].message
    assert all(not e.containers for e in world.engines.values())


PORT = "portMappings: [{containerPort: 80, hostPort: 8080}]"


def test_rollout_never_stops_a_task_whose_replacement_cannot_start(world, tmp_path):
    """A static host port held by the old tasks on every instance: at 200/100 nothing may stop first."""
    world.apply(manifests(tmp_path, desired=2, extra=PORT))
    plan, _ = world.plan(manifests(tmp_path, desired=2, env="new", extra=PORT))
    svc = plan.services[0]
    assert svc.stops == [] and svc.starts == []
    assert svc.unplaced == 2
    assert "port" in svc.unplaced_reason, svc.unplaced_reason
    assert (plan.add, plan.replace, plan.remove) == (0, 0, 0)


def test_rollout_frees_ports_within_minimum_healthy_then_places(world, tmp_path):
    deploy = "deploymentConfiguration: {maximumPercent: 100, minimumHealthyPercent: 50}"
    world.apply(manifests(tmp_path, desired=2, extra=PORT, service_extra=deploy))
    path = manifests(tmp_path, desired=2, env="new", extra=PORT, service_extra=deploy)
    plan, _ = world.plan(path)
    svc = plan.services[0]
    assert (plan.add, plan.replace, plan.remove, svc.unplaced) == (0, 2, 0, 0)
    # A pass stops one old task (freeing its port), the next starts its replacement; the second old task
    # goes only once that replacement is healthy, since 50 % of 2 must stay available.
    assert [(len(s.starts), len(s.stops)) for s in svc.steps] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    assert [bool(s.after) for s in svc.steps] == [False, True, True, True]
    world.apply(path)
    assert not world.plan(path)[0].changed


def test_scale_in_never_counts_outdated_tasks_and_counts_stay_positive(world, tmp_path):
    world.apply(manifests(tmp_path, desired=3))
    engine = next(e for e in world.engines.values() if e.running())
    extra = engine.running()[0]
    extra["Config"]["Labels"][labels.TASK_HASH] = "0" * 16  # one task now runs an older spec
    plan, _ = world.plan(manifests(tmp_path, desired=2))
    assert min(plan.add, plan.replace, plan.remove) >= 0
    assert (plan.add, plan.replace, plan.remove) == (0, 0, 1)
    assert plan.services[0].stops[0].task_id == extra["Config"]["Labels"][labels.TASK]


def test_unknown_tasks_fill_the_count_but_never_push_reachable_ones_out(world, tmp_path):
    import dataclasses

    from reconciler.model import observed as obs

    path = manifests(tmp_path, desired=1)
    world.apply(path)
    desired = world.desired(path)
    td = desired.task_definitions["app"]
    observed = observe.observe(desired, world.connections())
    c1 = observed["c1"]
    ghosts = tuple(obs.UnknownTask(f"ghost{i}", "i2", "app", td.task_hash) for i in range(3))
    i2 = dataclasses.replace(c1.instances["i2"], reachable=False, unreachable_since=1e9 - 5)
    observed["c1"] = dataclasses.replace(c1, unknown=ghosts, instances={**c1.instances, "i2": i2})
    for count in (0, 1, 2):
        svc = dataclasses.replace(desired.services["app"], desired_count=count)
        d = dataclasses.replace(desired, services={"app": svc})
        plan = planner.plan(d, observed, 1e9, planner.Options(unreachable_grace=60))
        assert min(plan.add, plan.replace, plan.remove) >= 0, plan.render()
        assert plan.add == 0
        assert plan.remove == (1 if count == 0 else 0), plan.render()


def test_daemon_replacements_keep_the_minimum_healthy(world, tmp_path):
    daemon = "schedulingStrategy: DAEMON\ndeploymentConfiguration: {maximumPercent: 100, minimumHealthyPercent: 50}"
    path = manifests(tmp_path, desired=0, service_extra=daemon)
    text = path.joinpath("m.yaml").read_text().replace("  desiredCount: 0\n", "")
    path.joinpath("m.yaml").write_text(text)
    world.apply(path)
    assert sum(len(e.running()) for e in world.engines.values()) == 2
    path.joinpath("m.yaml").write_text(text.replace("value: hello", "value: new"))
    plan, _ = world.plan(path)
    svc = plan.services[0]
    assert (plan.add, plan.replace, plan.remove) == (0, 2, 0)
    assert [(len(s.starts), len(s.stops)) for s in svc.steps] == [(0, 1), (1, 0), (0, 1), (1, 0)]
    world.apply(path)
    assert not world.plan(path)[0].changed
