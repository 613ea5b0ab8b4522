"""Semantic rules for one Alarm document (CloudWatch PutMetricAlarm vocabulary).

Owns what CloudWatch itself rejects and a schema cannot say: a `period` of 10, 20 or 30 seconds or a
multiple of 60; `evaluationPeriods` x `period` within one day; `datapointsToAlarm` within
`evaluationPeriods`. Whether a predefined metric's `service` is declared is a cross-document reference,
checked in semantic.py. Evaluating an alarm belongs to whoever watches deployments, not here.
No I/O; never raises on odd values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from reconciler.manifests import document
from reconciler.manifests import semantic_taskdef as td
from reconciler.model import units

Diagnostics = Iterator[document.Diagnostic]

DEFAULT_PERIOD = 60
SHORT_PERIODS = (10, 20, 30)  # CloudWatch's high-resolution periods; longer ones are whole minutes
MAX_WINDOW = 86400  # evaluationPeriods x period, seconds


def period_seconds(value: Any) -> float | None:
    """`period` in seconds (default 60), or None when it is not a duration at all (the schema says so)."""
    if value is None:
        return float(DEFAULT_PERIOD)
    try:
        return units.parse_duration(value)
    except ValueError:
        return None


def period_error(seconds: float) -> str | None:
    """Why `seconds` is not a period CloudWatch takes, or None."""
    if seconds in SHORT_PERIODS or (seconds >= 60 and seconds % 60 == 0):
        return None
    return f"period {seconds:g}s is not one CloudWatch takes: 10, 20 or 30 seconds, or a multiple of 60"


def rule_period(doc: document.Document) -> Diagnostics:
    seconds = period_seconds(doc.spec.get("period"))
    problem = period_error(seconds) if seconds is not None else None
    if problem:
        yield doc.diagnostic(("spec", "period"), problem)


def rule_window(doc: document.Document) -> Diagnostics:
    """evaluationPeriods x period at most one day, and datapointsToAlarm at most evaluationPeriods."""
    periods = td.integer(doc.spec.get("evaluationPeriods"))
    seconds = period_seconds(doc.spec.get("period"))
    if periods is not None and seconds is not None and periods * seconds > MAX_WINDOW:
        yield doc.diagnostic(
            ("spec", "evaluationPeriods"),
            f"evaluationPeriods {periods} x period {seconds:g}s is {periods * seconds:g}s, more than the one day "
            f"({MAX_WINDOW}s) CloudWatch evaluates",
        )
    datapoints = td.integer(doc.spec.get("datapointsToAlarm"))
    if periods is not None and datapoints is not None and datapoints > periods:
        yield doc.diagnostic(
            ("spec", "datapointsToAlarm"),
            f"datapointsToAlarm {datapoints} exceeds evaluationPeriods {periods}",
        )


RULES: tuple[Callable[[document.Document], Diagnostics], ...] = (rule_period, rule_window)
