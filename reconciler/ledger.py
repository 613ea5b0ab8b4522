"""The history of a cluster (task-definition revisions, deployments, service events, ...), kept on the
cluster's own engines next to its writer lock, so that every writer finds it, whatever machine it runs on
and whatever its state directory (a CI job on a fresh machine included).

Owns one opaque JSON document per cluster, of the caller's making, and the `generation` it carries (each
save is the generation it was loaded at plus one; 0 is "no history"). On each engine of the cluster (once
per endpoint, `clusterlock.members`) the document lives in the named volume `reconciler-history.<cluster>`,
mounted at `/history` in a created, never started container of the same name made from the pause image
(loaded where missing); files go in and out through the Engine API's archive endpoints, which work on a
container that never ran. Container and volume carry the label `HISTORY` (the cluster) and never `MANAGED`,
so observation, gc and the event followers never see them. The volume is the record: a container removed
by hand is made again over the same volume by the next load or save. A copy in the state directory,
`<local_dir>/<cluster>.history.json`, is a cache (refreshed by a load that found something newer) and the
fallback while the engines hold nothing yet.

Reading (`History.load`): every engine in parallel (at most `MAX_THREADS` at once), then the highest
generation among the engines that answered, or the local copy where it is newer still (a save that reached
the state directory but not the engines); on a tie the engines win. Fewer than a majority answering is a
`HistoryError` naming them: an unreachable majority could hold a newer generation. The exception is the
migration of a state directory from before this module: when no engine that answered holds a document and
a local copy exists, the local copy is the history (the next save puts it on the engines).

Writing (`History.save(document, expected_generation)`), under the cluster's writer lock (the caller holds
it; only a lock holder writes): reads every engine back, and refuses, writing nothing, when any engine that
answers, or the local copy, holds a generation above `expected_generation`: someone saved since this caller
loaded. Any two majorities share an engine, so a save by another writer that reached a majority is always
seen; this is a cheap check of a broken lock, not a lock (two writers reading back at the same instant can
both pass). Then generation + 1 goes to the local copy (a temporary file, then a rename) and to every engine
that answered, in parallel, a stale engine that missed earlier saves included (so it is repaired); fewer
than a majority taking it is a `HistoryError` (the generation stays where it got, and counts there).

Atomicity on an engine. There is no rename through the archive endpoints, and extracting a tar member over
an existing file is not atomic: moby's `pkg/archive.Unpack` first removes the existing path (`os.RemoveAll`),
then `createTarFile` opens the final name (O_CREATE|O_WRONLY) and copies the member's bytes into it as the
request body arrives. The new content does get a new inode, but under the final name from its first byte.
While the engine runs, a reader through the same container never sees the half file (moby holds the
container's lock for the whole extract, `containerExtractToDir`, and for a read until its stream is closed,
`containerArchivePath`), but a write cut short (the writer killed or its connection lost mid-upload, the
engine crashing, a full disk) leaves the old file gone and a truncated new one for every later read. So each
engine keeps two slots, `/history/<cluster>.a.json` and `/history/<cluster>.b.json`, each a whole envelope
(format, cluster, generation, time, document): a save overwrites the slot that does not hold the engine's
newest valid generation, a read takes the valid slot with the higher generation. A cut-short write damages
only the older slot (a truncated JSON object never parses), and the engine then reads as its previous
generation: stale, repaired by the next save.

It must not interpret the document, take or check the writer lock, plan, or touch any container or volume
but its own (a container of its name without its label is refused), and it never imports the docker SDK.
Removing a history is never automatic: `remove` is for tests and a later `reconciler history --purge`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from reconciler import clusterlock, observe, state
from reconciler import labels as L
from reconciler.engine import api, pause
from reconciler.model import spec

log = logging.getLogger("reconciler.history")

NAME_PREFIX = "reconciler-history."  # the container and the volume
MOUNT = "/history"
SLOTS = ("a", "b")
FORMAT = 1
MAX_THREADS = 16  # engines read or written at once

T = TypeVar("T")


def name(cluster: str) -> str:
    """The name of the history's container and volume on every engine of `cluster`."""
    return NAME_PREFIX + cluster


def slot_path(cluster: str, slot: str) -> str:
    return f"{MOUNT}/{cluster}.{slot}.json"


