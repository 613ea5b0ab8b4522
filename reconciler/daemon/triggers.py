"""What wakes the daemon: manifest file changes, engine events, and a periodic resync.

Owns turning each source into keys on the work queue and nothing else: a debounced watchdog observer
for the manifest tree (editor swap and temp files and `.git` ignored, atomic-rename saves seen), one
event-stream follower per (cluster, engine) (labelled containers' start/die/oom/kill/stop/destroy and
health_status changes, resumed from the last event after a reconnect, retried about once a second while
the engine is down so an engine that comes back is followed again within about a second), and a
jittered timer. Which followers run is `daemon.membership`'s to say.
Triggers never decide or act: the worker re-observes whatever a key names (level-triggered).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler import labels
from reconciler.engine import api
from reconciler.manifests import loader

log = logging.getLogger("reconciler.daemon")

ALL = "*"  # the key for "everything": reload manifests and reconcile every service
# Container event actions that wake the service (matched exactly: `exec_die` of a health probe is not
# `die`), and prefixes of actions that carry a value (Docker sends "health_status: healthy").
WATCHED_ACTIONS = ("start", "die", "oom", "destroy", "stop", "kill", "health_status")
WATCHED_PREFIXES = ("health_status:",)
# While an engine does not answer, the follower retries after RETRY_FIRST seconds, doubling to RETRY_CAP,
# each wait cut by up to RETRY_JITTER of itself (followers of one engine don't align). A retry that reaches
# the engine reads a window of at most PROBE_WINDOW seconds, at whose end the reconnect is reported.
RETRY_FIRST = 0.25
RETRY_CAP = 1.0
RETRY_JITTER = 0.2
PROBE_WINDOW = 0.25
UNEXPECTED_CAP = 30.0  # the retry of a follower that hit an unexpected error (logged each time)
# The engine sends `die` a moment before its container list says "exited"; a worker that re-observes
# right away can still see the container running. Looking again shortly after closes that gap.
RECHECK_AFTER = (0.05, 0.25, 1.0)


def service_key(cluster: str, service: str) -> str:
    return f"service:{cluster}/{service}"


def watched(action: str) -> bool:
    """Whether a container event's action wakes its service."""
    return action in WATCHED_ACTIONS or action.startswith(WATCHED_PREFIXES)


def _relevant(path: str) -> bool:
    parts = [p for p in path.split(os.sep) if p]
    if any(loader._ignored(p) for p in parts) or any(p == ".git" for p in parts):
        return False
    name = parts[-1] if parts else ""
    return name.endswith(loader.EXTENSIONS) or "." not in name  # a directory appearing or going


class FileTrigger(FileSystemEventHandler):
    """Calls `fire` once, `debounce` seconds after the last relevant change under `paths`."""

    def __init__(self, paths: Iterable[str], fire: Callable[[], None], debounce: float = 0.2):
        self.paths = [os.path.abspath(p) for p in paths]
        self.fire = fire
        self.debounce = debounce
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._observer = Observer()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if not any(p and _relevant(str(p)) for p in paths):
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self.fire)
            self._timer.daemon = True
            self._timer.start()

    def start(self) -> None:
        for p in self.paths:
            target = p if os.path.isdir(p) else os.path.dirname(p)
            self._observer.schedule(self, target, recursive=os.path.isdir(p))
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self._observer.stop()
        self._observer.join(timeout=5)


