"""The alarm monitor: samples every alarm's metric on time, evaluates, keeps the states and their changes.

Owns the running side of metric alarms: a bounded window of samples per metric (alarms with the same
metric share one read and one window), when each metric is due (every `sample_interval`: half the
alarm's period, at most 10 s, at least 1 s, on multiples of that interval), the current `AlarmState` of
every alarm (restorable from what a previous run saved), a short DescribeAlarmHistory-like log of
transitions, the `on_change` hook (a state change, and each alarm's first evaluation by this monitor, so
a gauge can follow) and the background thread that runs `tick` on the injected clock. `make_sampler`
builds the sampling function the daemon uses: customized metrics over HTTP through
`scaling.source.fetch_custom_metric` (a bare number or Prometheus text, parsed by `source.parse_metric_body`),
predefined service CPU / memory utilisation through a callable the caller passes (the auto scaler's
one-shot stats). A metric that cannot be read is a missing datapoint whose error is kept for the state's
reason: no sampling failure ever leaves `tick`.

The rules are `alarms.evaluate`'s; this module must not decide states itself, act on an alarm (deployment
rollbacks read `states()`), talk to engines, or write files other than through the `store` it is given.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.alarms import evaluate as E
from reconciler.clock import Clock
from reconciler.model import spec
from reconciler.scaling import policy, source

log = logging.getLogger("reconciler.alarms")

MIN_INTERVAL = 1.0
MAX_INTERVAL = 10.0
MAX_SAMPLES = 20_000  # per metric; a day of 10 s samples is 8,640
HISTORY = 100  # transitions kept, all alarms together
POLL = 1.0  # the background thread reads the clock at least this often (a ManualClock moves without telling)
SAMPLE_WORKERS = 16

Sampler = Callable[[spec.Alarm, float], "float | None"]
Utilisation = Callable[[str, str], "float | None"]
OnChange = Callable[["E.AlarmState | None", E.AlarmState], None]


class Store(Protocol):
    def save(self, states: Mapping[str, E.AlarmState], now: float) -> None: ...


def sample_interval(alarm: spec.Alarm) -> float:
    """Seconds between two samples of the alarm's metric: period / 2, at most 10 s, at least 1 s."""
    return max(MIN_INTERVAL, min(alarm.period / 2.0, MAX_INTERVAL))


def metric_key(alarm: spec.Alarm) -> str:
    """Alarms whose metrics have the same key share their samples."""
    return json.dumps(alarm.metric, sort_keys=True, default=str)


@dataclass
class _Series:
    """The samples of one metric and when to read it next."""

    interval: float
    retention: float
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    next_due: float = -math.inf
    error: str | None = None

    def add(self, ts: float, value: float) -> None:
        if math.isfinite(value):
            self.samples.append((ts, float(value)))
        while self.samples and self.samples[0][0] < ts - self.retention:
            self.samples.popleft()


def _retention(alarm: spec.Alarm) -> float:
    """The evaluation range plus the running period, in seconds."""
    return (alarm.evaluation_periods + E.EXTRA_PERIODS + 1) * float(alarm.period)


