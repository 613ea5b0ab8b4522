"""The daemon's reconcile loop: keys in, passes out. A pass observes, plans and launches, then returns.

Owns the desired state the daemon converges to (the last valid manifests: an invalid or half-written
tree is logged in `validate`'s format and never tears anything down), the worker threads that take keys
from the work queue and act on each pass's `Outcome` (only they touch the queue), the meaning of a key
(ALL: reload, observe every cluster once, name the services that need a pass, move one-off tasks on,
sweep leftovers; a service key: one pass over that service), one writer per cluster inside the process
(a pass holds its cluster's lock from snapshotting the work in flight to launching, so two services of a
cluster never plan against the same observation and double-book memory or host ports), the crash-loop
gate before a pass starts tasks (`crashloop`), and feeding the runner's results back (a finished action
enqueues its service). Nothing here waits on an engine: starts, stops and health checks run in the
runner's background (`actions.runner`), and a rollout moves on when the next pass sees the new state.
Each desired state it adopts is handed to `membership` (which clusters it may write, which engines are
followed) and to its listeners (the auto scaler) before the workers see it; a cluster whose writer lock
another process holds is observed but never written. Deciding is the planner's; triggers only enqueue;
the /status view is `daemon.status`'.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import histories, observe, state
from reconciler.actions import gc
from reconciler.actions.result import ActionResult
from reconciler.actions.runner import Runner
from reconciler.daemon import autoscaler, crashloop, membership, triggers, workqueue
from reconciler.daemon import status as status_view
from reconciler.daemon.outcome import BUG, DONE, INVALID, OK, TRANSIENT, Outcome
from reconciler.environment import Environment
from reconciler.manifests import build, document, validate
from reconciler.model import history as H
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import deployments, planner

log = logging.getLogger("reconciler.daemon")

WAITING_POLL = 1.0  # seconds: look again at a rollout that waits, should an engine event go missing


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
    stop_concurrency: int = 64


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
        self.clock = env.clock
        self.queue = workqueue.WorkQueue(clock=env.clock.monotonic)
        self.engines = observe.Engines(env.engine_factory)
        self.store = env.state()
        self.runner = Runner(self.engines, state_dir=self.store, concurrency=settings.concurrency,
                             stop_concurrency=settings.stop_concurrency, environ=env.environ,
                             started_by="reconciler-watch", clock=env.clock, on_result=self._on_result,
                             on_progress=log.info)
        self.desired: spec.DesiredState | None = None
        self.desired_revision: str | None = None
        self.manifest_errors: list[str] = []
        self.observed: dict[str, obs.ClusterState] = {}
        self.crash: dict[str, crashloop.Backoff] = {}  # "cluster/service" -> its crash-loop state
        self._start_failed: set[str] = set()  # "cluster/service" whose last starts failed (a retry is gated)
        self._unplaced_logged: dict[str, str] = {}
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.desired_counts: dict[str, tuple[int, str]] = {}  # set by the auto scaler
        self.membership: membership.Membership | None = None  # None: every declared cluster is this process's
        self.listeners: list[Callable[[spec.DesiredState | None, spec.DesiredState], None]] = []
        self._cluster_locks: dict[str, threading.Lock] = {}
        self._reported: dict[str, set[str]] = {}  # services whose task series each cluster's last observation set
        self._lock = threading.Lock()
        self._drift_logged: set[str] = set()
        self._workers: list[threading.Thread] = []
        # Deployments: each written cluster's history (revisions, deployments, events), the starts that
        # failed since the last pass of their service, and the states of the alarms deployments watch.
        self.keeper = histories.Keeper(self.engines, self.store.path)
        self.ids: Callable[[str], str] = histories.new_id
        self._failed_starts: dict[str, dict[str, str]] = {}  # "cluster/service" -> task id -> message
        self._pin_errors: dict[str, str] = {}
        self.alarm_states: Callable[[], Mapping[str, str]] = dict

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
        mid-start (this daemon with SIGKILL, or an `apply`) left behind. Runs when the cluster's writer lock
        is newly held and at every ALL pass, under the cluster's in-process lock and only while none of the
        cluster's starts is in flight (a start makes its network before its containers), against an
        observation made under that lock."""
        with self.cluster_lock(cluster):
            if self.runner.inflight().of_cluster(cluster):
                return
            try:
                observed = self._observe(desired, {cluster: desired.clusters[cluster]})
                gc.collect(desired, self.engines, observed)
            except Exception as e:  # noqa: BLE001 - leftovers are harmless; never refuse to go on over them
                log.warning("could not remove leftovers of an interrupted run: %s", e, extra={"cluster": cluster})

    def start_workers(self) -> None:
        for i in range(max(1, self.settings.workers)):
            t = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            t.start()
            self._workers.append(t)

    def stop_workers(self, abandon: threading.Event | None = None) -> bool:
        """Drops queued keys and waits for the passes and the actions in flight to finish, however long it
        takes, unless `abandon` is set meanwhile. Returns False when work was abandoned (the caller exits)."""
        self.queue.shutdown()
        for t in self._workers:
            while t.is_alive():
                if abandon is not None and abandon.is_set():
                    return False
                t.join(0.2)
        while not self.runner.drain(0.2):
            if abandon is not None and abandon.is_set():
                return False
        self.runner.shutdown()
        try:
            self.keeper.flush()
        except histories.HistoryUnavailable as e:
            log.error("%s", e)
        self.engines.close()
        return True

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            self.process(key)

    def process(self, key: Any) -> Outcome:
        """Runs one pass over a key taken from the queue and acts on its outcome; the only code that puts
        keys back (workers call it; tests call it to step the daemon)."""
        started = self.clock.monotonic()
        outcome = self._pass(str(key))
        if outcome.retry:
            self.last_error = f"{key}: {outcome.error}"
            delay = self.queue.add_rate_limited(key)
            log.error("reconcile %s failed: %s; retrying in %.1fs", key, outcome.error, delay)
        else:
            self.queue.forget(key)
            if outcome.requeue_after is not None:
                self.queue.add_after(key, outcome.requeue_after)
        for other in outcome.enqueue:
            self.queue.add(other)
        self.queue.done(key)
        if self.metrics:
            self.metrics.observe_reconcile(self.clock.monotonic() - started, not outcome.retry)
            self.metrics.set_queue_depth(len(self.queue))
        return outcome

    def _pass(self, key: str) -> Outcome:
        """One pass over `key`, whatever goes wrong in it: an engine error is transient, anything else a bug."""
        try:
            return self.reconcile(key, self.clock.now())
        except (observe.api.EngineError, histories.HistoryUnavailable) as e:
            return Outcome(error=str(e), kind=TRANSIENT)
        except Exception as e:  # noqa: BLE001 - any failure of one key must not kill the worker
            log.error("reconcile %s: unexpected %s", key, type(e).__name__, exc_info=True)
            return Outcome(error=f"unexpected {type(e).__name__}: {e}", kind=BUG)

    # -- reconcile --------------------------------------------------------------------------------

    def reconcile(self, key: str, now: float) -> Outcome:
        if key == triggers.ALL:
            return self.reconcile_all(now)
        if key.startswith("service:"):
            cluster, _, service = key[len("service:") :].partition("/")
            return self.reconcile_service(cluster, service, now)
        return DONE

    def _options(self, desired: spec.DesiredState, targets: frozenset[str] | None, inflight: Any) -> planner.Options:
        return planner.Options(
            prune=self.settings.prune,
            targets=targets,
            unreachable_grace=self.settings.unreachable_grace,
            desired_counts=self._scaled_counts(desired),
            inflight=inflight,
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
        now = self.clock.now()
        out = {}
        for name, cstate in observe.observe(desired, self.engines, clusters).items():
            # The last-known tasks are the writer's memory: a cluster another process writes is only read.
            out[name] = state.recall(self.store, cstate, now, write=self.owns(name))
            self._report_observation(out[name])
        with self._lock:
            self.observed.update(out)
        return out

    def reconcile_all(self, now: float) -> Outcome:
        """Reloads the manifests, observes every cluster once, names each service that needs a pass, moves
        one-off tasks on and sweeps leftovers."""
        valid = self.load()
        desired = self.desired
        if desired is None:
            return Outcome(error="no valid manifests yet", kind=INVALID)
        inflight = self.runner.inflight()
        planned = desired
        for name in desired.clusters:
            with self.cluster_lock(name):
                try:
                    planned, _ = self._resolve(planned, [name], now)
                except histories.HistoryUnavailable as e:  # that cluster waits; the others go on
                    log.error("%s", e, extra={"cluster": name})
                    self.last_error = str(e)
        observed = self._observe(desired, desired.clusters)
        result = planner.plan(planned, observed, now, self._options(planned, None, inflight))
        keys = tuple(
            triggers.service_key(sp.cluster, sp.service)
            for sp in result.services
            if (sp.changed or sp.unplaced or sp.waiting) and self.owns(sp.cluster)
        )
        one_off = [a for a in result.one_off if self.owns(a.cluster)]
        if one_off:
            self.runner.launch(desired, P.Step(stops=tuple(a for a in one_off if isinstance(a, P.StopTask)),
                                               advances=tuple(a for a in one_off if isinstance(a, P.StartContainers))))
        for name in result.orphans:
            if name not in self._drift_logged:
                log.warning("service %s runs but is no longer declared; not removed (run with --prune to remove it)", name)
                self._drift_logged.add(name)
        for cluster in desired.clusters:
            if self.owns(cluster):
                self._sweep(desired, cluster)
        self.last_success = now
        if self.metrics:
            self.metrics.mark_success(self.last_success)
        return Outcome(enqueue=keys, kind=OK if valid else INVALID)

    def _resolve(
        self, desired: spec.DesiredState, clusters: list[str], now: float
    ) -> tuple[spec.DesiredState, dict[str, deployments.Resolved]]:
        """`desired` with what each service of the written `clusters` runs (its PRIMARY deployment's
        revision), after registering new revisions and creating the deployments the manifests ask for
        (saved before anything of them is launched). A service whose pin names no revision is left out and
        logged once. Clusters another process writes plan with their manifests as they are."""
        out: dict[str, deployments.Resolved] = {}
        running: dict[str, spec.TaskDefinition] = {}
        drop: set[str] = set()
        for name in clusters:
            if not self.owns(name):
                continue
            cluster = desired.clusters[name]
            history = self.keeper.get(cluster)
            resolved = deployments.resolve(history, desired, now, self.ids, self._counts(desired))
            saved = self._save(cluster, history, resolved.history)
            resolved = dataclasses.replace(resolved, history=saved)
            out[name] = resolved
            running.update(resolved.running)
            for err in resolved.errors:
                drop.add(err.service.name)
                if self._pin_errors.get(err.service.name) != err.message:
                    log.error("%s: spec.taskDefinition: %s; service %s is not reconciled", err.service.source,
                              err.message, err.service.name, extra={"service": err.service.name, "cluster": name})
                    self._pin_errors[err.service.name] = err.message
        for svc_name in list(self._pin_errors):
            if svc_name not in drop:
                del self._pin_errors[svc_name]
        # A service whose pin names no revision stays declared (never pruned) and is left alone.
        planned = dataclasses.replace(desired, running={**desired.running, **running})
        return planned, out

    def _counts(self, desired: spec.DesiredState) -> dict[str, int]:
        return {name: count for name, (count, _) in self._scaled_counts(desired).items()}

    def _save(self, cluster: spec.Cluster, before: H.History, after: H.History) -> H.History:
        """Saves a changed history (its new events go to the log as well)."""
        if after is before:
            return before
        known = {e.id for sh in before.services.values() for e in sh.events[:10]}
        if self.metrics:
            for service, sh in after.services.items():
                if sh.primary is not None and (svc := (self.desired.services.get(service) if self.desired else None)) is not None:
                    self.metrics.set_deployment(svc.cluster, service, sh.primary.rollout_state, sh.primary.failed_tasks)
        for service, sh in after.services.items():
            for event in reversed(sh.events[:10]):
                if event.id not in known:
                    log.info(event.message, extra={"service": service, "cluster": cluster.name})
                    if "deployment failed" in event.message:
                        self.last_error = event.message
        return self.keeper.put(cluster, after, wait=histories.milestone(before, after))

    def reconcile_service(self, cluster: str, service: str, now: float) -> Outcome:
        """One pass over a service, under its cluster's lock: resolve what it runs (its deployment), snapshot
        the work in flight, observe the cluster, plan the service against both, move its deployment on,
        launch what the plan says to do now, and return. Launched work runs in the runner; its end enqueues
        the service again, as do engine events."""
        desired = self.desired
        if desired is None or cluster not in desired.clusters:
            return DONE
        key = f"{cluster}/{service}"
        with self.cluster_lock(cluster):
            if not self.owns(cluster):
                log.debug("service %s: cluster is locked by another process; not reconciled", service, extra={"cluster": cluster})
                return DONE
            planned, resolved = self._resolve(desired, [cluster], now)
            res = resolved[cluster]
            svc = planned.services.get(service)
            inflight = self.runner.inflight()
            observed = self._observe(desired, {cluster: desired.clusters[cluster]})
            result = planner.plan(planned, observed, now, self._options(planned, frozenset([service]), inflight))
            sp = next((s for s in result.services if s.service == service), None)
            if sp is None or service in self._pin_errors:
                return DONE
            if svc is None:  # no longer declared: --prune removes its tasks; it has no deployment any more
                if not sp.now.empty:
                    self._log_plan(sp, sp.now)
                    self.runner.launch(planned, sp.now)
                return DONE
            with self._lock:
                failed = self._failed_starts.pop(key, {})
            tasks = [t for t in observed[cluster].tasks_of(service) if t.id not in inflight.stopping]
            history = deployments.progress(res.history, svc, sp, tasks, now, self.ids, failed, self.alarm_states())
            if sp.unplaced:
                history = deployments.add_event(history, service, deployments.unplaced_message(service, sp.unplaced_reason),
                                                now, self.ids, repeat=False)
            before = res.history.service(service).primary
            history = self._save(desired.clusters[cluster], res.history, history)
            after = history.service(service).primary
            if before is not None and after is not None and (after.id != before.id or after.rollout_state != before.rollout_state):
                return Outcome(requeue_after=0.0)  # what the service runs changed: plan again against it
            step, wait = self._gate(cluster, sp, observed[cluster], desired, now)
            if service in res.frozen:
                step = P.Step(stops=tuple(s for s in step.stops if s.already_stopped))
            if after is not None and step.starts:
                step = dataclasses.replace(step, starts=tuple(dataclasses.replace(s, deployment=after.id) for s in step.starts))
            if not step.empty:
                self.keeper.ready(cluster)  # nothing is launched while the history may not record it
                self._log_plan(sp, step)
                ids = self.runner.launch(planned, step)
                self._save(desired.clusters[cluster], history, deployments.step_events(history, step, ids, now, self.ids))
        self._log_unplaced(sp)
        requeue = [w for w in (wait, WAITING_POLL if sp.waiting else None, self._bake_poll(svc, after, now)) if w]
        return Outcome(requeue_after=min(requeue) if requeue else None)

    @staticmethod
    def _bake_poll(svc: spec.Service, d: H.Deployment | None, now: float) -> float | None:
        """When to look again at a deployment that bakes (or watches alarms) with nothing else to wake it."""
        if d is None or d.done or d.steady_at is None:
            return None
        left = d.steady_at + (0.0 if d.rollback_of else svc.bake_time) - now
        return min(max(left, 0.05), WAITING_POLL * 5)

    def _gate(
        self, cluster: str, sp: P.ServicePlan, cstate: obs.ClusterState, desired: spec.DesiredState, now: float
    ) -> tuple[P.Step, float]:
        """The crash-loop gate before a pass starts tasks: (what to launch now, seconds until the held-back
        starts may go). While a service crash-loops, the replacements of tasks that died young wait (those
        dead tasks stay to be seen), and so do retries of failed starts; the rest of the step goes now: a
        task that was healthy and then got killed is replaced at once, backoff or not."""
        step = sp.now
        key = f"{cluster}/{sp.service}"
        with self._lock:
            before = self.crash.get(key, crashloop.Backoff())
            retry = key in self._start_failed
        if not step.starts:
            after = crashloop.forget_old(before, now)
            if after != before:
                self._set_backoff(cluster, key, after)
            return step, 0.0
        svc = desired.services.get(sp.service)
        min_run = crashloop.min_run_seconds(svc.health_check_grace_period if svc else None)
        tasks = {t.id: t for t in cstate.tasks}
        young = {s.task_id for s in step.stops if s.already_stopped and s.task_id in tasks
                 and crashloop.is_crash_failure(tasks[s.task_id], min_run)}
        wait, after = crashloop.admit(before, len(young), now, retry)
        if wait <= 0:
            with self._lock:
                self._start_failed.discard(key)
            if after != before:
                self._set_backoff(cluster, key, after)
            return step, 0.0
        announce, after = crashloop.should_announce(after)
        if announce:
            log.warning("service %s is crash-looping; next replacement in %.0fs", sp.service, wait,
                        extra={"service": sp.service, "cluster": cluster})
        if after != before:
            self._set_backoff(cluster, key, after)
        held = len(step.starts) if retry and not young else len(young)  # a failed start leaves no dead task
        return P.Step(starts=step.starts[held:], stops=tuple(s for s in step.stops if s.task_id not in young),
                      advances=step.advances), wait

    def _set_backoff(self, cluster: str, key: str, backoff: crashloop.Backoff) -> None:
        with self._lock:
            self.crash[key] = backoff
            states = {k.partition("/")[2]: v for k, v in self.crash.items() if k.partition("/")[0] == cluster}
        if self.metrics:
            self.metrics.set_backoff(cluster, key.partition("/")[2], crashloop.wait(backoff, self.clock.now()))
        try:
            self.store.save_backoff(cluster, crashloop.states_to_json(states))
        except OSError:
            pass

    def _log_plan(self, sp: P.ServicePlan, step: P.Step) -> None:
        only = dataclasses.replace(sp, steps=(step,), warnings=(), diff=sp.diff)
        for line in P.Plan(services=(only,)).render().splitlines()[:-1]:
            log.info(line.strip(), extra={"service": sp.service, "cluster": sp.cluster, "commit": self.desired_revision})

    def _log_unplaced(self, sp: P.ServicePlan) -> None:
        key = f"{sp.cluster}/{sp.service}"
        said = f"{sp.unplaced}: {sp.unplaced_reason}" if sp.unplaced else ""
        if self._unplaced_logged.get(key, "") != said:
            if said:
                log.warning("service %s: %d task(s) cannot be placed: %s", sp.service, sp.unplaced, sp.unplaced_reason,
                            extra={"service": sp.service, "cluster": sp.cluster})
            self._unplaced_logged[key] = said

    def _on_result(self, r: ActionResult) -> None:
        """A background action ended: log it, count it, gate a failed start's retry, and pass again."""
        (log.info if r.ok else log.error)(r.line(), extra={"service": r.service, "cluster": r.cluster, "task": r.task_id})
        if r.service:
            self.enqueue(triggers.service_key(r.cluster, r.service))  # first: nothing below may keep the next pass away
        if self.metrics:
            self.metrics.count_action(r.action, r.ok)
        if not r.service:
            return
        key = f"{r.cluster}/{r.service}"
        if r.action == "start" and not r.ok:
            now = self.clock.now()
            with self._lock:
                self._failed_starts.setdefault(key, {})[r.task_id] = r.message
                self._start_failed.add(key)
                before = self.crash.get(key, crashloop.Backoff())
            if crashloop.wait(before, now) <= 0:  # one failure per round, however many starts of it failed
                self._set_backoff(r.cluster, key, crashloop.record_failures(before, 1, now))

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

    def snapshot(self) -> status_view.Snapshot:
        """A consistent copy of what the views report (see `daemon.status`)."""
        desired = self.desired
        counts = self._scaled_counts(desired) if desired else {}
        with self._lock:
            return status_view.Snapshot(
                desired=desired,
                observed=dict(self.observed),
                crash=dict(self.crash),
                counts=counts,
                inflight=self.runner.inflight(),
                ready=self.ready(),
                revision=self.desired_revision,
                manifest_errors=tuple(self.manifest_errors),
                last_success=self.last_success,
                last_error=self.last_error,
                queue_depth=len(self.queue),
                locks=self.membership.report() if self.membership is not None else None,
                histories={name: h for name in (desired.clusters if desired else {}) if (h := self.keeper.loaded(name)) is not None},
            )


    def status(self) -> dict[str, Any]:
        """The /status document."""
        return status_view.view(self.snapshot())
