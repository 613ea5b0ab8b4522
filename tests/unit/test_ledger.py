"""The cluster's history on its engines (fake engines): a created, never started container and a named volume
per engine holding two slots, generations, majorities for reads and writes, the local copy as cache,
fallback and migration source, repair of stale engines and of cut-short writes, and what never sees it."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import IMAGE, FakeEngine  # noqa: E402

from reconciler import labels as L  # noqa: E402
from reconciler import ledger, observe  # noqa: E402
from reconciler.actions import gc  # noqa: E402
from reconciler.engine import api, pause  # noqa: E402
from reconciler.model import spec  # noqa: E402

NAME = "reconciler-history.c1"


class Fleet:
    """Fake engines by endpoint, the cluster over them, and History objects on it."""

    def __init__(self, n: int):
        self.engines = {f"unix:///fake/{i}.sock": FakeEngine(f"unix:///fake/{i}.sock", images=(IMAGE,)) for i in range(1, n + 1)}
        self.cluster = spec.Cluster("c1", instances=tuple(spec.Instance(f"i{n}", e) for n, e in enumerate(self.engines, 1)))

    def factory(self, inst: spec.Instance) -> FakeEngine:
        return self.engines[inst.endpoint]

    def history(self, local_dir: str | os.PathLike | None = None) -> ledger.History:
        return ledger.History(self.cluster, observe.Engines(self.factory), str(local_dir) if local_dir else None)

    def engine(self, i: int) -> FakeEngine:
        return self.engines[f"unix:///fake/{i}.sock"]

    def generations(self) -> dict[str, int]:
        """endpoint -> the newest generation in the engine's volume (0: none)."""
        out = {}
        for endpoint, engine in self.engines.items():
            files = engine.volumes.get(NAME, {}).get("Files", {})
            out[endpoint] = max((json.loads(raw)["generation"] for raw in files.values()), default=0)
        return out


def slots(engine: FakeEngine) -> dict[str, bytes]:
    return engine.volumes[NAME]["Files"]


def test_the_history_is_a_never_started_pause_container_over_a_labelled_volume_and_a_fresh_reader_sees_it(tmp_path):
    fleet = Fleet(3)
    history = fleet.history(tmp_path / "ci-1")
    assert history.load() == ledger.Record(0, None, history.load().sources)
    assert fleet.generations() == dict.fromkeys(fleet.engines, 0), "a load creates nothing"
    assert all(e.containers == {} and e.volumes == {} for e in fleet.engines.values())

    assert history.save({"revisions": {"web": 1}}, 0) == 1
    for engine in fleet.engines.values():
        (c,) = engine.containers.values()
        assert c["Name"] == NAME and c["State"]["Status"] == "created" and c["Config"]["Image"] == pause.PAUSE_IMAGE
        assert c["Config"]["Labels"] == {L.HISTORY: "c1"}, "never MANAGED: nothing that lists tasks sees it"
        assert c["HostConfig"]["binds"] == [f"{NAME}:/history:rw"]
        assert engine.volumes[NAME]["Labels"] == {L.HISTORY: "c1"}
        assert ("load", pause.PAUSE_IMAGE) in engine.calls and not any(call[0] == "start" for call in engine.calls)
        assert set(slots(engine)) == {"c1.a.json"}
        assert json.loads(slots(engine)["c1.a.json"])["document"] == {"revisions": {"web": 1}}

    fresh = fleet.history(tmp_path / "ci-2").load()  # a fresh machine: another, empty local directory
    assert (fresh.generation, fresh.document) == (1, {"revisions": {"web": 1}})
    assert [(s.where, s.generation) for s in fresh.sources] == [
        *((e, 1) for e in fleet.engines), (str(tmp_path / "ci-2" / "c1.history.json"), 0)]
    assert json.loads((tmp_path / "ci-2" / "c1.history.json").read_text())["generation"] == 1, "the cache is filled"