def local_path(local_dir: str, cluster: str) -> str:
    return os.path.join(local_dir, f"{cluster}.history.json")


class HistoryError(Exception):
    """The history could not be read or written; `message` is one line naming the engines. `endpoints`: the
    engines at fault; `generation`: for a failed save, the generation it left on the local copy and the
    engines that took it (a caller may carry on from it, or load again)."""

    def __init__(self, cluster: str, message: str, endpoints: Sequence[str] = (), generation: int | None = None):
        super().__init__(message)
        self.cluster = cluster
        self.message = message
        self.endpoints = tuple(endpoints)
        self.generation = generation


@dataclass(frozen=True)
class Source:
    """What one place answered: an engine (`where` is its endpoint) or the local copy (`local`, `where` is
    its path). `generation` None: no answer (`error` says why); 0: it answered and holds no document."""

    where: str
    generation: int | None
    error: str = ""
    local: bool = False


@dataclass(frozen=True)
class Record:
    """A loaded history: its newest `generation` (0 and `document` None when there is none anywhere), and
    what every engine (in endpoint order) and the local copy (last, when there is a local directory) held."""

    generation: int
    document: dict[str, Any] | None
    sources: tuple[Source, ...] = ()

    @property
    def unreachable(self) -> list[str]:
        """The engines that did not answer."""
        return [s.where for s in self.sources if not s.local and s.generation is None]

    @property
    def stale(self) -> list[str]:
        """The engines that answered with an older generation (the next save repairs them)."""
        return [s.where for s in self.sources if not s.local and s.generation is not None and s.generation < self.generation]


# -- envelopes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Envelope:
    generation: int
    document: dict[str, Any]


def _encode(cluster: str, generation: int, document: Mapping[str, Any]) -> bytes:
    envelope = {
        "format": FORMAT,
        "cluster": cluster,
        "generation": generation,
        "savedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "document": document,
    }
    return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()


def _decode(cluster: str, raw: bytes | None) -> _Envelope | None:
    """The envelope in `raw`; None for nothing, a truncated or damaged file, or another cluster's."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("format") != FORMAT or value.get("cluster") != cluster:
        return None
    generation, document = value.get("generation"), value.get("document")
    if type(generation) is not int or generation < 1 or not isinstance(document, dict):
        return None
    return _Envelope(generation, document)


# -- one engine --------------------------------------------------------------------------------------------


@dataclass
class _Slots:
    """One engine's history: whether its container exists, and the valid envelope in each slot."""

    exists: bool
    held: dict[str, _Envelope | None] = field(default_factory=dict)

    @property
    def newest(self) -> _Envelope | None:
        found = [e for e in (self.held.get(s) for s in SLOTS) if e is not None]
        return max(found, key=lambda e: e.generation, default=None)

    @property
    def generation(self) -> int:
        newest = self.newest
        return newest.generation if newest else 0

    def spare(self) -> str:
        """The slot a save overwrites: never the one holding the newest valid generation."""
        newest = self.newest
        return next(s for s in SLOTS if newest is None or self.held.get(s) is not newest)


@dataclass
class _Answer:
    endpoint: str
    slots: _Slots | None = None  # None: the engine did not answer
    error: str = ""


def _container(engine: api.Engine, cluster: str) -> str | None:
    """The id of the history's container on `engine`, None when there is none; a container of its name that
    is no history of `cluster` is an EngineError (never written to, never removed)."""
    try:
        raw = engine.inspect_container(name(cluster))
    except api.NotFound:
        return None
    if ((raw.get("Config") or {}).get("Labels") or {}).get(L.HISTORY) != cluster:
        raise api.EngineError(engine.endpoint, f"a container named {name(cluster)} that is no reconciler history "
                                               f"(no {L.HISTORY}={cluster} label) has the history's name; remove or rename it")
    return str(raw.get("Id") or name(cluster))


