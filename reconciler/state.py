"""The state directory: the writer lock, the history of stopped tasks and what the engines last ran.

Owns where state lives (`--state-dir`, else `RECONCILER_STATE_DIR`, else `$XDG_STATE_HOME/reconciler`,
else `~/.local/state/reconciler`), the per-cluster lock file that serializes the writers sharing this
directory (`apply` and the daemon; the lock every writer of a cluster shares is `clusterlock`'s, on the
engines, taken after this one), a bounded log of stopped tasks so `describe` can still
explain a task after its containers are gone, the last-known running tasks of every instance
(`<cluster>.instances.json`, written by `recall`, keyed by instance name and recording the endpoint, read
back only for an instance that stops answering and still has that endpoint: the engines' labels stay the
source of truth for what runs), and the daemon's crash-loop backoff and
auto scaling state. Files are replaced atomically (a unique temporary file in the same directory, then a
rename); `recall`'s read-modify-write is serialized per (state directory, cluster) within the process.
It must not plan or talk to engines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from reconciler import filelock
from reconciler.model import observed as obs

STOPPED_LOG_LIMIT = 1000

_recall_locks: dict[tuple[str, str], threading.Lock] = {}
_recall_locks_guard = threading.Lock()


class LockTimeout(Exception):
    pass


def default_dir(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    if environ.get("RECONCILER_STATE_DIR"):
        return environ["RECONCILER_STATE_DIR"]
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "reconciler")


class StateDir:
    def __init__(self, path: str):
        self.path = path

    def _ensure(self) -> None:
        os.makedirs(self.path, exist_ok=True)

    @contextmanager
    def lock(self, cluster: str, wait: float = 0.0) -> Iterator[None]:
        """Holds the writer lock of `cluster`; waits up to `wait` seconds, then raises LockTimeout."""
        self._ensure()
        path = os.path.join(self.path, f"{cluster}.lock")
        try:
            with filelock.exclusive(path, wait, poll=0.1) as fd:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()}".encode())
                yield
        except TimeoutError:
            holder = _read(path)
            raise LockTimeout(
                f"cluster {cluster} is locked by another reconciler ({holder or 'unknown holder'}, lock {path})"
            ) from None

    def record_stopped(self, cluster: str, entry: Mapping[str, Any]) -> None:
        """Appends a stopped task (describe-tasks shape) to the cluster's log, keeping the newest entries."""
        self._ensure()
        path = os.path.join(self.path, f"{cluster}.stopped.jsonl")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(entry), sort_keys=True, default=str) + "\n")
        if os.path.getsize(path) > STOPPED_LOG_LIMIT * 4096:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()[-STOPPED_LOG_LIMIT:]
            write_text(path, "\n".join(lines) + "\n")

    def save_backoff(self, cluster: str, entries: Mapping[str, Any]) -> None:
        """The daemon's crash-loop backoff per service, for `describe service`."""
        self._ensure()
        _write_json(os.path.join(self.path, f"{cluster}.backoff.json"), dict(entries))

    def backoff(self, cluster: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self.path, f"{cluster}.backoff.json"), encoding="utf-8") as fh:
                value = json.load(fh)
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def save_scaling(self, cluster: str, entries: Mapping[str, Any]) -> None:
        """The auto scaler's per-service desired count, policy state and recent decisions."""
        self._ensure()
        _write_json(os.path.join(self.path, f"{cluster}.scaling.json"), dict(entries))

    def scaling(self, cluster: str) -> dict[str, Any]:
        try:
            with open(os.path.join(self.path, f"{cluster}.scaling.json"), encoding="utf-8") as fh:
                value = json.load(fh)
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def scaled_counts(self, services: Iterable[Any]) -> dict[str, tuple[int, str]]:
        """Desired counts set by the auto scaler for `services` that have an autoScaling block, clamped to
        the block's current bounds: {service: (count, "set by autoscaling: reason")}."""
        out: dict[str, tuple[int, str]] = {}
        by_cluster: dict[str, dict[str, Any]] = {}
        for svc in services:
            block = svc.auto_scaling
            if not block:
                continue
            entries = by_cluster.setdefault(svc.cluster, self.scaling(svc.cluster))
            entry = entries.get(svc.name)
            if not isinstance(entry, dict) or not isinstance(entry.get("desiredCount"), int):
                continue
            count = max(int(block.get("minCapacity", 0)), min(int(block.get("maxCapacity", entry["desiredCount"])), entry["desiredCount"]))
            out[svc.name] = (count, f"set by autoscaling: {entry.get('reason') or 'no reason recorded'}")
        return out

    def stopped_tasks(self, cluster: str) -> list[dict[str, Any]]:
        path = os.path.join(self.path, f"{cluster}.stopped.jsonl")
        out = []
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        continue
        except FileNotFoundError:
            pass
        return out


