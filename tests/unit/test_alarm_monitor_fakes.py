"""The alarm monitor on a ManualClock with fake sampling functions: what is sampled when, what a failing
metric becomes, the on_change hook and the transition log, definition updates, restarts, the background
thread, and `make_sampler` over fake fetchers."""

from __future__ import annotations

import threading

import pytest

from reconciler.alarms import evaluate as E
from reconciler.alarms import monitor as MON
from reconciler.alarms.store import AlarmStore
from reconciler.clock import ManualClock
from reconciler.model import spec
from reconciler.scaling import policy, source

T0 = 1_800_000_000.0  # a multiple of 60
QUEUE = {"customizedMetric": {"url": "http://127.0.0.1:9/metrics", "metricName": "queue_depth"}}
CPU = {"predefinedMetricType": policy.CPU, "service": "web"}


def alarm(name="queue-high", metric=QUEUE, **overrides) -> spec.Alarm:
    values = {"threshold": 80.0, "comparison_operator": "GreaterThanOrEqualToThreshold", "period": 10}
    return spec.Alarm(name=name, metric=metric, **{**values, **overrides})


class Values:
    """A sampling function answering from a dict keyed by metric key; records its calls."""

    def __init__(self, value: float | None = 10.0):
        self.value: float | None | Exception = value
        self.calls: list[tuple[str, float]] = []

    def __call__(self, a: spec.Alarm, now: float) -> float | None:
        self.calls.append((a.name, now))
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def monitor(alarms, sampler=None, **kw):
    clock = ManualClock(T0)
    sampler = sampler or Values()
    mon = MON.AlarmMonitor({a.name: a for a in alarms}, sampler, clock, **kw)
    return mon, clock, sampler


# ============================================================================================== timing


@pytest.mark.parametrize("period, interval", [(60, 10.0), (300, 10.0), (10, 5.0), (2, 1.0), (1, 1.0)])
def test_sample_interval_is_half_the_period_between_1_and_10_seconds(period, interval):
    assert MON.sample_interval(alarm(period=period)) == interval


def test_metrics_are_sampled_when_due_on_multiples_of_their_interval():
    mon, clock, values = monitor([alarm(period=10)])
    mon.tick(T0 + 3)
    assert mon.next_due() == T0 + 5
    mon.tick(T0 + 4)  # not due: evaluated, not sampled
    mon.tick(T0 + 5)
    mon.tick(T0 + 12)  # late: sampled once, then back on the grid
    assert [t for _, t in values.calls] == [T0 + 3, T0 + 5, T0 + 12]
    assert mon.next_due() == T0 + 15


def test_alarms_on_one_metric_share_one_read_at_the_shortest_interval():
    a = alarm("a", period=60)
    b = alarm("b", period=10, threshold=5)
    other = alarm("c", metric={"customizedMetric": {"url": "http://127.0.0.1:9/other"}}, period=60)
    mon, _, values = monitor([a, b, other])
    for t in range(0, 20):
        mon.tick(T0 + t)
    by_alarm = [name for name, _ in values.calls]
    assert by_alarm.count("a") + by_alarm.count("b") == 4  # the shared metric every 5 s: 0, 5, 10, 15
    assert by_alarm.count("c") == 2  # every 10 s: 0, 10


def test_samples_are_bounded_to_the_evaluation_range():
    a = alarm(period=10, evaluation_periods=2)
    mon, _, _ = monitor([a])
    for t in range(0, 1000, 5):
        mon.tick(T0 + t)
    series = mon._series[MON.metric_key(a)]
    assert len(series.samples) <= (2 + E.EXTRA_PERIODS + 1) * 10 / 5 + 1
    assert series.samples[-1][0] == T0 + 995


# ============================================================================================== evaluation


