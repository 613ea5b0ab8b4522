"""The engine event follower: windows by the local clock, resuming from the last event, no busy loop."""

from __future__ import annotations

import time

from reconciler import labels
from reconciler.daemon import triggers
from reconciler.engine import api


class ScriptedEngine:
    """Answers each events() request with the next scripted window, at once (like an engine whose clock
    runs ahead, for which every `until` is already past); then with empty windows."""

    endpoint = "fake://e1"

    def __init__(self, windows=()):
        self.windows = [list(w) for w in windows]
        self.requests: list[tuple[float, float]] = []

    def events(self, selector, since=None, until=None):
        self.requests.append((since, until))
        return iter(self.windows.pop(0) if self.windows else [])


def event(ns: int, task: str, action: str = "die") -> dict:
    return {"Type": "container", "Action": action, "id": task, "timeNano": ns, "time": ns // 1_000_000_000,
            "Actor": {"ID": task, "Attributes": {labels.SERVICE: "app"}}}


def follow(engine, window: float, seconds: float) -> list[str]:
    keys: list[str] = []
    follower = triggers.EngineEvents("c1", connect=lambda: engine, enqueue=keys.append, on_reconnect=lambda: None,
                                     window=window)
    follower.start()
    time.sleep(seconds)
    follower.stop()
    follower.join(5)
    assert not follower.is_alive()
    return keys


def test_a_window_the_engine_ends_early_is_waited_out_instead_of_spinning():
    engine = ScriptedEngine()
    follow(engine, window=0.2, seconds=0.7)
    assert 2 <= len(engine.requests) <= 6, f"{len(engine.requests)} requests in 0.7 s with 0.2 s windows"


def test_the_next_window_starts_at_the_last_event_and_a_replayed_event_is_not_handled_twice():
    base = time.time_ns() + 10_000_000  # ahead of the follower's start, as from an engine whose clock runs ahead
    first, second = event(base + 1234, "t1"), event(base + 2_000_000_567, "t2")
    engine = ScriptedEngine([[first], [first, second], []])
    keys = follow(engine, window=0.1, seconds=0.45)
    assert keys == [triggers.service_key("c1", "app")] * 2  # t1 once (not again when replayed), t2 once
    since = [s for s, _ in engine.requests]
    assert since[1] == ((base + 1234) // 1000) / 1e6  # the last event, to the microsecond (not past it)
    assert since[2] == ((base + 2_000_000_567) // 1000) / 1e6
    assert since == sorted(since), "since never moves backwards"


def test_a_window_without_events_moves_since_to_its_end():
    engine = ScriptedEngine()
    follow(engine, window=0.1, seconds=0.35)
    assert engine.requests[1][0] == engine.requests[0][1]


class DownEngine:
    endpoint = "fake://e1"

    def events(self, selector, since=None, until=None):
        raise api.Unreachable(self.endpoint, "connection refused")


def test_no_status_is_reported_once_stopping():
    statuses: list[bool] = []
    follower = triggers.EngineEvents("c1", connect=DownEngine, enqueue=lambda key: None, on_reconnect=lambda: None,
                                     on_status=statuses.append)
    follower.stop()
    follower.run()  # returns at once: nothing reported for an engine the daemon no longer follows
    assert statuses == []
