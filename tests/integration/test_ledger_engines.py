"""The cluster's history on three real private engines: a save is seen by a History with a fresh, empty local
directory (a fresh CI machine), the container is created and never started and `docker ps -a` shows it with
its label, the volume outlives its container (made again by the next load or save), and an engine that was
down during a save is repaired by the next one.

Owns end-to-end evidence for `reconciler.ledger` through the real archive endpoints (files written into and
read out of a container that never ran, through its named volume). Prints how long a save and a load take
(milliseconds, median of a few) without asserting on them.
Must not: touch an engine the fixtures did not start, stop an engine other than through tests/engines.py, or
assert on speed.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time

import docker.errors
import pytest

from reconciler import environment, ledger, observe
from reconciler.model import spec

NAME = "reconciler-history.test"
HISTORY = "io.reconciler.history"  # spelled out: the tests check the product's labels, not its constants
MANAGED = "io.reconciler.managed"


@pytest.fixture
def cluster(engines3):
    return spec.Cluster("test", instances=tuple(spec.Instance(f"i{n}", e.endpoint) for n, e in enumerate(engines3, 1)))


@contextlib.contextmanager
def connections():
    engines = observe.Engines(environment.docker_engine_factory)
    try:
        yield engines
    finally:
        engines.close()


def ps_a(engine) -> str:
    """`docker ps -a` of the history's container on `engine`: name, status and labels."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return subprocess.run(
        ["docker", "-H", engine.endpoint, "ps", "-a", "--filter", f"name={NAME}", "--format",
         "{{.Names}}|{{.Status}}|{{.Labels}}"],
        capture_output=True, text=True, check=True, env=env, timeout=30,
    ).stdout.strip()


def test_a_fresh_machine_sees_what_was_saved_and_the_container_never_runs(engines3, cluster, tmp_path, capsys):
    document = {"revisions": {"web": [{"revision": 1, "hash": "abc"}]}, "events": ["created"] * 200}
    with connections() as engines:
        writer = ledger.History(cluster, engines, str(tmp_path / "writer"))
        assert writer.load().generation == 0
        save_ms = []
        generation = 0
        for n in range(5):
            t0 = time.perf_counter()
            generation = writer.save({**document, "n": n}, generation)
            save_ms.append((time.perf_counter() - t0) * 1000)
        assert generation == 5

    with connections() as engines:  # another process on a fresh machine: new connections, empty local directory
        load_ms = []
        for _ in range(5):
            fresh = ledger.History(cluster, engines, str(tmp_path / f"ci-{len(load_ms)}"))
            t0 = time.perf_counter()
            record = fresh.load()
            load_ms.append((time.perf_counter() - t0) * 1000)
            assert (record.generation, record.document) == (5, {**document, "n": 4})
            assert record.unreachable == [] and record.stale == []
    with capsys.disabled():  # shown in every run, not only with -s
        print(f"\nhistory of {len(str(document))} bytes on 3 engines: save {statistics.median(save_ms):.0f} ms, "
              f"load {statistics.median(load_ms):.0f} ms (medians of 5; the first save, which creates the volume and "
              f"the container and loads the pause image: {save_ms[0]:.0f} ms)")

    for engine in engines3:
        with contextlib.closing(engine.client()) as client:
            c = client.api.inspect_container(NAME)
            assert c["State"]["Status"] == "created" and c["State"]["StartedAt"].startswith("0001-01-01")
            assert c["Config"]["Labels"] == {HISTORY: "test"} and MANAGED not in c["Config"]["Labels"]
            (mount,) = c["Mounts"]
            assert (mount["Type"], mount["Name"], mount["Destination"]) == ("volume", NAME, "/history")
            assert client.api.inspect_volume(NAME)["Labels"] == {HISTORY: "test"}
            events = client.api.events(since=0, until=time.time(), decode=True,
                                       filters={"type": "container", "event": "start", "container": NAME})
            assert list(events) == [], "the history's container was never started"
        name, status, labels = ps_a(engine).split("|")
        assert (name, status, labels) == (NAME, "Created", f"{HISTORY}=test")


def test_the_volume_outlives_its_container_which_the_next_load_or_save_makes_again(engines3, cluster, tmp_path):
    with connections() as engines:
        history = ledger.History(cluster, engines, None)
        history.save({"v": 1}, 0)
    for engine in engines3:
        with contextlib.closing(engine.client()) as client:
            client.api.remove_container(NAME, force=True, v=True)
            with pytest.raises(docker.errors.NotFound):
                client.api.inspect_container(NAME)
            assert client.api.inspect_volume(NAME)["Name"] == NAME, "a named volume survives its container"

    with connections() as engines:
        history = ledger.History(cluster, engines, str(tmp_path / "fresh"))
        record = history.load()
        assert (record.generation, record.document) == (1, {"v": 1})
        assert history.save({"v": 2}, 1) == 2
    for engine in engines3:
        assert ps_a(engine) == f"{NAME}|Created|{HISTORY}=test"

    with connections() as engines:
        assert ledger.remove(cluster, engines, str(tmp_path / "fresh")) == []
        for engine in engines3:
            with contextlib.closing(engine.client()) as client:
                assert client.api.containers(all=True, filters={"name": NAME}) == []
                with pytest.raises(docker.errors.NotFound):
                    client.api.inspect_volume(NAME)
        assert ledger.History(cluster, engines, None).load().generation == 0


def test_an_engine_down_during_a_save_is_named_then_repaired_by_the_next_save(engines3, cluster, tmp_path):
    with connections() as engines:
        history = ledger.History(cluster, engines, str(tmp_path))
        history.save({"v": 1}, 0)
        engines3[2].stop()
        assert history.save({"v": 2}, 1) == 2
        record = history.load()
        assert (record.generation, record.unreachable) == (2, [engines3[2].endpoint])
        engines3[1].stop()
        with pytest.raises(ledger.HistoryError) as err:
            ledger.History(cluster, engines, None).load()
        assert err.value.endpoints == (engines3[1].endpoint, engines3[2].endpoint)
        assert "cannot read the history of cluster test: it needs 2 of its 3 engines and 1 answered" in str(err.value)
        engines3[1].start()
        engines3[2].start()
        record = history.load()
        assert (record.generation, record.stale) == (2, [engines3[2].endpoint])
        assert history.save({"v": 3}, 2) == 3
        assert history.load().stale == []