def test_saves_alternate_slots_and_a_load_takes_the_higher_generation(tmp_path):
    fleet = Fleet(1)
    history = fleet.history()
    for generation in range(1, 5):
        assert history.save({"n": generation}, generation - 1) == generation
        got = {k: json.loads(v)["generation"] for k, v in slots(fleet.engine(1)).items()}
        older = {} if generation == 1 else {"c1.b.json" if generation % 2 else "c1.a.json": generation - 1}
        newest = {"c1.a.json" if generation % 2 else "c1.b.json": generation}
        assert got == {**older, **newest}, "the newest slot is never overwritten"
        assert history.load().document == {"n": generation}


def test_one_engine_of_three_down_still_reads_and_writes(tmp_path):
    fleet = Fleet(3)
    history = fleet.history(tmp_path)
    fleet.engine(3).down = True
    assert history.save({"a": 1}, 0) == 1
    record = history.load()
    assert (record.generation, record.document) == (1, {"a": 1})
    assert record.unreachable == ["unix:///fake/3.sock"]
    (silent,) = [s for s in record.sources if s.generation is None]
    assert silent.error == "engine does not answer (connection refused)"


def test_two_engines_of_three_down_is_a_history_error_naming_them(tmp_path):
    fleet = Fleet(3)
    history = fleet.history(tmp_path)
    history.save({"a": 1}, 0)
    fleet.engine(2).down = fleet.engine(3).down = True
    with pytest.raises(ledger.HistoryError) as err:
        history.load()
    assert str(err.value) == (
        "cannot read the history of cluster c1: it needs 2 of its 3 engines and 1 answered; "
        "unix:///fake/2.sock: engine does not answer (connection refused); "
        "unix:///fake/3.sock: engine does not answer (connection refused)")
    assert err.value.endpoints == ("unix:///fake/2.sock", "unix:///fake/3.sock") and "\n" not in str(err.value)

    with pytest.raises(ledger.HistoryError) as err:
        history.save({"a": 2}, 1)
    assert str(err.value).startswith("could not save the history of cluster c1: it needs 2 of its 3 engines and 1 took "
                                     "it; unix:///fake/2.sock: engine does not answer")
    assert str(err.value).endswith(f"generation 2 is kept on the local copy {tmp_path / 'c1.history.json'}, "
                                   "unix:///fake/1.sock")
    assert err.value.generation == 2 and err.value.endpoints == ("unix:///fake/2.sock", "unix:///fake/3.sock")


def test_a_save_from_a_stale_generation_is_refused_and_writes_nothing(tmp_path):
    fleet = Fleet(3)
    mine, theirs = fleet.history(tmp_path / "mine"), fleet.history(tmp_path / "theirs")
    loaded = mine.load().generation
    assert theirs.save({"by": "them"}, theirs.load().generation) == 1
    with pytest.raises(ledger.HistoryError) as err:
        mine.save({"by": "me"}, loaded)
    assert str(err.value) == (
        "the history of cluster c1 changed since it was loaded at generation 0 (generation 1 on unix:///fake/1.sock, "
        "generation 1 on unix:///fake/2.sock, generation 1 on unix:///fake/3.sock): another writer saved it; load it again")
    assert err.value.endpoints == tuple(fleet.engines)
    assert fleet.generations() == dict.fromkeys(fleet.engines, 1)
    assert not (tmp_path / "mine" / "c1.history.json").exists(), "nothing was written, not even the local copy"
    assert mine.save({"by": "me"}, mine.load().generation) == 2


def test_a_conflict_seen_by_one_engine_of_a_majority_is_enough(tmp_path):
    fleet = Fleet(3)
    mine, theirs = fleet.history(), fleet.history()
    fleet.engine(3).down = True  # they write to engines 1 and 2
    theirs.save({"by": "them"}, 0)
    fleet.engine(3).down, fleet.engine(1).down = False, True  # I see engines 2 and 3: 2 tells
    with pytest.raises(ledger.HistoryError, match=r"generation 1 on unix:///fake/2\.sock\): another writer"):
        mine.save({"by": "me"}, 0)