class EngineEvents(threading.Thread):
    """Follows one engine's container events for one cluster; maps them to service keys.

    The stream is read in windows (`until` `window` seconds ahead by the local clock) so the thread can
    stop promptly. The next window starts `since` the last event received (events at that instant that
    were handled already are skipped, not handled twice), or since the end of the window when it brought
    none: `since` never moves backwards nor past what was received. A window the engine ends early (its
    clock runs ahead of ours, so `until` is already past for it) is waited out by the local clock before
    the next request, so a skewed engine costs one request per window, not a busy loop. While the engine
    does not answer, it retries every `RETRY_CAP` seconds at most (a jittered 0.25 s doubling to 1 s: a
    connect attempt a second, never a busy loop), reading a short `PROBE_WINDOW` each time; when one
    reaches the engine, `on_reconnect` asks for a resync at that window's end, so an engine restarted
    under the daemon is followed again within about a second. Events are taken only from containers the
    reconciler created in this cluster (the label filter the engine applies, checked again here).

    A silently dead peer: the window is bounded only if each read of the stream is. With `until` at most
    `window` seconds away, a healthy engine never leaves a read waiting longer than that, so a read timeout
    above `window` would be safe. But docker-py's `APIClient.events` requests the stream with
    `timeout=None` (docker 7.x), so the client's 60 s timeout does not apply and a read from a peer that
    vanished without closing the connection waits until TCP gives up. Bounding it belongs to
    `engine.docker_engine` (the only module importing the SDK); meanwhile the periodic resync, whose calls
    are bounded, keeps such an engine's services converged.
    """

    def __init__(
        self,
        cluster: str,
        connect: Callable[[], api.Engine],
        enqueue: Callable[[str], None],
        on_reconnect: Callable[[], None],
        on_status: Callable[[bool], None] = lambda up: None,
        window: float = 5.0,
        enqueue_after: Callable[[str, float], None] = lambda key, delay: None,
        seed: int | None = None,
    ):
        super().__init__(daemon=True, name=f"events-{cluster}")
        self.cluster = cluster
        self.connect = connect
        self.enqueue = enqueue
        self.enqueue_after = enqueue_after
        self.on_reconnect = on_reconnect
        self.on_status = on_status
        self.window = window
        self._random = random.Random(seed)
        self._stopping = threading.Event()  # not `_stop`: threading.Thread's own method of that name

    def stop(self) -> None:
        self._stopping.set()

    def _retry_wait(self, delay: float) -> float:
        return delay * (1.0 - self._random.uniform(0.0, RETRY_JITTER))

    def run(self) -> None:
        cursor = _Cursor(time.time())
        delay = RETRY_FIRST
        unexpected = RETRY_FIRST
        was_down = False
        while not self._stopping.is_set():
            # after a failure, a short window: the reconnect is reported at its end, within about a second
            until = time.time() + (min(self.window, PROBE_WINDOW) if was_down else self.window)
            try:
                engine = self.connect()
                for event in engine.events(labels.selector(self.cluster), since=cursor.since, until=until):
                    if cursor.take(event):
                        self._handle(event)
                    if self._stopping.is_set():
                        return
                cursor.window_ended(until)
                if was_down and not self._stopping.is_set():
                    log.info("engine answers again; resyncing", extra={"cluster": self.cluster, "endpoint": engine.endpoint})
                    self.on_status(True)
                    self.on_reconnect()
                was_down = False
                delay = unexpected = RETRY_FIRST
                self._stopping.wait(max(0.0, until - time.time()))  # the engine ended the window early: wait it out
            except api.EngineError as e:
                if not was_down and not self._stopping.is_set():
                    log.warning("engine event stream lost: %s", e.message, extra={"cluster": self.cluster, "endpoint": e.endpoint})
                    self.on_status(False)
                was_down = True
                self._stopping.wait(self._retry_wait(delay))
                delay = min(delay * 2, RETRY_CAP)
            except Exception as e:  # noqa: BLE001 - a follower must outlive anything one stream throws
                # not an engine that is down (that is an EngineError) but a bug or a surprise, logged each
                # time: retried with a longer backoff so it does not fill the log
                log.error("engine event follower: unexpected %s: %s", type(e).__name__, e, extra={"cluster": self.cluster})
                self._stopping.wait(self._retry_wait(unexpected))
                unexpected = min(unexpected * 2, UNEXPECTED_CAP)

    def _handle(self, event: dict) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        service = attributes.get(labels.SERVICE)
        if not service or event.get("Type", "container") != "container":
            return
        # the engine filters by labels already; a label that is there and says otherwise is not ours
        if attributes.get(labels.MANAGED, "true") != "true" or attributes.get(labels.CLUSTER, self.cluster) != self.cluster:
            return
        if watched(action):
            log.debug("engine event %s for service %s", action, service, extra={"cluster": self.cluster})
            key = service_key(self.cluster, service)
            self.enqueue(key)
            for delay in RECHECK_AFTER:
                self.enqueue_after(key, delay)


class _Cursor:
    """Where the next window of an event stream starts, and which events at that instant were handled.

    `since` goes to the last received event's time (rounded down to the microsecond: the Engine API's
    `since` is inclusive and a float carries no more), or to the end of a window that brought no event.
    Events at or before `since` that were taken already are recognized and skipped when sent again.
    """

    def __init__(self, since: float):
        self.since = since
        self._last_ns: int | None = None  # time of the last event taken in the current window
        self._taken: set[tuple[int, str, str]] = set()  # events taken whose time is >= since

    def take(self, event: dict) -> bool:
        """True when `event` is new (to handle); False for one taken in an earlier window."""
        ns = _time_ns(event)
        if ns is None:
            return True
        key = (ns, str(event.get("id") or (event.get("Actor") or {}).get("ID") or ""), str(event.get("Action") or event.get("status") or ""))
        if key in self._taken:
            return False
        self._taken.add(key)
        self._last_ns = ns if self._last_ns is None else max(self._last_ns, ns)
        return True

    def window_ended(self, until: float) -> None:
        if self._last_ns is not None:
            since = (self._last_ns // 1000) / 1e6
        else:
            since = until
        self.since = max(self.since, since)
        floor_ns = int(self.since * 1e6) * 1000
        self._taken = {k for k in self._taken if k[0] >= floor_ns}
        self._last_ns = None


def _time_ns(event: dict) -> int | None:
    value = event.get("timeNano")
    if isinstance(value, int) and value > 0:
        return value
    seconds = event.get("time")
    if isinstance(seconds, int | float) and seconds > 0:
        return int(seconds * 1_000_000_000)
    return None


class Resync(threading.Thread):
    """Enqueues ALL every `interval` seconds, with +-10 % jitter so several daemons don't align."""

    def __init__(self, interval: float, enqueue: Callable[[str], None], seed: int | None = None):
        super().__init__(daemon=True, name="resync")
        self.interval = interval
        self.enqueue = enqueue
        self._stopping = threading.Event()
        self._random = random.Random(seed)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.wait(self.interval * self._random.uniform(0.9, 1.1)):
            self.enqueue(ALL)
