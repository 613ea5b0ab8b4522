"""The writer lock of a cluster, kept on the cluster's own engines so that every writer of it looks there.

Owns the lock object: on each engine of the cluster a created, never started container named
`reconciler-lock.<cluster>`, made from the locally built pause image (loaded where missing). Creating a
name is atomic (a second create is a 409) and the labels, written with the create, name the holder: host,
pid and process start time, state directory, command, acquisition time and a token unique to the
acquisition. A writer holds the cluster when it holds a majority of the cluster's engines (declared
instances and pool endpoints, once per endpoint), so two writers never both hold it even when they see
different engines as reachable; acquiring takes every engine that answers and gives back what it took when
it falls short of a majority. A lock whose holder ran on this host and is gone (no such pid, a reused pid,
an earlier boot) is stale and is broken with a notice; a holder on another host never is (`reconciler
unlock` breaks it). Releasing removes only the containers this holder created (its token, checked).

It must not plan, observe tasks or touch any container but its lock's, and it never imports the docker
SDK: engines are reached through `engine.api` and `observe.Engines`. The only wait is `acquire`'s bounded
poll (`--lock-wait`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler import labels as L
from reconciler import observe
from reconciler.engine import api, pause
from reconciler.model import spec

log = logging.getLogger("reconciler.lock")

NAME_PREFIX = "reconciler-lock."
POLL = 0.5  # seconds between attempts while waiting for a lock, plus up to half as much again (jitter)
# A 409 whose name then inspects as missing is a create in progress (Docker reserves the name first) or a
# release: the create is tried again at once, then after these pauses (bounded, about 3 s in all).
_SETTLE = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5)

ALIVE = "alive"
DEAD = "dead"
REMOTE = "on another host"

# Tokens of the acquisitions of this process that are live: a lock naming this very process with any other
# token is a leftover (a release that could not reach an engine) and is stale like a dead process's.
_live: set[str] = set()
_live_guard = threading.Lock()


def container_name(cluster: str) -> str:
    return NAME_PREFIX + cluster


def quorum(engines: int) -> int:
    """How many of `engines` a writer must hold: a majority, so that any two majorities share an engine."""
    return engines // 2 + 1


def members(cluster: spec.Cluster) -> list[spec.Instance]:
    """The engines the lock lives on, once per endpoint, in endpoint order (every writer takes them in the
    same order, so two writers that start together rarely split them between them)."""
    by_endpoint: dict[str, spec.Instance] = {}
    for inst in cluster.all_instances():
        by_endpoint.setdefault(inst.endpoint, inst)
    return [by_endpoint[k] for k in sorted(by_endpoint)]


# -- who holds it ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    hostname: str
    machine_id: str = ""
    boot_id: str = ""


@functools.lru_cache(maxsize=1)
def this_host() -> Host:
    return Host(socket.gethostname(), _first_line("/etc/machine-id", "/var/lib/dbus/machine-id"),
                _first_line("/proc/sys/kernel/random/boot_id"))


@dataclass(frozen=True)
class Holder:
    """The holder of a lock, as its labels record it."""

    cluster: str
    command: str
    hostname: str
    pid: int
    pid_start: str  # field 22 of /proc/<pid>/stat (clock ticks after boot); "" where /proc is missing
    state_dir: str
    since: str  # RFC 3339, UTC
    token: str
    machine_id: str = ""
    boot_id: str = ""

    def labels(self) -> dict[str, str]:
        return {
            L.LOCK: self.cluster,
            L.LOCK_TOKEN: self.token,
            L.LOCK_COMMAND: self.command,
            L.LOCK_HOST: self.hostname,
            L.LOCK_MACHINE: self.machine_id,
            L.LOCK_BOOT: self.boot_id,
            L.LOCK_PID: str(self.pid),
            L.LOCK_PID_START: self.pid_start,
            L.LOCK_STATE_DIR: self.state_dir,
            L.LOCK_SINCE: self.since,
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Holder | None:
        """The holder recorded in a container's labels; None when the container is not a lock."""
        if not labels.get(L.LOCK):
            return None
        try:
            pid = int(labels.get(L.LOCK_PID) or 0)
        except ValueError:
            pid = 0
        return cls(
            cluster=labels[L.LOCK],
            command=labels.get(L.LOCK_COMMAND) or "?",
            hostname=labels.get(L.LOCK_HOST) or "?",
            pid=pid,
            pid_start=labels.get(L.LOCK_PID_START) or "",
            state_dir=labels.get(L.LOCK_STATE_DIR) or "?",
            since=labels.get(L.LOCK_SINCE) or "?",
            token=labels.get(L.LOCK_TOKEN) or "",
            machine_id=labels.get(L.LOCK_MACHINE) or "",
            boot_id=labels.get(L.LOCK_BOOT) or "",
        )

    def describe(self) -> str:
        return f"reconciler {self.command} (pid {self.pid} on host {self.hostname}, state dir {self.state_dir}, since {self.since})"


