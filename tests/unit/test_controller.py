"""The daemon's controller on fake engines: keys to actions, bad input, crash-loop backoff."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402
from fakes import FakeEngine  # noqa: E402

from reconciler import labels  # noqa: E402
from reconciler.clock import ManualClock  # noqa: E402
from reconciler.daemon import controller as C  # noqa: E402
from reconciler.daemon import (  # noqa: E402
    crashloop,  # noqa: E402
    membership,
    triggers,
)
from reconciler.daemon import metrics as M  # noqa: E402
from reconciler.daemon.outcome import DONE  # noqa: E402
from reconciler.environment import Environment  # noqa: E402

IMAGE = "localhost/busybox:static"
MANIFEST = """\
apiVersion: reconciler/v1
kind: Cluster
metadata: {{name: c1}}
spec:
  instances: [{{name: i1, endpoint: "unix:///fake/1.sock"}}]
---
apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {{name: app}}
spec:
  containerDefinitions: [{{name: app, image: {image}, memory: 32}}]
---
apiVersion: reconciler/v1
kind: Service
metadata: {{name: app}}
spec: {{cluster: c1, taskDefinition: app, desiredCount: {count}}}
"""


def make(tmp_path: Path, count: int = 1, clock: ManualClock | None = None):
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "app.yaml").write_text(MANIFEST.format(image=IMAGE, count=count))
    engine = FakeEngine("unix:///fake/1.sock", images=(IMAGE,))
    clock = clock or ManualClock()
    engine.clock = clock.now
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={}, engine_factory=lambda i: engine,
                      state_dir=str(tmp_path / "state"), clock=clock)
    ctl = C.Controller(env, C.Settings(paths=[str(tmp_path / "m")]))
    return ctl, engine


def drain(ctl: C.Controller) -> list[str]:
    """Runs every ready key as the workers would, and the actions they launch; returns the keys, each once."""
    return fakes.drain_controller(ctl)




def running(engine: FakeEngine) -> int:
    return len(engine.running())


def test_all_key_enqueues_only_services_that_need_work(tmp_path):
    ctl, engine = make(tmp_path, count=2)
    ctl.enqueue(triggers.ALL)
    assert drain(ctl) == [triggers.ALL, "service:c1/app"]
    assert running(engine) == 2
    ctl.enqueue(triggers.ALL)
    assert drain(ctl) == [triggers.ALL]  # converged: nothing more to do
    assert ctl.ready()


def test_invalid_manifests_keep_the_last_valid_state(tmp_path):
    ctl, engine = make(tmp_path, count=2)
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    (tmp_path / "m" / "app.yaml").write_text("apiVersion: reconciler/v1\nkind: Service\nspec: [\n")
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    assert running(engine) == 2
    assert ctl.status()["manifests"]["valid"] is False
    assert "invalid YAML" in ctl.status()["manifests"]["errors"][0]


def test_crash_loop_backs_off_then_resets(tmp_path):
    clock = ManualClock(10_000.0)
    ctl, engine = make(tmp_path, clock=clock)
    ctl.enqueue(triggers.ALL)
    drain(ctl)

    def crash() -> None:
        c = engine.by_label(labels.CONTAINER, "app")
        live = [x for x in c if x["State"]["Status"] == "running"]
        clock.advance(1)  # it dies young: one second after it started
        engine.exit(live[0]["Id"], 1)
        ctl.enqueue("service:c1/app")
        drain(ctl)

    crash()  # first failure: replaced at once
    assert running(engine) == 1
    crash()  # second failure soon after: held back for 10 s
    assert running(engine) == 0
    backoff = ctl.store.backoff("c1")["app"]
    assert backoff["recentFailures"] == 1 and backoff["backoffSeconds"] == 10.0
    clock.advance(10)
    ctl.enqueue("service:c1/app")
    drain(ctl)
    assert running(engine) == 1
    assert crashloop.delay(ctl.crash["c1/app"]) == 20.0  # doubling
    clock.advance(crashloop.RESET + 1)  # healthy for ten minutes
    ctl.enqueue("service:c1/app")
    drain(ctl)
    assert crashloop.delay(ctl.crash["c1/app"]) == 0.0


def test_a_task_that_ran_past_its_grace_and_was_killed_is_replaced_at_once_every_time(tmp_path):
    clock = ManualClock(10_000.0)
    ctl, engine = make(tmp_path, clock=clock)
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    for _ in range(4):
        clock.advance(37)  # healthy tasks killed 37 s apart: not a crash loop
        (live,) = [x for x in engine.by_label(labels.CONTAINER, "app") if x["State"]["Status"] == "running"]
        engine.exit(live["Id"], 137)
        ctl.enqueue("service:c1/app")
        drain(ctl)
        assert running(engine) == 1
    assert not ctl.crash.get("c1/app", crashloop.Backoff()).failures


# -- one writer per cluster ------------------------------------------------------------------------

TWO_SERVICES = fakes.manifest(("a", 1), ("b", 1))


class SlowEngine(FakeEngine):
    """Creates containers slowly, so two workers that planned against one observation would both start."""

    def create_container(self, request):
        time.sleep(0.3)
        return super().create_container(request)


def test_two_services_of_one_cluster_never_plan_against_the_same_observation(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "apps.yaml").write_text(TWO_SERVICES)
    engine = SlowEngine("unix:///fake/1.sock", memory_mib=48, images=(IMAGE,))  # room for one 32 MiB task
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={}, engine_factory=lambda i: engine,
                      state_dir=str(tmp_path / "state"))
    ctl = C.Controller(env, C.Settings(paths=[str(tmp_path / "m")]))
    assert ctl.load()
    workers = [threading.Thread(target=ctl.reconcile_service, args=("c1", name, 1e9)) for name in ("a", "b")]
    for t in workers:
        t.start()
    for t in workers:
        t.join(10)
    assert ctl.runner.drain(10)
    assert running(engine) == 1  # the second service counted the first's start in flight and found no room


# -- auto scaled counts ----------------------------------------------------------------------------

SCALED = """\
  autoScaling:
    minCapacity: 1
    maxCapacity: 4
    targetTracking: [{customizedMetric: {url: "http://127.0.0.1:9/metrics"}, targetValue: 10}]