def test_states_follow_the_metric_and_updated_at_moves_on_transitions_only():
    values = Values(10.0)
    mon, _, _ = monitor([alarm(period=10)], values)
    mon.tick(T0)
    assert mon.states()["queue-high"].state == E.INSUFFICIENT_DATA
    mon.tick(T0 + 5)
    mon.tick(T0 + 10)
    ok = mon.states()["queue-high"]
    assert (ok.state, ok.updated_at) == (E.OK, T0 + 10)
    values.value = 95.0
    mon.tick(T0 + 15)
    mon.tick(T0 + 20)  # period [T0+10, T0+20) averages 10 and 95
    assert mon.states()["queue-high"].updated_at == T0 + 10
    mon.tick(T0 + 25)
    mon.tick(T0 + 30)
    alarmed = mon.states()["queue-high"]
    assert (alarmed.state, alarmed.updated_at) == (E.ALARM, T0 + 30)
    assert alarmed.reason.startswith("Threshold Crossed: 1 out of the last 1 datapoints [95.0 (")


@pytest.mark.parametrize(
    "failure, error",
    [
        (source.MetricError("http://127.0.0.1:9/metrics: connection refused"), "http://127.0.0.1:9/metrics: connection refused"),
        (RuntimeError("boom"), "RuntimeError: boom"),
        ("not a number", "the metric source returned 'not a number', not a number"),
        (float("nan"), "the metric source returned nan"),
    ],
)
def test_a_metric_that_cannot_be_read_is_missing_and_its_error_is_kept(failure, error):
    values = Values()
    values.value = failure
    mon, _, _ = monitor([alarm(period=10)], values)
    for t in (0, 5, 10, 15, 20):
        mon.tick(T0 + t)  # never raises
    state = mon.states()["queue-high"]
    assert state.state == E.INSUFFICIENT_DATA
    assert state.error == error
    assert state.reason == f"Insufficient Data: 1 datapoint was unknown. Last error reading the metric: {error}"


def test_the_error_clears_when_the_metric_answers_again():
    values = Values(source.MetricError("down"))
    mon, _, _ = monitor([alarm(period=10)], values)
    mon.tick(T0)
    values.value = 5.0
    mon.tick(T0 + 5)
    assert mon.states()["queue-high"].error is None


def test_no_value_is_missing_without_an_error():
    mon, _, _ = monitor([alarm(period=10)], Values(None))
    mon.tick(T0)
    mon.tick(T0 + 10)
    assert (mon.states()["queue-high"].state, mon.states()["queue-high"].error) == (E.INSUFFICIENT_DATA, None)


def test_on_change_sees_first_evaluations_and_transitions_only_and_may_fail():
    seen: list[tuple[str | None, str]] = []

    def on_change(before, after):
        seen.append((before.state if before else None, after.state))
        raise RuntimeError("listener bug")  # logged, not fatal

    values = Values(10.0)
    mon, _, _ = monitor([alarm(period=10)], values, on_change=on_change)
    for t in (0, 5, 10, 15, 20):
        mon.tick(T0 + t)
    values.value = 99.0
    for t in (25, 30, 35, 40):  # [20, 30) averages 10 and 99; [30, 40) is all 99
        mon.tick(T0 + t)
    assert seen == [(None, E.INSUFFICIENT_DATA), (E.INSUFFICIENT_DATA, E.OK), (E.OK, E.ALARM)]
    summaries = [h["HistorySummary"] for h in mon.history()]
    assert summaries == [
        "Alarm updated from INSUFFICIENT_DATA to OK",
        "Alarm updated from OK to ALARM",
    ]
    last = mon.history()[-1]
    assert last["AlarmName"] == "queue-high" and last["HistoryItemType"] == "StateUpdate"
    assert last["HistoryData"]["newState"]["stateValue"] == E.ALARM


# ============================================================================================== definitions


def test_update_drops_gone_alarms_and_keeps_the_state_of_changed_ones():
    values = Values(99.0)
    a, b = alarm("a", period=10), alarm("b", period=10)
    mon, _, _ = monitor([a, b], values)
    for t in (0, 5, 10):
        mon.tick(T0 + t)
    assert {n: s.state for n, s in mon.states().items()} == {"a": E.ALARM, "b": E.ALARM}
    gone = mon.update({"a": alarm("a", period=10, threshold=90)})
    assert gone == {"b"}
    assert set(mon.states()) == {"a"}
    mon.tick(T0 + 12)
    assert mon.states()["a"].state == E.ALARM  # 99 >= 90 still, and the state was kept meanwhile
    assert mon.states()["a"].updated_at == T0 + 10


