"""`alarms.json`: states round-trip, the file is replaced atomically, and reading is lenient."""

from __future__ import annotations

import json
import os

import pytest

from reconciler.alarms import evaluate as E
from reconciler.alarms import store as ST
from reconciler.state import StateDir

STATE = E.AlarmState(
    "queue-high",
    state=E.ALARM,
    reason="Threshold Crossed: ...",
    updated_at=1_800_000_030.0,
    datapoints=(E.Datapoint(1_800_000_010.0, None, 0), E.Datapoint(1_800_000_020.0, 95.5, 2)),
    evaluated_at=1_800_000_041.0,
    error="http://127.0.0.1:9/metrics: connection refused",
    basis='{"x": 1}|Average|10',
)


def test_states_round_trip_through_the_file(tmp_path):
    store = ST.AlarmStore(StateDir(str(tmp_path / "state")))
    fresh = E.AlarmState("cpu-high")
    store.save({"queue-high": STATE, "cpu-high": fresh}, 1_800_000_042.0)
    assert store.path == str(tmp_path / "state" / "alarms.json")
    assert store.load() == {"queue-high": STATE, "cpu-high": fresh}
    document = json.loads((tmp_path / "state" / "alarms.json").read_text())
    assert (document["version"], document["writtenAt"], document["pid"]) == (1, 1_800_000_042.0, os.getpid())
    assert document["alarms"]["queue-high"]["stateValue"] == "ALARM"
    assert document["alarms"]["queue-high"]["evaluatedAt"] == 1_800_000_041.0


def test_save_replaces_the_whole_file_and_leaves_no_temporary_file(tmp_path):
    store = ST.AlarmStore(str(tmp_path))
    store.save({"queue-high": STATE, "other": E.AlarmState("other")}, 1.0)
    store.save({"queue-high": STATE}, 2.0)
    assert set(store.load()) == {"queue-high"}
    assert os.listdir(tmp_path) == ["alarms.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary_file(tmp_path, monkeypatch):
    store = ST.AlarmStore(str(tmp_path))
    store.save({"queue-high": STATE}, 1.0)

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ST.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save({}, 2.0)
    assert store.load() == {"queue-high": STATE}
    assert os.listdir(tmp_path) == ["alarms.json"]


@pytest.mark.parametrize(
    "content",
    [
        None,  # no file
        "{not json",
        "[]",
        json.dumps({"version": 2, "alarms": {}}),
        json.dumps({"version": 1, "alarms": []}),
    ],
)
def test_an_unreadable_file_is_no_state(tmp_path, content):
    if content is not None:
        (tmp_path / "alarms.json").write_text(content)
    assert ST.AlarmStore(str(tmp_path)).load() == {}


def test_entries_that_do_not_parse_are_skipped_and_bad_fields_dropped(tmp_path):
    entries = {
        "good": {"stateValue": "OK", "stateReason": "fine", "stateUpdatedTimestamp": 5,
                 "datapoints": [[10, 1.5, 1], ["x", 1, 1], [20, None, 0], [30]]},
        "bad-state": {"stateValue": "RED"},
        "not-a-dict": 3,
        "bad-times": {"stateValue": "ALARM", "stateUpdatedTimestamp": "yesterday", "evaluatedAt": True},
    }
    (tmp_path / "alarms.json").write_text(json.dumps({"version": 1, "alarms": entries}))
    loaded = ST.AlarmStore(str(tmp_path)).load()
    assert set(loaded) == {"good", "bad-times"}
    assert loaded["good"].datapoints == (E.Datapoint(10.0, 1.5, 1), E.Datapoint(20.0, None, 0))
    assert (loaded["good"].updated_at, loaded["good"].reason) == (5.0, "fine")
    assert (loaded["bad-times"].updated_at, loaded["bad-times"].evaluated_at) == (None, None)
