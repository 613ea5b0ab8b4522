"""`get alarms` rows: DescribeAlarms' MetricAlarms shape from definitions and saved states."""

from __future__ import annotations

from reconciler.alarms import evaluate as E
from reconciler.alarms import report as R
from reconciler.model import spec
from reconciler.scaling import policy

NOW = 1_800_000_100.0
QUEUE = spec.Alarm(
    name="queue-high",
    metric={"customizedMetric": {"url": "http://127.0.0.1:9/metrics", "metricName": "queue_depth"}},
    threshold=80,
    comparison_operator="GreaterThanOrEqualToThreshold",
    statistic="Maximum",
    period=10,
    evaluation_periods=3,
    datapoints_to_alarm=2,
    treat_missing_data="breaching",
    description="work piles up",
)
CPU = spec.Alarm(
    name="cpu-high",
    metric={"predefinedMetricType": policy.CPU, "service": "web"},
    threshold=75.5,
    comparison_operator="GreaterThanThreshold",
)


def test_a_saved_state_and_the_definition_make_one_row():
    saved = E.AlarmState("queue-high", state=E.ALARM, reason="Threshold Crossed: ...", updated_at=NOW - 60,
                         evaluated_at=NOW - 5, error="connection refused")
    [row] = R.rows({"queue-high": QUEUE}, {"queue-high": saved}, NOW)
    assert row == {
        "AlarmName": "queue-high",
        "AlarmDescription": "work piles up",
        "StateValue": "ALARM",
        "StateReason": "Threshold Crossed: ...",
        "StateUpdatedTimestamp": "2027-01-15T08:00:40+00:00",
        "Metric": {"customizedMetric": {"url": "http://127.0.0.1:9/metrics", "metricName": "queue_depth"}},
        "MetricName": "queue_depth",
        "Statistic": "Maximum",
        "Period": 10,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 80.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "breaching",
        "EvaluatedAt": "2027-01-15T08:01:35+00:00",
        "Stale": False,
        "MetricError": "connection refused",
    }


def test_an_alarm_never_evaluated_is_insufficient_data_and_stale():
    [row] = R.rows({"cpu-high": CPU}, {}, NOW)
    assert (row["StateValue"], row["StateReason"]) == ("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation")
    assert (row["StateUpdatedTimestamp"], row["EvaluatedAt"], row["Stale"]) == (None, None, True)
    assert (row["Namespace"], row["MetricName"]) == ("AWS/ECS", "CPUUtilization")
    assert row["Dimensions"] == [{"Name": "ServiceName", "Value": "web"}]
    assert (row["DatapointsToAlarm"], row["AlarmDescription"]) == (1, None)


def test_a_state_nobody_keeps_current_is_stale_and_rows_are_sorted():
    old = E.AlarmState("queue-high", state=E.OK, updated_at=NOW - 999, evaluated_at=NOW - R.STALE_AFTER - 1)
    live = E.AlarmState("cpu-high", state=E.OK, updated_at=NOW - 999, evaluated_at=NOW - R.STALE_AFTER)
    rows = R.rows({"queue-high": QUEUE, "cpu-high": CPU}, {"queue-high": old, "cpu-high": live}, NOW)
    assert [(r["AlarmName"], r["Stale"]) for r in rows] == [("cpu-high", False), ("queue-high", True)]


def test_saved_states_of_alarms_not_in_the_manifests_are_not_shown():
    rows = R.rows({"cpu-high": CPU}, {"gone": E.AlarmState("gone", state=E.ALARM)}, NOW)
    assert [r["AlarmName"] for r in rows] == ["cpu-high"]
