"""What wakes the daemon: manifest file changes, engine events, and a periodic resync.

Owns turning each source into keys on the work queue and nothing else: a debounced watchdog observer
for the manifest tree (editor swap and temp files and `.git` ignored, atomic-rename saves seen), one
event-stream follower per engine (labelled containers' die/oom/health_status/destroy/stop, resumed
from the last event after a reconnect, with backoff while the engine is down), and a jittered timer.
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
WATCHED_ACTIONS = ("die", "oom", "destroy", "stop", "kill")
# The engine sends `die` a moment before its container list says "exited"; a worker that re-observes
# right away can still see the container running. Looking again shortly after closes that gap.
RECHECK_AFTER = (0.05, 0.25, 1.0)


def service_key(cluster: str, service: str) -> str:
    return f"service:{cluster}/{service}"


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

    The stream is read in windows (`until` a few seconds ahead) so the thread can stop promptly and
    resumes exactly where it left off (`since` the end of the last window). While the engine does not
    answer, it retries with backoff; when the engine answers again, `on_reconnect` asks for a resync.
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
    ):
        super().__init__(daemon=True, name=f"events-{cluster}")
        self.cluster = cluster
        self.connect = connect
        self.enqueue = enqueue
        self.enqueue_after = enqueue_after
        self.on_reconnect = on_reconnect
        self.on_status = on_status
        self.window = window
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        since = time.time()
        delay = 0.5
        was_down = False
        while not self._stop.is_set():
            until = time.time() + self.window
            try:
                engine = self.connect()
                for event in engine.events(labels.selector(self.cluster), since=since, until=until):
                    self._handle(event)
                    if self._stop.is_set():
                        return
                since = until
                if was_down:
                    was_down = False
                    log.info("engine answers again; resyncing", extra={"cluster": self.cluster, "endpoint": engine.endpoint})
                    self.on_status(True)
                    self.on_reconnect()
                delay = 0.5
            except api.EngineError as e:
                if not was_down:
                    log.warning("engine event stream lost: %s", e.message, extra={"cluster": self.cluster, "endpoint": e.endpoint})
                    self.on_status(False)
                was_down = True
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _handle(self, event: dict) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        service = attributes.get(labels.SERVICE)
        if not service:
            return
        if action in WATCHED_ACTIONS or action.startswith("health_status"):
            log.debug("engine event %s for service %s", action, service, extra={"cluster": self.cluster})
            key = service_key(self.cluster, service)
            self.enqueue(key)
            for delay in RECHECK_AFTER:
                self.enqueue_after(key, delay)


class Resync(threading.Thread):
    """Enqueues ALL every `interval` seconds, with +-10 % jitter so several daemons don't align."""

    def __init__(self, interval: float, enqueue: Callable[[str], None], seed: int | None = None):
        super().__init__(daemon=True, name="resync")
        self.interval = interval
        self.enqueue = enqueue
        self._stop = threading.Event()
        self._random = random.Random(seed)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(self.interval * self._random.uniform(0.9, 1.1)):
            self.enqueue(ALL)
