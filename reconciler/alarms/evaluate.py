"""CloudWatch metric-alarm evaluation: samples in, an alarm state with CloudWatch's reason out.

Owns the alarm states (OK, ALARM, INSUFFICIENT_DATA), the frozen `AlarmState` and `evaluate`, which follows
CloudWatch's documentation ("Using Amazon CloudWatch alarms", sections "Evaluating an alarm" and
"Configuring how CloudWatch alarms treat missing data"):

* Datapoints: the samples (timestamp, value) of each period, aligned to multiples of `period` seconds since
  the epoch ([start, start + period)), reduced with the alarm's statistic (SampleCount, Average, Sum,
  Minimum, Maximum); a period without samples has no datapoint (missing, even for SampleCount). Only
  periods that have ended count. A datapoint is stamped with its period's start.
* The evaluation range: like CloudWatch, more periods than `evaluation_periods` (N) are read, N + 2 by
  default (the documented examples read 5 for N = 3). With at least N real datapoints in the range, the N
  most recent are evaluated and the missing-data setting plays no part. With fewer, every real datapoint
  in the range is evaluated and the rest are filled from `treat_missing_data`, as few as possible.
* "M out of N": ALARM when at least M (`datapoints_to_alarm`, default N) evaluated datapoints breach, OK
  otherwise. Filling: `breaching` and `notBreaching` fill with breaching / non-breaching datapoints.
  `missing` does not fill: with too few breaching datapoints the alarm is OK as soon as one real datapoint
  does not breach; with none in the range it is INSUFFICIENT_DATA; with only breaching ones (too few) it is
  ALARM when they reach back to the first of the last N periods (the documentation's rows `X - - - -` and
  `- - X - -`: "the oldest evaluated data point is breaching and there aren't any non-breaching data
  points"), INSUFFICIENT_DATA otherwise (`- - - - X`). `ignore` is `missing` except that where `missing`
  would need the missing datapoints to decide (those last two cases), the current state is kept.
* Transitions: the state starts as INSUFFICIENT_DATA ("Unchecked: Initial alarm creation"); the first
  evaluation and every change of state set `reason` (worded like CloudWatch's StateReason) and
  `updated_at`; an evaluation that keeps the state keeps both and only refreshes the datapoints,
  `evaluated_at` and the latest metric error.
* Ended periods are final: a period of the range without samples takes the datapoint the previous state
  recorded for it when that state was computed from the same metric, statistic and period (so a
  restarted monitor, whose samples are gone, does not read its history as missing).

Pure: no I/O, no clock reads (`now` is passed in), no randomness. It must not collect samples
(`alarms.monitor`), persist states (`alarms.store`) nor act on a state.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from reconciler.model import spec
from reconciler.scaling import policy

OK = "OK"
ALARM = "ALARM"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)

MISSING = "missing"
NOT_BREACHING = "notBreaching"
BREACHING = "breaching"
IGNORE = "ignore"
TREATMENTS = (MISSING, NOT_BREACHING, BREACHING, IGNORE)

STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
OPERATORS = {
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", lambda v, t: v >= t),
    "GreaterThanThreshold": ("greater than", lambda v, t: v > t),
    "LessThanThreshold": ("less than", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("less than or equal to", lambda v, t: v <= t),
}

EXTRA_PERIODS = 2  # the evaluation range reads N + 2 periods (CloudWatch's documented examples: 5 for 3)
INITIAL_REASON = "Unchecked: Initial alarm creation"

Samples = Iterable[tuple[float, float]]


@dataclass(frozen=True)
class Datapoint:
    """One period of the evaluation range: its start, the statistic of its samples (None: missing)."""

    timestamp: float
    value: float | None
    sample_count: int = 0


@dataclass(frozen=True)
class AlarmState:
    """An alarm's state after an evaluation: value, reason and time of the last transition, and what the
    last evaluation saw."""

    name: str
    state: str = INSUFFICIENT_DATA
    reason: str = INITIAL_REASON
    updated_at: float | None = None  # epoch seconds of the last transition (CloudWatch's StateUpdatedTimestamp)
    datapoints: tuple[Datapoint, ...] = ()  # the evaluation range of the last evaluation, oldest first
    evaluated_at: float | None = None
    error: str | None = None  # why the metric could not be read at the latest attempt, if it could not
    basis: str = ""  # metric, statistic and period the datapoints were computed from


# ============================================================================================== datapoints


def basis(alarm: spec.Alarm) -> str:
    """What an alarm's datapoints depend on: they are reused from a previous state only when this matches."""
    metric = json.dumps(alarm.metric, sort_keys=True, default=str)
    return f"{metric}|{alarm.statistic}|{alarm.period:g}"


