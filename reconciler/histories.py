"""The cluster histories one process reads and writes: loaded once from the ledger, saved when they change.

Owns the in-memory `model.history.History` of each cluster a command or the daemon works on, loading it
from `ledger` (the cluster's engines, with the state directory's copy) on first use and saving a changed
one back, with the generation it was loaded at (a writer that lost track of the newest document fails
instead of overwriting it). Also the ids of new deployments (`ecs-svc/` and 19 digits, as ECS) and events.
Only a holder of the cluster's writer lock saves. It must not decide anything (`planning.deployments`
does) nor touch engines except through `ledger`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from typing import Any

from reconciler import observe
from reconciler.model import history as H
from reconciler.model import spec

log = logging.getLogger("reconciler.history")


class HistoryUnavailable(Exception):
    """A cluster's history could not be read or written; the message names the cluster and the engines."""


def milestone(before: H.History, after: H.History) -> bool:
    """Whether `after` records what must be saved before the pass goes on: a new revision, or a service
    whose PRIMARY deployment is new or ended (anything of a deployment is launched only once it is saved)."""
    if {f: len(r) for f, r in before.revisions.items()} != {f: len(r) for f, r in after.revisions.items()}:
        return True

    def primaries(h: H.History) -> dict[str, tuple[str, str]]:
        return {name: (p.id, p.rollout_state) for name, sh in h.services.items() if (p := sh.primary) is not None}

    return primaries(before) != primaries(after)


def new_id(kind: str) -> str:
    if kind == "deployment":
        return "ecs-svc/" + "".join(str(secrets.randbelow(10)) for _ in range(19))
    return str(uuid.uuid4())


class Keeper:
    """Loaded histories and their saves. `put(..., wait=True)` returns once the history is on a majority of
    the cluster's engines (what must be recorded before anything of it is launched: a new deployment, a
    rollout that ended); `wait=False` hands it to one writer thread that saves the newest pending history of
    each cluster in turn, coalescing the ones in between (events, counts), so a pass never waits on it. A
    save that fails is retried with the next put (the newest history is always the one kept in memory);
    `flush` waits for what is pending and reports the last failure."""

    def __init__(self, engines: observe.Engines, local_dir: str | None):
        self.engines = engines
        self.local_dir = local_dir
        self._histories: dict[str, H.History] = {}  # the newest, saved or not
        self._generations: dict[str, int] = {}  # the generation last loaded or saved per cluster
        self._stores: dict[str, Any] = {}  # cluster -> ledger.History
        self._pending: dict[str, tuple[spec.Cluster, H.History]] = {}
        self._errors: dict[str, str] = {}
        self._unsaved: set[str] = set()  # clusters whose last save failed: nothing is launched before one succeeds
        self._lock = threading.Lock()
        self._saving = threading.Lock()  # one save at a time (generations follow one another)
        self._wake = threading.Condition(self._lock)
        self._writer: threading.Thread | None = None

    def _store(self, cluster: spec.Cluster) -> Any:
        from reconciler import ledger

        with self._lock:
            store = self._stores.get(cluster.name)
            if store is None or store.cluster != cluster:
                store = self._stores[cluster.name] = ledger.History(cluster, self.engines, self.local_dir)
            return store

    def get(self, cluster: spec.Cluster) -> H.History:
        """The history of `cluster`, loaded on first use."""
        with self._lock:
            known = self._histories.get(cluster.name)
        if known is not None:
            return known
        from reconciler import ledger

        try:
            record = self._store(cluster).load()
        except ledger.HistoryError as e:
            raise HistoryUnavailable(f"cluster {cluster.name}: cannot read its history: {e}") from None
        history = H.from_json(cluster.name, record.document, record.generation)
        with self._lock:
            if cluster.name not in self._histories:
                self._histories[cluster.name] = history
                self._generations[cluster.name] = record.generation
                self._unsaved.discard(cluster.name)  # what is loaded is what counts
            return self._histories[cluster.name]

    def loaded(self, name: str) -> H.History | None:
        with self._lock:
            return self._histories.get(name)

    def put(self, cluster: spec.Cluster, history: H.History, wait: bool = True) -> H.History:
        """Keeps `history` as the newest and saves it (see the class docstring); returns it."""
        with self._lock:
            if self._histories.get(cluster.name) is history and cluster.name not in self._pending:
                return history
            self._histories[cluster.name] = history
            self._pending[cluster.name] = (cluster, history)
            if cluster.name in self._unsaved:
                wait = True
            if not wait:
                self._start_writer()
                self._wake.notify_all()
                return history
        self._save(cluster.name, raise_errors=True)
        return history

    def _save(self, name: str, raise_errors: bool) -> None:
        """Saves the pending history of `name`, if any."""
        from reconciler import ledger

        with self._saving:
            with self._lock:
                item = self._pending.pop(name, None)
                generation = self._generations.get(name, 0)
            if item is None:
                return
            cluster, history = item
            try:
                saved = self._store(cluster).save(H.to_json(history), generation)
            except ledger.HistoryError as e:
                message = f"cluster {name}: cannot save its history: {e}"
                with self._lock:
                    if e.generation is not None or "another writer" in str(e):
                        # It got somewhere (the local copy, some engines) or someone else moved it on: read it
                        # again next time (what this process kept is there, if it was the newest), never
                        # write over a generation whose content is not known.
                        self._histories.pop(name, None)
                        self._pending.pop(name, None)
                        self._generations.pop(name, None)
                    else:
                        self._pending.setdefault(name, item)  # retried with the next put or flush
                    self._unsaved.add(name)
                    self._errors[name] = message
                if raise_errors:
                    raise HistoryUnavailable(message) from None
                log.error("%s; retried with the next change", message)
                return
            with self._lock:
                self._generations[name] = saved
                self._errors.pop(name, None)
                if name not in self._pending:
                    self._unsaved.discard(name)

    def _start_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_behind, name="history-writer", daemon=True)
            self._writer.start()

    def _write_behind(self) -> None:
        while True:
            with self._lock:
                while not self._pending:
                    if not self._wake.wait(30.0):
                        self._writer = None
                        return
                name = next(iter(self._pending))
            self._save(name, raise_errors=False)
            with self._lock:
                if name in self._pending and name in self._errors:
                    self._wake.wait(1.0)  # a failing save: try again, but not in a tight loop

    def ready(self, name: str) -> None:
        """Raises HistoryUnavailable while the last save of `name` failed and none has succeeded since (so
        nothing of a deployment that might not be recorded is launched); tries the save again first."""
        with self._lock:
            unsaved = name in self._unsaved
        if unsaved:
            self._save(name, raise_errors=True)
            with self._lock:
                if name in self._unsaved:
                    raise HistoryUnavailable(self._errors.get(name, f"cluster {name}: its history is not saved"))

    def flush(self) -> None:
        """Saves everything pending now; HistoryUnavailable names the first cluster that could not be saved."""
        with self._lock:
            names = list(self._pending)
        for name in names:
            self._save(name, raise_errors=True)

    def forget(self, name: str) -> None:
        """Drops the kept history of `name` (read again on next use: another writer may have moved it on)."""
        with self._lock:
            self._histories.pop(name, None)
            self._pending.pop(name, None)
