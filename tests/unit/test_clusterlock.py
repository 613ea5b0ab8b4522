"""The cluster writer lock on the cluster's engines (fake engines): atomic objects, quorum, stale holders,
`--lock-wait`, the daemon's membership and the `unlock` command."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import IMAGE, FakeEngine  # noqa: E402

from reconciler import cli, clusterlock, observe, state  # noqa: E402
from reconciler import labels as L  # noqa: E402
from reconciler.daemon import membership  # noqa: E402
from reconciler.engine import api, pause  # noqa: E402
from reconciler.environment import Environment  # noqa: E402
from reconciler.model import spec  # noqa: E402

NAME = "reconciler-lock.c1"


class Fleet:
    """Fake engines by endpoint, and an engine factory over them."""

    def __init__(self, n: int):
        self.engines = {f"unix:///fake/{i}.sock": FakeEngine(f"unix:///fake/{i}.sock", images=(IMAGE,)) for i in range(1, n + 1)}

    def factory(self, inst: spec.Instance) -> FakeEngine:
        return self.engines[inst.endpoint]

    def cluster(self, name: str = "c1", extra: tuple[str, ...] = ()) -> spec.Cluster:
        endpoints = [*self.engines, *extra]
        return spec.Cluster(name, instances=tuple(spec.Instance(f"i{n}", e) for n, e in enumerate(endpoints, 1)))

    def lock(self, command: str = "apply", state_dir: str = "/state/a", notes: list[str] | None = None,
             cluster: spec.Cluster | None = None) -> clusterlock.ClusterLock:
        return clusterlock.ClusterLock(cluster or self.cluster(), observe.Engines(self.factory), command, state_dir,
                                       notify=(notes.append if notes is not None else None))

    def locks(self) -> dict[str, dict]:
        """endpoint -> the lock container's inspect JSON, where there is one."""
        out = {}
        for endpoint, engine in self.engines.items():
            for c in engine.containers.values():
                if c["Name"] == NAME:
                    out[endpoint] = c
        return out


def plant(engine: FakeEngine, **fields) -> str:
    """A lock container on `engine` as another holder left it (by default: this host, our parent process)."""
    parent = clusterlock._stat(os.getppid())
    values = {
        "cluster": "c1", "command": "apply", "hostname": clusterlock.this_host().hostname, "pid": os.getppid(),
        "pid_start": parent[1] if parent else "", "state_dir": "/state/other", "since": "2026-12-03T13:00:00Z",
        "token": "other-token", "machine_id": clusterlock.this_host().machine_id,
        "boot_id": clusterlock.this_host().boot_id,
    }
    values.update(fields)
    holder = clusterlock.Holder(**values)
    engine.images.add(pause.PAUSE_IMAGE)
    return engine.create_container(api.ContainerCreate(name=NAME, image=pause.PAUSE_IMAGE, labels=holder.labels()))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the lock object ---------------------------------------------------------------------------------------


def test_the_lock_is_a_created_never_started_pause_container_labelled_with_its_holder():
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    lock = fleet.lock(state_dir="relative/state")
    lock.acquire()
    (c,) = engine.containers.values()
    assert c["Name"] == NAME and c["State"]["Status"] == "created"
    assert c["Config"]["Image"] == pause.PAUSE_IMAGE and ("load", pause.PAUSE_IMAGE) in engine.calls
    labels = c["Config"]["Labels"]
    assert L.MANAGED not in labels, "nothing that lists managed containers may see the lock"
    assert labels[L.LOCK] == "c1" and labels[L.LOCK_COMMAND] == "apply"
    assert labels[L.LOCK_PID] == str(os.getpid()) and labels[L.LOCK_PID_START] == clusterlock._stat(os.getpid())[1]
    assert labels[L.LOCK_HOST] == clusterlock.this_host().hostname
    assert labels[L.LOCK_STATE_DIR] == os.path.abspath("relative/state")
    assert labels[L.LOCK_SINCE].endswith("Z") and labels[L.LOCK_TOKEN]
    assert not any(call[0] == "start" for call in engine.calls)
    lock.release()
    assert engine.containers == {}