def holder_for(cluster: str, command: str, state_dir: str, now: float | None = None) -> Holder:
    """This process as the holder of `cluster`'s lock, with a fresh token."""
    host = this_host()
    stat = _stat(os.getpid())
    return Holder(
        cluster=cluster,
        command=command,
        hostname=host.hostname,
        pid=os.getpid(),
        pid_start=stat[1] if stat else "",
        state_dir=os.path.abspath(state_dir),
        since=_rfc3339(time.time() if now is None else now),
        token=uuid.uuid4().hex,
        machine_id=host.machine_id,
        boot_id=host.boot_id,
    )


def liveness(holder: Holder, host: Host | None = None) -> str:
    """ALIVE, DEAD (it ran on this host and is gone: stale) or REMOTE (another host: cannot be told)."""
    host = host or this_host()
    if holder.hostname != host.hostname or (holder.machine_id and host.machine_id and holder.machine_id != host.machine_id):
        return REMOTE
    if holder.boot_id and host.boot_id and holder.boot_id != host.boot_id:
        return DEAD  # taken before this host last booted
    stat = _stat(holder.pid) if holder.pid > 0 else None
    if stat is None:
        if holder.pid <= 0 or os.path.isdir("/proc/self"):
            return DEAD
        try:  # no /proc here: the pid alone has to do
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return DEAD
        except PermissionError:
            pass
        return ALIVE
    status, start = stat
    if status in ("Z", "X", "x"):
        return DEAD  # killed, not yet reaped: it can never release
    if holder.pid_start and start != holder.pid_start:
        return DEAD  # the pid was reused by another process
    if holder.pid == os.getpid():
        with _live_guard:
            return ALIVE if holder.token in _live else DEAD
    return ALIVE


# -- errors ------------------------------------------------------------------------------------------------


class LockError(Exception):
    """The lock could not be had; `hint` says what the user can do about it (the command line adds it)."""

    def __init__(self, cluster: str, message: str, hint: str = ""):
        super().__init__(message)
        self.cluster = cluster
        self.message = message
        self.hint = hint

    def line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class Locked(LockError):
    """Another writer holds the lock on `endpoint`."""

    def __init__(self, cluster: str, holder: Holder, endpoint: str, note: str = ""):
        super().__init__(
            cluster,
            f"cluster {cluster} is locked by {holder.describe()} on {endpoint}{note}",
            f"retry later, pass --lock-wait, or break a stale lock with `reconciler unlock {cluster}`",
        )
        self.holder = holder
        self.endpoint = endpoint


# -- one engine --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """What one engine holds of a cluster's lock: nothing (`container_id` None), a lock (`holder`), or a
    container of the lock's name that is no lock (`holder` None)."""

    endpoint: str
    container_id: str | None = None
    holder: Holder | None = None


def read(engine: api.Engine, cluster: str) -> Slot:
    """The lock of `cluster` on `engine`; api.EngineError when the engine does not answer."""
    try:
        raw = engine.inspect_container(container_name(cluster))
    except api.NotFound:
        return Slot(engine.endpoint)
    found = Holder.from_labels((raw.get("Config") or {}).get("Labels") or {})
    return Slot(engine.endpoint, str(raw.get("Id") or container_name(cluster)), found if found and found.cluster == cluster else None)


