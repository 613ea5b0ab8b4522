"""The state directory's files under concurrent writers: atomic replacement and recall's read-modify-write."""

from __future__ import annotations

import json
import os
import threading

from reconciler import state
from reconciler.model import observed as obs


def run_together(target, n: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def one(i: int) -> None:
        start.wait()
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


def test_concurrent_writes_of_one_file_each_use_a_temporary_file_of_their_own(tmp_path):
    store = state.StateDir(str(tmp_path))

    def write(i: int) -> None:
        for n in range(50):
            store.save_backoff("c1", {"svc": {"writer": i, "n": n}})

    assert run_together(write, 8) == []
    assert json.loads((tmp_path / "c1.backoff.json").read_text())["svc"]["n"] == 49
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def cluster_seen_from(instance: str) -> obs.ClusterState:
    """What one worker observed: only `instance` (as an observation of a part of the cluster would)."""
    return obs.ClusterState("c1", {instance: obs.InstanceState(instance, f"unix:///{instance}", True)}, ())


def test_concurrent_recalls_of_one_cluster_lose_no_instance(tmp_path):
    store = state.StateDir(str(tmp_path))
    path = tmp_path / "c1.instances.json"
    for _ in range(20):
        path.unlink(missing_ok=True)
        assert run_together(lambda i: state.recall(store, cluster_seen_from(f"i{i}"), 1000.0 + i), 6) == []
        assert sorted(json.loads(path.read_text())) == [f"i{i}" for i in range(6)]