def test_a_second_writer_is_refused_naming_the_holder_and_the_first_keeps_its_lock():
    fleet = Fleet(1)
    first, second = fleet.lock("watch", "/state/a"), fleet.lock("apply", "/state/b")
    first.acquire()
    with pytest.raises(clusterlock.Locked) as err:
        second.acquire()
    host = clusterlock.this_host().hostname
    assert err.value.line() == (
        f"cluster c1 is locked by reconciler watch (pid {os.getpid()} on host {host}, state dir /state/a, "
        f"since {first.holder.since}) on unix:///fake/1.sock; retry later, pass --lock-wait, or break a stale "
        "lock with `reconciler unlock c1`"
    )
    assert list(fleet.locks()) == ["unix:///fake/1.sock"] and first.held
    second.release()  # releasing what one does not hold removes nothing
    assert fleet.locks()["unix:///fake/1.sock"]["Config"]["Labels"][L.LOCK_TOKEN] == first.holder.token
    first.release()
    second.acquire()
    assert second.held
    second.release()


def test_a_majority_of_the_engines_is_enough_and_less_takes_nothing():
    fleet = Fleet(3)
    e1, e2, e3 = fleet.engines.values()
    e3.down = True
    lock = fleet.lock()
    lock.acquire()
    assert lock.held and lock.endpoints() == [e1.endpoint, e2.endpoint]
    lock.release()

    e2.down = True
    with pytest.raises(clusterlock.LockError) as err:
        lock.acquire()
    assert not isinstance(err.value, clusterlock.Locked)
    assert err.value.line().startswith("engine unix:///fake/2.sock is unreachable: engine does not answer")
    assert "the writer lock of cluster c1 needs 2 of its 3 engines; retry later or pass --lock-wait" in err.value.line()
    assert fleet.locks() == {}, "what was taken short of a majority is given back"


def test_two_writers_that_see_different_engines_cannot_both_hold_the_lock():
    fleet = Fleet(3)
    e1, e2, e3 = fleet.engines.values()
    a, b = fleet.lock(state_dir="/state/a"), fleet.lock(state_dir="/state/b")
    e3.down = True  # a sees e1 and e2
    a.acquire()
    e3.down, e1.down = False, True  # b sees e2 and e3
    with pytest.raises(clusterlock.Locked) as err:
        b.acquire()
    assert err.value.endpoint == e2.endpoint and err.value.holder.token == a.holder.token
    e1.down = False
    assert {k: v["Config"]["Labels"][L.LOCK_TOKEN] for k, v in fleet.locks().items()} == {
        e1.endpoint: a.holder.token, e2.endpoint: a.holder.token
    }, "b gave back e3"
    a.release()


def test_endpoints_are_counted_once():
    fleet = Fleet(1)
    (endpoint,) = fleet.engines
    cluster = spec.Cluster("c1", instances=(spec.Instance("i1", endpoint),),
                           fargate=(spec.Instance("pool", endpoint, fargate=True),))
    assert [i.endpoint for i in clusterlock.members(cluster)] == [endpoint]
    lock = fleet.lock(cluster=cluster)
    lock.acquire()
    assert lock.held
    lock.release()


@pytest.mark.parametrize(
    "why,fields",
    [
        ("its pid is gone", lambda: {"pid": dead_pid()}),
        ("its pid now is another process", lambda: {"pid_start": "1"}),
        ("it ran before this host booted", lambda: {"boot_id": "an-earlier-boot"}),
    ],
)
def test_a_stale_lock_of_this_host_is_broken_with_a_notice(why, fields):
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    plant(engine, **fields())
    notes: list[str] = []
    lock = fleet.lock(notes=notes)
    lock.acquire()
    assert lock.held, why
    assert fleet.locks()[engine.endpoint]["Config"]["Labels"][L.LOCK_TOKEN] == lock.holder.token
    (note,) = notes
    assert note.startswith(f"broke the stale writer lock of cluster c1 on {engine.endpoint}: reconciler apply (pid ")
    assert note.endswith("is no longer running")
    lock.release()


def test_a_live_holder_of_this_host_and_any_holder_of_another_host_are_left_alone():
    fleet = Fleet(2)
    e1, e2 = fleet.engines.values()
    plant(e1)  # our parent process: alive
    plant(e2, hostname="elsewhere", pid=dead_pid())  # a pid that means nothing here
    notes: list[str] = []
    with pytest.raises(clusterlock.Locked) as err:
        fleet.lock(notes=notes).acquire()
    assert f"(pid {os.getppid()} on host {clusterlock.this_host().hostname}, state dir /state/other" in str(err.value)
    assert notes == [] and len(fleet.locks()) == 2
    e1.remove_container(e1.inspect_container(NAME)["Id"])
    with pytest.raises(clusterlock.Locked) as err:
        fleet.lock(notes=notes).acquire()  # 1 of 2 is no majority
    assert "on host elsewhere" in str(err.value) and notes == []
    assert clusterlock.liveness(err.value.holder) == clusterlock.REMOTE


