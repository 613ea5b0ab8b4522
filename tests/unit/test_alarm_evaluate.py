"""CloudWatch metric-alarm evaluation as a table of cases.

Each case is a row: the alarm (overrides of a base alarm), its datapoints as a pattern of periods, oldest
first, the last one being the most recently ended period (`X` breaching, `0` within the threshold, `-`
no samples, or comma-separated sample values), the state before, and the state after (with the datapoint
value or the reason where it matters). The CloudWatch documentation's tables of missing-data handling
("How alarm state is evaluated when data is missing": 3 out of 3 and 2 out of 3, five periods read) are
rows here as printed there, for every treatMissingData value. Below the table: transitions,
timestamps, reasons word for word, period alignment, the restart case and invalid alarms.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from reconciler.alarms import evaluate as E
from reconciler.model import spec

OK, ALARM, INSUFFICIENT = E.OK, E.ALARM, E.INSUFFICIENT_DATA
KEEP = "keep"  # the state before is kept (ignore)
PERIOD = 60
T0 = dt.datetime(2026, 12, 4, 18, 0, tzinfo=dt.UTC).timestamp()  # a period boundary
METRIC = {"customizedMetric": {"url": "http://127.0.0.1:9100/metrics", "metricName": "queue_depth"}}


def alarm(**overrides) -> spec.Alarm:
    base = {
        "name": "queue-high",
        "metric": METRIC,
        "threshold": 80.0,
        "comparison_operator": "GreaterThanOrEqualToThreshold",
        "statistic": "Average",
        "period": PERIOD,
        "evaluation_periods": 1,
    }
    return spec.Alarm(**{**base, **overrides})


def values_for(a: spec.Alarm, token: str) -> list[float]:
    """Sample values of one period: X breaches, 0 does not, - none, else literal comma-separated values."""
    if token == "-":
        return []
    if token in ("X", "0"):
        breaches = E.OPERATORS[a.comparison_operator][1]
        high, low = a.threshold + 10, a.threshold - 10
        wanted = token == "X"
        return [high if breaches(high, a.threshold) == wanted else low]
    return [float(v) for v in token.split(",")]


def run(a: spec.Alarm, pattern: str, previous: str | None = None, now_offset: float = 1.0) -> E.AlarmState:
    """Evaluates `a` just after the last period of `pattern` ended; samples spread inside each period."""
    tokens = pattern.split()
    samples = []
    for i, token in enumerate(tokens):
        values = values_for(a, token)
        for j, v in enumerate(values):
            samples.append((T0 + i * a.period + j * a.period / max(len(values), 1), v))
    now = T0 + len(tokens) * a.period + now_offset
    before = None if previous is None else E.AlarmState(a.name, state=previous, reason="before", updated_at=T0 - 999)
    return E.evaluate(a, samples, now, before)


# ============================================================================================== the table

CASES: list[dict] = [
    # -- comparison operators: above, at and below the threshold (80) ------------------------------------
    {"id": "gte-above", "alarm": {}, "points": "93", "expect": ALARM},
    {"id": "gte-at", "alarm": {}, "points": "80", "expect": ALARM},
    {"id": "gte-below", "alarm": {}, "points": "79.9", "expect": OK},
    {"id": "gt-above", "alarm": {"comparison_operator": "GreaterThanThreshold"}, "points": "80.1", "expect": ALARM},
    {"id": "gt-at", "alarm": {"comparison_operator": "GreaterThanThreshold"}, "points": "80", "expect": OK},
    {"id": "gt-below", "alarm": {"comparison_operator": "GreaterThanThreshold"}, "points": "10", "expect": OK},
    {"id": "lt-below", "alarm": {"comparison_operator": "LessThanThreshold"}, "points": "79", "expect": ALARM},
    {"id": "lt-at", "alarm": {"comparison_operator": "LessThanThreshold"}, "points": "80", "expect": OK},
    {"id": "lt-above", "alarm": {"comparison_operator": "LessThanThreshold"}, "points": "90", "expect": OK},
    {"id": "lte-below", "alarm": {"comparison_operator": "LessThanOrEqualToThreshold"}, "points": "-5", "expect": ALARM},
    {"id": "lte-at", "alarm": {"comparison_operator": "LessThanOrEqualToThreshold"}, "points": "80", "expect": ALARM},
    {"id": "lte-above", "alarm": {"comparison_operator": "LessThanOrEqualToThreshold"}, "points": "81", "expect": OK},
    # -- statistics over one period's samples 10, 20, 90 ---------------------------------------------------
    {"id": "average", "alarm": {"statistic": "Average"}, "points": "10,20,90", "expect": OK, "value": 40.0},
    {"id": "sum", "alarm": {"statistic": "Sum"}, "points": "10,20,90", "expect": ALARM, "value": 120.0},
    {"id": "minimum", "alarm": {"statistic": "Minimum"}, "points": "10,20,90", "expect": OK, "value": 10.0},
    {"id": "maximum", "alarm": {"statistic": "Maximum"}, "points": "10,20,90", "expect": ALARM, "value": 90.0},
    {"id": "samplecount", "alarm": {"statistic": "SampleCount", "threshold": 3}, "points": "10,20,90",
     "expect": ALARM, "value": 3.0},
    {"id": "samplecount-below", "alarm": {"statistic": "SampleCount", "threshold": 4}, "points": "10,20,90",
     "expect": OK, "value": 3.0},
    # -- M out of N (breaching datapoints need not be consecutive) -----------------------------------------
    {"id": "3-of-3", "alarm": {"evaluation_periods": 3}, "points": "X X X", "expect": ALARM},
    {"id": "3-of-3-one-clear", "alarm": {"evaluation_periods": 3}, "points": "X 0 X", "expect": OK},
    {"id": "2-of-3-apart", "alarm": {"evaluation_periods": 3, "datapoints_to_alarm": 2}, "points": "X 0 X",
     "expect": ALARM},
    {"id": "2-of-3-one", "alarm": {"evaluation_periods": 3, "datapoints_to_alarm": 2}, "points": "0 0 X",
     "expect": OK},
    {"id": "1-of-3", "alarm": {"evaluation_periods": 3, "datapoints_to_alarm": 1}, "points": "X 0 0",
     "expect": ALARM},
    {"id": "old-breach-out-of-window", "alarm": {"evaluation_periods": 3, "datapoints_to_alarm": 1},
     "points": "X 0 0 0", "expect": OK},
    {"id": "4-of-5", "alarm": {"evaluation_periods": 5, "datapoints_to_alarm": 4}, "points": "X X 0 X X",
     "expect": ALARM},
    {"id": "datapoints-default-n", "alarm": {"evaluation_periods": 2, "datapoints_to_alarm": None},
     "points": "0 X", "expect": OK},
    # -- missing data beyond the documented tables ----------------------------------------------------------
    {"id": "missing-first-eval-no-data", "alarm": {}, "points": "-", "expect": INSUFFICIENT},
    {"id": "missing-uses-older-real", "alarm": {}, "points": "X - -", "expect": ALARM},
    {"id": "missing-range-exhausted", "alarm": {}, "points": "X - - -", "previous": ALARM, "expect": INSUFFICIENT},
    {"id": "breaching-range-exhausted", "alarm": {"treat_missing_data": "breaching"}, "points": "0 - - -",
     "previous": OK, "expect": ALARM},
    {"id": "notbreaching-no-data", "alarm": {"treat_missing_data": "notBreaching"}, "points": "- - -",
     "previous": ALARM, "expect": OK},
    {"id": "ignore-no-data-alarm", "alarm": {"treat_missing_data": "ignore"}, "points": "- - -",
     "previous": ALARM, "expect": KEEP},
    {"id": "ignore-no-data-new", "alarm": {"treat_missing_data": "ignore"}, "points": "- - -",
     "expect": INSUFFICIENT},
    {"id": "ignore-real-clear", "alarm": {"treat_missing_data": "ignore"}, "points": "- - 0",
     "previous": ALARM, "expect": OK},
    {"id": "m1-missing-one-breach", "alarm": {"evaluation_periods": 3, "datapoints_to_alarm": 1},
     "points": "- - - - X", "expect": ALARM},
    {"id": "treatment-unused-with-n-real", "alarm": {"evaluation_periods": 2, "treat_missing_data": "breaching"},
     "points": "0 - 0 -", "previous": ALARM, "expect": OK},
]

# CloudWatch's documented tables, oldest datapoint first, five datapoints read; columns MISSING, IGNORE,
# BREACHING, NOT BREACHING. The 3-out-of-3 rows `X - - - -` and `- - X - -` come from later editions of
# the page ("the oldest evaluated data point is breaching and there aren't any non-breaching data points").
DOC_3_OF_3 = [
    ("0 - X - X", OK, OK, OK, OK),
    ("0 - - - -", OK, OK, OK, OK),
    ("- - - - -", INSUFFICIENT, KEEP, ALARM, OK),
    ("0 X X - X", ALARM, ALARM, ALARM, ALARM),
    ("- - - - X", INSUFFICIENT, KEEP, ALARM, OK),
    ("X - - - -", ALARM, KEEP, ALARM, OK),
    ("- - X - -", ALARM, KEEP, ALARM, OK),
    ("- - - - 0", OK, OK, OK, OK),
]
DOC_2_OF_3 = [
    ("0 - X - X", ALARM, ALARM, ALARM, ALARM),
    ("0 0 X 0 X", ALARM, ALARM, ALARM, ALARM),
    ("0 - X - -", OK, OK, ALARM, OK),
    ("- - - - 0", OK, OK, ALARM, OK),
    ("- - - - X", INSUFFICIENT, KEEP, ALARM, OK),
]
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")

for m, table in ((3, DOC_3_OF_3), (2, DOC_2_OF_3)):
    for points, *expected in table:
        for treatment, want in zip(TREATMENTS, expected, strict=True):
            for previous in (OK, ALARM) if want == KEEP else (OK,):
                CASES.append({
                    "id": f"doc-{m}-of-3 [{points}] {treatment} from {previous}",
                    "alarm": {"evaluation_periods": 3, "datapoints_to_alarm": m, "treat_missing_data": treatment},
                    "points": points,
                    "previous": previous,
                    "expect": want,
                })


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case):
    a = alarm(**case["alarm"])
    previous = case.get("previous")
    state = run(a, case["points"], previous)
    expected = previous if case["expect"] == KEEP else case["expect"]
    assert state.state == expected, state.reason
    if "value" in case:
        assert state.datapoints[-1].value == case["value"]
    if previous is not None and expected == previous:
        assert (state.reason, state.updated_at) == ("before", T0 - 999)  # no transition: both kept
    else:
        assert state.updated_at == state.evaluated_at


# ============================================================================================== reasons


def at(minute: int, second: int = 0) -> float:
    return T0 + 40 * 60 + minute * 60 + second  # 18:40 + minute


def test_reason_ok_to_alarm_word_for_word():
    before = E.AlarmState("queue-high", state=OK, reason="x", updated_at=at(-30))
    state = E.evaluate(alarm(), [(at(0, 5), 93.0)], at(1, 2), before)
    assert state.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [93.0 (04/12/26 18:40:00)] was greater than or equal "
        "to the threshold (80.0) (minimum 1 datapoint for OK -> ALARM transition)."
    )
    assert (state.state, state.updated_at) == (ALARM, at(1, 2))


def test_reason_alarm_to_ok_and_m_of_n_lists_newest_first():
    a = alarm(evaluation_periods=3, datapoints_to_alarm=2, comparison_operator="GreaterThanThreshold")
    samples = [(at(0), 95.0), (at(1), 10.0), (at(2), 91.5)]
    state = E.evaluate(a, samples, at(3), E.AlarmState(a.name, state=OK))
    assert state.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [91.5 (04/12/26 18:42:00), 95.0 (04/12/26 18:40:00)] "
        "were greater than the threshold (80.0) (minimum 2 datapoints for OK -> ALARM transition)."
    )
    later = E.evaluate(a, [*samples, (at(3), 1.0)], at(4), state)
    assert later.state == OK
    assert later.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints [1.0 (04/12/26 18:43:00), 10.0 (04/12/26 18:41:00)] "
        "were not greater than the threshold (80.0) (minimum 2 datapoints for ALARM -> OK transition)."
    )


def test_reason_of_missing_data_treated_as_breaching_and_insufficient_data():
    a = alarm(treat_missing_data="breaching", evaluation_periods=2)
    state = E.evaluate(a, [], at(5), E.AlarmState(a.name, state=OK))
    assert state.reason == (
        "Threshold Crossed: no datapoints were received for 2 periods and 2 missing datapoints were treated as "
        "[Breaching] (minimum 2 datapoints for OK -> ALARM transition)."
    )
    gone = E.evaluate(alarm(), [], at(5), E.AlarmState(a.name, state=ALARM), error="http://x: connection refused")
    assert gone.state == INSUFFICIENT
    assert gone.reason == "Insufficient Data: 1 datapoint was unknown. Last error reading the metric: http://x: connection refused"
    assert gone.error == "http://x: connection refused"


def test_values_print_like_cloudwatch_doubles():
    assert [E._number(v) for v in (93, 0.5, 1e-05, 2.5e20, -3.0)] == ["93.0", "0.5", "1.0E-5", "2.5E20", "-3.0"]


# ============================================================================================== transitions


def test_first_evaluation_sets_reason_and_time_even_without_a_change():
    state = E.evaluate(alarm(), [], at(3))
    assert (state.state, state.updated_at, state.evaluated_at) == (INSUFFICIENT, at(3), at(3))
    assert state.reason == "Insufficient Data: 1 datapoint was unknown."


def test_updated_at_moves_only_on_transitions():
    a = alarm()
    samples = [(at(0), 90.0)]
    first = E.evaluate(a, samples, at(1))
    assert (first.state, first.updated_at) == (ALARM, at(1))
    samples.append((at(1), 85.0))
    second = E.evaluate(a, samples, at(2), first)
    assert (second.state, second.updated_at, second.reason) == (ALARM, at(1), first.reason)
    assert second.evaluated_at == at(2) and second.datapoints[-1].value == 85.0
    samples.append((at(2), 5.0))
    third = E.evaluate(a, samples, at(3), second)
    assert (third.state, third.updated_at) == (OK, at(3))
    assert "ALARM -> OK" in third.reason


def test_initial_state_is_insufficient_data():
    state = E.AlarmState("x")
    assert (state.state, state.reason, state.updated_at) == (INSUFFICIENT, "Unchecked: Initial alarm creation", None)


# ============================================================================================== alignment


def test_periods_align_to_multiples_of_the_period_and_only_ended_ones_count():
    a = alarm(period=300)
    start = T0 + 600  # 18:10, a multiple of 300
    samples = [(start, 1.0), (start + 299.9, 3.0), (start + 300, 1000.0)]  # the last is in the running period
    state = E.evaluate(a, samples, start + 300 + 120)
    assert state.datapoints[-1] == E.Datapoint(start, 2.0, 2)
    assert state.state == OK
    assert [p.timestamp for p in state.datapoints] == [start - 600, start - 300, start]


def test_a_period_ending_exactly_now_has_ended():
    assert E.period_starts(T0 + 120, 60, 2) == [T0, T0 + 60]
    assert E.period_starts(T0 + 119.999, 60, 2) == [T0 - 60, T0]


def test_future_and_non_finite_samples_are_ignored():
    state = E.evaluate(alarm(), [(at(0), float("nan")), (at(0, 1), float("inf")), (at(9), 99.0)], at(1))
    assert state.state == INSUFFICIENT


# ============================================================================================== restarts


def test_ended_periods_are_final_a_restart_without_samples_keeps_the_history():
    a = alarm(evaluation_periods=3)
    samples = [(at(0), 90.0), (at(1), 91.0), (at(2), 92.0)]
    before = E.evaluate(a, samples, at(3))
    assert before.state == ALARM
    after = E.evaluate(a, [(at(3), 93.0)], at(4), before)  # the samples before 18:43 were lost
    assert (after.state, after.updated_at) == (ALARM, before.updated_at)
    assert [p.value for p in after.datapoints][-3:] == [91.0, 92.0, 93.0]


def test_history_of_another_statistic_is_not_reused():
    a = alarm(evaluation_periods=3)
    before = E.evaluate(a, [(at(0), 90.0), (at(1), 91.0), (at(2), 92.0)], at(3))
    changed = replace(a, statistic="Maximum")
    after = E.evaluate(changed, [(at(3), 93.0)], at(4), before)
    assert [p.value for p in after.datapoints] == [None, None, None, None, 93.0]
    assert after.state == INSUFFICIENT  # `- - - - X` with missing: too little data of the new kind


# ============================================================================================== invalid


@pytest.mark.parametrize(
    "overrides",
    [
        {"comparison_operator": "GreaterThan"},
        {"statistic": "p99"},
        {"treat_missing_data": "drop"},
        {"evaluation_periods": 0},
        {"evaluation_periods": 2, "datapoints_to_alarm": 3},
        {"period": 0},
    ],
)
def test_invalid_alarms_raise(overrides):
    with pytest.raises(ValueError):
        E.evaluate(alarm(**overrides), [], T0)