def period_starts(now: float, period: float, count: int) -> list[float]:
    """Starts of the `count` most recent periods that have ended by `now`, oldest first."""
    last = float(math.floor(now / period) * period - period)
    return [last - period * (count - 1 - i) for i in range(count)]


def datapoints(samples: Samples, statistic: str, period: float, starts: Sequence[float]) -> list[Datapoint]:
    """One datapoint per period start: the statistic of the finite samples with start <= t < start + period."""
    buckets: dict[int, list[float]] = {round(start / period): [] for start in starts}
    for ts, value in samples:
        if math.isfinite(ts) and math.isfinite(value):
            bucket = buckets.get(math.floor(ts / period))
            if bucket is not None:
                bucket.append(float(value))
    return [
        Datapoint(start, policy.statistic(values, statistic) if values else None, len(values))
        for start, values in zip(starts, buckets.values(), strict=True)
    ]


def _carry(points: list[Datapoint], previous: AlarmState | None, key: str) -> list[Datapoint]:
    """Periods without samples take what `previous` recorded for them (ended periods are final)."""
    if previous is None or previous.basis != key or not previous.datapoints:
        return points
    known = {p.timestamp: p for p in previous.datapoints}
    return [known.get(p.timestamp, p) if p.sample_count == 0 else p for p in points]


# ============================================================================================== evaluation


@dataclass(frozen=True)
class _Outcome:
    state: str | None  # None: keep the current state (ignore)
    reason: str


def _check(alarm: spec.Alarm) -> tuple[int, int]:
    if alarm.comparison_operator not in OPERATORS:
        raise ValueError(f"alarm {alarm.name}: unknown comparisonOperator {alarm.comparison_operator!r}")
    if alarm.statistic not in STATISTICS:
        raise ValueError(f"alarm {alarm.name}: unknown statistic {alarm.statistic!r}")
    if alarm.treat_missing_data not in TREATMENTS:
        raise ValueError(f"alarm {alarm.name}: unknown treatMissingData {alarm.treat_missing_data!r}")
    n = int(alarm.evaluation_periods)
    m = n if alarm.datapoints_to_alarm is None else int(alarm.datapoints_to_alarm)
    if n < 1 or not 1 <= m <= n or not alarm.period > 0:
        raise ValueError(
            f"alarm {alarm.name}: needs period > 0 and 1 <= datapointsToAlarm ({m}) <= evaluationPeriods ({n})"
        )
    return n, m


def evaluate(
    alarm: spec.Alarm,
    samples: Samples,
    now: float,
    previous: AlarmState | None = None,
    *,
    error: str | None = None,
    extra_periods: int = EXTRA_PERIODS,
) -> AlarmState:
    """The state of `alarm` at `now` from its metric's samples, after `previous` (None: a new alarm).

    `error` is why the latest read of the metric failed; it is kept on the state and, when missing
    datapoints decided a transition, named in its reason. Raises ValueError for an alarm validation
    would reject (unknown operator, statistic or treatment; datapointsToAlarm outside 1..N).
    """
    n, m = _check(alarm)
    key = basis(alarm)
    starts = period_starts(now, alarm.period, n + max(0, extra_periods))
    points = _carry(datapoints(samples, alarm.statistic, alarm.period, starts), previous, key)
    current = previous.state if previous is not None else INSUFFICIENT_DATA
    outcome = _decide(alarm, points, n, m, current, error)
    state = current if outcome.state is None else outcome.state
    base = previous or AlarmState(alarm.name)
    refreshed = replace(base, name=alarm.name, datapoints=tuple(points), evaluated_at=now, error=error, basis=key)
    if previous is not None and state == previous.state:
        return refreshed
    return replace(refreshed, state=state, reason=outcome.reason, updated_at=now)


