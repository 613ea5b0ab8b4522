"""Semantic rules for a Service's `autoScaling` block (ECS reference §7).

Owns capacity bounds (minCapacity <= maxCapacity, desiredCount inside them), scheduled actions (bounds,
IANA timezone, a valid expression), step-scaling policies (§7.2 adjustments: no overlaps, no gaps, open
bounds only where allowed; ExactCapacity not negative; the alarm's datapointsToAlarm within
evaluationPeriods) and unique action/policy names.
The grammar of schedule expressions (`at(...)`, `rate(...)`, `cron(6 fields)`, plain 5-field cron) is not
here: `scaling.schedule.problem` reports what the scaler's own parser rejects, so the two cannot disagree.
Evaluating a schedule belongs to the scaling engine. No I/O beyond the
standard library's time zone database lookup; never raises on odd values.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.manifests import document
from reconciler.manifests import semantic_taskdef as td
from reconciler.scaling import schedule

Diagnostics = Iterator[document.Diagnostic]
AUTO = ("spec", "autoScaling")


@functools.cache
def _zones() -> frozenset[str]:
    try:
        return frozenset(zoneinfo.available_timezones())
    except Exception:  # pragma: no cover - a platform without a time zone database
        return frozenset()


def timezone_error(name: Any) -> str | None:
    """Why `name` is not an IANA time zone name, or None when it is one."""
    if not isinstance(name, str) or not name:
        return "timezone must be an IANA name such as 'Europe/Berlin'"
    zones = _zones()
    try:
        zoneinfo.ZoneInfo(name)
        known = not zones or name in zones
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        known = False
    return (
        None if known else f"timezone {name!r} is not an IANA time zone name such as 'Europe/Berlin' or 'UTC'"
    )


def schedule_error(expression: Any) -> str | None:
    """Why `expression` is not a schedule (`at(...)`, `rate(N unit)`, `cron(6 fields)` or 5-field cron), or None.

    The grammar is `scaling.schedule`'s, the one the auto scaler evaluates: this only adds the type check."""
    if not isinstance(expression, str):
        return "schedule must be at(...), rate(...), cron(...) or a 5-field cron expression"
    return schedule.problem(expression)


def rule_capacity(doc: document.Document) -> Diagnostics:
    auto = doc.spec.get("autoScaling")
    if not isinstance(auto, Mapping):
        return
    low, high = td.integer(auto.get("minCapacity")), td.integer(auto.get("maxCapacity"))
    if low is not None and high is not None and low > high:
        yield doc.diagnostic(
            (*AUTO, "minCapacity"), f"autoScaling minCapacity {low} is greater than maxCapacity {high}"
        )
        return
    desired = td.integer(doc.spec.get("desiredCount"))
    if desired is not None and ((low is not None and desired < low) or (high is not None and desired > high)):
        yield doc.diagnostic(
            ("spec", "desiredCount"),
            f"desiredCount {desired} is outside the autoScaling range {_bound(low)}-{_bound(high)}",
        )


def _bound(value: int | None) -> str:
    return "?" if value is None else str(value)


def rule_scheduled(doc: document.Document) -> Diagnostics:
    for k, action in enumerate(td.items(td.mapping(doc.spec.get("autoScaling")).get("scheduled"))):
        action = td.mapping(action)
        at = (*AUTO, "scheduled", k)
        low, high = td.integer(action.get("minCapacity")), td.integer(action.get("maxCapacity"))
        if low is not None and high is not None and low > high:
            yield doc.diagnostic(
                (*at, "minCapacity"), f"scheduled action {k} sets minCapacity {low} above maxCapacity {high}"
            )
        if low is None and high is None:
            yield doc.diagnostic(
                (*at, "minCapacity"), f"scheduled action {k} sets neither minCapacity nor maxCapacity"
            )
        problem = schedule_error(action.get("schedule"))
        if problem:
            yield doc.diagnostic((*at, "schedule"), problem)
        if action.get("timezone") is not None:
            problem = timezone_error(action.get("timezone"))
            if problem:
                yield doc.diagnostic((*at, "timezone"), problem)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rule_step_scaling(doc: document.Document) -> Diagnostics:
    """Step adjustments (§7.2): bounds ordered, no overlap, no gap, open ends only where allowed."""
    for p, policy in enumerate(td.items(td.mapping(doc.spec.get("autoScaling")).get("stepScaling"))):
        policy = td.mapping(policy)
        at = (*AUTO, "stepScaling", p)
        yield from _policy_fields(doc, at, policy)
        steps = []
        for s, step in enumerate(td.items(policy.get("stepAdjustments"))):
            step = td.mapping(step)
            lower, upper = (
                _number(step.get("metricIntervalLowerBound")),
                _number(step.get("metricIntervalUpperBound")),
            )
            where = (*at, "stepAdjustments", s)
            if lower is None and upper is None:
                yield doc.diagnostic(where, f"step {s} has neither a lower nor an upper bound")
                continue
            if lower is not None and upper is not None and lower >= upper:
                yield doc.diagnostic(
                    (*where, "metricIntervalUpperBound"),
                    f"step {s} upper bound {upper:g} is not above its lower bound {lower:g}",
                )
                continue
            steps.append((s, lower, upper))
        yield from _step_coverage(doc, at, steps)