"""


def scaled_manifest(count: int, scaled: bool) -> str:
    text = MANIFEST.format(image=IMAGE, count=count)
    block = f"spec:\n  cluster: c1\n  taskDefinition: app\n  desiredCount: {count}\n" + (SCALED if scaled else "")
    return text.replace(f"spec: {{cluster: c1, taskDefinition: app, desiredCount: {count}}}\n", block)


def test_a_count_set_by_the_autoscaler_is_ignored_once_autoscaling_is_removed(tmp_path):
    ctl, engine = make(tmp_path, count=1)
    manifest = tmp_path / "m" / "app.yaml"
    manifest.write_text(scaled_manifest(1, scaled=True))
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    svc = ctl.desired.services["app"]
    ctl.scale(svc, 3, "set by autoscaling: test")
    drain(ctl)
    assert running(engine) == 3
    assert ctl.status()["services"][0]["desiredCountSource"] == "set by autoscaling: test"

    manifest.write_text(scaled_manifest(1, scaled=False))
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    assert running(engine) == 1  # the manifest's desiredCount rules again
    assert ctl.desired_counts == {}
    assert ctl.status()["services"][0]["desiredCountSource"] == "manifest"


def test_a_stale_count_of_a_service_without_autoscaling_is_not_planned_with(tmp_path):
    ctl, engine = make(tmp_path, count=1)
    assert ctl.load()
    ctl.desired_counts["app"] = (3, "set by autoscaling: stale")  # e.g. a round that began before a reload
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    assert running(engine) == 1


# -- metrics of what is gone -----------------------------------------------------------------------


def test_metric_series_of_removed_services_and_engines_are_dropped(tmp_path):
    ctl, engine = make(tmp_path, count=1)
    ctl.metrics = M.Metrics()
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    text = ctl.metrics.render()[0].decode()
    assert 'service="app"' in text and 'endpoint="unix:///fake/1.sock"' in text

    other = MANIFEST.format(image=IMAGE, count=1).replace("{name: app}\nspec: {cluster", "{name: web}\nspec: {cluster")
    (tmp_path / "m" / "app.yaml").write_text(other.replace("/fake/1.sock", "/fake/2.sock"))
    for c in list(engine.containers):
        engine.remove_container(c)  # the old service's task is gone too (removed by hand)
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    text = ctl.metrics.render()[0].decode()
    assert 'service="app"' not in text, text
    assert 'endpoint="unix:///fake/1.sock"' not in text and 'endpoint="unix:///fake/2.sock"' in text


# -- shutdown ----------------------------------------------------------------------------------------


def test_stop_workers_waits_for_in_flight_work_until_told_to_abandon_it(tmp_path, monkeypatch):
    ctl, _ = make(tmp_path)
    release, began = threading.Event(), threading.Event()

    def busy(key, now):
        began.set()
        release.wait(10)
        return DONE

    monkeypatch.setattr(ctl, "reconcile", busy)
    ctl.start_workers()
    ctl.enqueue("service:c1/app")
    assert began.wait(5)
    abandon = threading.Event()
    result = []
    stopper = threading.Thread(target=lambda: result.append(ctl.stop_workers(abandon)))
    stopper.start()
    stopper.join(0.5)
    assert stopper.is_alive(), "stop_workers must wait for in-flight work, with no deadline"
    abandon.set()
    stopper.join(5)
    assert result == [False]
    release.set()


def test_stop_workers_returns_true_once_in_flight_work_is_done(tmp_path, monkeypatch):
    ctl, _ = make(tmp_path)
    began = threading.Event()
    monkeypatch.setattr(ctl, "reconcile", lambda key, now: (began.set(), time.sleep(0.3), DONE)[-1])
    ctl.start_workers()
    ctl.enqueue("service:c1/app")
    assert began.wait(5)
    assert ctl.stop_workers() is True
    assert not any(t.is_alive() for t in ctl._workers)


# -- membership: clusters another process writes --------------------------------------------------


class Followers:
    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.stopped: list[tuple[str, str]] = []

    def __call__(self, cluster, inst):
        key = (cluster, inst.endpoint)
        self.started.append(key)
        return types.SimpleNamespace(stop=lambda: self.stopped.append(key))


def test_a_cluster_locked_by_another_process_is_left_alone_until_its_lock_is_free(tmp_path, caplog):
    ctl, engine = make(tmp_path, count=2)
    followers = Followers()
    ctl.membership = membership.Membership(ctl.store, followers, guard=ctl.cluster_lock)
    other = ctl.store.lock("c1")  # another writer (an `apply`, say): flock conflicts across open files
    other.__enter__()
    try:
        ctl.enqueue(triggers.ALL)
        drain(ctl)
        ctl.enqueue("service:c1/app")  # an event for it must not act either
        drain(ctl)
        assert running(engine) == 0 and followers.started == []
        assert "cluster c1 is not reconciled until its lock is free" in caplog.text
        assert "c1" in ctl.status()["clusterLocks"]["waiting"]
        assert not os.path.exists(os.path.join(ctl.store.path, "c1.instances.json")), "only the writer records"
    finally:
        other.__exit__(None, None, None)
    ctl.enqueue(triggers.ALL)  # the next resync takes the lock
    drain(ctl)
    assert running(engine) == 2
    assert followers.started == [("c1", "unix:///fake/1.sock")]
    assert ctl.status()["clusterLocks"] == {"held": ["c1"], "waiting": {}}
    ctl.membership.close()


# -- passes never wait -------------------------------------------------------------------------------


def test_a_replacement_starts_while_the_dead_tasks_slow_stop_is_still_in_flight(tmp_path):
    ctl, engine = make(tmp_path, count=2)
    manifest = tmp_path / "m" / "app.yaml"
    manifest.write_text(manifest.read_text().replace(
        "containerDefinitions: [{name: app, image: localhost/busybox:static, memory: 32}]",
        "containerDefinitions: [{name: app, image: localhost/busybox:static, memory: 32},"
        " {name: side, image: localhost/busybox:static, memory: 16, essential: false}]"))
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    assert running(engine) == 4
    release = threading.Event()
    real_stop = engine.stop_container
    engine.stop_container = lambda cid, timeout: (release.wait(10), real_stop(cid, timeout))  # a sidecar ignoring SIGTERM
    (app,) = engine.by_label(labels.CONTAINER, "app")[:1]
    dead = app["Config"]["Labels"][labels.TASK]
    engine.exit(app["Id"], 137)
    try:
        outcome = ctl.reconcile("service:c1/app", ctl.clock.now())
        assert dead in ctl.runner.inflight().stopping
        deadline = time.monotonic() + 10
        while (running(engine) < 4 or ctl.runner.inflight().starts) and time.monotonic() < deadline:
            time.sleep(0.01)
        live = {c["Config"]["Labels"][labels.TASK] for c in engine.running()} - {dead}
        assert len(live) == 2, "the replacement runs while the dead task is still being stopped"
        assert outcome.requeue_after is not None, "the pass returned, and looks at the service again"
        ctl.reconcile("service:c1/app", ctl.clock.now())  # another event meanwhile: nothing is stopped or started twice
        assert ctl.runner.inflight().stopping == frozenset({dead}) and not ctl.runner.inflight().starts
    finally:
        release.set()
        ctl.runner.drain(10)
    drain(ctl)
    assert running(engine) == 4 and not engine.by_label(labels.TASK, dead)


def test_an_in_flight_start_is_counted_so_a_second_pass_starts_no_duplicate(tmp_path):
    ctl, engine = make(tmp_path, count=1)
    assert ctl.load()
    gate = threading.Event()
    real_create = engine.create_container
    # Only task containers wait (the cluster's history container is made by the first pass, before it launches).
    engine.create_container = lambda request: (request.labels.get(labels.MANAGED) and gate.wait(10), real_create(request))[1]
    try:
        ctl.reconcile("service:c1/app", ctl.clock.now())
        ctl.reconcile("service:c1/app", ctl.clock.now())  # an event arrives meanwhile
        assert len(ctl.runner.inflight().starts) == 1
    finally:
        gate.set()
        ctl.runner.drain(10)
    drain(ctl)
    assert running(engine) == 1


def test_a_healthy_task_killed_during_another_tasks_backoff_is_replaced_at_once(tmp_path):
    clock = ManualClock(10_000.0)
    ctl, engine = make(tmp_path, count=2, clock=clock)
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    clock.advance(60)  # both original tasks ran a minute: available

    def kill(task_id: str) -> None:
        (c,) = [x for x in engine.by_label(labels.TASK, task_id) if x["State"]["Status"] == "running"]
        engine.exit(c["Id"], 137)
        ctl.enqueue("service:c1/app")
        drain(ctl)

    veteran, other = sorted({c["Config"]["Labels"][labels.TASK] for c in engine.running()})
    kill(other)  # healthy: replaced at once, no failure recorded
    young = next(t for t in {c["Config"]["Labels"][labels.TASK] for c in engine.running()} if t != veteran)
    clock.advance(1)
    kill(young)  # died young: replaced at once, one failure recorded
    younger = next(t for t in {c["Config"]["Labels"][labels.TASK] for c in engine.running()} if t != veteran)
    clock.advance(1)
    kill(younger)  # died young again within 10 s: its replacement waits
    assert running(engine) == 1
    kill(veteran)  # the veteran dies meanwhile: its replacement must not wait for the other's backoff
    assert running(engine) == 1 and veteran not in {c["Config"]["Labels"][labels.TASK] for c in engine.running()}
    assert engine.by_label(labels.TASK, younger), "the young dead task stays to be seen during its backoff"
