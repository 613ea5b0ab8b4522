"""Per-service auto scaling inside the daemon: gather metrics, decide, remember, hand the count over.

Owns the evaluation round of every service with an `autoScaling` block: one-shot stats of all its
tasks' containers gathered concurrently across engines (the previous sample per container is kept,
since a one-shot sample has no `precpu_stats`), utilisation as ECS defines it, customized metrics from
their HTTP endpoints (or any other `scaling.source.MetricSource`), `scaling.policy.decide`, and the
result: the desired count the controller plans with, decisions in the log and metrics, and everything
persisted in the state directory so a restart neither flaps nor forgets cooldowns. The controller hands
it every desired state it adopts (`adopt`): the first one restores what a previous run saved, and a
service that lost its `autoScaling` block is forgotten (its count goes back to the manifest). A
customized metric that starts or stops failing is logged once per change. The decision rules are
`scaling.policy`'s; this module must not decide nor act on engines beyond reading stats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reconciler.engine import api
from reconciler.model import normalize, spec
from reconciler.model import observed as obs
from reconciler.planning import planner, resources
from reconciler.scaling import policy, source, stats

log = logging.getLogger("reconciler.autoscaler")

DEFAULT_PERIOD = 15.0
HISTORY = 20
# A one-shot stats call waits for the engine's next one-second sample, so calls must overlap widely:
# 500 containers at 128 at a time take about four seconds.
STATS_CONCURRENCY = 128


def scaled(svc: spec.Service) -> bool:
    """True for a service whose desired count the auto scaler owns."""
    return bool(svc.auto_scaling) and svc.scheduling_strategy == spec.REPLICA


class Autoscaler:
    def __init__(self, ctl: Any, period: float = DEFAULT_PERIOD, metric_source: source.MetricSource | None = None):
        self.ctl = ctl
        self.period = period
        self.samples = source.WindowedMetrics()
        self.custom = metric_source or source.HttpMetricSource()
        self.previous: dict[str, Mapping[str, Any]] = {}
        self.states: dict[str, policy.ScalingState] = {}
        self.decisions: dict[str, list[dict[str, Any]]] = {}
        self.counts: dict[str, tuple[int, str]] = {}
        self._configs: dict[str, tuple[str, policy.ScalingConfig]] = {}
        self._failing: set[tuple[str, str]] = set()  # (service, metric key) of customized metrics failing now
        self._restored = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._collecting = threading.Lock()  # one stats round at a time (they share `previous`)

    # -- lifecycle --------------------------------------------------------------------------------

    def restore(self, desired: spec.DesiredState) -> None:
        """Loads counts, policy states and decisions a previous run left in the state directory."""
        for cluster in desired.clusters:
            for name, entry in self.ctl.store.scaling(cluster).items():
                if not isinstance(entry, dict):
                    continue
                self.states[name] = policy.ScalingState.from_dict(entry.get("state"))
                self.decisions[name] = list(entry.get("decisions") or [])[-HISTORY:]
        self.counts.update(self.ctl.store.scaled_counts(desired.services.values()))

    def adopt(self, previous: spec.DesiredState | None, desired: spec.DesiredState) -> None:
        """Called by the controller with each desired state it adopts, before its workers see it. The first
        one restores the previous run's counts (handed to the controller); services no longer scaled are
        forgotten, so re-adding `autoScaling` later starts from the manifest's desiredCount again."""
        if not self._restored:
            self._restored = True
            self.restore(desired)
            self.ctl.restore_counts(self.counts)
        stale = self._known() - {s.name for s in self.scaled_services(desired)}
        self.forget(stale)
        sink = self.ctl.metrics
        for svc in (previous.services.values() if previous and sink else []):
            if svc.name in stale:
                sink.forget_desired(svc.cluster, svc.name, "autoscaling")

    def _known(self) -> set[str]:
        return (set(self.counts) | set(self.states) | set(self.decisions) | set(self._configs) | self.samples.services()
                | {service for service, _ in self._failing})

    def forget(self, services: set[str]) -> None:
        """Drops everything kept about `services` (counts, policy states, decisions, samples, config)."""
        for name in services:
            self.counts.pop(name, None)
            self.states.pop(name, None)
            self.decisions.pop(name, None)
            self._configs.pop(name, None)
            self.samples.forget(name)
            self._failing = {k for k in self._failing if k[0] != name}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="autoscaler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.evaluate(time.time())
            except Exception as e:  # noqa: BLE001 - one failed round must not end scaling
                log.error("scaling evaluation failed: %s", e, exc_info=True)

    # -- one round --------------------------------------------------------------------------------

    def _config(self, svc: spec.Service) -> policy.ScalingConfig:
        """The parsed block, cached by its canonical JSON (an id() could be reused by a later block)."""
        block = svc.auto_scaling or {}
        text = normalize.canonical_json(block)
        cached = self._configs.get(svc.name)
        if cached is None or cached[0] != text:
            cached = (text, policy.ScalingConfig.from_manifest(block))
            self._configs[svc.name] = cached
        return cached[1]

    def scaled_services(self, desired: spec.DesiredState) -> list[spec.Service]:
        return sorted((s for s in desired.services.values() if scaled(s)), key=lambda s: s.name)

    def evaluate(self, now: float) -> dict[str, policy.Decision]:
        """One evaluation of every scaled service; returns the decisions by service name."""
        desired = self.ctl.desired
        if desired is None:
            return {}
        services = self.scaled_services(desired)
        if not services:
            return {}
        clusters = {s.cluster: desired.clusters[s.cluster] for s in services if s.cluster in desired.clusters}
        observed = self.ctl.observe_clusters(desired, clusters)
        self._collect(desired, services, observed, now)
        out = {}
        for svc in services:
            out[svc.name] = self._decide(desired, observed, svc, now)
        self._persist(desired, services)
        return out

    def utilisation(self, service: str, metric_type: str) -> float | None:
        """The service's current CPU or memory utilisation (percent, as ECS defines it) from one stats round
        over its running tasks, for alarms on a predefined metric; None while none of its tasks is measured."""
        desired = self.ctl.desired
        svc = desired.services.get(service) if desired is not None else None
        if svc is None:
            return None
        now = self.ctl.clock.now()
        self._collect(desired, [svc], self.ctl.snapshot().observed, now, custom=False)
        window = self.samples.window(service, metric_type, 60.0, now)
        return window[-1][1] if window else None

    def _collect(self, desired: spec.DesiredState, services: list[spec.Service], observed: Mapping[str, obs.ClusterState], now: float,
                 custom: bool = True) -> None:
        with self._collecting:
            self._collect_locked(desired, services, observed, now, custom)

    def _collect_locked(self, desired: spec.DesiredState, services: list[spec.Service], observed: Mapping[str, obs.ClusterState],
                        now: float, custom: bool) -> None:
        """Utilisation of every scaled service's running tasks, from concurrent one-shot stats."""
        jobs: list[tuple[api.Engine, str]] = []
        layout: dict[str, list[tuple[obs.Task, list[str]]]] = {}
        for svc in services:
            cstate = observed.get(svc.cluster)
            tasks = [t for t in (cstate.tasks_of(svc.name) if cstate else []) if t.status().last_status == obs.RUNNING]
            cluster = desired.clusters[svc.cluster]
            layout[svc.name] = []
            for t in tasks:
                inst = cluster.instance(t.instance)
                if inst is None:
                    continue
                try:
                    engine = self.ctl.engines.get(inst)
                except api.EngineError:
                    continue
                ids = [c.id for c in t.app_containers if c.running]
                layout[svc.name].append((t, ids))
                jobs.extend((engine, cid) for cid in ids)
        payloads = self._stats(jobs)
        live = set(payloads)
        for svc in services:
            per_task = []
            for task, ids in layout[svc.name]:
                pairs = []
                for cid in ids:
                    current = payloads.get(cid)
                    if current is None:
                        continue
                    pairs.append((self.previous.get(cid), current))
                    self.previous[cid] = current
                reserved = resources.reservation(task.spec)
                per_task.append(stats.task_utilization(pairs, reserved["cpu"], reserved["memory"]))
            cpu, memory = stats.service_utilization(per_task)
            if cpu is not None:
                self.samples.add(svc.name, policy.CPU, now, cpu)
            if memory is not None:
                self.samples.add(svc.name, policy.MEMORY, now, memory)
            customized = [m for m in self._config(svc).metrics() if m.url] if custom else []
            if customized:
                for key, value in self.custom.collect(svc.name, customized, now).items():
                    self.samples.add(svc.name, key, now, value)
                self._report_metric_errors(svc, customized)
        if custom:  # a round over every scaled service: stats of containers it did not see are stale
            for cid in list(self.previous):
                if cid not in live:
                    del self.previous[cid]

    def _report_metric_errors(self, svc: spec.Service, metrics: list[policy.Metric]) -> None:
        """Logs a customized metric once when it starts failing and once when it answers again (a source
        that keeps `errors[(service, metric key)]`, as HttpMetricSource does; others are not asked)."""
        errors = getattr(self.custom, "errors", None)
        if not isinstance(errors, Mapping):
            return
        extra = {"service": svc.name, "cluster": svc.cluster}
        for m in metrics:
            key = (svc.name, m.key)
            error = errors.get(key)
            if error and key not in self._failing:
                self._failing.add(key)
                log.warning("service %s: customized metric %s cannot be read: %s", svc.name, m.label, error, extra={**extra, "url": m.url})
            elif not error and key in self._failing:
                self._failing.discard(key)
                log.info("service %s: customized metric %s answers again", svc.name, m.label, extra={**extra, "url": m.url})

    def _stats(self, jobs: list[tuple[api.Engine, str]]) -> dict[str, Mapping[str, Any]]:
        if not jobs:
            return {}

        def one(job: tuple[api.Engine, str]) -> tuple[str, Mapping[str, Any] | None]:
            engine, cid = job
            try:
                return cid, engine.stats(cid)
            except api.EngineError:
                return cid, None

        with ThreadPoolExecutor(max_workers=min(len(jobs), STATS_CONCURRENCY), thread_name_prefix="stats") as pool:
            return {cid: body for cid, body in pool.map(one, jobs) if body}

    def _decide(self, desired: spec.DesiredState, observed: Mapping[str, obs.ClusterState], svc: spec.Service, now: float) -> policy.Decision:
        config = self._config(svc)
        state = self.states.get(svc.name) or policy.ScalingState()
        current = self.counts.get(svc.name, (svc.desired_count, "manifest"))[0]
        metrics = self.samples.series(svc.name, [m.key for m in config.metrics()], config.history_seconds, now)
        placeable = planner.capacity(desired, observed, svc.name, config.max_capacity)
        decision, state = policy.decide(config, state, current, metrics, now, placeable)
        self.states[svc.name] = state
        if decision.noteworthy:
            history = self.decisions.setdefault(svc.name, [])
            text = decision.reason + (f" ({decision.clamped})" if decision.clamped else "")
            if decision.direction != "none" or not history or history[-1].get("reason") != decision.reason:
                log.info("service %s: %s", svc.name, text,
                         extra={"service": svc.name, "cluster": svc.cluster, "direction": decision.direction})
            history.append(decision.to_dict())
            del history[:-HISTORY]
        if decision.desired != current or svc.name not in self.counts:
            self.counts[svc.name] = (decision.desired, f"set by autoscaling: {decision.reason}")
        metrics_sink = self.ctl.metrics
        if metrics_sink:
            metrics_sink.set_desired(svc.cluster, svc.name, decision.desired, "autoscaling")
            metrics_sink.count_scaling(svc.name, decision.direction)
        if decision.desired != current:
            self.ctl.scale(svc, decision.desired, self.counts[svc.name][1])
        return decision

    def _persist(self, desired: spec.DesiredState, services: list[spec.Service]) -> None:
        by_cluster: dict[str, dict[str, Any]] = {}
        for svc in services:
            count, reason = self.counts.get(svc.name, (svc.desired_count, "manifest"))
            by_cluster.setdefault(svc.cluster, {})[svc.name] = {
                "desiredCount": count,
                "reason": reason.removeprefix("set by autoscaling: "),
                "state": self.states.get(svc.name, policy.ScalingState()).to_dict(),
                "decisions": self.decisions.get(svc.name, []),
            }
        for cluster, entries in by_cluster.items():
            try:
                self.ctl.store.save_scaling(cluster, entries)
            except OSError as e:
                log.error("cannot save scaling state of cluster %s: %s", cluster, e)