def _policy_fields(doc: document.Document, at: document.Pointer, policy: Mapping[str, Any]) -> Diagnostics:
    periods = td.integer(policy.get("evaluationPeriods"))
    datapoints = td.integer(policy.get("datapointsToAlarm"))
    if datapoints is not None and datapoints > (1 if periods is None else periods):
        yield doc.diagnostic(
            (*at, "datapointsToAlarm"),
            f"datapointsToAlarm {datapoints} exceeds evaluationPeriods {1 if periods is None else periods}"
            + (" (the default)" if periods is None else ""),
        )
    kind = policy.get("adjustmentType")
    if kind == "ExactCapacity":
        for s, step in enumerate(td.items(policy.get("stepAdjustments"))):
            n = td.integer(td.mapping(step).get("scalingAdjustment"))
            if n is not None and n < 0:
                yield doc.diagnostic(
                    (*at, "stepAdjustments", s, "scalingAdjustment"),
                    f"step {s} sets ExactCapacity to {n}, which must not be negative",
                )
    if policy.get("minAdjustmentMagnitude") is not None and kind != "PercentChangeInCapacity":
        yield doc.diagnostic(
            (*at, "minAdjustmentMagnitude"),
            "minAdjustmentMagnitude applies only to adjustmentType PercentChangeInCapacity",
        )


def _step_coverage(
    doc: document.Document, at: document.Pointer, steps: list[tuple[int, float | None, float | None]]
) -> Diagnostics:
    def ptr(s: int, field: str) -> document.Pointer:
        return (*at, "stepAdjustments", s, field)

    open_lower = [s for s, lo, _ in steps if lo is None]
    open_upper = [s for s, _, hi in steps if hi is None]
    for s in open_lower[1:]:
        yield doc.diagnostic(
            ptr(s, "metricIntervalLowerBound"),
            f"step {s} is the second step without a lower bound (step {open_lower[0]} is the first)",
        )
    for s in open_upper[1:]:
        yield doc.diagnostic(
            ptr(s, "metricIntervalUpperBound"),
            f"step {s} is the second step without an upper bound (step {open_upper[0]} is the first)",
        )
    if len(open_lower) > 1 or len(open_upper) > 1:
        return
    ordered = sorted(steps, key=lambda t: float("-inf") if t[1] is None else t[1])
    for (s1, _, hi1), (s2, lo2, _) in zip(ordered, ordered[1:], strict=False):
        if hi1 is None or lo2 is None:  # pragma: no cover - impossible once open bounds are unique and sorted
            continue
        if lo2 < hi1:
            yield doc.diagnostic(
                ptr(s2, "metricIntervalLowerBound"),
                f"step {s2} overlaps step {s1} (lower bound {lo2:g} < upper bound {hi1:g})",
            )
        elif lo2 > hi1:
            yield doc.diagnostic(
                ptr(s2, "metricIntervalLowerBound"),
                f"steps {s1} and {s2} leave a gap between {hi1:g} and {lo2:g}",
            )
    if ordered:
        s, lo, _ = ordered[0]
        if lo is not None and lo < 0:
            yield doc.diagnostic(
                ptr(s, "metricIntervalLowerBound"),
                f"step {s} has a negative lower bound {lo:g}, so a step without a lower bound is required",
            )
        s, _, hi = max(steps, key=lambda t: float("inf") if t[2] is None else t[2])
        if hi is not None and hi > 0:
            yield doc.diagnostic(
                ptr(s, "metricIntervalUpperBound"),
                f"step {s} has a positive upper bound {hi:g}, so a step without an upper bound is required",
            )


def rule_names(doc: document.Document) -> Diagnostics:
    """Scheduled action names, and policy names across targetTracking and stepScaling, are unique."""
    auto = td.mapping(doc.spec.get("autoScaling"))
    groups = (("scheduled", "name", "scheduled action"), ("targetTracking", "policyName", "policy"))
    groups += (("stepScaling", "policyName", "policy"),)
    seen: dict[tuple[str, str], str] = {}
    for group, field, what in groups:
        for k, entry in enumerate(td.items(auto.get(group))):
            name = td.string(td.mapping(entry).get(field))
            if name is None:
                continue
            where = f"{group}[{k}]"
            first = seen.setdefault((what, name), where)
            if first != where:
                yield doc.diagnostic(
                    (*AUTO, group, k, field), f"{what} name {name!r} is already used by {first}"
                )


RULES = (rule_capacity, rule_scheduled, rule_step_scaling, rule_names)
