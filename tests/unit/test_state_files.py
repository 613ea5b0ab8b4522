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


# ---------------------------------------------------------------- last-known tasks, per (instance, endpoint)


def running_task(task_id: str, instance: str, service: str = "web") -> obs.Task:
    app = obs.Container(f"c-{task_id}", f"ecs-{task_id}", task_id, "app", "container", "running")
    return obs.Task(task_id, "c1", instance, f"service:{service}", service, "h1", service, (app,))


def seen(instances: dict[str, tuple[str, bool]], tasks: tuple[obs.Task, ...] = ()) -> obs.ClusterState:
    """A cluster whose instances are {name: (endpoint, reachable)}."""
    states = {n: obs.InstanceState(n, endpoint, reachable) for n, (endpoint, reachable) in instances.items()}
    return obs.ClusterState("c1", states, tasks)


def remembered(cstate: obs.ClusterState) -> list[tuple[str, str]]:
    return sorted((u.id, u.instance) for u in cstate.unknown)


def test_an_unreachable_engine_keeps_its_last_known_tasks_while_its_endpoint_is_unchanged(tmp_path):
    store = state.StateDir(str(tmp_path))
    state.recall(store, seen({"i1": ("tcp://a:2376", True)}, (running_task("t1", "i1"),)), 1000.0)
    entry = json.loads((tmp_path / "c1.instances.json").read_text())["i1"]
    assert entry == {"seenAt": 1000.0, "endpoint": "tcp://a:2376", "tasks": [["t1", "web", "h1"]]}
    down = state.recall(store, seen({"i1": ("tcp://a:2376", False)}), 1010.0)
    assert remembered(down) == [("t1", "i1")]
    assert down.instances["i1"].unreachable_since == 1010.0
    still = state.recall(store, seen({"i1": ("tcp://a:2376", False)}), 1020.0)
    assert remembered(still) == [("t1", "i1")] and still.instances["i1"].unreachable_since == 1010.0


def test_a_new_endpoint_of_a_declared_instance_does_not_inherit_the_old_engines_tasks(tmp_path):
    store = state.StateDir(str(tmp_path))
    state.recall(store, seen({"i1": ("tcp://a:2376", True)}, (running_task("t1", "i1"),)), 1000.0)
    state.recall(store, seen({"i1": ("tcp://a:2376", False)}), 1010.0)  # a goes down ...
    # ... and i1 now names engine b, which does not answer either
    moved = state.recall(store, seen({"i1": ("tcp://b:2376", False)}), 1050.0)
    assert remembered(moved) == []
    assert moved.instances["i1"].unreachable_since == 1050.0, "b's outage starts now, not when a went down"
    entry = json.loads((tmp_path / "c1.instances.json").read_text())["i1"]
    assert entry == {"endpoint": "tcp://b:2376", "unreachableSince": 1050.0}
    # pointing i1 back at engine a does not bring a's tasks back: the entry is b's now
    assert remembered(state.recall(store, seen({"i1": ("tcp://a:2376", False)}), 1060.0)) == []


def test_a_renamed_instance_inherits_nothing_and_a_new_instance_under_the_old_name_neither(tmp_path):
    store = state.StateDir(str(tmp_path))
    state.recall(store, seen({"old": ("tcp://a:2376", True)}, (running_task("t1", "old"),)), 1000.0)
    renamed = state.recall(store, seen({"new": ("tcp://a:2376", False)}), 1010.0)
    assert remembered(renamed) == []
    # another engine under the old name
    reused = state.recall(store, seen({"old": ("tcp://c:2376", False)}), 1020.0)
    assert remembered(reused) == []
    assert reused.instances["old"].unreachable_since == 1020.0


def test_an_entry_written_without_an_endpoint_is_taken_as_the_current_one_and_stamped(tmp_path):
    store = state.StateDir(str(tmp_path))
    path = tmp_path / "c1.instances.json"
    path.write_text(json.dumps({"i1": {"seenAt": 900.0, "tasks": [["t1", "web", "h1"]]}}))
    down = state.recall(store, seen({"i1": ("tcp://a:2376", False)}), 1000.0)
    assert remembered(down) == [("t1", "i1")]
    assert json.loads(path.read_text())["i1"]["endpoint"] == "tcp://a:2376"
    # stamped: a later change of the endpoint drops it like any other entry
    assert remembered(state.recall(store, seen({"i1": ("tcp://b:2376", False)}), 1010.0)) == []


def test_a_reader_that_does_not_write_applies_the_same_rule(tmp_path):
    store = state.StateDir(str(tmp_path))
    state.recall(store, seen({"i1": ("tcp://a:2376", True)}, (running_task("t1", "i1"),)), 1000.0)
    before = (tmp_path / "c1.instances.json").read_text()
    other = state.recall(store, seen({"i1": ("tcp://b:2376", False)}), 1010.0, write=False)
    same = state.recall(store, seen({"i1": ("tcp://a:2376", False)}), 1010.0, write=False)
    assert (remembered(other), remembered(same)) == ([], [("t1", "i1")])
    assert (tmp_path / "c1.instances.json").read_text() == before