def _ensure(engine: api.Engine, cluster: str) -> None:
    """Makes the history's volume and container (from the pause image, loaded where missing), keeping any
    that exist: a volume that outlived its container is mounted again as it is."""
    if not engine.has_volume(name(cluster)):
        engine.create_volume(name(cluster), "local", {}, {L.HISTORY: cluster})
    request = api.ContainerCreate(
        name=name(cluster),
        image=pause.PAUSE_IMAGE,
        labels={L.HISTORY: cluster},
        command=("/pause",),
        host_config={"network_mode": "none", "binds": [f"{name(cluster)}:{MOUNT}:rw"]},
    )
    try:
        clusterlock._create(engine, request)  # the lock's own create: loads the pause image where missing
    except api.EngineError as e:
        if e.status != 409:
            raise
        _container(engine, cluster)  # made meanwhile by another reader: fine if it is a history


def _read(engine: api.Engine, cluster: str) -> _Slots:
    """Both slots of the engine's history. A container removed while its volume survived is made again (the
    volume is the record); with neither, the engine holds nothing and nothing is created."""
    if _container(engine, cluster) is None:
        if not engine.has_volume(name(cluster)):
            return _Slots(exists=False)
        _ensure(engine, cluster)
    return _Slots(True, {s: _decode(cluster, engine.get_file(name(cluster), slot_path(cluster, s))) for s in SLOTS})


def _write(engine: api.Engine, cluster: str, slots: _Slots, data: bytes) -> None:
    if not slots.exists:
        _ensure(engine, cluster)
    engine.put_file(name(cluster), slot_path(cluster, slots.spare()), data)


def _parallel(fn: Callable[[spec.Instance], T], insts: Sequence[spec.Instance]) -> list[T]:
    if len(insts) <= 1:
        return [fn(i) for i in insts]
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(insts)), thread_name_prefix="history") as pool:
        return list(pool.map(fn, insts))


# -- the history -------------------------------------------------------------------------------------------


