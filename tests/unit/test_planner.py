"""The planner against a fake engine: what is not naturally a data case.

The scenarios (decisions, reasons, deployment waves, work in flight, dependsOn, placement, idempotence)
are data: tests/planner_cases/*.yaml, run by test_planner_cases.py. Here: the deployment bounds as a
property over many configurations, and the runner leaving nothing behind when a start fails.
"""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import FakeEngine, drive  # noqa: E402

from reconciler import observe  # noqa: E402
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


@pytest.fixture
def world() -> World:
    return World()


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