def test_a_stale_engine_that_missed_a_write_is_repaired_on_the_next_save(tmp_path):
    fleet = Fleet(3)
    history = fleet.history(tmp_path)
    history.save({"v": 1}, 0)
    fleet.engine(3).down = True
    history.save({"v": 2}, 1)
    fleet.engine(3).down = False
    record = history.load()
    assert (record.generation, record.document, record.stale) == (2, {"v": 2}, ["unix:///fake/3.sock"])
    assert fleet.generations()["unix:///fake/3.sock"] == 1, "a load does not write to engines"
    assert history.save({"v": 3}, 2) == 3
    assert fleet.generations() == dict.fromkeys(fleet.engines, 3)
    assert history.load().stale == []


def test_an_engine_that_never_had_it_gets_it_on_the_next_save(tmp_path):
    fleet = Fleet(3)
    history = fleet.history()
    fleet.engine(2).down = True
    history.save({"v": 1}, 0)
    assert fleet.engine(2).containers == {}
    fleet.engine(2).down = False
    history.save({"v": 2}, history.load().generation)
    assert fleet.generations() == dict.fromkeys(fleet.engines, 2)


def test_a_write_cut_short_leaves_the_previous_generation_readable(tmp_path):
    fleet = Fleet(1)
    history = fleet.history()
    history.save({"v": 1}, 0)  # slot a
    history.save({"v": 2}, 1)  # slot b
    files = slots(fleet.engine(1))
    files["c1.a.json"] = files["c1.a.json"][:-7]  # the third save into slot a was cut short mid-upload
    record = history.load()
    assert (record.generation, record.document) == (2, {"v": 2}), "the damaged slot is ignored"
    assert history.save({"v": 3}, 2) == 3
    assert json.loads(files["c1.a.json"])["document"] == {"v": 3}, "the damaged slot is the one overwritten"
    files["c1.a.json"] = b""
    assert history.load().generation == 2


def test_the_local_copy_is_the_fallback_and_is_migrated_to_engines_that_have_nothing(tmp_path):
    fleet = Fleet(3)
    local = tmp_path / "c1.history.json"
    local.write_text(json.dumps({"format": 1, "cluster": "c1", "generation": 7, "savedAt": "x", "document": {"old": True}}))
    history = fleet.history(tmp_path)
    record = history.load()
    assert (record.generation, record.document) == (7, {"old": True})
    fleet.engine(2).down = fleet.engine(3).down = True
    assert history.load().document == {"old": True}, "no engine that answers holds one: a migration, not an error"
    fleet.engine(2).down = fleet.engine(3).down = False
    assert history.save({"new": True}, 7) == 8
    assert fleet.generations() == dict.fromkeys(fleet.engines, 8)


def test_a_local_copy_newer_than_the_engines_counts_as_the_newest(tmp_path):
    fleet = Fleet(3)
    history = fleet.history(tmp_path / "here")
    history.save({"v": 1}, 0)
    fleet.engine(1).down = fleet.engine(2).down = True
    with pytest.raises(ledger.HistoryError) as err:
        history.save({"v": 2}, 1)  # reaches the state directory and engine 3 only
    fleet.engine(1).down = fleet.engine(2).down = False
    record = history.load()
    assert (record.generation, record.document) == (2, {"v": 2}) == (err.value.generation, {"v": 2})
    assert history.save({"v": 3}, record.generation) == 3
    assert fleet.generations() == dict.fromkeys(fleet.engines, 3)
    assert fleet.history(tmp_path / "elsewhere").load().document == {"v": 3}


def test_a_damaged_local_copy_is_ignored_and_replaced(tmp_path, caplog):
    fleet = Fleet(1)
    fleet.history().save({"v": 1}, 0)
    (tmp_path / "c1.history.json").write_text('{"format": 1, "clus')
    record = fleet.history(tmp_path).load()
    assert record.document == {"v": 1} and "is damaged: ignored" in caplog.text
    assert json.loads((tmp_path / "c1.history.json").read_text())["document"] == {"v": 1}


