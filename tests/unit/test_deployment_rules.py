"""Deployments on fake engines, through the daemon's controller and `apply`: revisions, pins, the circuit
breaker and its rollback, a failed revision not retried, bake time, alarms, history that survives."""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402
from fakes import FakeEngine  # noqa: E402

from reconciler import cli, labels  # noqa: E402
from reconciler.clock import ManualClock  # noqa: E402
from reconciler.daemon import controller as C  # noqa: E402
from reconciler.daemon import triggers  # noqa: E402
from reconciler.environment import Environment  # noqa: E402
from reconciler.errors import ExitStatus  # noqa: E402
from reconciler.model import history as H  # noqa: E402
from reconciler.model import observed as obs  # noqa: E402
from reconciler.planning import deployments  # noqa: E402

IMAGE = "localhost/busybox:static"
ENDPOINT = "unix:///fake/1.sock"


def manifest(version: str, count: int = 4, pin: str = "", breaker: bool = True, rollback: bool = True,
             bake: int = 0, alarms: str = "") -> str:
    deployment = f"deploymentCircuitBreaker: {{enable: {str(breaker).lower()}, rollback: {str(rollback).lower()}}}"
    if bake:
        deployment += f", bakeTimeInMinutes: {bake}"
    if alarms:
        deployment += f", alarms: {{alarmNames: [{alarms}], enable: true, rollback: true}}"
    return f"""\
apiVersion: reconciler/v1
kind: Cluster
metadata: {{name: c1}}
spec:
  instances: [{{name: i1, endpoint: "{ENDPOINT}"}}]
---
apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {{name: web}}
spec:
  containerDefinitions:
    - name: app
      image: {IMAGE}
      memory: 32
      environment: [{{name: VERSION, value: "{version}"}}]
      healthCheck: {{command: [CMD, "true"], interval: 5, retries: 1}}
---
apiVersion: reconciler/v1
kind: Service
metadata: {{name: web}}
spec:
  cluster: c1
  taskDefinition: web{pin}
  desiredCount: {count}
  deploymentConfiguration: {{{deployment}}}
"""


class BadVersionEngine(FakeEngine):
    """Containers whose VERSION is `bad` exit with 1 as soon as they start."""

    def start_container(self, container_id: str) -> None:
        super().start_container(container_id)
        c = self.containers[container_id]
        if c["Config"]["Env"].get("VERSION") == "bad":
            self.exit(container_id, 1)


class World:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        (tmp_path / "m").mkdir(exist_ok=True)
        self.engine = BadVersionEngine(ENDPOINT, images=(IMAGE,))
        self.clock = ManualClock(1_000_000.0)
        self.engine.clock = self.clock.now
        self.state = tmp_path / "state"

    def write(self, text: str) -> None:
        (self.tmp / "m" / "web.yaml").write_text(text)

    def env(self, state: Path | None = None) -> Environment:
        return Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={}, engine_factory=lambda i: self.engine,
                           state_dir=str(state or self.state), clock=self.clock)

    def controller(self) -> C.Controller:
        ctl = C.Controller(self.env(), C.Settings(paths=[str(self.tmp / "m")]))
        n = iter(range(1, 10**6))
        ctl.ids = lambda kind: f"ecs-svc/{next(n):019d}" if kind == "deployment" else f"e{next(n)}"
        return ctl

    def settle(self, ctl: C.Controller, rounds: int = 40, step: float = 6.0) -> None:
        """Passes as the daemon makes them while time moves on (requeued keys come due)."""
        ctl.enqueue(triggers.ALL)
        for _ in range(rounds):
            fakes.drain_controller(ctl)
            self.clock.advance(step)
            ctl.enqueue("service:c1/web")

    def running(self, version: str | None = None) -> int:
        live = [c for c in self.engine.running() if c["Config"]["Labels"].get(labels.SERVICE) == "web"]
        return sum(1 for c in live if version is None or c["Config"]["Env"].get("VERSION") == version)

    def history(self, ctl: C.Controller) -> H.History:
        return ctl.keeper.loaded("c1")

    def apply(self, state: Path | None = None) -> tuple[int, str]:
        env = self.env(state)
        code = cli.run(["apply", str(self.tmp / "m"), "--yes", "--timeout", "10m"], env)
        return code, env.stdout.getvalue() + env.stderr.getvalue()


