"""The cluster histories one process reads and writes: loaded once from the ledger, saved when they change.

Owns the in-memory `model.history.History` of each cluster a command or the daemon works on, loading it
from `ledger` (the cluster's engines, with the state directory's copy) on first use and saving a changed
one back, with the generation it was loaded at (a writer that lost track of the newest document fails
instead of overwriting it). Also the ids of new deployments (`ecs-svc/` and 19 digits, as ECS) and events.
Only a holder of the cluster's writer lock saves. It must not decide anything (`planning.deployments`
does) nor touch engines except through `ledger`.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from typing import Any

from reconciler import observe
from reconciler.model import history as H
from reconciler.model import spec


class HistoryUnavailable(Exception):
    """A cluster's history could not be read or written; the message names the cluster and the engines."""


def new_id(kind: str) -> str:
    if kind == "deployment":
        return "ecs-svc/" + "".join(str(secrets.randbelow(10)) for _ in range(19))
    return str(uuid.uuid4())


class Keeper:
    def __init__(self, engines: observe.Engines, local_dir: str | None):
        self.engines = engines
        self.local_dir = local_dir
        self._histories: dict[str, H.History] = {}
        self._stores: dict[str, Any] = {}  # cluster -> ledger.History
        self._lock = threading.Lock()

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
            return self._histories.setdefault(cluster.name, history)

    def loaded(self, name: str) -> H.History | None:
        with self._lock:
            return self._histories.get(name)

    def put(self, cluster: spec.Cluster, history: H.History) -> H.History:
        """Saves `history` when it differs from the one kept; returns what is kept now."""
        with self._lock:
            known = self._histories.get(cluster.name)
        if known is history:
            return history
        from reconciler import ledger

        try:
            generation = self._store(cluster).save(H.to_json(history), history.generation)
        except ledger.HistoryError as e:
            self.forget(cluster.name)  # read it again next time: another writer may have moved it on
            raise HistoryUnavailable(f"cluster {cluster.name}: cannot save its history: {e}") from None
        saved = H.History(history.cluster, history.revisions, history.services, generation)
        with self._lock:
            self._histories[cluster.name] = saved
        return saved

    def forget(self, name: str) -> None:
        """Drops the kept history of `name` (read again on next use: another writer may have moved it on)."""
        with self._lock:
            self._histories.pop(name, None)