def test_a_leftover_of_this_very_process_is_stale_once_its_acquisition_is_over():
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    lock = fleet.lock()
    lock.acquire()
    engine.down = True
    notes: list[str] = []
    lock.notify = notes.append
    lock.release()  # cannot reach the engine: the container stays
    assert notes and "could not release the writer lock of cluster c1" in notes[0]
    engine.down = False
    again = fleet.lock(notes=notes)
    again.acquire()
    assert "broke the stale writer lock" in notes[-1]
    again.release()
    assert engine.containers == {}


def test_release_removes_only_its_own_lock():
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    lock = fleet.lock()
    lock.acquire()
    engine.remove_container(next(iter(engine.containers)))  # broken by someone (`unlock --force`) ...
    plant(engine)  # ... and taken by another writer
    lock.release()
    assert fleet.locks()[engine.endpoint]["Config"]["Labels"][L.LOCK_TOKEN] == "other-token"


def test_a_container_of_the_lock_name_that_is_no_lock_is_never_removed():
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    engine.create_container(api.ContainerCreate(name=NAME, image=IMAGE, labels={"someone": "else"}))
    with pytest.raises(clusterlock.LockError) as err:
        fleet.lock().acquire()
    assert "a container named reconciler-lock.c1 that is no reconciler lock" in str(err.value)
    assert len(engine.containers) == 1


def test_a_name_taken_by_a_create_in_progress_is_waited_for_briefly_then_named():
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    first = fleet.lock("watch")
    first.acquire()
    real, misses = engine.inspect_container, []

    def inspect(name):  # Docker reserves the name before the container can be inspected
        if len(misses) < 2:
            misses.append(name)
            raise api.NotFound(engine.endpoint, f"No such container: {name}", status=404)
        return real(name)

    engine.inspect_container = inspect
    with pytest.raises(clusterlock.Locked) as err:
        fleet.lock().acquire()
    assert misses == [NAME, NAME] and err.value.holder.token == first.holder.token
    engine.inspect_container = real
    first.release()


def test_lock_wait_polls_until_the_holder_lets_go_or_the_deadline():
    fleet = Fleet(1)
    holder = fleet.lock("watch")
    holder.acquire()
    began = time.monotonic()
    with pytest.raises(clusterlock.Locked):
        fleet.lock().acquire(wait=0.6)
    assert time.monotonic() - began >= 0.6
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    waiter = fleet.lock()
    waiter.acquire(wait=10)
    timer.join()
    assert waiter.held
    waiter.release()


def test_refresh_takes_engines_that_come_back_and_reports_a_broken_lock():
    fleet = Fleet(3)
    e1, e2, e3 = fleet.engines.values()
    e3.down = True
    lock = fleet.lock("watch")
    lock.acquire()
    e3.down = False
    assert lock.refresh() and lock.endpoints() == [e1.endpoint, e2.endpoint, e3.endpoint]
    e1.down = True
    assert lock.refresh(), "an engine that does not answer still counts"
    e1.down = False
    for engine in (e1, e2):  # `unlock --force`, then another writer
        engine.remove_container(engine.inspect_container(NAME)["Id"])
        plant(engine)
    assert not lock.refresh()
    lock.release()
    assert len(fleet.locks()) == 2


# -- the daemon's membership -------------------------------------------------------------------------------


def desired_of(cluster: spec.Cluster) -> spec.DesiredState:
    return spec.DesiredState(clusters={cluster.name: cluster})


def test_membership_takes_the_engine_lock_after_the_state_directory_and_releases_both(tmp_path, caplog):
    caplog.set_level(logging.INFO, "reconciler")
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    store = state.StateDir(str(tmp_path / "state"))
    follow = lambda cluster, inst: types.SimpleNamespace(stop=lambda: None)  # noqa: E731
    m = membership.Membership(store, follow, engine_factory=fleet.factory)
    other = fleet.lock("apply", str(tmp_path / "elsewhere"))  # another state directory
    other.acquire()
    assert m.sync(desired_of(fleet.cluster())) == []
    assert "cluster c1 is locked by reconciler apply" in caplog.text
    assert "cluster c1 is not reconciled until its lock is free" in caplog.text
    with state.StateDir(store.path).lock("c1"):
        pass  # the state directory's lock was given back with the engine lock refused
    other.release()
    assert m.sync(desired_of(fleet.cluster())) == ["c1"]
    labels = engine.inspect_container(NAME)["Config"]["Labels"]
    assert labels[L.LOCK_COMMAND] == "watch" and labels[L.LOCK_STATE_DIR] == os.path.abspath(store.path)
    m.close()
    assert fleet.locks() == {}


