"""The daemon's controller on fake engines: keys to actions, bad input, crash-loop backoff."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import FakeEngine  # noqa: E402

from reconciler import labels  # noqa: E402
from reconciler.daemon import controller as C  # noqa: E402
from reconciler.daemon import triggers  # noqa: E402
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


def make(tmp_path: Path, count: int = 1):
    (tmp_path / "m").mkdir(exist_ok=True)
    (tmp_path / "m" / "app.yaml").write_text(MANIFEST.format(image=IMAGE, count=count))
    engine = FakeEngine("unix:///fake/1.sock", images=(IMAGE,))
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={}, engine_factory=lambda i: engine,
                      state_dir=str(tmp_path / "state"))
    ctl = C.Controller(env, C.Settings(paths=[str(tmp_path / "m")]))
    return ctl, engine


def drain(ctl: C.Controller) -> list[str]:
    """Runs every ready key through reconcile, like the workers would; returns the keys in order."""
    seen = []
    while True:
        key = ctl.queue.get(0)
        if key is None:
            return seen
        seen.append(key)
        ctl.reconcile(key)
        ctl.queue.done(key)


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


def test_crash_loop_backs_off_then_resets(tmp_path, monkeypatch):
    now = [10_000.0]
    monkeypatch.setattr(C.time, "time", lambda: now[0])
    ctl, engine = make(tmp_path)
    ctl.enqueue(triggers.ALL)
    drain(ctl)

    def crash() -> None:
        c = engine.by_label(labels.CONTAINER, "app")
        live = [x for x in c if x["State"]["Status"] == "running"]
        engine.exit(live[0]["Id"], 1)
        ctl.enqueue("service:c1/app")
        drain(ctl)

    crash()  # first failure: replaced at once
    assert running(engine) == 1
    crash()  # second failure soon after: held back for 10 s
    assert running(engine) == 0
    backoff = ctl.store.backoff("c1")["app"]
    assert backoff["recentFailures"] == 1 and backoff["backoffSeconds"] == 10.0
    now[0] += 10
    ctl.enqueue("service:c1/app")
    drain(ctl)
    assert running(engine) == 1
    assert ctl.crash["c1/app"].delay() == 20.0  # doubling
    now[0] += C.CRASH_RESET + 1  # healthy for ten minutes
    ctl.enqueue("service:c1/app")
    drain(ctl)
    assert ctl.crash["c1/app"].delay() == 0.0
