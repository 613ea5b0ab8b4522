"""Prometheus metrics of the daemon: the collectors, their names and the values their labels may take.

Owns a private `CollectorRegistry` per `Metrics` object (never the process-wide default registry, so a
test can build several), every `reconciler_*` series the daemon exports, and the exposition bytes served
on `/metrics`. Label values that name a kind of thing (result, state, action kind, scaling direction,
desired-count source, alarm state) are checked against closed sets, so a typo raises instead of growing a
series nobody queries. It must not decide anything nor serve HTTP (`daemon.server` serves `render()`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import prometheus_client as prom

from reconciler.alarms import evaluate as alarms
from reconciler.model import observed as obs

PREFIX = "reconciler_"

TASK_STATES = (obs.RUNNING, obs.PENDING, obs.STOPPED, obs.UNKNOWN)
ACTION_KINDS = ("start", "stop", "advance", "deploy")
DESIRED_SOURCES = ("manifest", "autoscaling")
SCALING_DIRECTIONS = ("out", "in", "none")
ALARM_STATES = alarms.STATES
ROLLOUT_STATES = ("IN_PROGRESS", "COMPLETED", "FAILED")

# A reconcile pass can pull images and wait on deployments: buckets reach minutes, not the default 10s.
RECONCILE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def _check(what: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r}: expected one of {', '.join(allowed)}")
    return value


def _remove(collector: prom.metrics.MetricWrapperBase, *labels: str) -> None:
    """Drops one labelled series; a series that was never set is not an error."""
    try:
        collector.remove(*labels)
    except KeyError:
        pass


class Metrics:
    """The daemon's collectors, registered in a registry of their own (`self.registry`)."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_duration = prom.Histogram(
            PREFIX + "reconcile_duration_seconds",
            "Duration of one reconcile pass, by result.",
            ["result"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.queue_depth = prom.Gauge(PREFIX + "queue_depth", "Items waiting in the work queue.", registry=r)
        self.tasks = prom.Gauge(
            PREFIX + "tasks", "Tasks of a service by last status.", ["cluster", "service", "state"], registry=r
        )
        self.actions = prom.Counter(
            PREFIX + "actions_total", "Actions executed on engines, by kind and result.", ["kind", "result"], registry=r
        )
        self.last_success = prom.Gauge(
            PREFIX + "last_successful_reconcile_timestamp_seconds",
            "Unix time of the last reconcile pass that succeeded.",
            registry=r,
        )
        self.engine_up = prom.Gauge(
            PREFIX + "engine_up", "1 when the engine answered the last observation, else 0.", ["cluster", "endpoint"], registry=r
        )
        self.desired = prom.Gauge(
            PREFIX + "desired_count",
            "Desired task count of a service, by where it comes from.",
            ["cluster", "service", "source"],
            registry=r,
        )
        self.scaling = prom.Counter(
            PREFIX + "scaling_decisions_total", "Autoscaling decisions, by direction.", ["service", "direction"], registry=r
        )
        self.backoff = prom.Gauge(
            PREFIX + "crashloop_backoff_seconds",
            "Current restart back-off of a service whose tasks keep stopping (0 when none).",
            ["cluster", "service"],
            registry=r,
        )
        self.commit = prom.Gauge(
            PREFIX + "applied_commit_info", "1 for the Git commit currently applied.", ["commit"], registry=r
        )
        self.alarm_state = prom.Gauge(
            PREFIX + "alarm_state",
            "1 for the current state of a metric alarm (OK, ALARM, INSUFFICIENT_DATA), 0 for the others.",
            ["alarm", "state"],
            registry=r,
        )
        self.rollout = prom.Gauge(
            PREFIX + "deployment_rollout_state",
            "1 for the rollout state of the service's PRIMARY deployment (IN_PROGRESS, COMPLETED, FAILED), 0 for the others.",
            ["cluster", "service", "state"],
            registry=r,
        )
        self.failed_tasks = prom.Gauge(
            PREFIX + "deployment_failed_tasks", "Failed tasks the PRIMARY deployment's circuit breaker counts.",
            ["cluster", "service"], registry=r,
        )
        self._commit: str | None = None

    # -- reconcile loop ------------------------------------------------------------------------------

    def observe_reconcile(self, seconds: float, ok: bool) -> None:
        self.reconcile_duration.labels("ok" if ok else "error").observe(seconds)

    def set_queue_depth(self, n: int) -> None:
        self.queue_depth.set(n)

    def mark_success(self, ts: float | None = None) -> None:
        """Records a successful reconcile pass at `ts` (Unix seconds; now when omitted)."""
        self.last_success.set(time.time() if ts is None else ts)

    def count_action(self, kind: str, ok: bool) -> None:
        self.actions.labels(_check("action kind", kind, ACTION_KINDS), "ok" if ok else "failed").inc()

    # -- clusters and services -----------------------------------------------------------------------

    def set_tasks(self, cluster: str, service: str, counts: Mapping[str, int]) -> None:
        """Sets the task count of every state of a service; states absent from `counts` become 0."""
        for state in counts:
            _check("task state", state, TASK_STATES)
        for state in TASK_STATES:
            self.tasks.labels(cluster, service, state).set(counts.get(state, 0))

    def set_desired(self, cluster: str, service: str, count: int, source: str) -> None:
        self.desired.labels(cluster, service, _check("desired count source", source, DESIRED_SOURCES)).set(count)

    def forget_desired(self, cluster: str, service: str, source: str) -> None:
        """Drops the desired-count series of one source (the auto scaler's, once `autoScaling` is removed)."""
        _remove(self.desired, cluster, service, _check("desired count source", source, DESIRED_SOURCES))

    def set_backoff(self, cluster: str, service: str, seconds: float) -> None:
        self.backoff.labels(cluster, service).set(seconds)

    def forget_service(self, cluster: str, service: str) -> None:
        """Drops every per-service series (tasks, desired count, back-off) of a service that is gone.

        `scaling_decisions_total` is a counter keyed by service only and is kept: counters must not go
        backwards while the process lives.
        """
        for state in TASK_STATES:
            _remove(self.tasks, cluster, service, state)
        for source in DESIRED_SOURCES:
            _remove(self.desired, cluster, service, source)
        _remove(self.backoff, cluster, service)
        for state in ROLLOUT_STATES:
            _remove(self.rollout, cluster, service, state)
        _remove(self.failed_tasks, cluster, service)

    def set_deployment(self, cluster: str, service: str, rollout_state: str, failed_tasks: int) -> None:
        """The PRIMARY deployment's rollout state (its series 1, the others 0) and failed-task count."""
        _check("rollout state", rollout_state, ROLLOUT_STATES)
        self.rollout.labels(cluster, service, rollout_state).set(1)
        for other in ROLLOUT_STATES:
            if other != rollout_state:
                self.rollout.labels(cluster, service, other).set(0)
        self.failed_tasks.labels(cluster, service).set(failed_tasks)

    def set_engine_up(self, cluster: str, endpoint: str, up: bool) -> None:
        self.engine_up.labels(cluster, endpoint).set(1 if up else 0)

    def forget_engine(self, cluster: str, endpoint: str) -> None:
        """Drops the `engine_up` series of an engine removed from its cluster."""
        _remove(self.engine_up, cluster, endpoint)

    # -- autoscaling and GitOps ----------------------------------------------------------------------

    def count_scaling(self, service: str, direction: str) -> None:
        self.scaling.labels(service, _check("scaling direction", direction, SCALING_DIRECTIONS)).inc()

    def set_commit(self, sha: str) -> None:
        """Marks `sha` as the applied commit: its series is 1 and the previous commit's series is dropped.

        The new series is set before the old one goes, so a scrape never sees no commit at all.
        """
        if not sha:
            raise ValueError("applied commit: empty sha")
        previous, self._commit = self._commit, sha
        self.commit.labels(sha).set(1)
        if previous and previous != sha:
            _remove(self.commit, previous)

    # -- alarms --------------------------------------------------------------------------------------

    def set_alarm_state(self, name: str, state: str) -> None:
        """Marks `state` as the alarm's current one: its series is 1, the other states' series are 0.

        The new state is set to 1 before the others go to 0, so a scrape never sees the alarm in no state.
        """
        _check("alarm state", state, ALARM_STATES)
        self.alarm_state.labels(name, state).set(1)
        for other in ALARM_STATES:
            if other != state:
                self.alarm_state.labels(name, other).set(0)

    def forget_alarm(self, name: str) -> None:
        """Drops every series of an alarm that is no longer defined."""
        for state in ALARM_STATES:
            _remove(self.alarm_state, name, state)

    # -- exposition ----------------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every series and its HTTP content type."""
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