def _write_json(path: str, value: Any) -> None:
    write_text(path, json.dumps(value, sort_keys=True))


def write_text(path: str, text: str, sync: bool = False) -> None:
    """Replaces `path` atomically through a temporary file of its own (unique per call, not per process);
    with `sync`, the content is on disk before the rename (what survives a crash is whole)."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _recall_lock(store: StateDir, cluster: str) -> threading.Lock:
    key = (os.path.abspath(store.path), cluster)
    with _recall_locks_guard:
        return _recall_locks.setdefault(key, threading.Lock())


def recall(store: StateDir, cstate: obs.ClusterState, now: float, write: bool = True) -> obs.ClusterState:
    """Remembers what each reachable instance runs, and fills in what unreachable ones ran when last seen.

    An instance whose engine stops answering keeps its last-known service tasks as `unknown` tasks, and
    the time it was first seen down, so the planner can count them during a grace period instead of
    placing duplicates at once. Workers and the auto scaler call it concurrently: the read-modify-write of
    a cluster's file is serialized within the process (one writer process per cluster holds its lock).
    """
    with _recall_lock(store, cstate.cluster):
        return _recall(store, cstate, now, write)


def _recall(store: StateDir, cstate: obs.ClusterState, now: float, write: bool) -> obs.ClusterState:
    path = os.path.join(store.path, f"{cstate.cluster}.instances.json")
    try:
        with open(path, encoding="utf-8") as fh:
            memory = json.load(fh)
    except (OSError, ValueError):
        memory = {}
    if not isinstance(memory, dict):
        memory = {}
    instances = dict(cstate.instances)
    unknown: list[obs.UnknownTask] = []
    for name, inst in cstate.instances.items():
        entry = _entry_of(memory.get(name), inst.endpoint)
        if inst.reachable:
            live = [t for t in cstate.tasks if t.instance == name and t.service and t.status().last_status == obs.RUNNING]
            memory[name] = {
                "seenAt": now,
                "endpoint": inst.endpoint,
                "tasks": [[t.id, t.service, t.task_hash] for t in live],
            }
            continue
        since = entry.get("unreachableSince") or now
        memory[name] = {**entry, "endpoint": inst.endpoint, "unreachableSince": since}
        instances[name] = dataclasses.replace(inst, unreachable_since=since)
        for item in entry.get("tasks") or []:
            if isinstance(item, list) and len(item) == 3:
                unknown.append(obs.UnknownTask(str(item[0]), name, str(item[1]), str(item[2])))
    try:
        if write:
            store._ensure()
            _write_json(path, memory)
    except OSError:
        pass  # memory is an aid to the planner; without it, tasks on a dead engine are replaced at once
    return dataclasses.replace(cstate, instances=instances, unknown=tuple(unknown))


def _entry_of(entry: Any, endpoint: str) -> dict[str, Any]:
    """The remembered entry of an instance if it was recorded for the engine at `endpoint`, else {}.

    What an instance ran is remembered per (instance name, endpoint): after a rename nothing carries over,
    and once a declared instance points at another engine the old engine's tasks (and since when it was
    down) no longer count for it. An entry written before endpoints were recorded has none: it is taken
    to be of the endpoint the instance has now, and is stamped with it at once, so a later change of the
    endpoint is caught like any other."""
    if not isinstance(entry, dict):
        return {}
    recorded = entry.get("endpoint", endpoint)
    return entry if recorded == endpoint else {}


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return ""
