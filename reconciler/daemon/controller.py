"""The daemon's reconcile loop: keys in, observe -> plan -> execute out, with crash-loop backoff.

Owns the desired state the daemon converges to (the last valid manifests: an invalid or half-written
tree is logged in `validate`'s format and never tears anything down), the worker threads that take
keys from the work queue, the meaning of a key (ALL: reload, observe every cluster once, enqueue the
services that need work; a service key: re-observe its cluster, plan that service, execute), one writer
per cluster inside the process (a service key holds its cluster's lock from observe to execute, so two
services of a cluster never plan against the same observation and double-book memory or host ports),
per-service crash-loop backoff (about 10 s doubling to 5 min, reset after 10 min without failures), and
the status and metrics it reports. Each desired state it adopts is handed to `membership` (which
clusters it may write, which engines are followed) and to its listeners (the auto scaler) before the
workers see it; a cluster whose writer lock another process holds is observed but never written.
Deciding is the planner's and acting the executor's; triggers only enqueue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import executor, observe, state
from reconciler.daemon import autoscaler, membership, triggers, workqueue
from reconciler.environment import Environment
from reconciler.manifests import build, document, validate
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import planner

log = logging.getLogger("reconciler.daemon")

CRASH_BASE = 10.0
CRASH_CAP = 300.0
CRASH_RESET = 600.0
_FAILURE_CODES = ("EssentialContainerExited", "TaskFailedToStart")


@dataclass
class Settings:
    paths: list[str]
    prune: bool = False
    concurrency: int = 8
    workers: int = 4
    resync: float = 60.0
    unreachable_grace: float = 60.0
    lock_wait: float = 0.0
    debounce: float = 0.2


@dataclass
class CrashLoop:
    """Recent failures of a service's tasks and when the next replacement may start."""

    failures: list[float] = field(default_factory=list)
    last_replacement: float = 0.0
    announced: float = 0.0  # the next-attempt time last logged

    def delay(self) -> float:
        n = len(self.failures)
        return 0.0 if n == 0 else min(CRASH_BASE * 2 ** (n - 1), CRASH_CAP)

    def next_attempt(self) -> float:
        return self.last_replacement + self.delay()

    def forget_old(self, now: float) -> None:
        if self.failures and now - self.failures[-1] > CRASH_RESET:
            self.failures.clear()


