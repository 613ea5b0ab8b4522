"""Runs actions in the background and keeps the books on work in flight.

Owns the thread pool that carries out starts, stops and container advances; per-engine bounds (creates
and starts share `concurrency` slots per engine; stops have their own, wider `stop_concurrency`, since a
stop that waits out a `stopTimeout` costs the engine nothing); the expectations of what is in flight
(`inflight()`: starts with their task ids and reservations, tasks being stopped or advanced), released
when an action ends; the results; and a completion callback, so the next reconcile pass runs as soon as
something finished. `launch` returns at once. It must not decide (the planner does) and must not wait
for anything but its own actions.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from reconciler import observe, state
from reconciler.actions.images import Images
from reconciler.actions.launch import Launcher
from reconciler.actions.result import ActionResult
from reconciler.actions.stop import Stopper
from reconciler.clock import SYSTEM, Clock
from reconciler.model import inflight as F
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import resources

log = logging.getLogger("reconciler")

DEFAULT_STOP_CONCURRENCY = 64
MAX_THREADS = 256


class Runner:
    def __init__(
        self,
        engines: observe.Engines,
        state_dir: state.StateDir | None = None,
        concurrency: int = 8,
        stop_concurrency: int = DEFAULT_STOP_CONCURRENCY,
        environ: Mapping[str, str] | None = None,
        started_by: str = "reconciler",
        clock: Clock = SYSTEM,
        on_result: Callable[[ActionResult], None] | None = None,
        on_progress: Callable[[str], None] | None = None,
    ):
        self.clock = clock
        self.concurrency = max(1, concurrency)
        self.stop_concurrency = max(1, stop_concurrency)
        self.on_result = on_result or (lambda r: None)
        images = Images(on_progress or (lambda line: None), clock)
        self.launcher = Launcher(engines, images, self._create_slot, environ, started_by, clock)
        self.stopper = Stopper(engines, self._stop_slot, state_dir, clock)
        self.results: list[ActionResult] = []
        self._pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="action")
        self._cond = threading.Condition()
        self._creates: dict[str, threading.Semaphore] = {}
        self._stops: dict[str, threading.Semaphore] = {}
        self._starts: dict[str, F.PendingStart] = {}
        self._stopping: set[str] = set()
        self._advancing: set[str] = set()
        self._running = 0
        self._completed = 0

    # -- slots ---------------------------------------------------------------------------------------

    def _create_slot(self, endpoint: str) -> threading.Semaphore:
        with self._cond:
            return self._creates.setdefault(endpoint, threading.Semaphore(self.concurrency))

    def _stop_slot(self, endpoint: str) -> threading.Semaphore:
        with self._cond:
            return self._stops.setdefault(endpoint, threading.Semaphore(self.stop_concurrency))

    # -- books ---------------------------------------------------------------------------------------

    def inflight(self) -> F.InFlight:
        with self._cond:
            return F.InFlight(tuple(self._starts.values()), frozenset(self._stopping), frozenset(self._advancing))

    def idle(self) -> bool:
        with self._cond:
            return self._running == 0

    def completed(self) -> int:
        """How many actions have ended so far (a cursor for `wait`)."""
        with self._cond:
            return self._completed

    def wait(self, since: int, timeout: float) -> int:
        """Waits until more than `since` actions have ended, or `timeout` seconds; returns the new count."""
        with self._cond:
            self._cond.wait_for(lambda: self._completed > since, timeout)
            return self._completed

    def drain(self, timeout: float | None = None) -> bool:
        """Waits until nothing is in flight; False if `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._running == 0, timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    # -- launching -----------------------------------------------------------------------------------

    def launch(self, desired: spec.DesiredState, step: P.Step) -> list[str]:
        """Launches every action of `step` and returns at once, with the task ids of its starts.
        The actions are in flight (see `inflight`) from before this returns until they end."""
        ids = []
        with self._cond:
            for a in step.stops:
                self._stopping.add(a.task_id)
            for a in step.advances:
                self._advancing.add(a.task_id)
            for a in step.starts:
                task_id = uuid.uuid4().hex
                res = resources.reservation(a.task_definition.spec)
                self._starts[task_id] = F.PendingStart(a.cluster, a.service, a.instance, task_id, a.task_definition.task_hash,
                                                       a.group, res["cpu"], res["memory"], res["ports"])
                ids.append(task_id)
            self._running += len(step.stops) + len(step.advances) + len(step.starts)
        for a in step.stops:
            self._pool.submit(self._run, lambda a=a: self.stopper.stop(desired, a), lambda a=a: self._stopping.discard(a.task_id))
        for a in step.advances:
            self._pool.submit(self._run, lambda a=a: self.launcher.advance(desired, a), lambda a=a: self._advancing.discard(a.task_id))
        for a, task_id in zip(step.starts, ids, strict=True):
            self._pool.submit(self._run, lambda a=a, t=task_id: self.launcher.start(desired, a, t),
                              lambda t=task_id: self._starts.pop(t, None))
        return ids

    def _run(self, action: Callable[[], ActionResult], release: Callable[[], None]) -> None:
        result: ActionResult | None = None
        try:
            result = action()
        except Exception as e:  # noqa: BLE001 - the actions never raise; a bug here must not lose the books
            log.error("an action failed unexpectedly: %s", e, exc_info=True)
        finally:
            with self._cond:
                release()
                if result is not None:
                    self.results.append(result)
        if result is not None:
            try:
                self.on_result(result)
            except Exception as e:  # noqa: BLE001 - a callback's failure must not lose the books
                log.error("while reporting %s: %s", result.line(), e, exc_info=True)
        with self._cond:
            self._running -= 1
            self._completed += 1
            self._cond.notify_all()
