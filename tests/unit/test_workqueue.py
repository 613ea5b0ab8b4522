"""The daemon's work queue: de-duplication, one worker per key, delays and backoff (simulated clock)."""

from __future__ import annotations

import threading

from reconciler.daemon import workqueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_duplicates_coalesce_and_order_is_kept():
    q = workqueue.WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        q.add(key)
    assert len(q) == 3
    assert [q.get(0), q.get(0), q.get(0)] == ["a", "b", "c"]
    assert q.get(0) is None


def test_a_key_in_process_is_not_handed_out_again_until_done():
    q = workqueue.WorkQueue()
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")  # changed while being processed
    assert q.get(0) is None  # not to a second worker
    q.done("a")
    assert q.get(0) == "a"  # but once more after the first is done
    q.done("a")
    assert q.get(0) is None


def test_delayed_keys_wait_for_their_time():
    clock = Clock()
    q = workqueue.WorkQueue(clock=clock)
    q.add_after("later", 5)
    assert q.get(0) is None
    clock.now += 5
    assert q.get(0) == "later"


def test_backoff_doubles_to_the_cap_and_forget_resets():
    q = workqueue.WorkQueue(base_delay=0.5, max_delay=4, clock=Clock())
    assert [q.add_rate_limited("k") for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert q.failures("k") == 6
    q.forget("k")
    assert q.add_rate_limited("k") == 0.5


def test_shutdown_releases_blocked_workers():
    q = workqueue.WorkQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.shutdown()
    t.join(5)
    assert not t.is_alive() and got == [None]
    q.add("x")
    assert q.get(0) is None