class Controller:
    def __init__(
        self,
        env: Environment,
        settings: Settings,
        metrics: Any = None,
        manifest_paths: Callable[[], list[str]] | None = None,
        revision: Callable[[], str | None] = lambda: None,
    ):
        self.env = env
        self.settings = settings
        self.metrics = metrics
        self.manifest_paths = manifest_paths or (lambda: list(settings.paths))
        self.revision = revision
        self.queue = workqueue.WorkQueue()
        self.engines = observe.Engines(env.engine_factory)
        self.store = env.state()
        self.desired: spec.DesiredState | None = None
        self.desired_revision: str | None = None
        self.manifest_errors: list[str] = []
        self.observed: dict[str, obs.ClusterState] = {}
        self.crash: dict[str, CrashLoop] = {}
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.desired_counts: dict[str, tuple[int, str]] = {}  # set by the auto scaler
        self.membership: membership.Membership | None = None  # None: every declared cluster is this process's
        self.listeners: list[Callable[[spec.DesiredState | None, spec.DesiredState], None]] = []
        self._cluster_locks: dict[str, threading.Lock] = {}
        self._inflight: dict[tuple[str, str], tuple[Any, ...]] = {}  # (cluster, service) -> reserved starts
        self._reported: dict[str, set[str]] = {}  # services whose task series each cluster's last observation set
        self._sweep_again: set[str] = set()  # clusters swept when locked, to sweep once more after the first execution
        self._lock = threading.Lock()
        self._drift_logged: set[str] = set()
        self._workers: list[threading.Thread] = []

    # -- manifests --------------------------------------------------------------------------------

    def load(self) -> bool:
        """Validates the manifests; adopts them when valid, else logs every error and keeps the last good."""
        paths = self.manifest_paths()
        result = validate.validate_paths(paths)
        errors = [d for d in result.diagnostics if d.severity == document.ERROR]
        if not result.files and not errors:
            errors = [document.file_diagnostic(",".join(paths), "no manifest files found")]
        if errors:
            lines = [d.format() for d in errors]
            if lines != self.manifest_errors:
                for line in lines:
                    log.error(line)
                kept = "the last valid manifests" if self.desired is not None else "nothing (no valid manifests yet)"
                log.error("manifests are invalid (%d errors); reconciling against %s", len(lines), kept)
            self.manifest_errors = lines
            return False
        desired = build.desired_state(result.documents, self.env.environ)
        if self.manifest_errors:
            log.info("manifests are valid again")
        self.manifest_errors = []
        self._adopt(desired)
        return True

    def _adopt(self, desired: spec.DesiredState) -> None:
        """Makes `desired` the state to converge to: locks and followers first (a newly locked cluster is
        swept of an interrupted run's leftovers), then listeners, then the workers see it."""
        previous = self.desired
        if self.membership is not None:
            for cluster in self.membership.sync(desired):
                self._sweep(desired, cluster)
        self._forget_removed(previous, desired)
        for listener in self.listeners:
            try:
                listener(previous, desired)
            except Exception as e:  # noqa: BLE001 - a listener's failure must not block adopting manifests
                log.error("while adopting the manifests: %s", e, exc_info=True)
        scaled = {s.name for s in desired.services.values() if autoscaler.scaled(s)}
        with self._lock:
            self.desired = desired
            self.desired_revision = self.revision()
            self.desired_counts = {k: v for k, v in self.desired_counts.items() if k in scaled}

    def _forget_removed(self, previous: spec.DesiredState | None, desired: spec.DesiredState) -> None:
        """Drops the metric series of services and engines that are no longer declared."""
        if previous is None or not self.metrics:
            return
        services = {(s.cluster, s.name) for s in desired.services.values()}
        for svc in previous.services.values():
            if (svc.cluster, svc.name) not in services:
                self.metrics.forget_service(svc.cluster, svc.name)
        for cluster, endpoint in membership.endpoints(previous) - membership.endpoints(desired):
            self.metrics.forget_engine(cluster, endpoint)

    def owns(self, cluster: str) -> bool:
        """True when this process may write `cluster` (it holds the cluster's writer lock)."""
        return self.membership is None or self.membership.holds(cluster)

    def cluster_lock(self, cluster: str) -> threading.Lock:
        """The in-process lock a worker holds from observing a cluster to the end of acting on it."""
        with self._lock:
            return self._cluster_locks.setdefault(cluster, threading.Lock())

    # -- queue ------------------------------------------------------------------------------------

    def enqueue(self, key: str) -> None:
        self.queue.add(key)
        if self.metrics:
            self.metrics.set_queue_depth(len(self.queue))

    def _sweep(self, desired: spec.DesiredState, cluster: str) -> None:
        """Removes per-task networks and volumes of `cluster` whose task has no containers: what a run killed
        mid-start (this daemon with SIGKILL, or an `apply`) left behind, as `apply` does before it acts.

        Runs once the cluster's writer lock is newly held, and once more after the first plan executed for
        the cluster (an engine finishes the requests a killed run had sent, so a network can appear after
        the first sweep). Always under the cluster's in-process lock: a worker creates a task's network
        before its containers, and a sweep running meanwhile would take it away.
        """
        with self.cluster_lock(cluster):
            self._collect_garbage(desired, cluster)
            self._sweep_again.add(cluster)

    def _collect_garbage(self, desired: spec.DesiredState, cluster: str) -> None:
        """Observes `cluster` and sweeps it; the caller holds the cluster's in-process lock."""
        try:
            observed = self._observe(desired, {cluster: desired.clusters[cluster]})
            ex = executor.Executor(desired, self.engines, state_dir=self.store, concurrency=self.settings.concurrency,
                                   environ=self.env.environ, started_by="reconciler-watch")
            ex.collect_garbage(observed)
        except Exception as e:  # noqa: BLE001 - leftovers are harmless; never refuse to start over them
            log.warning("could not remove leftovers of an interrupted run: %s", e, extra={"cluster": cluster})

    def start_workers(self) -> None:
        for i in range(max(1, self.settings.workers)):
            t = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def stop_workers(self, abandon: threading.Event | None = None) -> bool:
        """Drops queued keys and waits for in-flight work to finish, however long it takes, unless `abandon`
        is set meanwhile. Returns False when work was abandoned (workers still run: the caller exits)."""
        self.queue.shutdown()
        for t in self._workers:
            while t.is_alive():
                if abandon is not None and abandon.is_set():
                    return False
                t.join(0.2)
        self.engines.close()
        return True

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            started = time.monotonic()
            ok = True
            try:
                self.reconcile(str(key))
                self.queue.forget(key)
            except Exception as e:  # noqa: BLE001 - any failure of one key must not kill the worker
                ok = False
                self.last_error = f"{key}: {e}"
                delay = self.queue.add_rate_limited(key)
                log.error("reconcile %s failed: %s; retrying in %.1fs", key, e, delay, exc_info=not isinstance(e, observe.api.EngineError))
            finally:
                self.queue.done(key)
                if self.metrics:
                    self.metrics.observe_reconcile(time.monotonic() - started, ok)
                    self.metrics.set_queue_depth(len(self.queue))

    # -- reconcile --------------------------------------------------------------------------------

    def reconcile(self, key: str) -> None:
        if key == triggers.ALL:
            self.reconcile_all()
        elif key.startswith("service:"):
            cluster, _, service = key[len("service:") :].partition("/")
            self.reconcile_service(cluster, service)

    def _options(self, desired: spec.DesiredState, targets: frozenset[str] | None, cluster: str | None = None) -> planner.Options:
        reservations = {}
        if cluster is not None:
            with self._lock:
                others = [p for (c, s), held in self._inflight.items() if c == cluster and (targets is None or s not in targets) for p in held]
            reservations = {cluster: tuple(others)}
        return planner.Options(
            prune=self.settings.prune,
            targets=targets,
            unreachable_grace=self.settings.unreachable_grace,
            desired_counts=self._scaled_counts(desired),
            reservations=reservations,
        )

    def _scaled_counts(self, desired: spec.DesiredState) -> dict[str, tuple[int, str]]:
        """The auto scaler's counts of the services that still have `autoScaling` (others follow the manifest)."""
        with self._lock:
            counts = dict(self.desired_counts)
        return {name: c for name, c in counts.items() if (svc := desired.services.get(name)) is not None and autoscaler.scaled(svc)}

    def scale(self, svc: spec.Service, count: int, source: str) -> None:
        """Sets the desired count of an auto-scaled service and converges it."""
        with self._lock:
            self.desired_counts[svc.name] = (count, source)
        self.enqueue(triggers.service_key(svc.cluster, svc.name))

    def restore_counts(self, counts: Mapping[str, tuple[int, str]]) -> None:
        """Desired counts a previous run's auto scaler left (set before the first desired state is published)."""
        with self._lock:
            self.desired_counts.update(counts)

    def observe_clusters(self, desired: spec.DesiredState, clusters: Mapping[str, spec.Cluster]) -> dict[str, obs.ClusterState]:
        return self._observe(desired, clusters)

    def _observe(self, desired: spec.DesiredState, clusters: Mapping[str, spec.Cluster]) -> dict[str, obs.ClusterState]:
        now = time.time()
        out = {}
        for name, cstate in observe.observe(desired, self.engines, clusters).items():
            # The last-known tasks are the writer's memory: a cluster another process writes is only read.
            out[name] = state.recall(self.store, cstate, now, write=self.owns(name))
            self._report_observation(out[name])
        with self._lock:
            self.observed.update(out)
        return out

    def reconcile_all(self) -> None:
        """Reloads the manifests, observes every cluster once, and enqueues each service that needs work."""
        self.load()
        desired = self.desired
        if desired is None:
            return
        observed = self._observe(desired, desired.clusters)
        result = planner.plan(desired, observed, time.time(), self._options(desired, None))
        for sp in result.services:
            if (sp.changed or sp.unplaced) and self.owns(sp.cluster):
                self.enqueue(triggers.service_key(sp.cluster, sp.service))
        for name in result.orphans:
            if name not in self._drift_logged:
                log.warning("service %s runs but is no longer declared; not removed (run with --prune to remove it)", name)
                self._drift_logged.add(name)
        self.last_success = time.time()
        if self.metrics:
            self.metrics.mark_success(self.last_success)

    def reconcile_service(self, cluster: str, service: str) -> None:
        """Observes the service's cluster and plans the service under the cluster's lock, so the plan places
        against an observation plus the starts other workers have in flight (memory, host ports); then
        executes outside the lock, so a service waiting for health checks never holds up the others."""
        desired = self.desired
        if desired is None or cluster not in desired.clusters:
            return
        key = (cluster, service)
        with self.cluster_lock(cluster):
            if not self.owns(cluster):
                log.debug("service %s: cluster is locked by another process; not reconciled", service, extra={"cluster": cluster})
                return
            sp = self._plan_service(desired, cluster, service)
            if sp is None:
                return
            with self._lock:
                self._inflight[key] = planner.reservations(sp)
        try:
            self._execute(desired, P.Plan(services=(sp,)))
        finally:
            with self._lock:
                del self._inflight[key]
                idle = not any(c == cluster for c, _ in self._inflight)
        # /status and the task metrics report the last observation: look again once the actions are done,
        # or they would show the pre-apply state until the next event or resync. A sweep for leftovers runs
        # only while no start is in flight in the cluster (it would take a network a start just made).
        with self.cluster_lock(cluster):
            if cluster in self._sweep_again and idle:
                self._sweep_again.discard(cluster)
                self._collect_garbage(desired, cluster)  # observes too
            else:
                self._observe(desired, {cluster: desired.clusters[cluster]})

    def _plan_service(self, desired: spec.DesiredState, cluster: str, service: str) -> P.ServicePlan | None:
        """The service's plan when there is something to do now, else None (nothing, or a crash-loop wait)."""
        observed = self._observe(desired, {cluster: desired.clusters[cluster]})
        now = time.time()
        result = planner.plan(desired, observed, now, self._options(desired, frozenset([service]), cluster))
        sp = next((s for s in result.services if s.service == service), None)
        log.debug("reconcile service %s: %s", service, sp and f"{sp.add} add, {sp.replace} replace, {sp.remove} remove",
                  extra={"cluster": cluster})
        if sp is None or not sp.changed:
            if sp is not None and sp.unplaced:
                log.warning("service %s: %d task(s) cannot be placed: %s", service, sp.unplaced, sp.unplaced_reason)
            self._heal_clock(cluster, service, now)
            return None
        wait = self._crash_wait(cluster, sp, now, observed[cluster])
        if wait > 0:
            with self._lock:
                loop = self.crash[f"{cluster}/{service}"]
            if loop.announced != loop.next_attempt():  # events and their re-checks ask again; say it once
                loop.announced = loop.next_attempt()
                log.warning("service %s is crash-looping; next replacement in %.0fs", service, wait,
                            extra={"service": service, "cluster": cluster})
            self.queue.add_after(triggers.service_key(cluster, service), wait)
            return None
        return sp

    def _crash_wait(self, cluster: str, sp: P.ServicePlan, now: float, cstate: obs.ClusterState) -> float:
        """Seconds to wait before replacing failed tasks of `sp`'s service (0 to go ahead now).

        A task that ran for the reset period before failing starts the count afresh, as Kubernetes resets
        a container's backoff after ten minutes of running: only quick, repeated failures are a loop.
        """
        failed = [s for s in sp.stops if s.already_stopped and s.stop_code in _FAILURE_CODES]
        if not failed:
            return 0.0
        key = f"{cluster}/{sp.service}"
        with self._lock:  # status() and other clusters' workers read the map meanwhile
            loop = self.crash.setdefault(key, CrashLoop())
        loop.forget_old(now)
        created = {t.id: t.created for t in cstate.tasks}
        if all(now - created.get(s.task_id, now) >= CRASH_RESET for s in failed):
            loop.failures.clear()
        wait = loop.next_attempt() - now
        if wait > 0:
            self._save_backoff(cluster)
            return wait
        loop.failures.append(now)
        loop.last_replacement = now
        self._save_backoff(cluster)
        return 0.0

    def _heal_clock(self, cluster: str, service: str, now: float) -> None:
        with self._lock:
            loop = self.crash.get(f"{cluster}/{service}")
        if loop and loop.failures:
            loop.forget_old(now)
            if not loop.failures:
                self._save_backoff(cluster)

    def _save_backoff(self, cluster: str) -> None:
        now = time.time()
        entries = {}
        with self._lock:
            loops = list(self.crash.items())
        for key, loop in loops:
            c, _, service = key.partition("/")
            if c == cluster and loop.failures:
                entries[service] = {
                    "recentFailures": len(loop.failures),
                    "nextReplacementAt": loop.next_attempt(),
                    "backoffSeconds": loop.delay(),
                }
                if self.metrics:
                    self.metrics.set_backoff(cluster, service, max(0.0, loop.next_attempt() - now))
        try:
            self.store.save_backoff(cluster, entries)
        except OSError:
            pass

    def _execute(self, desired: spec.DesiredState, plan: P.Plan) -> None:
        for sp in plan.services:
            for line in plan.render().splitlines()[:-1]:
                log.info(line.strip(), extra={"service": sp.service, "cluster": sp.cluster, "commit": self.desired_revision})
        ex = executor.Executor(desired, self.engines, state_dir=self.store, concurrency=self.settings.concurrency,
                               on_result=self._on_result, environ=self.env.environ, started_by="reconciler-watch",
                               on_progress=log.info)
        ex.apply(plan)

    def _on_result(self, r: executor.ActionResult) -> None:
        (log.info if r.ok else log.error)(r.line(), extra={"service": r.service, "cluster": r.cluster, "task": r.task_id})
        if self.metrics:
            self.metrics.count_action(r.action, r.ok)

    # -- reporting ----------------------------------------------------------------------------------

    def _report_observation(self, cstate: obs.ClusterState) -> None:
        if not self.metrics:
            return
        for inst in cstate.instances.values():
            self.metrics.set_engine_up(cstate.cluster, inst.endpoint, inst.reachable)
        counts: dict[str, dict[str, int]] = {}
        desired = self.desired
        for svc in desired.services_of(cstate.cluster) if desired else []:
            counts[svc.name] = {}
        for t in cstate.tasks:
            if t.service:
                c = counts.setdefault(t.service, {})
                s = t.status().last_status
                c[s] = c.get(s, 0) + 1
        for u in cstate.unknown:
            c = counts.setdefault(u.service, {})
            c["UNKNOWN"] = c.get("UNKNOWN", 0) + 1
        for service, c in counts.items():
            self.metrics.set_tasks(cstate.cluster, service, c)
        with self._lock:
            gone = self._reported.get(cstate.cluster, set()) - set(counts)
            self._reported[cstate.cluster] = set(counts)
        for service in gone:  # neither declared nor running any more (pruned, or removed by hand)
            self.metrics.forget_service(cstate.cluster, service)

    def ready(self) -> bool:
        return self.desired is not None and self.last_success is not None

    def status(self) -> dict[str, Any]:
        with self._lock:
            desired = self.desired
            observed = dict(self.observed)
            crash = dict(self.crash)
        counts = self._scaled_counts(desired) if desired else {}
        services = []
        for svc in sorted(desired.services.values(), key=lambda s: (s.cluster, s.name)) if desired else []:
            cstate = observed.get(svc.cluster)
            tasks = cstate.tasks_of(svc.name) if cstate else []
            statuses = [t.status() for t in tasks]
            loop = crash.get(f"{svc.cluster}/{svc.name}")
            count, source = counts.get(svc.name, (svc.desired_count, "manifest"))
            services.append(
                {
                    "serviceName": svc.name,
                    "cluster": svc.cluster,
                    "desiredCount": count,
                    "desiredCountSource": source,
                    "runningCount": sum(1 for s in statuses if s.last_status == obs.RUNNING),
                    "pendingCount": sum(1 for s in statuses if s.last_status == obs.PENDING),
                    "tasks": [
                        {"taskId": t.id, "instance": t.instance, "lastStatus": s.last_status, "healthStatus": s.health}
                        for t, s in zip(tasks, statuses, strict=True)
                    ],
                    "crashLoop": (
                        {"recentFailures": len(loop.failures), "nextReplacementAt": loop.next_attempt()}
                        if loop and loop.failures
                        else None
                    ),
                }
            )
        out = {
            "ready": self.ready(),
            "appliedCommit": self.desired_revision,
            "manifests": {"valid": not self.manifest_errors, "errors": list(self.manifest_errors)},
            "lastSuccessfulReconcile": self.last_success,
            "lastError": self.last_error,
            "queueDepth": len(self.queue),
            "services": services,
        }
        if self.membership is not None:
            out["clusterLocks"] = self.membership.report()
        return out
