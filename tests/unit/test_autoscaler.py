"""The daemon's auto scaler around the pure policy: restoring, forgetting, config caching, metric errors."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402
from fakes import FakeEngine  # noqa: E402

from reconciler.daemon import autoscaler, triggers  # noqa: E402
from reconciler.daemon import controller as C  # noqa: E402
from reconciler.environment import Environment  # noqa: E402
from reconciler.scaling import source  # noqa: E402

IMAGE = "localhost/busybox:static"
URL = "http://127.0.0.1:9/metrics"
MANIFEST = fakes.BASE_MANIFEST + """\
---
apiVersion: reconciler/v1
kind: Service
metadata: {name: app}
spec:
  cluster: c1
  taskDefinition: app
  desiredCount: 1
"""
SCALING = f"""\
  autoScaling:
    minCapacity: 1
    maxCapacity: 4
    targetTracking: [{{customizedMetric: {{url: "{URL}", metricName: q}}, targetValue: 10}}]
"""


def make(tmp_path: Path, scaled: bool = True, fetch=None):
    (tmp_path / "m").mkdir(exist_ok=True)
    write(tmp_path, scaled)
    engine = FakeEngine("unix:///fake/1.sock", images=(IMAGE,))
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={}, engine_factory=lambda i: engine,
                      state_dir=str(tmp_path / "state"))
    ctl = C.Controller(env, C.Settings(paths=[str(tmp_path / "m")]))
    scaler = autoscaler.Autoscaler(ctl, metric_source=source.HttpMetricSource(fetch=fetch or (lambda url, name, timeout: 5.0)))
    ctl.listeners.append(scaler.adopt)
    return ctl, scaler, engine


def write(tmp_path: Path, scaled: bool) -> None:
    (tmp_path / "m" / "app.yaml").write_text(MANIFEST + (SCALING if scaled else ""))


def drain(ctl: C.Controller) -> list[str]:
    """Runs every ready key as the workers would, and the actions they launch; returns the keys, each once."""
    return fakes.drain_controller(ctl)




def test_the_first_desired_state_restores_the_saved_count(tmp_path):
    ctl, scaler, engine = make(tmp_path)
    ctl.store.save_scaling("c1", {"app": {"desiredCount": 3, "reason": "queue depth", "state": {}, "decisions": []}})
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    assert scaler.counts["app"] == (3, "set by autoscaling: queue depth")
    assert len(engine.running()) == 3


def test_removing_autoscaling_forgets_the_service(tmp_path):
    ctl, scaler, engine = make(tmp_path)
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    scaler.evaluate(1000.0)
    assert "app" in scaler.counts and "app" in scaler.states
    write(tmp_path, scaled=False)
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    assert "app" not in scaler.counts and "app" not in scaler.states and "app" not in scaler.samples.services()
    assert ctl.desired_counts == {}


def test_a_changed_block_is_parsed_again_even_when_it_is_the_same_object(tmp_path):
    ctl, scaler, _ = make(tmp_path)
    ctl.load()
    svc = ctl.desired.services["app"]
    assert scaler._config(svc).max_capacity == 4
    svc.auto_scaling["maxCapacity"] = 6  # same dict, same id(): an id()-keyed cache would answer 4
    assert scaler._config(svc).max_capacity == 6


def test_a_failing_customized_metric_is_logged_once_when_it_fails_and_once_when_it_recovers(tmp_path, caplog):
    caplog.set_level(logging.INFO, "reconciler")
    failing = [True]

    def fetch(url, name, timeout):
        if failing[0]:
            raise source.MetricError(f"{url}: connection refused")
        return 5.0

    ctl, scaler, _ = make(tmp_path, fetch=fetch)
    ctl.enqueue(triggers.ALL)
    drain(ctl)
    for now in (1000.0, 1015.0, 1030.0):
        scaler.evaluate(now)
    failed = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    assert URL in failed[0].getMessage() and "connection refused" in failed[0].getMessage()
    failing[0] = False
    for now in (1045.0, 1060.0):
        scaler.evaluate(now)
    assert len([r for r in caplog.records if "answers again" in r.getMessage()]) == 1
