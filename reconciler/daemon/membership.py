"""Which clusters this daemon writes and which engines it follows, kept in step with the desired state.

Owns the writer locks of the declared clusters (the state directory's, shared with `apply` on this host,
then, given an engine factory, the one on the cluster's engines that every writer shares: `clusterlock`)
and one engine event follower per (cluster, endpoint) of a cluster whose lock is held: two clusters on one
engine get a follower each, since a follower only sees its own cluster's labelled containers. The
controller calls `sync` with every desired state it adopts (each reload: a Git commit, a file change, a
resync): the lock of a newly declared cluster is tried (the first try waits up to `lock_wait`, later
ones do not wait); a lock another process holds is logged once and tried again at the next sync, and
meanwhile the controller leaves that cluster alone; a held engine lock is kept in step with the cluster's
engines at each sync (taken on an engine that was down or is new) and, if someone broke it, dropped like a
lock never had; the lock of a cluster no longer declared is released once its in-flight work is done
(`guard`); followers start and stop with the pairs. `stop_following` and `close` end it all at shutdown.
It must not observe, plan or act on engines (beyond the lock objects): the controller does.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from reconciler import clusterlock, observe, state
from reconciler.model import spec

log = logging.getLogger("reconciler.daemon")


class Follower(Protocol):
    def stop(self) -> None: ...


# (cluster name, instance) -> a started follower of that engine's events for that cluster
Follow = Callable[[str, spec.Instance], Follower]


def endpoints(desired: spec.DesiredState) -> set[tuple[str, str]]:
    """Every (cluster, endpoint) pair of the desired state, Fargate pool endpoints included."""
    return {(c.name, i.endpoint) for c in desired.clusters.values() for i in c.all_instances()}


class Membership:
    def __init__(
        self,
        store: state.StateDir,
        follow: Follow,
        guard: Callable[[str], contextlib.AbstractContextManager[Any]] = lambda cluster: contextlib.nullcontext(),
        lock_wait: float = 0.0,
        engine_factory: observe.EngineFactory | None = None,  # None: the state directory's locks only
        command: str = "watch",
    ):
        self.store = store
        self.follow = follow
        self.guard = guard  # held while a cluster's lock is released: the controller's per-cluster lock
        self.lock_wait = lock_wait
        self.command = command
        self._engines = observe.Engines(engine_factory) if engine_factory is not None else None
        self._clusters: dict[str, spec.Cluster] = {}
        self._locks: dict[str, contextlib.ExitStack] = {}
        self._engine_locks: dict[str, clusterlock.ClusterLock] = {}
        self._refused: dict[str, str] = {}  # cluster -> why its lock could not be taken (as last logged)
        self._tried: set[str] = set()
        self._followers: dict[tuple[str, str], Follower] = {}
        self._following = True
        self._closed = False
        self._mutex = threading.Lock()

    # -- queries (no mutex: a dict lookup or copy is atomic) ------------------------------------------

    def holds(self, cluster: str) -> bool:
        return cluster in self._locks

    def held(self) -> list[str]:
        return sorted(self._locks)

    def followed(self) -> list[tuple[str, str]]:
        return sorted(self._followers)

    def report(self) -> dict[str, Any]:
        """For /status: the clusters held, and those waiting for another process's lock (with why)."""
        return {"held": self.held(), "waiting": dict(sorted(dict(self._refused).items()))}

    # -- sync ------------------------------------------------------------------------------------------

    def sync(self, desired: spec.DesiredState) -> list[str]:
        """Brings locks and followers in step with `desired`; returns the clusters whose lock it just took."""
        with self._mutex:
            if self._closed:
                return []
            self._clusters = dict(desired.clusters)
            for name in sorted(set(self._locks) - set(desired.clusters)):
                self._release(name)
            for name in sorted(set(self._engine_locks) & set(desired.clusters)):
                self._keep(name)
            for name in set(self._refused) - set(desired.clusters):
                del self._refused[name]
            acquired = [name for name in sorted(desired.clusters) if name not in self._locks and self._acquire(name)]
            if self._following:
                self._sync_followers(desired)
            return acquired

    def _acquire(self, name: str) -> bool:
        wait = 0.0 if name in self._tried else self.lock_wait
        self._tried.add(name)
        deadline = time.monotonic() + wait
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(self.store.lock(name, wait))
            if self._engines is not None:
                lock = clusterlock.ClusterLock(
                    self._clusters[name], self._engines, self.command, self.store.path,
                    notify=lambda text: log.warning("%s", text, extra={"cluster": name}),
                )
                lock.acquire(max(0.0, deadline - time.monotonic()))
                stack.callback(lock.release)
                self._engine_locks[name] = lock
        except (state.LockTimeout, clusterlock.LockError, OSError) as e:
            stack.close()
            reason = str(e)
            if self._refused.get(name) != reason:
                log.error("%s; cluster %s is not reconciled until its lock is free (tried again at every resync)",
                          reason, name, extra={"cluster": name})
            self._refused[name] = reason
            return False
        if self._refused.pop(name, None) is not None:
            log.info("took the lock of cluster %s; reconciling it", name, extra={"cluster": name})
        self._locks[name] = stack
        return True

    def _release(self, name: str) -> None:
        self._drop(name)
        self._tried.discard(name)
        log.info("cluster %s is no longer declared; released its lock", name, extra={"cluster": name})

    def _drop(self, name: str) -> None:
        self._stop_followers(lambda key: key[0] == name)
        with self.guard(name):  # in-flight work on the cluster ends first
            self._engine_locks.pop(name, None)
            self._locks.pop(name).close()

    def _keep(self, name: str) -> None:
        """Keeps a held engine lock in step with the cluster; drops the cluster when the lock was broken."""
        if self._engine_locks[name].refresh(self._clusters[name]):
            return
        reason = f"lost the writer lock of cluster {name}: a majority of its engines no longer hold it (broken with `reconciler unlock {name}`?)"
        log.error("%s; cluster %s is not reconciled until its lock can be had again", reason, name, extra={"cluster": name})
        self._drop(name)
        self._refused[name] = reason

    def _sync_followers(self, desired: spec.DesiredState) -> None:
        wanted: dict[tuple[str, str], spec.Instance] = {}
        for cluster in desired.clusters.values():
            if cluster.name in self._locks:
                for inst in cluster.all_instances():
                    wanted.setdefault((cluster.name, inst.endpoint), inst)
        self._stop_followers(lambda key: key not in wanted)
        for key, inst in sorted(wanted.items()):
            if key not in self._followers:
                self._followers[key] = self.follow(key[0], inst)

    def _stop_followers(self, which: Callable[[tuple[str, str]], bool]) -> None:
        for key in [k for k in self._followers if which(k)]:
            self._followers.pop(key).stop()

    # -- shutdown (without the mutex: a sync may be waiting for in-flight work that shutdown abandons) -----

    def stop_following(self) -> None:
        """Stops every follower; syncs from now on start none (shutdown has begun)."""
        self._following = False
        for follower in list(self._followers.values()):
            follower.stop()

    def close(self) -> None:
        """Stops following and releases every lock, without waiting for workers (done, or abandoned)."""
        self._closed = True
        self.stop_following()
        for stack in list(self._locks.values()):
            stack.close()
        self._locks.clear()
        self._engine_locks.clear()
        if self._engines is not None:
            self._engines.close()
