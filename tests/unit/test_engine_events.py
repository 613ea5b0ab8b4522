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


def labelled(ns: int, action: str, service: str = "app", **attributes: str) -> dict:
    e = event(ns, "c" + action, action)
    e["Actor"]["Attributes"] = {labels.MANAGED: "true", labels.CLUSTER: "c1", labels.SERVICE: service, **attributes}
    return e


def handled(*events: dict) -> list[str]:
    keys: list[str] = []
    follower = triggers.EngineEvents("c1", connect=DownEngine, enqueue=keys.append, on_reconnect=lambda: None)
    for e in events:
        follower._handle(e)
    return keys


WAKES = ["start", "die", "oom", "kill", "stop", "destroy", "health_status: healthy", "health_status: unhealthy",
         "health_status: starting", "health_status"]
DOES_NOT_WAKE = ["create", "attach", "exec_create: /bin/sh -c curl -f localhost", "exec_start: /bin/sh -c curl -f localhost",
                 "exec_die", "restart_policy", "rename", "health_statusx", "starting", "top"]


def test_start_and_health_status_events_wake_the_service_and_a_health_probe_exec_does_not():
    for action in WAKES:
        assert handled(labelled(1, action)) == [triggers.service_key("c1", "app")], action
    for action in DOES_NOT_WAKE:
        assert handled(labelled(1, action)) == [], action


def test_only_events_of_containers_the_reconciler_created_in_this_cluster_count():
    assert handled(labelled(1, "start", **{labels.CLUSTER: "c2"})) == []
    assert handled(labelled(1, "die", **{labels.MANAGED: "false"})) == []
    unlabelled = labelled(1, "die")
    del unlabelled["Actor"]["Attributes"][labels.SERVICE]  # a one-off task or a lock container: no service
    assert handled(unlabelled) == []
    network = {**labelled(1, "destroy"), "Type": "network"}
    assert handled(network) == []


class FlakyEngine:
    """Down (connection refused at once) until `up` is set; then answers each window at once, empty."""

    endpoint = "fake://e1"

    def __init__(self):
        self.up = False
        self.attempts: list[float] = []

    def events(self, selector, since=None, until=None):
        self.attempts.append(time.monotonic())
        if not self.up:
            raise api.Unreachable(self.endpoint, "connection refused")
        return iter([])


def test_a_down_engine_is_retried_about_once_a_second_without_spinning():
    engine = FlakyEngine()
    statuses: list[bool] = []
    follower = triggers.EngineEvents("c1", connect=lambda: engine, enqueue=lambda key: None, on_reconnect=lambda: None,
                                     on_status=statuses.append, seed=1)
    follower.start()
    time.sleep(3.2)
    follower.stop()
    follower.join(5)
    gaps = [b - a for a, b in zip(engine.attempts, engine.attempts[1:], strict=False)]
    assert 4 <= len(engine.attempts) <= 10, f"{len(engine.attempts)} connect attempts in 3.2 s"
    assert max(gaps) <= triggers.RETRY_CAP + 0.1, gaps
    assert min(gaps) >= triggers.RETRY_FIRST * (1 - triggers.RETRY_JITTER) - 0.02, gaps
    assert statuses == [False]  # the loss is reported once, not once per attempt


def test_an_engine_that_comes_back_is_followed_again_within_about_a_second():
    engine = FlakyEngine()
    reconnected: list[float] = []
    statuses: list[bool] = []
    follower = triggers.EngineEvents("c1", connect=lambda: engine, enqueue=lambda key: None,
                                     on_reconnect=lambda: reconnected.append(time.monotonic()), on_status=statuses.append,
                                     window=5.0, seed=2)
    follower.start()
    time.sleep(4.0)  # long enough for the old backoff to have grown past several seconds
    engine.up = True
    back = time.monotonic()
    deadline = back + 5
    while not reconnected and time.monotonic() < deadline:
        time.sleep(0.02)
    follower.stop()
    follower.join(5)
    assert reconnected, "on_reconnect never fired"
    assert reconnected[0] - back <= triggers.RETRY_CAP + triggers.PROBE_WINDOW + 0.2, reconnected[0] - back
    assert statuses == [False, True]
