"""`watch`: the long-running daemon that keeps clusters converged.

Owns wiring the daemon together for one run: logging (text or JSON), the manifest source (a directory
tree, or a Git branch polled into the state directory), the cluster membership (writer locks shared with
`apply`, in the state directory and on the clusters' engines, and engine event followers, re-synced by
the controller with every desired state it adopts), the auto scaler, the HTTP status listener, the
triggers and the workers, and an orderly shutdown on SIGTERM or SIGINT: triggers stop, in-flight work
finishes however long it takes, locks are released, exit 0; tasks keep running. A second signal abandons
the in-flight work (logged; locks released; the process exits 0 at once): the next run's passes finish or
remove what a start cut short. The reconcile loop itself is `daemon.controller`'s. The Git URL is only ever
logged redacted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.commands import common
from reconciler.daemon import alarmwatch, autoscaler, membership, server, triggers
from reconciler.daemon import controller as C
from reconciler.daemon import metrics as M
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.manifests import validate
from reconciler.model import spec, units

log = logging.getLogger("reconciler.daemon")

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and v not in (None, "")}
        tail = "".join(f" {k}={v}" for k, v in sorted(extra.items()))
        text = f"{ts}Z {record.levelname:<7} {record.getMessage()}{tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, sort_keys=True)


def setup_logging(env: Environment, fmt: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(env.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("RECONCILER_LOG_LEVEL", level))
    root.propagate = False


@dataclass
class WatchOptions:
    paths: Sequence[str]
    git: str | None = None
    branch: str = "main"
    subdir: str | None = None
    interval: str = "60s"
    prune: bool = False
    listen: str = "127.0.0.1:9400"
    log_format: str = "text"
    resync: str = "60s"
    concurrency: int = 8
    workers: int = 4
    lock_wait: str | None = None
    unreachable_grace: str = "60s"
    scaling_period: str = "15s"


def _seconds(flag: str, value: str) -> float:
    try:
        return units.parse_duration(value)
    except ValueError as e:
        raise UserError(f"{flag} {value}: {e}") from None


class _GitPoller(threading.Thread):
    """Polls a Git branch; adopts each new commit whose manifests are valid, else stays on the last good."""

    def __init__(self, source: Any, ctl: C.Controller, metrics: M.Metrics, interval: float):
        super().__init__(daemon=True, name="git")
        self.source = source
        self.ctl = ctl
        self.metrics = metrics
        self.interval = interval
        self.tree: str | None = None
        self.applied: str | None = None
        self.rejected: set[str] = set()
        self._stopping = threading.Event()

    def revision(self) -> str | None:
        return self.applied

    def paths(self) -> list[str]:
        return [self.tree] if self.tree else []

    def start_from_record(self) -> None:
        record = self.source.load_record() or {}
        good, applied = record.get("good"), record.get("applied")
        if applied and applied != good:
            self.rejected.add(applied)  # announced as invalid before the restart; not again
        if good:
            try:
                self.tree = self.source.checkout(good)
                self.applied = good
                log.info("resuming from last good commit %s", good[:12], extra={"commit": good})
            except Exception as e:  # noqa: BLE001 - a vanished commit only means we start from the head
                log.warning("cannot check out recorded commit %s: %s", good[:12], e)
        self.poll()

    def poll(self) -> None:
        try:
            head = self.source.fetch()
            if head == self.applied or head in self.rejected:
                return
            tree = self.source.checkout(head, keep=[self.applied] if self.applied else [])  # the applied tree is read
            info = self.source.commit_info(head)
        except Exception as e:  # noqa: BLE001 - GitError and OS errors alike: log and retry next interval
            log.error("git: %s", e)
            return
        result = validate.validate_paths([tree])
        if not result.ok:
            for d in result.errors:
                log.error(d.format(), extra={"commit": head})
            kept = self.applied[:12] if self.applied else "none"
            log.error("commit %s is invalid (%d errors); staying on last good commit %s", head[:12], len(result.errors), kept,
                      extra={"commit": head, "subject": info.get("subject")})
            self.rejected.add(head)
            self._save(applied=head, good=self.applied)
            return
        self.tree, self.applied = tree, head
        self._save(applied=head, good=head)
        self.metrics.set_commit(head)
        log.info("applying commit %s: %s", head[:12], info.get("subject", ""), extra={"commit": head, "author": info.get("author")})
        self.ctl.enqueue(triggers.ALL)

    def _save(self, applied: str, good: str | None) -> None:
        """Records the commits; a failure only costs a repeated announcement after a restart."""
        try:
            self.source.save_record(applied=applied, good=good)
        except (OSError, ValueError) as e:
            log.error("git: cannot record commit %s: %s", applied[:12], e, extra={"commit": applied})

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001 - the poller must outlive any one failed poll
                log.error("git: poll failed: %s", e, exc_info=True)


def watch(env: Environment, options: WatchOptions) -> ExitStatus:
    setup_logging(env, options.log_format)
    settings = C.Settings(
        paths=list(options.paths) or list(common.DEFAULT_PATHS),
        prune=options.prune,
        concurrency=options.concurrency,
        workers=options.workers,
        resync=_seconds("--resync", options.resync),
        unreachable_grace=_seconds("--unreachable-grace", options.unreachable_grace),
        lock_wait=_seconds("--lock-wait", options.lock_wait) if options.lock_wait else 0.0,
    )
    interval = _seconds("--interval", options.interval)
    scaling_period = _seconds("--scaling-period", options.scaling_period)
    if options.listen != "off":
        try:
            server.parse_listen(options.listen)
        except ValueError as e:
            raise UserError(f"--listen {options.listen}: {e}") from None
    metrics = M.Metrics()
    ctl = C.Controller(env, settings, metrics)
    members = membership.Membership(ctl.store, _follower(ctl), guard=ctl.cluster_lock, lock_wait=settings.lock_wait,
                                    engine_factory=env.engine_factory, command="watch")
    ctl.membership = members
    scaler = autoscaler.Autoscaler(ctl, scaling_period)
    ctl.listeners.append(scaler.adopt)  # restores the saved counts when the first desired state arrives
    alarms = alarmwatch.AlarmWatch(ctl.store.path, env.clock, scaler.utilisation, metrics,
                                   on_service=lambda svc: ctl.enqueue(triggers.service_key(svc.cluster, svc.name)))
    ctl.listeners.append(alarms.adopt)
    ctl.alarm_states = alarms.states
    try:
        return _run(ctl, members, scaler, alarms, options, settings, metrics, interval)
    finally:
        members.close()


def _run(ctl: C.Controller, members: membership.Membership, scaler: autoscaler.Autoscaler, alarms: alarmwatch.AlarmWatch,
         options: WatchOptions, settings: C.Settings, metrics: M.Metrics, interval: float) -> ExitStatus:
    poller: _GitPoller | None = None
    shown = ", ".join(settings.paths)
    if options.git:
        from reconciler.daemon import gitsource

        shown = gitsource.redact(options.git)
        source = gitsource.GitSource(options.git, options.branch, ctl.store.path, options.subdir)
        poller = _GitPoller(source, ctl, metrics, interval)
        ctl.manifest_paths = poller.paths
        ctl.revision = poller.revision
        poller.start_from_record()
        if poller.applied:
            metrics.set_commit(poller.applied)
    ctl.load()  # adopting takes the clusters' locks, starts their followers, sweeps their leftovers
    if ctl.desired is None and not options.git:
        raise UserError("no valid manifests to start from; fix the errors above (the daemon never starts on invalid input)")

    stop, abandon = threading.Event(), threading.Event()

    def on_signal(*_: Any) -> None:
        (abandon if stop.is_set() else stop).set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    with contextlib.ExitStack() as stack:
        for sig, handler in previous.items():
            stack.callback(signal.signal, sig, handler)
        if options.listen != "off":
            try:
                http = server.StatusServer(options.listen, ctl.status, ctl.ready, metrics)
                http.start()
            except ValueError as e:
                raise UserError(str(e)) from None
            stack.callback(http.stop)
            log.info("listening on %s (/healthz /readyz /metrics /status)", http.url)
        stoppers = [scaler.stop, alarms.stop, *_start_triggers(ctl, settings, poller), members.stop_following]
        scaler.start()
        alarms.start()
        ctl.start_workers()
        ctl.enqueue(triggers.ALL)
        log.info("watching %s; clusters: %s", shown, ", ".join(members.held()) or "none")
        try:
            while not stop.wait(0.5):
                pass
        finally:
            log.info("shutting down: stopping triggers, letting in-flight work finish (a second signal abandons it)")
            for s in stoppers:
                s()
            if not ctl.stop_workers(abandon):
                _abandon(members)
    log.info("stopped; running tasks are left running")
    return ExitStatus.OK


def _abandon(members: membership.Membership) -> None:
    """Exits at once, in-flight work cut short: safe, as the next run's passes finish or remove what a start
    left (a task's network, or containers created and not started); the interpreter would wait for the action pools."""
    log.warning("second signal: abandoning in-flight work; the next run cleans up any task it cut short")
    members.close()
    log.info("stopped; running tasks are left running")
    logging.shutdown()
    os._exit(int(ExitStatus.OK))


def _follower(ctl: C.Controller) -> membership.Follow:
    """Starts an engine event follower for (cluster, instance), feeding the controller's queue."""

    def follow(cluster: str, inst: spec.Instance) -> triggers.EngineEvents:
        follower = triggers.EngineEvents(
            cluster,
            connect=lambda: ctl.engines.get(inst),
            enqueue=ctl.enqueue,
            enqueue_after=ctl.queue.add_after,
            on_reconnect=lambda: ctl.enqueue(triggers.ALL),
            on_status=lambda up: ctl.metrics.set_engine_up(cluster, inst.endpoint, up) if ctl.metrics else None,
        )
        follower.start()
        return follower

    return follow


def _start_triggers(ctl: C.Controller, settings: C.Settings, poller: _GitPoller | None) -> list:
    """The Git poller or the file watcher, and the periodic resync; engine followers are membership's."""
    stoppers = []
    if poller is not None:
        poller.start()
        stoppers.append(poller.stop)
    else:
        files = triggers.FileTrigger(settings.paths, lambda: ctl.enqueue(triggers.ALL), settings.debounce)
        files.start()
        stoppers.append(files.stop)
    resync = triggers.Resync(settings.resync, ctl.enqueue)
    resync.start()
    stoppers.append(resync.stop)
    return stoppers
