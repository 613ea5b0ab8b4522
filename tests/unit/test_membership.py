"""The daemon's membership: cluster writer locks and engine followers kept in step with the desired state."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest

from reconciler import state
from reconciler.daemon import membership
from reconciler.manifests import build, validate

CLUSTER = """\
apiVersion: reconciler/v1
kind: Cluster
metadata: {{name: {name}}}
spec:
  instances: [{instances}]
"""
LOCAL = """\
apiVersion: reconciler/v1
kind: Cluster
metadata: {{name: {name}}}
spec: {{}}
"""  # no instances: the local engine is the cluster's pool, and several clusters may share it


def desired(tmp_path: Path, **clusters: list[str]):
    """A desired state with the given clusters, each on the given endpoints (none: the local engine)."""
    root = tmp_path / f"m{len(list(tmp_path.glob('m*')))}"
    root.mkdir()
    for name, endpoints in clusters.items():
        instances = ", ".join(f'{{name: i{n}, endpoint: "{e}"}}' for n, e in enumerate(endpoints))
        text = CLUSTER.format(name=name, instances=instances) if endpoints else LOCAL.format(name=name)
        (root / f"{name}.yaml").write_text(text)
    result = validate.validate_paths([str(root)])
    assert result.ok, [d.format() for d in result.errors]
    return build.desired_state(result.documents, {})


class Followers:
    def __init__(self) -> None:
        self.running: set[tuple[str, str]] = set()

    def __call__(self, cluster, inst):
        key = (cluster, inst.endpoint)
        assert key not in self.running, f"{key} followed twice"
        self.running.add(key)
        return types.SimpleNamespace(stop=lambda: self.running.discard(key))


@pytest.fixture
def store(tmp_path):
    return state.StateDir(str(tmp_path / "state"))


def locked_elsewhere(store: state.StateDir, cluster: str) -> bool:
    """True when another holder could not take `cluster`'s lock right now."""
    try:
        with state.StateDir(store.path).lock(cluster):
            return False
    except state.LockTimeout:
        return True


def test_two_clusters_on_one_engine_get_a_follower_each(tmp_path, store):
    followers = Followers()
    m = membership.Membership(store, followers)
    local = build.default_endpoint({})
    assert m.sync(desired(tmp_path, a=[], b=[], c=["unix:///e2"])) == ["a", "b", "c"]
    assert followers.running == {("a", local), ("b", local), ("c", "unix:///e2")}
    assert locked_elsewhere(store, "a") and locked_elsewhere(store, "b")
    m.close()
    assert followers.running == set()
    assert not locked_elsewhere(store, "a") and not locked_elsewhere(store, "b")


def test_clusters_and_endpoints_added_later_are_locked_and_followed_and_removed_ones_released(tmp_path, store):
    followers = Followers()
    m = membership.Membership(store, followers)
    assert m.sync(desired(tmp_path, a=["unix:///e1"])) == ["a"]
    assert m.sync(desired(tmp_path, a=["unix:///e1"])) == []  # nothing new: nothing taken twice
    assert m.sync(desired(tmp_path, a=["unix:///e2"], b=["unix:///e3"])) == ["b"]
    assert followers.running == {("a", "unix:///e2"), ("b", "unix:///e3")}
    assert m.sync(desired(tmp_path, b=["unix:///e3"])) == []
    assert m.held() == ["b"] and not locked_elsewhere(store, "a")
    assert followers.running == {("b", "unix:///e3")}
    m.close()


def test_a_lock_held_elsewhere_is_logged_once_and_retried_at_each_sync(tmp_path, store, caplog):
    caplog.set_level(logging.INFO, "reconciler")
    followers = Followers()
    m = membership.Membership(store, followers)
    state_ = desired(tmp_path, a=["unix:///e1"])
    with state.StateDir(store.path).lock("a"):
        assert m.sync(state_) == [] and m.sync(state_) == []
        assert not m.holds("a") and followers.running == set()
        assert caplog.text.count("cluster a is not reconciled until its lock is free") == 1
        assert "a" in m.report()["waiting"]
    assert m.sync(state_) == ["a"]
    assert m.holds("a") and followers.running == {("a", "unix:///e1")}
    assert m.report() == {"held": ["a"], "waiting": {}}
    assert "took the lock of cluster a" in caplog.text
    m.close()


def test_a_released_cluster_waits_for_its_in_flight_work(tmp_path, store):
    guarded = []
    m = membership.Membership(store, Followers(), guard=lambda name: _Recorder(guarded, name))
    m.sync(desired(tmp_path, a=["unix:///e1"]))
    m.sync(desired(tmp_path, b=["unix:///e1"]))
    assert guarded == ["a"]
    m.close()


def test_after_stop_following_no_follower_starts(tmp_path, store):
    followers = Followers()
    m = membership.Membership(store, followers)
    m.sync(desired(tmp_path, a=["unix:///e1"]))
    m.stop_following()
    m.sync(desired(tmp_path, a=["unix:///e1"], b=["unix:///e2"]))
    assert followers.running == set() and m.held() == ["a", "b"]
    m.close()
    assert m.held() == [] and m.sync(desired(tmp_path, c=["unix:///e1"])) == []


class _Recorder:
    def __init__(self, log: list[str], name: str):
        self.log, self.name = log, name

    def __enter__(self):
        self.log.append(self.name)

    def __exit__(self, *exc):
        return False