def remove(engine: api.Engine, slot: Slot) -> bool:
    """Removes the lock container of `slot` if it is still that holder's (token checked): never another's."""
    if slot.container_id is None or slot.holder is None:
        return False
    try:
        raw = engine.inspect_container(slot.container_id)
    except api.NotFound:
        return False
    current = Holder.from_labels((raw.get("Config") or {}).get("Labels") or {})
    if current is None or current.cluster != slot.holder.cluster or current.token != slot.holder.token:
        return False
    engine.remove_container(slot.container_id)
    return True


def _request(holder: Holder) -> api.ContainerCreate:
    return api.ContainerCreate(
        name=container_name(holder.cluster),
        image=pause.PAUSE_IMAGE,
        labels=holder.labels(),
        command=("/pause",),
        host_config={"network_mode": "none"},
    )


def _create(engine: api.Engine, request: api.ContainerCreate) -> str:
    """Creates the lock container, loading the pause image first where it is missing."""
    try:
        return engine.create_container(request)
    except api.NotFound:  # no such image
        pass
    try:
        image = pause.image_tar(engine.info().architecture)
    except ValueError as e:
        raise api.EngineError(engine.endpoint, f"cannot make the lock's image: {e}") from None
    engine.load_image_tar(image, pause.PAUSE_IMAGE)
    return engine.create_container(request)


# -- the lock ----------------------------------------------------------------------------------------------


