"""Alarms as CloudWatch's DescribeAlarms shows them: one `MetricAlarms` row per alarm of the manifests.

Owns the row shape for `reconciler get alarms`: the definition (AlarmName, AlarmDescription, MetricName,
Namespace and Dimensions for a predefined ECS metric, the manifest's metric block as `Metric`, Statistic,
Period, EvaluationPeriods, DatapointsToAlarm, Threshold, ComparisonOperator, TreatMissingData) and the
state a daemon last saved (StateValue, StateReason, StateUpdatedTimestamp), plus what DescribeAlarms has no
field for: `EvaluatedAt`, `Stale` (nothing evaluated the alarm in the last STALE_AFTER seconds: no daemon
runs, or it is stuck) and `MetricError` (why the metric could not be read, at the latest attempt). An
alarm no daemon ever evaluated is INSUFFICIENT_DATA, "Unchecked: Initial alarm creation", and stale.

Pure over its arguments: it must not read files (`alarms.store` loads the states), evaluate alarms, or
print (the CLI renders the rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.alarms import evaluate as E
from reconciler.alarms import monitor
from reconciler.model import spec
from reconciler.scaling import policy

STALE_AFTER = 30.0  # seconds: three sampling intervals at the longest (10 s)
_ECS_METRICS = {policy.CPU: "CPUUtilization", policy.MEMORY: "MemoryUtilization"}


def _metric_fields(alarm: spec.Alarm) -> dict[str, Any]:
    out: dict[str, Any] = {"Metric": dict(alarm.metric)}
    try:
        metric, service = monitor.metric_of(alarm)
    except ValueError:
        return out
    if metric.url is not None:
        out["MetricName"] = metric.name or metric.url
    else:
        out["Namespace"] = "AWS/ECS"
        out["MetricName"] = _ECS_METRICS.get(metric.name, metric.name)
        out["Dimensions"] = [{"Name": "ServiceName", "Value": service}]
    return out


def rows(alarms: Mapping[str, spec.Alarm], saved_states: Mapping[str, E.AlarmState], now: float) -> list[dict[str, Any]]:
    """One DescribeAlarms-shaped row per alarm, by name."""
    out = []
    for name in sorted(alarms):
        alarm = alarms[name]
        state = saved_states.get(name)
        evaluated = state.evaluated_at if state is not None else None
        row: dict[str, Any] = {
            "AlarmName": name,
            "AlarmDescription": alarm.description or None,
            "StateValue": state.state if state else E.INSUFFICIENT_DATA,
            "StateReason": state.reason if state else E.INITIAL_REASON,
            "StateUpdatedTimestamp": E.iso(state.updated_at) if state else None,
            **_metric_fields(alarm),
            "Statistic": alarm.statistic,
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "DatapointsToAlarm": alarm.datapoints_to_alarm or alarm.evaluation_periods,
            "Threshold": float(alarm.threshold),
            "ComparisonOperator": alarm.comparison_operator,
            "TreatMissingData": alarm.treat_missing_data,
            "EvaluatedAt": E.iso(evaluated),
            "Stale": evaluated is None or now - evaluated > STALE_AFTER,
            "MetricError": state.error if state else None,
        }
        out.append(row)
    return out