def test_a_restart_restores_states_and_their_datapoints(tmp_path):
    store = AlarmStore(str(tmp_path))
    a = alarm(period=10, evaluation_periods=3)
    values = Values(99.0)
    first, _, _ = monitor([a], values, store=store)
    for t in range(0, 35, 5):
        first.tick(T0 + t)
    assert first.states()["queue-high"].state == E.ALARM
    changes = []
    second, _, _ = monitor([a], Values(99.0), states=store.load(), store=store,
                           on_change=lambda before, after: changes.append((before.state, after.state)))
    second.tick(T0 + 41)  # one period of samples lost; the ended ones are remembered
    state = second.states()["queue-high"]
    assert (state.state, state.updated_at) == (E.ALARM, T0 + 30)
    assert changes == [(E.ALARM, E.ALARM)]  # the first evaluation after a restart is reported, as it is
    assert store.load()["queue-high"].evaluated_at == T0 + 41


def test_restored_states_of_alarms_no_longer_defined_are_dropped():
    restored = {"old": E.AlarmState("old", state=E.ALARM)}
    mon, _, _ = monitor([alarm()], states=restored)
    mon.tick(T0)
    assert set(mon.states()) == {"queue-high"}


# ============================================================================================== thread


def test_the_thread_ticks_on_the_injected_clock_and_stops_promptly():
    evaluated = threading.Event()
    alarmed = threading.Event()

    def on_change(before, after):
        evaluated.set()
        if after.state == E.ALARM:
            alarmed.set()

    mon, clock, values = monitor([alarm(period=10)], Values(99.0), on_change=on_change)
    mon.start()
    try:
        assert evaluated.wait(10)
        assert not alarmed.is_set()
        clock.advance(10)
        mon.wake()
        assert alarmed.wait(10)
    finally:
        mon.stop()
    assert mon._thread is None
    calls = len(values.calls)
    clock.advance(100)
    assert len(values.calls) == calls  # nothing runs after stop()


def test_stop_without_start_is_harmless():
    mon, _, _ = monitor([alarm()])
    mon.stop()


# ============================================================================================== sampler


def test_make_sampler_reads_customized_metrics_through_the_given_fetch():
    calls = []

    def fetch(url, name, timeout):
        calls.append((url, name, timeout))
        return 42.0

    sample = MON.make_sampler(fetch=fetch, timeout=1.5)
    assert sample(alarm(), T0) == 42.0
    bare = alarm(metric={"customizedMetric": {"url": "http://127.0.0.1:9/n"}})
    assert sample(bare, T0) == 42.0
    assert calls == [("http://127.0.0.1:9/metrics", "queue_depth", 1.5), ("http://127.0.0.1:9/n", None, 1.5)]


def test_make_sampler_reads_predefined_metrics_through_the_utilisation_callable():
    asked = []

    def utilisation(service, metric_type):
        asked.append((service, metric_type))
        return 55.5 if metric_type == policy.CPU else None

    sample = MON.make_sampler(utilisation)
    assert sample(alarm(metric=CPU), T0) == 55.5
    memory = {"predefinedMetric": policy.MEMORY, "service": "web"}  # auto scaling's key reads too
    assert sample(alarm(metric=memory), T0) is None
    assert asked == [("web", policy.CPU), ("web", policy.MEMORY)]


@pytest.mark.parametrize(
    "metric, message",
    [
        (CPU, "no utilisation source"),
        ({"predefinedMetricType": policy.CPU}, "names its service"),
        ({"predefinedMetricType": "RequestCount", "service": "web"}, "unknown predefined metric"),
        ({"customizedMetric": {"metricName": "q"}}, "customizedMetric with a url"),
    ],
)
def test_make_sampler_turns_unusable_metrics_into_metric_errors(metric, message):
    with pytest.raises(source.MetricError, match=message):
        MON.make_sampler()(alarm(metric=metric), T0)


def test_an_alarm_evaluate_refuses_is_skipped_and_the_others_go_on():
    broken = alarm("broken", statistic="p99", metric={"customizedMetric": {"url": "http://127.0.0.1:9/b"}})
    mon, _, _ = monitor([broken, alarm(period=10)], Values(99.0))
    for t in (0, 5, 10):
        mon.tick(T0 + t)
    assert set(mon.states()) == {"queue-high"}
    assert mon.states()["queue-high"].state == E.ALARM