class History:
    """The history of one cluster, on its engines and in the local copy under `local_dir` (None: no local
    copy). Load once at command start, save once per change."""

    def __init__(self, cluster: spec.Cluster, engines: observe.Engines, local_dir: str | None):
        self.cluster = cluster
        self.engines = engines
        self.local_dir = local_dir

    @property
    def local_file(self) -> str | None:
        return local_path(self.local_dir, self.cluster.name) if self.local_dir else None

    def load(self) -> Record:
        """The newest history (see the module's rules); HistoryError when fewer than a majority of the
        engines answer, unless it is a migration (no answering engine holds a document, a local copy does)."""
        insts = clusterlock.members(self.cluster)
        answers = _parallel(self._read_one, insts)
        local = self._read_local()
        answered = [a for a in answers if a.slots is not None]
        on_engines = max((a.slots.newest for a in answered if a.slots.newest), key=lambda e: e.generation, default=None)
        need = clusterlock.quorum(len(insts))
        if insts and len(answered) < need and not (local is not None and on_engines is None):
            raise HistoryError(self.cluster.name, self._shortfall("cannot read", "answered", answers, need),
                               self._silent(answers))
        best = on_engines
        if local is not None and (best is None or local.generation > best.generation):
            best = local
        elif best is not None and (local is None or best.generation > local.generation):
            self._write_local(_encode(self.cluster.name, best.generation, best.document))  # refresh the cache
        return Record(best.generation if best else 0, best.document if best else None, self._sources(answers, local))

    def save(self, document: Mapping[str, Any], expected_generation: int) -> int:
        """Saves `document` as generation `expected_generation` + 1 (see the module's rules) and returns it.
        HistoryError, with nothing written, when an engine or the local copy holds a newer generation than
        `expected_generation`, or when the document is too large to be read back; HistoryError naming the
        engines when fewer than a majority took it (the local copy and the engines that did keep it)."""
        name_ = self.cluster.name
        generation = expected_generation + 1
        data = _encode(name_, generation, document)
        if len(data) > api.MAX_FILE_BYTES:
            raise HistoryError(name_, f"the history of cluster {name_} would be {len(data)} bytes, over the "
                                      f"{api.MAX_FILE_BYTES} an engine read takes; nothing was saved")
        insts = clusterlock.members(self.cluster)
        answers = _parallel(self._read_one, insts)
        local = self._read_local()
        newer = [(a.endpoint, a.slots.generation) for a in answers if a.slots and a.slots.generation > expected_generation]
        if local is not None and local.generation > expected_generation:
            newer.append((f"the local copy {self.local_file}", local.generation))
        if newer:
            where = ", ".join(f"generation {g} on {w}" for w, g in newer)
            raise HistoryError(name_, f"the history of cluster {name_} changed since it was loaded at generation "
                                      f"{expected_generation} ({where}): another writer saved it; load it again",
                               [w for w, _ in newer if not w.startswith("the local copy")])
        kept_locally = self._write_local(data)
        by_endpoint = {a.endpoint: a for a in answers}
        written = _parallel(lambda inst: self._write_one(inst, by_endpoint[inst.endpoint], data), insts)
        need = clusterlock.quorum(len(insts))
        if insts and sum(1 for w in written if w.slots is not None) < need:
            kept = ([f"the local copy {self.local_file}"] if kept_locally else []) + [w.endpoint for w in written if w.slots]
            raise HistoryError(name_, self._shortfall("could not save", "took it", written, need)
                               + f"; generation {generation} is kept on {', '.join(kept) or 'none of them'}",
                               self._silent(written), generation=generation if kept else None)
        return generation

    # -- internals -----------------------------------------------------------------------------------------

    def _read_one(self, inst: spec.Instance) -> _Answer:
        try:
            return _Answer(inst.endpoint, _read(self.engines.get(inst), self.cluster.name))
        except api.EngineError as e:
            return _Answer(inst.endpoint, error=e.message)

    def _write_one(self, inst: spec.Instance, answer: _Answer, data: bytes) -> _Answer:
        if answer.slots is None:
            return answer  # it did not answer the read back: its generation is unknown, so nothing is written
        try:
            _write(self.engines.get(inst), self.cluster.name, answer.slots, data)
        except api.EngineError as e:
            return _Answer(inst.endpoint, error=e.message)
        return answer

    def _read_local(self) -> _Envelope | None:
        path = self.local_file
        if not path:
            return None
        try:
            with open(path, "rb") as fh:
                raw = fh.read(api.MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read the local copy of the history of cluster %s (%s): ignored", self.cluster.name, e)
            return None
        found = _decode(self.cluster.name, raw)
        if found is None:
            log.warning("the local copy %s of the history of cluster %s is damaged: ignored", path, self.cluster.name)
        return found

    def _write_local(self, data: bytes) -> bool:
        """Replaces the local copy atomically; a failure is a warning (the engines are the record), False."""
        if not self.local_file:
            return False
        try:
            os.makedirs(self.local_dir or ".", exist_ok=True)
            state.write_text(self.local_file, data.decode(), sync=True)
        except OSError as e:
            log.warning("cannot write the local copy of the history of cluster %s (%s)", self.cluster.name, e)
            return False
        return True

    def _sources(self, answers: list[_Answer], local: _Envelope | None) -> tuple[Source, ...]:
        out = [Source(a.endpoint, a.slots.generation if a.slots else None, a.error) for a in answers]
        if self.local_file:
            out.append(Source(self.local_file, local.generation if local else 0, local=True))
        return tuple(out)

    @staticmethod
    def _silent(answers: list[_Answer]) -> list[str]:
        return [a.endpoint for a in answers if a.slots is None]

    def _shortfall(self, what: str, verb: str, answers: list[_Answer], need: int) -> str:
        ok = sum(1 for a in answers if a.slots is not None)
        failures = "; ".join(f"{a.endpoint}: {a.error}" for a in answers if a.slots is None)
        return (f"{what} the history of cluster {self.cluster.name}: it needs {need} of its {len(answers)} engines "
                f"and {ok} {verb}; {failures}")


def remove(cluster: spec.Cluster, engines: observe.Engines, local_dir: str | None = None) -> list[str]:
    """Removes the history of `cluster`: its container and volume on every engine, and the local copy.
    Returns a line per engine it could not clean ("endpoint: why"); never automatic (tests, `--purge`)."""

    def one(inst: spec.Instance) -> str:
        try:
            engine = engines.get(inst)
            container_id = _container(engine, cluster.name)
            if container_id is not None:
                engine.remove_container(container_id)
            engine.remove_volume(name(cluster.name))
        except api.EngineError as e:
            return f"{inst.endpoint}: {e.message}"
        return ""

    failed = [line for line in _parallel(one, clusterlock.members(cluster)) if line]
    if local_dir:
        try:
            os.unlink(local_path(local_dir, cluster.name))
        except FileNotFoundError:
            pass
    return failed