def test_membership_drops_a_cluster_whose_engine_lock_was_broken_and_taken(tmp_path, caplog):
    fleet = Fleet(1)
    (engine,) = fleet.engines.values()
    store = state.StateDir(str(tmp_path / "state"))
    stopped = []
    follow = lambda cluster, inst: types.SimpleNamespace(stop=lambda: stopped.append(cluster))  # noqa: E731
    m = membership.Membership(store, follow, engine_factory=fleet.factory)
    assert m.sync(desired_of(fleet.cluster())) == ["c1"]
    assert m.sync(desired_of(fleet.cluster())) == [] and m.holds("c1")
    engine.remove_container(engine.inspect_container(NAME)["Id"])
    plant(engine)
    assert m.sync(desired_of(fleet.cluster())) == []
    assert not m.holds("c1") and stopped == ["c1"]
    assert "lost the writer lock of cluster c1" in caplog.text
    assert "c1" in m.report()["waiting"]
    m.close()
    assert fleet.locks()[engine.endpoint]["Config"]["Labels"][L.LOCK_TOKEN] == "other-token"


# -- the command line --------------------------------------------------------------------------------------


class Run:
    def __init__(self, tmp_path: Path, fleet: Fleet):
        import fakes

        self.tmp_path = tmp_path
        self.fleet = fleet
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "app.yaml").write_text(fakes.manifest(("app", 1)))

    def __call__(self, *args: str, state_dir: str = "state") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ={},
                          engine_factory=self.fleet.factory, state_dir=str(self.tmp_path / state_dir))
        code = cli.run([*args, str(self.tmp_path / "m")], env)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(tmp_path, Fleet(1))


def test_unlock_shows_the_holder_and_refuses_a_live_one_of_this_host_without_force(run):
    (engine,) = run.fleet.engines.values()
    plant(engine)
    code, out, err = run("unlock", "c1")
    assert code == 1
    assert f"unix:///fake/1.sock: locked by reconciler apply (pid {os.getppid()} on host " in out
    assert "still running on this host" in out
    assert "which still runs on this host; stop it first (its lock goes with it), or pass --force" in err
    assert len(run.fleet.locks()) == 1 and "Traceback" not in err
    code, out, _ = run("unlock", "c1", "--force")
    assert code == 0 and "Removed the writer lock of cluster c1 on 1 engine(s)." in out
    assert run.fleet.locks() == {}
    code, out, _ = run("unlock", "c1")
    assert code == 0 and "unix:///fake/1.sock: not locked" in out and "Cluster c1 is not locked." in out


def test_unlock_breaks_a_holder_of_another_host_without_force_and_names_unknown_clusters(run):
    (engine,) = run.fleet.engines.values()
    plant(engine, hostname="elsewhere")
    code, out, _ = run("unlock", "c1")
    assert code == 0 and "on another host (cannot be checked from here)" in out and run.fleet.locks() == {}
    code, _, err = run("unlock", "nope")
    assert code == 1 and "no cluster named nope in the manifests (clusters: c1)" in err


def test_apply_is_refused_by_a_writer_of_another_state_directory_and_leaves_no_lock(run):
    (engine,) = run.fleet.engines.values()
    plant(engine, command="watch", state_dir="/srv/other-state")
    code, out, err = run("apply", "--yes")
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: cluster c1 is locked by reconciler watch (pid {os.getppid()} on host ")
    assert line.endswith(", state dir /srv/other-state, since 2026-12-03T13:00:00Z) on unix:///fake/1.sock; retry later, "
                         "pass --lock-wait, or break a stale lock with `reconciler unlock c1`")
    engine.remove_container(engine.inspect_container(NAME)["Id"])
    code, out, err = run("apply", "--yes")
    assert code == 0, out + err
    assert run.fleet.locks() == {}, "apply gives its lock back"
    assert len(engine.running()) == 1


def test_apply_breaks_a_stale_lock_with_a_warning(run):
    (engine,) = run.fleet.engines.values()
    plant(engine, pid=dead_pid())
    code, out, err = run("apply", "--yes")
    assert code == 0, out + err
    assert "warning: broke the stale writer lock of cluster c1 on unix:///fake/1.sock: reconciler apply" in err
    assert run.fleet.locks() == {}