class ClusterLock:
    """The writer lock of one cluster for one holder (this process running `command`)."""

    def __init__(
        self,
        cluster: spec.Cluster,
        engines: observe.Engines,
        command: str,
        state_dir: str,
        notify: Callable[[str], None] | None = None,
    ):
        self.cluster = cluster
        self.engines = engines
        self.holder = holder_for(cluster.name, command, state_dir)
        self.notify = notify or log.warning
        self._taken: dict[str, tuple[spec.Instance, str]] = {}  # endpoint -> (instance, lock container id)

    @property
    def held(self) -> bool:
        insts = members(self.cluster)
        return not insts or len(self._taken) >= quorum(len(insts))

    def endpoints(self) -> list[str]:
        """The engines this holder has the lock on."""
        return sorted(self._taken)

    @contextlib.contextmanager
    def holding(self, wait: float = 0.0) -> Iterator[ClusterLock]:
        self.acquire(wait)
        try:
            yield self
        finally:
            self.release()

    def acquire(self, wait: float = 0.0) -> None:
        """Takes the lock, trying again every POLL seconds until `wait` has passed; LockError after that."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self.try_acquire()
                return
            except LockError:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
            time.sleep(min(left, POLL * (1 + random.random() / 2)))

    def try_acquire(self) -> None:
        """One attempt: the lock on every engine that answers, or on none and a LockError."""
        insts = members(self.cluster)
        need = quorum(len(insts))
        if not insts:
            return
        if not self._taken:
            self.holder = dataclasses.replace(self.holder, since=_rfc3339(time.time()))
        with _live_guard:
            _live.add(self.holder.token)
        refused: list[LockError] = []
        silent: list[api.EngineError] = []
        try:
            for inst in insts:
                if len(refused) + len(silent) > len(insts) - need:
                    break  # a majority is out of reach
                if inst.endpoint in self._taken:
                    continue
                try:
                    self._taken[inst.endpoint] = (inst, self._take(inst))
                except LockError as e:
                    refused.append(e)
                except api.EngineError as e:
                    silent.append(e)
        except BaseException:
            self.release()
            raise
        if len(self._taken) >= need:
            return
        self.release()
        raise self._failure(len(insts), need, refused, silent)

    def refresh(self, cluster: spec.Cluster | None = None) -> bool:
        """Keeps a held lock in step with the cluster (`cluster`: its new declaration): takes it on engines
        that did not answer at acquisition or are newly declared, gives it back on engines no longer
        declared, and checks it is still there. False when it is lost: fewer than a majority still hold it
        (someone broke it); an engine that does not answer counts as still holding it."""
        if cluster is not None:
            self.cluster = cluster
        insts = members(self.cluster)
        wanted = {i.endpoint for i in insts}
        for endpoint in sorted(set(self._taken) - wanted):
            self._give_back(endpoint)
        held = 0
        for inst in insts:
            if inst.endpoint in self._taken:
                try:
                    slot = read(self.engines.get(inst), self.cluster.name)
                except api.EngineError:
                    held += 1
                    continue
                if slot.holder is not None and slot.holder.token == self.holder.token:
                    held += 1
                    continue
                del self._taken[inst.endpoint]
            try:
                self._taken[inst.endpoint] = (inst, self._take(inst))
                held += 1
            except (LockError, api.EngineError):
                pass
        return held >= quorum(len(insts))

    def release(self) -> None:
        """Removes the lock containers this holder created; one that cannot be reached is left (and noted):
        it is stale from now on, for the next writer on this host to break."""
        for endpoint in sorted(self._taken):
            self._give_back(endpoint)
        with _live_guard:
            _live.discard(self.holder.token)

    # -- internals -----------------------------------------------------------------------------------------

    def _give_back(self, endpoint: str) -> None:
        inst, container_id = self._taken.pop(endpoint)
        try:
            remove(self.engines.get(inst), Slot(endpoint, container_id, self.holder))
        except api.EngineError as e:
            name = self.cluster.name
            self.notify(f"could not release the writer lock of cluster {name} on {endpoint} ({e.message}); it is "
                        f"stale now: the next writer on this host breaks it, elsewhere run `reconciler unlock {name}`")

    def _take(self, inst: spec.Instance) -> str:
        """The lock on one engine: the new container's id. Locked when another live (or remote) writer has it,
        LockError when a container that is no lock has its name, api.EngineError when the engine fails."""
        engine = self.engines.get(inst)
        name = self.cluster.name
        for delay in _SETTLE:
            try:
                return _create(engine, _request(self.holder))
            except api.EngineError as e:
                if e.status != 409:
                    raise
            slot = read(engine, name)
            if slot.container_id is None:
                time.sleep(delay)  # being created by another writer, or released since: create again
                continue
            if slot.holder is None:
                raise LockError(
                    name,
                    f"cluster {name} cannot be locked on {inst.endpoint}: a container named {container_name(name)} "
                    f"that is no reconciler lock (no {L.LOCK}={name} label) has the lock's name",
                    "remove or rename that container",
                )
            if slot.holder.token == self.holder.token:
                return slot.container_id
            if liveness(slot.holder) != DEAD:
                raise Locked(name, slot.holder, inst.endpoint)
            self.notify(f"broke the stale writer lock of cluster {name} on {inst.endpoint}: "
                        f"{slot.holder.describe()} is no longer running")
            remove(engine, slot)
        raise LockError(name, f"cluster {name}: the lock's name on {inst.endpoint} is taken, yet no lock container "
                              "appeared (kept changing hands, or a create that never finished)", "retry later")

    def _failure(self, total: int, need: int, refused: list[LockError], silent: list[api.EngineError]) -> LockError:
        name = self.cluster.name
        quorum_note = f"the writer lock of cluster {name} needs {need} of its {total} engines"
        unanswered = "; ".join(f"engine {e.endpoint} is unreachable: {e.message}" for e in silent)
        locked = next((e for e in refused if isinstance(e, Locked)), None)
        if locked is not None:
            note = f" ({quorum_note}; {unanswered})" if silent else ""
            return Locked(name, locked.holder, locked.endpoint, note)
        if refused:
            first = refused[0]
            return LockError(name, f"{first.message}" + (f"; {unanswered}" if silent else ""), first.hint)
        return LockError(name, f"{unanswered}; {quorum_note}", "retry later or pass --lock-wait")


# -- helpers -----------------------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc/<pid>/stat; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # after the command name, which may hold spaces and parentheses
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def _first_line(*paths: str) -> str:
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.readline().strip()
        except OSError:
            continue
        if value:
            return value
    return ""


def _rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