def test_each_new_spec_registers_the_next_revision_and_an_unchanged_one_none(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    for version in ("1", "2", "3", "3"):
        w.write(manifest(version))
        w.settle(ctl, rounds=4)
    h = w.history(ctl)
    assert [r.number for r in h.revisions_of("web")] == [1, 2, 3]
    sh = h.service("web")
    assert [d.revision for d in sh.deployments] == [3, 2, 1]
    assert [d.status for d in sh.deployments] == [H.PRIMARY, H.INACTIVE, H.INACTIVE]
    assert sh.primary.rollout_state == H.COMPLETED
    assert w.running("3") == 4
    tasks = {c["Config"]["Labels"][labels.REVISION] for c in w.engine.running()}
    assert tasks == {"3"}


def test_a_pin_runs_exactly_that_revision_after_the_manifest_moved_on(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    for version in ("1", "2", "3"):
        w.write(manifest(version))
        w.settle(ctl, rounds=4)
    w.write(manifest("3", pin=":1"))
    w.settle(ctl, rounds=4)
    assert w.running("1") == 4 and w.running() == 4
    assert w.history(ctl).service("web").primary.task_definition == "web:1"


def test_a_pin_to_a_revision_that_does_not_exist_is_a_located_error(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    w.write(manifest("1"))
    w.settle(ctl, rounds=3)
    w.write(manifest("1", pin=":9"))
    env = w.env()
    code = cli.run(["plan", str(tmp_path / "m")], env)
    err = env.stderr.getvalue()
    assert code == ExitStatus.ERROR
    assert "web.yaml:" in err and "/spec/taskDefinition" in err and "no revision 9 of web; revisions: 1" in err


def test_a_failing_revision_trips_the_breaker_rolls_back_and_is_not_retried(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    w.write(manifest("good"))
    w.settle(ctl, rounds=4)
    assert w.running("good") == 4
    w.write(manifest("bad"))
    w.settle(ctl, rounds=30)
    sh = w.history(ctl).service("web")
    failed = next(d for d in sh.deployments if d.rollout_state == H.FAILED)
    primary = sh.primary
    assert failed.revision == 2 and failed.failed_tasks >= deployments.threshold(ctl.desired.services["web"], 4) == 3
    assert primary.rollback_of == failed.id and primary.revision == 1 and primary.rollout_state == H.COMPLETED
    assert w.running("good") == 4 and w.running("bad") == 0
    messages = [e.message for e in sh.events]
    assert any("deployment failed: tasks failed to start" in m for m in messages)
    assert any(f"rolling back to deployment {sh.deployments[-1].id}" in m for m in messages)
    starts_of_bad = sum(1 for c in w.engine.calls if c[0] == "create")
    w.settle(ctl, rounds=10, step=6.0)  # a minute more: the failed revision is not started again
    assert sum(1 for c in w.engine.calls if c[0] == "create") == starts_of_bad
    assert w.running("good") == 4
    assert sh.blocked is not None and "manifest asks web:2" in deployments.blocked_line(sh, primary)
    w.write(manifest("fixed"))  # the manifests move on: a new deployment
    w.settle(ctl, rounds=4)
    assert w.running("fixed") == 4
    assert w.history(ctl).service("web").blocked is None


def test_apply_waits_for_the_rollback_and_exits_with_the_failure_code(tmp_path):
    w = World(tmp_path)
    w.write(manifest("good", count=4))
    code, out = w.apply()
    assert code == 0, out
    assert out.rstrip().splitlines()[-1].endswith("web runs web:1 (deployment ecs-svc/" + out.split("deployment ecs-svc/")[-1].split(" ")[0] + " COMPLETED).")
    w.write(manifest("bad", count=4))
    code, out = w.apply()
    assert code == ExitStatus.DEPLOYMENT_FAILED, out
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("Apply failed") and "manifest asks web:2" in last and "running web:1 after rollback" in last
    assert w.running("good") == 4
    # a fresh machine (an empty state directory) finds the same history on the engine
    code, out = w.apply(state=tmp_path / "other-state")
    assert code == ExitStatus.DEPLOYMENT_FAILED and "manifest asks web:2" in out
    assert w.running("good") == 4


def test_without_rollback_a_failed_deployment_launches_nothing_more(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    w.write(manifest("good", rollback=False))
    w.settle(ctl, rounds=4)
    w.write(manifest("bad", rollback=False))
    w.settle(ctl, rounds=20)
    sh = w.history(ctl).service("web")
    assert sh.primary.rollout_state == H.FAILED and sh.primary.revision == 2
    creates = sum(1 for c in w.engine.calls if c[0] == "create")
    w.settle(ctl, rounds=10)
    assert sum(1 for c in w.engine.calls if c[0] == "create") == creates
    assert w.running("good") >= 4  # minimumHealthyPercent 100 kept the old tasks


def test_bake_time_keeps_the_deployment_in_progress_and_alarm_rolls_it_back(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    alarm = {"state": "OK"}
    ctl.alarm_states = lambda: {"errors": alarm["state"]}
    (tmp_path / "m" / "alarm.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Alarm\nmetadata: {name: errors}\nspec:\n"
        "  metric: {customizedMetric: {url: 'http://127.0.0.1:1/metrics', metricName: errors}}\n"
        "  threshold: 1\n  comparisonOperator: GreaterThanOrEqualToThreshold\n  evaluationPeriods: 1\n  period: 10\n")
    w.write(manifest("one", bake=1, alarms="errors"))
    w.settle(ctl, rounds=15, step=6.0)  # 90 s: healthy, then a minute of bake
    assert w.history(ctl).service("web").primary.rollout_state == H.COMPLETED
    w.write(manifest("two", bake=1, alarms="errors"))
    w.settle(ctl, rounds=4, step=6.0)  # healthy, baking
    d = w.history(ctl).service("web").primary
    assert d.revision == 2 and d.rollout_state == H.IN_PROGRESS and d.steady_at is not None
    alarm["state"] = "ALARM"
    w.settle(ctl, rounds=6, step=6.0)
    sh = w.history(ctl).service("web")
    assert sh.deployment(d.id).rollout_state == H.FAILED
    assert "alarm(s) errors in ALARM state" in sh.deployment(d.id).rollout_state_reason
    assert sh.primary.rollback_of == d.id and w.running("one") == 4 and w.running("two") == 0


def test_a_restarted_daemon_resumes_the_deployment_from_the_engines(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    w.write(manifest("good"))
    w.settle(ctl, rounds=4)
    w.write(manifest("bad"))
    ctl.process(triggers.ALL)
    ctl.process("service:c1/web")  # the new revision's tasks start (and exit), then the daemon goes away
    ctl.runner.drain(30)
    before = w.history(ctl).service("web").primary
    assert before.rollout_state == H.IN_PROGRESS
    ctl.stop_workers()
    fresh = World.controller(w)
    fresh.store.path = str(tmp_path / "empty-state")  # nothing local: it all comes from the engine
    fresh.keeper.local_dir = fresh.store.path
    w.settle(fresh, rounds=30)
    sh = w.history(fresh).service("web")
    assert sh.deployment(before.id).rollout_state == H.FAILED
    assert sh.primary.rollback_of == before.id and w.running("good") == 4


@pytest.mark.parametrize("kind,value,desired,expected", [
    ("BOUNDED_PERCENT", 50, 4, 3), ("BOUNDED_PERCENT", 50, 10, 5), ("BOUNDED_PERCENT", 50, 1000, 200),
    ("UNBOUNDED_PERCENT", 50, 1000, 500), ("UNBOUNDED_PERCENT", 10, 1, 1), ("COUNT", 7, 100, 7),
])
def test_the_breaker_threshold_follows_ecs(kind, value, desired, expected):
    from reconciler.model import spec

    svc = spec.Service("web", "c1", "web", desired, threshold=spec.Threshold(kind, value))
    assert deployments.threshold(svc, desired) == expected


def test_a_task_without_a_health_check_reports_unknown_health():
    from reconciler import views

    c = obs.Container(id="x", name="n", task_id="t", container="app", role="container", state="running", image=IMAGE,
                      spec={"name": "app", "essential": True})
    task = obs.Task("t", "c1", "i1", "service:web", "web", "h", "web", (c,))
    assert views.describe_task(task)["healthStatus"] == "UNKNOWN"


def test_run_task_runs_exactly_the_pinned_revision(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    for version in ("1", "2"):
        w.write(manifest(version, count=1))
        w.settle(ctl, rounds=4)
    env = w.env()
    assert cli.run(["run-task", "web:1", str(tmp_path / "m")], env) == 0, env.stderr.getvalue()
    one_off = [c for c in w.engine.running() if labels.SERVICE not in c["Config"]["Labels"]]
    assert [c["Config"]["Env"]["VERSION"] for c in one_off] == ["1"]
    assert one_off[0]["Config"]["Labels"][labels.REVISION] == "1"
    env = w.env()
    assert cli.run(["run-task", "web:7", str(tmp_path / "m")], env) == ExitStatus.ERROR
    assert "no revision 7 of web in cluster c1; revisions: 1-2" in env.stderr.getvalue()


def test_after_a_rollback_asking_for_the_good_revision_clears_the_failure(tmp_path):
    w = World(tmp_path)
    ctl = w.controller()
    w.write(manifest("good"))
    w.settle(ctl, rounds=4)
    w.write(manifest("bad"))
    w.settle(ctl, rounds=20)
    assert w.history(ctl).service("web").blocked is not None
    w.write(manifest("good", pin=":1"))
    w.settle(ctl, rounds=4)
    sh = w.history(ctl).service("web")
    assert sh.blocked is None and sh.primary.task_definition == "web:1" and w.running("good") == 4


def test_a_rollback_whose_tasks_fail_too_does_not_bring_the_failed_revision_back():
    from reconciler.model import spec

    svc = spec.Service("web", "c1", "web", 4, circuit_breaker=True, rollback=True)
    n = iter(range(1, 1000))
    ids = lambda kind: f"ecs-svc/{next(n)}"  # noqa: E731
    good = H.Deployment("ecs-svc/a", "web", 1, "h1", "f1", 4, 0.0, 0.0, rollout_state=H.COMPLETED)
    bad = H.Deployment("ecs-svc/b", "web", 2, "h2", "f2", 4, 1.0, 1.0, failed_tasks=3)
    sh = H.ServiceHistory(deployments=(bad, dataclasses.replace(good, status=H.ACTIVE)))
    sh = deployments._fail(svc, sh, bad, "tasks failed to start", True, 2.0, ids)
    back = sh.primary
    assert back.rollback_of == "ecs-svc/b" and sh.blocked.fingerprint == "f2"
    sh = deployments._fail(svc, sh, dataclasses.replace(back, failed_tasks=3), "tasks failed to start", False, 3.0, ids)
    assert sh.blocked.fingerprint == "f2"  # still the revision that failed first: the manifest's ask stays blocked