def _decide(alarm: spec.Alarm, points: list[Datapoint], n: int, m: int, current: str, error: str | None) -> _Outcome:
    words, breaches = OPERATORS[alarm.comparison_operator]
    evaluated = [p for p in points if p.value is not None][-n:]
    fills = n - len(evaluated)
    breaching = [p for p in evaluated if breaches(p.value, alarm.threshold)]
    clear = [p for p in evaluated if not breaches(p.value, alarm.threshold)]
    treat = alarm.treat_missing_data if fills else None
    filled = {BREACHING: "Breaching", NOT_BREACHING: "NonBreaching"}.get(treat or "")
    text = _Reason(alarm, words, n, m, current, len(evaluated), fills, error)
    if len(breaching) + (fills if treat == BREACHING else 0) >= m:
        return _Outcome(ALARM, text.crossed(breaching, ALARM, filled, minimum=m))
    if treat is None or filled:
        return _Outcome(OK, text.crossed(clear, OK, filled, minimum=n - m + 1))
    if clear:  # missing / ignore: a real datapoint within the threshold and too few breaching ones
        return _Outcome(OK, text.crossed(clear, OK, None, minimum=1))
    if treat == IGNORE:  # keeps the state; a new alarm stays INSUFFICIENT_DATA, and says why
        return _Outcome(None, text.insufficient())
    # `missing`, no datapoint within the threshold: none at all, or too few breaching ones
    if breaching and breaching[0].timestamp <= points[-n].timestamp:
        return _Outcome(ALARM, text.crossed(breaching, ALARM, "Missing", minimum=m))
    return _Outcome(INSUFFICIENT_DATA, text.insufficient())


@dataclass(frozen=True)
class _Reason:
    """CloudWatch's StateReason sentences for one evaluation."""

    alarm: spec.Alarm
    words: str
    n: int
    m: int
    current: str
    evaluated: int
    fills: int
    error: str | None

    def crossed(self, shown: list[Datapoint], state: str, treated_as: str | None, *, minimum: int) -> str:
        relation = self.words if state == ALARM else f"not {self.words}"
        missing = f"{_count(self.fills, 'missing datapoint')} {_was(self.fills)} treated as [{treated_as}]"
        if shown:
            listed = ", ".join(f"{_number(p.value)} ({_when(p.timestamp)})" for p in reversed(shown))
            text = (
                f"Threshold Crossed: {len(shown)} out of the last {self.evaluated} datapoints [{listed}] "
                f"{_was(len(shown))} {relation} the threshold ({_number(self.alarm.threshold)})"
            )
            if treated_as:
                text += f" and {missing}"
        elif self.evaluated:
            text = (
                f"Threshold Crossed: {missing}, 0 out of the last {self.evaluated} datapoints {_was(self.evaluated)} "
                f"{relation} the threshold ({_number(self.alarm.threshold)})"
            )
        else:
            text = f"Threshold Crossed: no datapoints were received for {_count(self.fills, 'period')} and {missing}"
        text += f" (minimum {_count(minimum, 'datapoint')} for {self.current} -> {state} transition)."
        return self._with_error(text)

    def insufficient(self) -> str:
        return self._with_error(f"Insufficient Data: {_count(self.fills, 'datapoint')} {_was(self.fills)} unknown.")

    def _with_error(self, text: str) -> str:
        if self.error and self.fills:
            return f"{text} Last error reading the metric: {self.error}"
        return text


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _was(k: int) -> str:
    return "was" if k == 1 else "were"


def _number(value: float | None) -> str:
    """A value as CloudWatch prints a double in a reason: 93.0, 0.5, 1.0E-5."""
    if value is None:
        return "null"
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}E{int(exponent)}"
    return text


def iso(ts: float | None) -> str | None:
    """An epoch time as the ISO 8601 UTC timestamp of describe outputs; None stays None."""
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


def _when(ts: float) -> str:
    """A datapoint's timestamp as in CloudWatch's reasons: dd/mm/yy HH:MM:SS, UTC."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%d/%m/%y %H:%M:%S")
