"""Images on engines: an image is present on an engine before a container of it is created, and it is
pulled once per engine however many tasks need it at the same moment.

Owns the per-(engine, image) lock that makes concurrent starts share one pull, the pause image's local
build for awsvpc tasks, and the pull progress lines. It must not create containers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from reconciler.actions.result import TaskFailed
from reconciler.clock import SYSTEM, Clock
from reconciler.engine import api, pause


class Images:
    def __init__(self, on_progress: Callable[[str], None] = lambda line: None, clock: Clock = SYSTEM):
        self.on_progress = on_progress
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._present: set[tuple[str, str]] = set()  # seen on the engine; `forget` when a create says otherwise
        self._guard = threading.Lock()

    def forget(self, engine: api.Engine, ref: str) -> None:
        with self._guard:
            self._present.discard((engine.endpoint, ref))

    def ensure(self, engine: api.Engine, ref: str, auth: Mapping[str, str] | None) -> None:
        """Makes sure `ref` is on `engine`; concurrent callers for the same pair wait for one pull."""
        key = (engine.endpoint, ref)
        with self._guard:
            if key in self._present:
                return
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._present:
                self._pull(engine, ref, auth)
            with self._guard:
                self._present.add(key)

    def _pull(self, engine: api.Engine, ref: str, auth: Mapping[str, str] | None) -> None:
        if engine.has_image(ref):
            return
        if ref == pause.PAUSE_IMAGE:
            try:
                image = pause.image_tar(engine.info().architecture)
            except ValueError as e:
                raise TaskFailed(f"networkMode awsvpc needs the pause image: {e}") from None
            engine.load_image_tar(image, ref)
            return
        t0 = self.clock.monotonic()
        self.on_progress(f"pull   {ref} on {engine.endpoint}: pulling")
        try:
            engine.pull_image(ref, auth)
        except api.EngineError as e:
            self.on_progress(f"pull   {ref} on {engine.endpoint}: FAILED {e.message}")
            raise
        self.on_progress(f"pull   {ref} on {engine.endpoint}: done ({self.clock.monotonic() - t0:.1f}s)")