def test_a_removed_container_is_made_again_over_the_volume_that_kept_the_history(tmp_path):
    fleet = Fleet(1)
    engine = fleet.engine(1)
    fleet.history().save({"v": 1}, 0)
    engine.remove_container(engine.inspect_container(NAME)["Id"])
    assert engine.containers == {} and NAME in engine.volumes
    assert fleet.history().load().document == {"v": 1}
    (c,) = engine.containers.values()
    assert c["Name"] == NAME and c["State"]["Status"] == "created"


def test_a_foreign_container_with_the_history_name_is_never_written(tmp_path):
    fleet = Fleet(1)
    engine = fleet.engine(1)
    engine.create_container(api.ContainerCreate(name=NAME, image=IMAGE, labels={"someone": "else"}))
    with pytest.raises(ledger.HistoryError) as err:
        fleet.history().save({"v": 1}, 0)
    assert f"a container named {NAME} that is no reconciler history (no io.reconciler.history=c1 label)" in str(err.value)
    assert not any(call[0] == "put_file" for call in engine.calls)
    assert ledger.remove(fleet.cluster, observe.Engines(fleet.factory)) == [
        f"unix:///fake/1.sock: a container named {NAME} that is no reconciler history (no io.reconciler.history=c1 "
        "label) has the history's name; remove or rename it"]
    assert len(engine.containers) == 1


def test_a_document_too_large_to_read_back_is_refused(tmp_path, monkeypatch):
    fleet = Fleet(1)
    monkeypatch.setattr(api, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ledger.HistoryError, match=r"would be \d+ bytes, over the 1000 an engine read takes"):
        fleet.history(tmp_path).save({"x": "y" * 1000}, 0)
    assert fleet.engine(1).containers == {} and not (tmp_path / "c1.history.json").exists()


def test_remove_takes_container_volume_and_local_copy_and_names_what_it_could_not_reach(tmp_path):
    fleet = Fleet(3)
    fleet.history(tmp_path).save({"v": 1}, 0)
    fleet.engine(3).down = True
    failed = ledger.remove(fleet.cluster, observe.Engines(fleet.factory), str(tmp_path))
    assert failed == ["unix:///fake/3.sock: engine does not answer (connection refused)"]
    assert fleet.engine(1).containers == {} and fleet.engine(1).volumes == {}
    assert not (tmp_path / "c1.history.json").exists()
    fleet.engine(3).down = False
    assert ledger.remove(fleet.cluster, observe.Engines(fleet.factory)) == []
    assert fleet.history().load().generation == 0


def test_observation_and_gc_never_see_the_history(tmp_path):
    fleet = Fleet(2)
    engines = observe.Engines(fleet.factory)
    ledger.History(fleet.cluster, engines, None).save({"v": 1}, 0)
    observed = observe.observe_cluster(fleet.cluster, engines)
    assert observed.tasks == ()
    gc.collect(types.SimpleNamespace(clusters={"c1": fleet.cluster}), engines, {"c1": observed})
    assert all(NAME in e.volumes and len(e.containers) == 1 for e in fleet.engines.values())


def test_engines_are_read_in_parallel_and_once_per_endpoint():
    fleet = Fleet(1)
    (endpoint,) = fleet.engines
    fleet.cluster = spec.Cluster("c1", instances=(spec.Instance("i1", endpoint),),
                                 fargate=(spec.Instance("pool", endpoint, fargate=True),))
    history = fleet.history()
    history.save({"v": 1}, 0)
    record = history.load()
    assert [s.where for s in record.sources] == [endpoint], "one engine, however many instances name it"
    assert sum(1 for call in fleet.engine(1).calls if call == ("put_file", "/history/c1.a.json")) == 1