class AlarmMonitor:
    def __init__(
        self,
        alarms: Mapping[str, spec.Alarm],
        sample: Sampler,
        clock: Clock,
        on_change: OnChange | None = None,
        *,
        states: Mapping[str, E.AlarmState] | None = None,
        store: Store | None = None,
    ):
        """`states`: what a previous run saved (kept for alarms still defined); `store`: saved to after
        every tick."""
        self.sample = sample
        self.clock = clock
        self.on_change = on_change
        self.store = store
        self._lock = threading.Lock()
        self._alarms: dict[str, spec.Alarm] = {}
        self._series: dict[str, _Series] = {}
        self._states: dict[str, E.AlarmState] = dict(states or {})
        self._seen: set[str] = set()  # alarms evaluated by this monitor at least once
        self._invalid: set[str] = set()  # alarms whose definition evaluate refused (logged once)
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.update(alarms)

    # -- definitions ---------------------------------------------------------------------------------

    def update(self, alarms: Mapping[str, spec.Alarm]) -> set[str]:
        """Adopts a new set of alarm definitions; returns the names of the alarms that are gone (their
        states and samples are dropped). A changed alarm keeps its state, as PutMetricAlarm does."""
        with self._lock:
            gone = set(self._alarms) - set(alarms)
            self._alarms = dict(alarms)
            for name in gone | (set(self._states) - set(alarms)):
                self._states.pop(name, None)
                self._seen.discard(name)
            wanted: dict[str, tuple[float, float]] = {}
            for a in self._alarms.values():
                interval, retention = wanted.get(metric_key(a), (math.inf, 0.0))
                wanted[metric_key(a)] = (min(interval, sample_interval(a)), max(retention, _retention(a)))
            for key in set(self._series) - set(wanted):
                del self._series[key]
            for key, (interval, retention) in wanted.items():
                series = self._series.setdefault(key, _Series(interval, retention))
                series.interval, series.retention = interval, retention
        self._wake.set()
        return gone

    # -- one round -----------------------------------------------------------------------------------

    def next_due(self) -> float:
        """When the next metric is due to be sampled (infinity without alarms)."""
        with self._lock:
            return min((s.next_due for s in self._series.values()), default=math.inf)

    def tick(self, now: float) -> dict[str, E.AlarmState]:
        """Samples every metric that is due at `now`, evaluates every alarm, reports what changed, saves."""
        with self._lock:
            due: dict[str, spec.Alarm] = {}
            for a in self._alarms.values():
                key = metric_key(a)
                if self._series[key].next_due <= now:
                    due.setdefault(key, a)
        readings = self._read(due, now)
        changes: list[tuple[E.AlarmState | None, E.AlarmState]] = []
        with self._lock:
            for key, (value, error) in readings.items():
                series = self._series.get(key)
                if series is None:  # the alarm went away while it was being read
                    continue
                series.next_due = (math.floor(now / series.interval) + 1) * series.interval
                self._note_error(key, series.error, error)
                series.error = error
                if value is not None:
                    series.add(now, value)
            for name, a in sorted(self._alarms.items()):
                series = self._series[metric_key(a)]
                before = self._states.get(name)
                try:
                    after = E.evaluate(a, series.samples, now, before, error=series.error)
                except ValueError as e:  # a definition validation should have refused: said once, skipped
                    if name not in self._invalid:
                        self._invalid.add(name)
                        log.error("alarm %s cannot be evaluated: %s", name, e, extra={"alarm": name})
                    continue
                self._invalid.discard(name)
                self._states[name] = after
                first = name not in self._seen
                self._seen.add(name)
                changed = (before.state if before else E.INSUFFICIENT_DATA) != after.state
                if changed:
                    self._record(before, after)
                if first or changed:
                    changes.append((before, after))
            states = dict(self._states)
        self._report(changes)
        if self.store is not None:
            try:
                self.store.save(states, now)
            except OSError as e:
                log.error("cannot save alarm states: %s", e)
        return states

    def _read(self, due: Mapping[str, spec.Alarm], now: float) -> dict[str, tuple[float | None, str | None]]:
        if not due:
            return {}
        if len(due) == 1:
            return {key: self._read_one(a, now) for key, a in due.items()}
        with ThreadPoolExecutor(max_workers=min(len(due), SAMPLE_WORKERS), thread_name_prefix="alarm-sample") as pool:
            futures = {key: pool.submit(self._read_one, a, now) for key, a in due.items()}
            return {key: f.result() for key, f in futures.items()}

    def _read_one(self, alarm: spec.Alarm, now: float) -> tuple[float | None, str | None]:
        """(value, error): a value that cannot be had is missing, never an exception."""
        try:
            value = self.sample(alarm, now)
        except source.MetricError as e:
            return None, str(e)
        except Exception as e:  # noqa: BLE001 - a broken metric source is a missing datapoint, not a dead monitor
            return None, f"{type(e).__name__}: {e}"
        if value is None:
            return None, None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None, f"the metric source returned {value!r}, not a number"
        return (value, None) if math.isfinite(value) else (None, f"the metric source returned {value!r}")

    def _note_error(self, key: str, was: str | None, now: str | None) -> None:
        names = ", ".join(sorted(n for n, a in self._alarms.items() if metric_key(a) == key))
        if now and not was:
            log.warning("alarm %s: the metric cannot be read: %s", names, now, extra={"alarm": names})
        elif was and not now:
            log.info("alarm %s: the metric answers again", names, extra={"alarm": names})

    def _record(self, before: E.AlarmState | None, after: E.AlarmState) -> None:
        old = before.state if before is not None else E.INSUFFICIENT_DATA
        self._history.append(
            {
                "AlarmName": after.name,
                "Timestamp": E.iso(after.updated_at),
                "HistoryItemType": "StateUpdate",
                "HistorySummary": f"Alarm updated from {old} to {after.state}",
                "HistoryData": {
                    "oldState": {"stateValue": old, "stateReason": before.reason if before else E.INITIAL_REASON},
                    "newState": {"stateValue": after.state, "stateReason": after.reason},
                },
            }
        )

    def _report(self, changes: list[tuple[E.AlarmState | None, E.AlarmState]]) -> None:
        for before, after in changes:
            old = before.state if before is not None else E.INSUFFICIENT_DATA
            if old != after.state:
                log.info("alarm %s: %s -> %s: %s", after.name, old, after.state, after.reason,
                         extra={"alarm": after.name, "state": after.state})
            if self.on_change is not None:
                try:
                    self.on_change(before, after)
                except Exception as e:  # noqa: BLE001 - a failing listener must not stop the evaluation
                    log.error("alarm %s: on_change failed: %s", after.name, e, exc_info=True)

    # -- reading -------------------------------------------------------------------------------------

    def states(self) -> dict[str, E.AlarmState]:
        with self._lock:
            return {name: s for name, s in self._states.items() if name in self._alarms}

    def history(self) -> list[dict[str, Any]]:
        """Recent state transitions, oldest first, in DescribeAlarmHistory's item shape."""
        with self._lock:
            return list(self._history)

    # -- background thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alarms", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the thread: at once when it waits, after the read in progress otherwise."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def wake(self) -> None:
        """Makes the thread read the clock now (after a ManualClock moved, say)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before reading the clock: a wake() from now on ends the wait below
            now = self.clock.now()
            due = self.next_due()
            if now >= due:
                try:
                    self.tick(now)
                except Exception as e:  # noqa: BLE001 - one failed round must not end the monitor
                    log.error("alarm evaluation failed: %s", e, exc_info=True)
                continue
            self._wake.wait(timeout=min(due - now, POLL))


# ============================================================================================== sampling


def metric_of(alarm: spec.Alarm) -> tuple[policy.Metric, str | None]:
    """The alarm's metric as auto scaling's `Metric`, and the service of a predefined one.

    `{"customizedMetric": {"url", "metricName", "statistic"}}` or `{"predefinedMetricType": CPU | MEMORY,
    "service": NAME}` (`predefinedMetric`, auto scaling's key, is read too). ValueError otherwise."""
    block = alarm.metric
    if isinstance(block.get("customizedMetric"), Mapping):
        return policy.Metric.from_manifest(block["customizedMetric"]), None
    predefined = block.get("predefinedMetricType", block.get("predefinedMetric"))
    service = block.get("service")
    if not isinstance(service, str) or not service:
        raise ValueError(f"alarm {alarm.name}: a predefined metric names its service")
    return policy.Metric.from_manifest(predefined), service


def make_sampler(
    utilisation: Utilisation | None = None,
    *,
    fetch: source.Fetch = source.fetch_custom_metric,
    timeout: float = source.DEFAULT_TIMEOUT,
) -> Sampler:
    """The daemon's sampling function. `utilisation(service, metric_type)` answers a service's current
    CPU or memory utilisation in percent (metric_type ECSServiceAverageCPUUtilization or ...Memory...;
    None while it has no measured task). Raises source.MetricError when a metric cannot be read."""

    def sample(alarm: spec.Alarm, now: float) -> float | None:
        try:
            metric, service = metric_of(alarm)
        except ValueError as e:
            raise source.MetricError(str(e)) from None
        if metric.url is not None:
            return fetch(metric.url, metric.name or None, timeout)
        if utilisation is None:
            raise source.MetricError(f"no utilisation source for {metric.name} of service {service}")
        return utilisation(str(service), metric.name)

    return sample

