"""Scaling decisions for one service: target tracking, step scaling and scheduled actions (ECS reference §7).

Owns the manifest's `autoScaling` block as typed values (`ScalingConfig`), the persisted memory of past
decisions (`ScalingState`: cooldowns, scale-in stabilization, scheduled bounds, a short decision log) and
`decide`, which turns metric samples into a new desiredCount with a human reason. Semantics, ECS first and
Kubernetes HPA where ECS says nothing:

* Target tracking: the metric is averaged over `evaluationPeriod` (default 60 s); proposal =
  ceil(current * metric / target), none when |metric / target - 1| <= tolerance (0.1). From 0 tasks the base
  is one task. Scale-out is immediate, but within `scaleOutCooldown` of the last scale-out the proposal is
  computed from the capacity before that cooldown began ("scale-outs count the capacity already added") and
  acts only when that asks for more than the current count. Scale-in waits `scaleInCooldown` after the last
  scale-in and after the last scale-out, and takes the highest recommendation of the last
  `scale_in_stabilization` seconds (300; HPA's downscale stabilization). `disableScaleIn` never proposes
  fewer. Without samples in the window a policy proposes nothing and says so.
* Step scaling: an alarm per policy over `evaluationPeriods` periods ending now, each period's `statistic`
  compared with `threshold`; ALARM when at least `datapointsToAlarm` periods breach (a period without samples
  does not breach). In ALARM the newest breaching datapoint's offset from the threshold picks the step (lower
  bound inclusive above the threshold, upper inclusive below; at exactly the threshold the side of the
  comparison operator). Percent changes round per §7.2 and are raised to `minAdjustmentMagnitude`. Within
  the policy's `cooldown` a scale-out counts the capacity it already added and a scale-in waits.
* Scheduled actions fire when their schedule fired since the previous evaluation (once, however many
  fires were missed) and set new bounds until the next action or a manifest change of min/maxCapacity.
* All policies propose; the largest proposal wins (scale-out and scale-in alike); the result is clamped to
  the effective [min, max], then growth is capped at `placeable`. Clamps are reported in the decision.

Pure: no I/O, no clock (`now` is an epoch float passed in), no randomness. It must not collect metrics
(scaling.stats, scaling.source) nor apply the decision (the daemon).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.model import units
from reconciler.scaling import schedule

CPU = "ECSServiceAverageCPUUtilization"
MEMORY = "ECSServiceAverageMemoryUtilization"
PREDEFINED = (CPU, MEMORY)
TARGET_TRACKING = "target tracking"
STEP_SCALING = "step scaling"
OUT, IN, NONE = "out", "in", "none"

DEFAULT_COOLDOWN = 300.0
DEFAULT_TOLERANCE = 0.1
DEFAULT_WINDOW = 60.0
DEFAULT_STABILIZATION = 300.0
DEFAULT_PERIOD = 60.0
DECISION_HISTORY = 20
MAX_RECOMMENDATIONS = 500  # per policy; the monotonic compaction keeps far fewer in practice
STATE_VERSION = 1
_EPSILON = 1e-9

Samples = Sequence[tuple[float, float]]
_COMPARISONS = {
    "GreaterThanOrEqualToThreshold": (">=", lambda v, t: v >= t),
    "GreaterThanThreshold": (">", lambda v, t: v > t),
    "LessThanThreshold": ("<", lambda v, t: v < t),
    "LessThanOrEqualToThreshold": ("<=", lambda v, t: v <= t),
}
_ADJUSTMENTS = ("ChangeInCapacity", "PercentChangeInCapacity", "ExactCapacity")


# ============================================================================================== config


@dataclass(frozen=True)
class Metric:
    """A predefined metric (`name` is its type), or a customized one read from `url` (`name` = metricName)."""

    name: str
    url: str | None = None
    statistic: str = "Average"  # customized: how the values of the service's tasks are combined

    @property
    def key(self) -> str:
        """The key of this metric's samples in `decide`'s `metrics` argument."""
        if self.url is None:
            return self.name
        return f"{self.url}#{self.name}" if self.name else self.url

    @property
    def percent(self) -> bool:
        return self.url is None

    @property
    def label(self) -> str:
        return {CPU: "CPU", MEMORY: "memory"}.get(self.name, self.name or self.url or "metric")

    def format(self, value: float) -> str:
        return f"{value:.1f}%" if self.percent else f"{value:g}"

    @classmethod
    def from_manifest(cls, value: Any) -> Metric:
        if isinstance(value, str):
            if value not in PREDEFINED:
                raise ValueError(f"unknown predefined metric {value!r}")
            return cls(value)
        if isinstance(value, Mapping) and isinstance(value.get("url"), str):
            return cls(
                str(value.get("metricName") or ""), value["url"], str(value.get("statistic", "Average"))
            )
        raise ValueError(
            f"a metric is {' or '.join(PREDEFINED)} or a customizedMetric with a url, not {value!r}"
        )


@dataclass(frozen=True)
class TargetTracking:
    name: str
    metric: Metric
    target_value: float
    scale_out_cooldown: float = DEFAULT_COOLDOWN
    scale_in_cooldown: float = DEFAULT_COOLDOWN
    disable_scale_in: bool = False
    tolerance: float = DEFAULT_TOLERANCE

    @classmethod
    def from_manifest(cls, block: Mapping[str, Any], index: int, tolerance: float) -> TargetTracking:
        metric = block.get("predefinedMetric") or block.get("customizedMetric")
        target = float(block["targetValue"])
        if target <= 0:
            raise ValueError(f"targetTracking[{index}] targetValue must be positive")
        return cls(
            name=str(block.get("policyName") or f"targetTracking[{index}]"),
            metric=Metric.from_manifest(metric),
            target_value=target,
            scale_out_cooldown=_duration(block.get("scaleOutCooldown"), DEFAULT_COOLDOWN),
            scale_in_cooldown=_duration(block.get("scaleInCooldown"), DEFAULT_COOLDOWN),
            disable_scale_in=bool(block.get("disableScaleIn", False)),
            tolerance=tolerance,
        )


@dataclass(frozen=True)
class StepAdjustment:
    lower: float | None  # offset from the threshold; None = -infinity
    upper: float | None  # None = +infinity
    adjustment: int

    def matches(self, offset: float, above: bool) -> bool:
        """[lower, upper) when the metric is above the threshold, (lower, upper] when below (§7.2)."""
        lower = -math.inf if self.lower is None else self.lower
        upper = math.inf if self.upper is None else self.upper
        return lower <= offset < upper if above else lower < offset <= upper

    def describe(self, above: bool) -> str:
        lower = "-inf" if self.lower is None else f"{self.lower:+g}"
        upper = "+inf" if self.upper is None else f"{self.upper:+g}"
        return f"[{lower}, {upper})" if above else f"({lower}, {upper}]"


@dataclass(frozen=True)
class StepPolicy:
    name: str
    metric: Metric
    comparison: str
    threshold: float
    adjustment_type: str
    steps: tuple[StepAdjustment, ...]
    statistic: str = "Average"
    evaluation_periods: int = 1
    datapoints_to_alarm: int = 1
    period: float = DEFAULT_PERIOD
    min_adjustment_magnitude: int | None = None
    cooldown: float = DEFAULT_COOLDOWN

    @property
    def operator(self) -> str:
        return _COMPARISONS[self.comparison][0]

    def breaches(self, value: float) -> bool:
        return _COMPARISONS[self.comparison][1](value, self.threshold)

    @classmethod
    def from_manifest(cls, block: Mapping[str, Any], index: int) -> StepPolicy:
        comparison, kind = block["comparisonOperator"], block["adjustmentType"]
        if comparison not in _COMPARISONS:
            raise ValueError(f"stepScaling[{index}]: unknown comparisonOperator {comparison!r}")
        if kind not in _ADJUSTMENTS:
            raise ValueError(f"stepScaling[{index}]: unknown adjustmentType {kind!r}")
        periods = int(block.get("evaluationPeriods", 1))
        magnitude = block.get("minAdjustmentMagnitude")
        return cls(
            name=str(block.get("policyName") or f"stepScaling[{index}]"),
            metric=Metric.from_manifest(block["metric"]),
            comparison=comparison,
            threshold=float(block["threshold"]),
            adjustment_type=kind,
            steps=tuple(_step(s) for s in block["stepAdjustments"]),
            statistic=str(block.get("statistic", "Average")),
            evaluation_periods=periods,
            datapoints_to_alarm=int(block.get("datapointsToAlarm", periods)),
            period=_duration(block.get("period"), DEFAULT_PERIOD) or DEFAULT_PERIOD,
            min_adjustment_magnitude=None if magnitude is None else int(magnitude),
            cooldown=_duration(block.get("cooldown"), DEFAULT_COOLDOWN),
        )


def _step(block: Mapping[str, Any]) -> StepAdjustment:
    lower, upper = block.get("metricIntervalLowerBound"), block.get("metricIntervalUpperBound")
    return StepAdjustment(
        None if lower is None else float(lower),
        None if upper is None else float(upper),
        int(block["scalingAdjustment"]),
    )


@dataclass(frozen=True)
class ScheduledAction:
    name: str
    schedule: str
    timezone: str = "UTC"
    start: float | None = None  # epoch seconds
    end: float | None = None
    min_capacity: int | None = None
    max_capacity: int | None = None

    def last_fire(self, after: float, until: float) -> float | None:
        """The latest fire in (after, until] that lies within [start, end], as epoch seconds."""
        if self.end is not None:
            until = min(until, self.end)
        anchor = None if self.start is None else _datetime(self.start)
        fire = schedule.last_fire(
            self.schedule, self.timezone, _datetime(after), _datetime(until), anchor=anchor
        )
        if fire is None or (self.start is not None and fire.timestamp() < self.start):
            return None
        return fire.timestamp()

    @classmethod
    def from_manifest(cls, block: Mapping[str, Any], index: int) -> ScheduledAction:
        expression = str(block["schedule"]).strip()
        schedule.parse(expression)  # raises ValueError for an invalid expression
        timezone = str(block.get("timezone") or "UTC")
        schedule.zone(timezone)
        low, high = block.get("minCapacity"), block.get("maxCapacity")
        if low is None and high is None:
            raise ValueError(f"scheduled[{index}] sets neither minCapacity nor maxCapacity")
        return cls(
            name=str(block.get("name") or f"scheduled[{index}]"),
            schedule=expression,
            timezone=timezone,
            start=_instant(block.get("startTime")),
            end=_instant(block.get("endTime")),
            min_capacity=None if low is None else int(low),
            max_capacity=None if high is None else int(high),
        )


@dataclass(frozen=True)
class ScalingConfig:
    min_capacity: int
    max_capacity: int
    target_tracking: tuple[TargetTracking, ...] = ()
    step_scaling: tuple[StepPolicy, ...] = ()
    scheduled: tuple[ScheduledAction, ...] = ()
    window: float = DEFAULT_WINDOW  # evaluationPeriod: the target-tracking averaging window
    scale_in_stabilization: float = DEFAULT_STABILIZATION

    @classmethod
    def from_manifest(
        cls,
        block: Mapping[str, Any],
        *,
        scale_in_stabilization: float | None = None,
        tolerance: float | None = None,
    ) -> ScalingConfig:
        """Typed values of a validated `autoScaling` block; ValueError on what validation would reject.

        `scaleInStabilization` and `tolerance` come from the block unless given here."""
        low, high = int(block["minCapacity"]), int(block["maxCapacity"])
        if scale_in_stabilization is None:
            scale_in_stabilization = _duration(block.get("scaleInStabilization"), DEFAULT_STABILIZATION)
        if tolerance is None:
            tolerance = float(block.get("tolerance", DEFAULT_TOLERANCE))
        if low < 0 or low > high:
            raise ValueError(f"autoScaling minCapacity {low} / maxCapacity {high} is not a valid range")
        return cls(
            min_capacity=low,
            max_capacity=high,
            target_tracking=tuple(
                TargetTracking.from_manifest(b, i, tolerance)
                for i, b in enumerate(block.get("targetTracking") or ())
            ),
            step_scaling=tuple(
                StepPolicy.from_manifest(b, i) for i, b in enumerate(block.get("stepScaling") or ())
            ),
            scheduled=tuple(
                ScheduledAction.from_manifest(b, i) for i, b in enumerate(block.get("scheduled") or ())
            ),
            window=_duration(block.get("evaluationPeriod"), DEFAULT_WINDOW) or DEFAULT_WINDOW,
            scale_in_stabilization=scale_in_stabilization,
        )

    def metrics(self) -> tuple[Metric, ...]:
        """The metrics the policies read, once each: what the daemon has to collect for this service."""
        seen: dict[str, Metric] = {}
        for p in (*self.target_tracking, *self.step_scaling):
            seen.setdefault(p.metric.key, p.metric)
        return tuple(seen.values())

    @property
    def history_seconds(self) -> float:
        """How many seconds of samples `decide` reads at most (the caller's retention)."""
        steps = (p.period * p.evaluation_periods for p in self.step_scaling)
        return max((self.window, *steps))

    @property
    def policy_names(self) -> frozenset[str]:
        return frozenset(p.name for p in (*self.target_tracking, *self.step_scaling))

    def cooldown_of(self, policy: str) -> float:
        for p in self.target_tracking:
            if p.name == policy:
                return p.scale_out_cooldown
        for s in self.step_scaling:
            if s.name == policy:
                return s.cooldown
        return 0.0

    @property
    def scale_out_chain(self) -> float:
        """How long after a scale-out another one still counts from the same base (target tracking)."""
        return max((p.scale_out_cooldown for p in self.target_tracking), default=0.0)


def _duration(value: Any, default: float) -> float:
    return default if value is None else units.parse_duration(value)


def _instant(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 string or a YAML timestamp (a date is its midnight); UTC unless an offset."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    else:
        moment = dt.datetime.fromisoformat(str(value).strip())
    return schedule.aware(moment).timestamp()


def _datetime(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, schedule.UTC)


# ============================================================================================== decisions


@dataclass(frozen=True)
class Proposal:
    """What one policy proposes this evaluation (`capacity` None: nothing) and why."""

    policy: str
    kind: str  # TARGET_TRACKING | STEP_SCALING
    capacity: int | None
    value: float | None  # the metric value the policy used
    summary: str  # e.g. "CPU 85.0% > target 50.0%"
    note: str  # the full explanation, e.g. "held at 4: scale-in cooldown, 120 s left"

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "kind": self.kind,
            "capacity": self.capacity,
            "value": self.value,
            "summary": self.summary,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Proposal:
        return cls(
            data["policy"],
            data["kind"],
            data.get("capacity"),
            data.get("value"),
            data.get("summary", ""),
            data.get("note", ""),
        )


@dataclass(frozen=True)
class Decision:
    time: float
    desired: int
    previous: int
    direction: str  # OUT | IN | NONE
    policy: str | None  # the winning policy or scheduled action
    reason: str
    metrics: Mapping[str, float] = field(default_factory=dict)  # policy name -> the metric value it used
    clamped: str | None = None  # how the result was clamped to [min, max] or to placeable, if it was
    proposals: tuple[Proposal, ...] = ()
    fired: tuple[str, ...] = ()  # scheduled actions that fired in this evaluation
    min_capacity: int = 0  # the effective bounds used
    max_capacity: int = 0

    @property
    def noteworthy(self) -> bool:
        return self.direction != NONE or self.clamped is not None or bool(self.fired)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "desired": self.desired,
            "previous": self.previous,
            "direction": self.direction,
            "policy": self.policy,
            "reason": self.reason,
            "metrics": dict(self.metrics),
            "clamped": self.clamped,
            "proposals": [p.to_dict() for p in self.proposals],
            "fired": list(self.fired),
            "minCapacity": self.min_capacity,
            "maxCapacity": self.max_capacity,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            time=float(data["time"]),
            desired=int(data["desired"]),
            previous=int(data["previous"]),
            direction=str(data["direction"]),
            policy=data.get("policy"),
            reason=str(data.get("reason", "")),
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
            clamped=data.get("clamped"),
            proposals=tuple(Proposal.from_dict(p) for p in data.get("proposals") or ()),
            fired=tuple(data.get("fired") or ()),
            min_capacity=int(data.get("minCapacity", 0)),
            max_capacity=int(data.get("maxCapacity", 0)),
        )


# ============================================================================================== state


@dataclass(frozen=True)
class PolicyMark:
    """A policy's last scaling action; `base` is the capacity before its current cooldown chain began."""

    time: float
    direction: str
    base: int


@dataclass(frozen=True)
class Bounds:
    """min/max as set by a scheduled action; `config` is the manifest's (min, max) it overrides."""

    min_capacity: int
    max_capacity: int
    action: str
    time: float
    config: tuple[int, int]


@dataclass(frozen=True)
class ScalingState:
    last_evaluation: float | None = None
    last_scale_out: float | None = None
    scale_out_base: int | None = None  # capacity before the current scale-out cooldown chain began
    last_scale_in: float | None = None
    policies: Mapping[str, PolicyMark] = field(default_factory=dict)
    bounds: Bounds | None = None
    # per target-tracking policy: (time, recommendation) pairs, times ascending and values descending
    recommendations: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)
    decisions: tuple[Decision, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "lastEvaluation": self.last_evaluation,
            "lastScaleOut": self.last_scale_out,
            "scaleOutBase": self.scale_out_base,
            "lastScaleIn": self.last_scale_in,
            "policies": {
                name: {"time": m.time, "direction": m.direction, "base": m.base}
                for name, m in self.policies.items()
            },
            "bounds": None if self.bounds is None else _bounds_dict(self.bounds),
            "recommendations": {
                name: [[t, n] for t, n in recs] for name, recs in self.recommendations.items()
            },
            "decisions": [d.to_dict() for d in self.decisions],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ScalingState:
        """The state `to_dict` wrote; an empty state for None or another version (forgetting is safe)."""
        if not data or data.get("version") != STATE_VERSION:
            return cls()
        bounds = data.get("bounds")
        return cls(
            last_evaluation=_optional_float(data.get("lastEvaluation")),
            last_scale_out=_optional_float(data.get("lastScaleOut")),
            scale_out_base=None if data.get("scaleOutBase") is None else int(data["scaleOutBase"]),
            last_scale_in=_optional_float(data.get("lastScaleIn")),
            policies={
                name: PolicyMark(float(m["time"]), str(m["direction"]), int(m["base"]))
                for name, m in (data.get("policies") or {}).items()
            },
            bounds=None
            if not bounds
            else Bounds(
                int(bounds["minCapacity"]),
                int(bounds["maxCapacity"]),
                str(bounds["action"]),
                float(bounds["time"]),
                (int(bounds["config"][0]), int(bounds["config"][1])),
            ),
            recommendations={
                name: tuple((float(t), int(n)) for t, n in recs)
                for name, recs in (data.get("recommendations") or {}).items()
            },
            decisions=tuple(Decision.from_dict(d) for d in data.get("decisions") or ()),
        )


def _bounds_dict(b: Bounds) -> dict[str, Any]:
    return {
        "minCapacity": b.min_capacity,
        "maxCapacity": b.max_capacity,
        "action": b.action,
        "time": b.time,
        "config": list(b.config),
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


# ============================================================================================== metrics


def window_values(samples: Samples | None, start: float, end: float) -> list[float]:
    """Values of the samples with start < timestamp <= end."""
    return [v for t, v in samples or () if start < t <= end]


def statistic(values: Sequence[float], name: str) -> float:
    """Average, Minimum, Maximum, Sum or SampleCount of non-empty `values`."""
    if name == "Minimum":
        return min(values)
    if name == "Maximum":
        return max(values)
    if name == "Sum":
        return float(sum(values))
    if name == "SampleCount":
        return float(len(values))
    return sum(values) / len(values)


def datapoints(
    samples: Samples | None, now: float, period: float, count: int, stat: str
) -> list[float | None]:
    """One value per period, newest first: period k holds samples with now-(k+1)*period < t <= now-k*period."""
    buckets: list[list[float]] = [[] for _ in range(count)]
    for t, v in samples or ():
        age = now - t
        if age >= 0:
            k = int(age // period)
            if k < count:
                buckets[k].append(v)
    return [statistic(b, stat) if b else None for b in buckets]


# ============================================================================================== evaluation


@dataclass(frozen=True)
class _Context:
    config: ScalingConfig
    state: ScalingState
    current: int
    metrics: Mapping[str, Samples]
    now: float


def _proportional(current: int, ratio: float) -> int:
    return max(0, math.ceil(max(current, 1) * ratio - _EPSILON))


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


def _target_tracking(p: TargetTracking, ctx: _Context) -> tuple[Proposal, tuple[tuple[float, int], ...]]:
    """The policy's proposal and its new recommendation history."""
    history = ctx.state.recommendations.get(p.name, ())
    values = window_values(ctx.metrics.get(p.metric.key), ctx.now - ctx.config.window, ctx.now)
    if not values:
        note = f"no samples of {p.metric.label} in the last {_seconds(ctx.config.window)}: no proposal"
        return Proposal(p.name, TARGET_TRACKING, None, None, "", note), _prune(history, ctx)
    value = sum(values) / len(values)
    ratio = value / p.target_value
    fmt = p.metric.format
    relation = ">" if ratio > 1 else "<" if ratio < 1 else "="
    summary = f"{p.metric.label} {fmt(value)} {relation} target {fmt(p.target_value)}"
    if abs(ratio - 1) <= p.tolerance + _EPSILON:
        wants = ctx.current
        note = f"{p.metric.label} {fmt(value)} within {p.tolerance:.0%} of target {fmt(p.target_value)}"
    else:
        wants = _proportional(ctx.current, ratio)
        note = f"{summary}: wants {wants}"
    if p.disable_scale_in and wants < ctx.current:
        wants, note = ctx.current, f"{summary}: would scale in, but scale-in is disabled"
    history = _remember(history, ctx.now, wants, ctx)
    if wants > ctx.current:
        capacity, note = _tt_scale_out(p, ctx, ratio, wants, note)
    elif wants < ctx.current:
        capacity, note = _tt_scale_in(p, ctx, wants, history, summary)
    else:
        capacity = ctx.current
    return Proposal(p.name, TARGET_TRACKING, capacity, value, summary, note), history


def _tt_scale_out(p: TargetTracking, ctx: _Context, ratio: float, wants: int, note: str) -> tuple[int, str]:
    last = ctx.state.last_scale_out
    if last is None or ctx.now - last >= p.scale_out_cooldown:
        return wants, note
    left = _seconds(p.scale_out_cooldown - (ctx.now - last))
    base = ctx.state.scale_out_base if ctx.state.scale_out_base is not None else ctx.current
    counted = _proportional(base, ratio)
    if counted > ctx.current:
        return (
            counted,
            f"{note}; scale-out cooldown ({left} left) counts the tasks added since {base}: {counted}",
        )
    return ctx.current, (
        f"{note}; held at {ctx.current}: within the scale-out cooldown ({left} left) the tasks added since "
        f"{base} already cover it ({counted})"
    )


def _tt_scale_in(
    p: TargetTracking, ctx: _Context, wants: int, history: tuple[tuple[float, int], ...], summary: str
) -> tuple[int, str]:
    stabilized = _highest(history, ctx)
    window = _seconds(ctx.config.scale_in_stabilization)
    if stabilized >= ctx.current:
        return ctx.current, (
            f"{summary}: wants {wants}; held at {ctx.current}: the highest recommendation in the last {window} "
            f"is {stabilized}"
        )
    waits = [
        p.scale_in_cooldown - (ctx.now - t)
        for t in (ctx.state.last_scale_in, ctx.state.last_scale_out)
        if t is not None and ctx.now - t < p.scale_in_cooldown
    ]
    if waits:
        return (
            ctx.current,
            f"{summary}: wants {stabilized}; held at {ctx.current}: scale-in cooldown, {_seconds(max(waits))} left",
        )
    detail = "" if stabilized == wants else f" (the highest recommendation in the last {window})"
    return stabilized, f"{summary}: wants {stabilized}{detail}"


def _remember(
    history: tuple[tuple[float, int], ...], now: float, wants: int, ctx: _Context
) -> tuple[tuple[float, int], ...]:
    """Appends a recommendation; older ones not above it can never be a window maximum again and go."""
    kept = [(t, n) for t, n in _prune(history, ctx) if n > wants and t < now]
    return tuple([*kept, (now, wants)][-MAX_RECOMMENDATIONS:])


def _prune(history: tuple[tuple[float, int], ...], ctx: _Context) -> tuple[tuple[float, int], ...]:
    """The recommendations inside the stabilization window (now - window, now]; now's own always counts."""
    start = ctx.now - ctx.config.scale_in_stabilization
    return tuple((t, n) for t, n in history if start < t <= ctx.now or t == ctx.now)


def _highest(history: tuple[tuple[float, int], ...], ctx: _Context) -> int:
    return max(n for _, n in _prune(history, ctx))


def _step_policy(p: StepPolicy, ctx: _Context) -> Proposal:
    points = datapoints(ctx.metrics.get(p.metric.key), ctx.now, p.period, p.evaluation_periods, p.statistic)
    present = [v for v in points if v is not None]
    breaching = [v for v in present if p.breaches(v)]
    label = f"{p.metric.label} {p.statistic}"
    tally = f"{len(breaching)} of {p.evaluation_periods} periods"
    if len(present) < p.datapoints_to_alarm:
        note = f"insufficient data: {len(present)} of {p.evaluation_periods} periods have samples of {p.metric.label}"
        return Proposal(p.name, STEP_SCALING, None, present[0] if present else None, "", note)
    value = breaching[0] if breaching else present[0]
    summary = (
        f"{label} {p.metric.format(value)} {p.operator} threshold {p.metric.format(p.threshold)} in {tally}"
    )
    if len(breaching) < p.datapoints_to_alarm:
        note = f"alarm OK: {label} {p.operator} {p.metric.format(p.threshold)} in {tally} (needs {p.datapoints_to_alarm})"
        return Proposal(p.name, STEP_SCALING, None, value, "", note)
    offset = value - p.threshold
    above = offset > 0 or (offset == 0 and p.operator.startswith(">"))
    step = next((s for s in p.steps if s.matches(offset, above)), None)
    if step is None:
        note = f"{summary}: in ALARM, but no step matches the offset {offset:+g}"
        return Proposal(p.name, STEP_SCALING, None, value, summary, note)
    summary = f"{summary}, step {step.describe(above)} {_adjustment_text(p, step.adjustment)}"
    capacity, note = _step_cooldown(p, ctx, step.adjustment, summary)
    return Proposal(p.name, STEP_SCALING, capacity, value, summary, note)


def _step_cooldown(p: StepPolicy, ctx: _Context, adjustment: int, summary: str) -> tuple[int, str]:
    wants = apply_adjustment(p.adjustment_type, adjustment, ctx.current, p.min_adjustment_magnitude)
    mark = ctx.state.policies.get(p.name)
    if mark is None or ctx.now - mark.time >= p.cooldown or wants == ctx.current:
        return wants, f"{summary}: wants {wants}"
    left = _seconds(p.cooldown - (ctx.now - mark.time))
    if wants < ctx.current:
        return ctx.current, f"{summary}: wants {wants}; held at {ctx.current}: cooldown, {left} left"
    base = mark.base if mark.direction == OUT else ctx.current
    counted = apply_adjustment(p.adjustment_type, adjustment, base, p.min_adjustment_magnitude)
    if counted > ctx.current:
        return counted, f"{summary}: wants {counted} (cooldown, {left} left: counted from {base})"
    return ctx.current, (
        f"{summary}: held at {ctx.current}: within the cooldown ({left} left) the tasks added since {base} "
        f"already cover it ({counted})"
    )


def apply_adjustment(kind: str, adjustment: int, capacity: int, min_magnitude: int | None = None) -> int:
    """The capacity after a step adjustment (§7.2), never negative."""
    if kind == "ExactCapacity":
        return max(0, adjustment)
    if kind == "ChangeInCapacity":
        return max(0, capacity + adjustment)
    change = percent_change(capacity, adjustment)
    if min_magnitude and change and abs(change) < min_magnitude:
        change = min_magnitude if change > 0 else -min_magnitude
    return max(0, capacity + change)


def percent_change(capacity: int, percent: float) -> int:
    """Tasks to add for a PercentChangeInCapacity: (0, 1) -> 1, (-1, 0) -> -1, otherwise truncated toward zero."""
    delta = capacity * percent / 100
    if 0 < delta < 1:
        return 1
    if -1 < delta < 0:
        return -1
    return math.trunc(delta)


def _adjustment_text(p: StepPolicy, adjustment: int) -> str:
    if p.adjustment_type == "ExactCapacity":
        return f"exactly {adjustment}"
    if p.adjustment_type == "ChangeInCapacity":
        return f"{adjustment:+d}"
    magnitude = f", at least {p.min_adjustment_magnitude}" if p.min_adjustment_magnitude else ""
    return f"{adjustment:+d}%{magnitude}"


# ============================================================================================== scheduled


def _current_bounds(config: ScalingConfig, state: ScalingState) -> Bounds | None:
    """The scheduled override, unless the manifest's min/max changed since it was set."""
    b = state.bounds
    if b is None or b.config != (config.min_capacity, config.max_capacity):
        return None
    return b


def _fire_actions(
    config: ScalingConfig, state: ScalingState, now: float
) -> tuple[Bounds | None, list[tuple[ScheduledAction, Bounds]]]:
    """Bounds after the actions due since the last evaluation, applied in fire order; and what each set."""
    bounds = _current_bounds(config, state)
    last = state.last_evaluation
    if last is None or now <= last:
        return bounds, []
    due = []
    for order, action in enumerate(config.scheduled):
        fire = action.last_fire(last, now)
        if fire is not None:
            due.append((fire, order, action))
    fired = []
    for fire, _, action in sorted(due, key=lambda d: (d[0], d[1])):
        bounds = _apply_action(config, bounds, action, fire)
        fired.append((action, bounds))
    return bounds, fired


def _apply_action(
    config: ScalingConfig, bounds: Bounds | None, action: ScheduledAction, fire: float
) -> Bounds:
    low = bounds.min_capacity if bounds else config.min_capacity
    high = bounds.max_capacity if bounds else config.max_capacity
    low = low if action.min_capacity is None else action.min_capacity
    high = high if action.max_capacity is None else action.max_capacity
    if low > high:  # the bound the action set wins over the one it kept
        if action.max_capacity is None:
            high = low
        else:
            low = high
    return Bounds(low, high, action.name, fire, (config.min_capacity, config.max_capacity))


# ============================================================================================== decide


def decide(
    config: ScalingConfig,
    state: ScalingState,
    current_desired: int,
    metrics: Mapping[str, Samples],
    now: float,
    placeable: int | None = None,
) -> tuple[Decision, ScalingState]:
    """The new desiredCount for one service and the state to persist for the next evaluation.

    `metrics` maps a Metric.key to (epoch, value) samples of the service (percent for CPU and memory);
    `placeable` is the most tasks the cluster can run for the service, which caps growth (never shrinks).
    """
    bounds, fired = _fire_actions(config, state, now)
    ctx = _Context(config, state, max(0, current_desired), metrics, now)
    proposals: list[Proposal] = []
    histories: dict[str, tuple[tuple[float, int], ...]] = {}
    for p in config.target_tracking:
        proposal, histories[p.name] = _target_tracking(p, ctx)
        proposals.append(proposal)
    proposals.extend(_step_policy(p, ctx) for p in config.step_scaling)
    decision = _combine(config, ctx, proposals, bounds, fired, placeable)
    return decision, _next_state(config, state, decision, bounds, histories)


def _winner(proposals: Iterable[Proposal]) -> Proposal | None:
    """The proposal with the largest capacity (the first such in policy order)."""
    best: Proposal | None = None
    for p in proposals:
        if p.capacity is not None and (best is None or p.capacity > (best.capacity or 0)):
            best = p
    return best


def _combine(
    config: ScalingConfig,
    ctx: _Context,
    proposals: list[Proposal],
    bounds: Bounds | None,
    fired: list[tuple[ScheduledAction, Bounds]],
    placeable: int | None,
) -> Decision:
    current = ctx.current
    low = bounds.min_capacity if bounds else config.min_capacity
    high = bounds.max_capacity if bounds else config.max_capacity
    winner = _winner(proposals)
    wanted = current if winner is None else winner.capacity
    assert wanted is not None
    bounded = min(max(wanted, low), high)
    final = bounded
    notes = []
    if bounded != wanted:
        notes.append(_clamp_note(winner if wanted != current else None, wanted, bounded, low, bounds))
    if placeable is not None and bounded > current and bounded > placeable:
        final = max(current, placeable)
        notes.append(f"only {placeable} placeable: {bounded} capped at {final}")
    direction = OUT if final > current else IN if final < current else NONE
    policy, reason = _reason(ctx, proposals, winner, wanted, bounded, final, low, high, bounds, fired)
    return Decision(
        time=ctx.now,
        desired=final,
        previous=current,
        direction=direction,
        policy=policy,
        reason=reason,
        metrics={p.policy: p.value for p in proposals if p.value is not None},
        clamped="; ".join(notes) or None,
        proposals=tuple(proposals),
        fired=tuple(action.name for action, _ in fired),
        min_capacity=low,
        max_capacity=high,
    )


def _clamp_note(winner: Proposal | None, wanted: int, bounded: int, low: int, bounds: Bounds | None) -> str:
    which = (
        f"raised to minCapacity {bounded}"
        if bounded == low and wanted < low
        else f"capped at maxCapacity {bounded}"
    )
    source = f" (set by scheduled action '{bounds.action}')" if bounds else ""
    start = (
        f"{winner.kind} {winner.policy} asked for {wanted}"
        if winner
        else f"capacity {wanted} is outside the bounds"
    )
    return f"{start}; {which}{source}"


def _reason(
    ctx: _Context,
    proposals: list[Proposal],
    winner: Proposal | None,
    wanted: int,
    bounded: int,
    final: int,
    low: int,
    high: int,
    bounds: Bounds | None,
    fired: list[tuple[ScheduledAction, Bounds]],
) -> tuple[str | None, str]:
    """(policy, reason): the policy or scheduled action that explains the change, and a sentence."""
    current = ctx.current
    moved = (final > current) - (final < current)
    if moved and winner is not None and (wanted > current) - (wanted < current) == moved:
        return winner.policy, f"{winner.summary}: {current} -> {final} ({winner.kind} {winner.policy})"
    if moved:
        return _bounds_reason(current, final, bounded, low, high, bounds, fired)
    fired_text = "".join(
        f"; scheduled action '{a.name}' set min/max to {b.min_capacity}/{b.max_capacity}" for a, b in fired
    )
    explained = "; ".join(f"{p.kind} {p.policy}: {p.note}" for p in proposals) or "no scaling policies"
    return None, f"no change at {current}: {explained}{fired_text}"


def _bounds_reason(
    current: int,
    final: int,
    bounded: int,
    low: int,
    high: int,
    bounds: Bounds | None,
    fired: list[tuple[ScheduledAction, Bounds]],
) -> tuple[str | None, str]:
    raised = bounded == low and final > current
    name = "minCapacity" if raised else "maxCapacity"
    limit = low if raised else high
    if bounds is not None and any(a.name == bounds.action for a, _ in fired):
        verb = "raised" if raised else "lowered"
        return (
            bounds.action,
            f"scheduled action '{bounds.action}' {verb} {name} to {limit}: {current} -> {final}",
        )
    relation = "below" if raised else "above"
    source = f" (set by scheduled action '{bounds.action}')" if bounds else ""
    return (
        bounds.action if bounds else None
    ), f"capacity {current} {relation} {name} {limit}{source}: {current} -> {final}"


def _next_state(
    config: ScalingConfig,
    state: ScalingState,
    decision: Decision,
    bounds: Bounds | None,
    histories: Mapping[str, tuple[tuple[float, int], ...]],
) -> ScalingState:
    now, previous = decision.time, decision.previous
    last_out, base = state.last_scale_out, state.scale_out_base
    if decision.direction == OUT:
        chained = last_out is not None and base is not None and now - last_out < config.scale_out_chain
        base = base if chained else previous
        last_out = now
    names = config.policy_names
    return replace(
        state,
        last_evaluation=now if state.last_evaluation is None else max(now, state.last_evaluation),
        last_scale_out=last_out,
        scale_out_base=base,
        last_scale_in=now if decision.direction == IN else state.last_scale_in,
        policies=_marks(config, state, decision, names),
        bounds=bounds,
        recommendations={name: h for name, h in histories.items() if h},
        decisions=(*state.decisions, decision)[-DECISION_HISTORY:]
        if decision.noteworthy
        else state.decisions,
    )


def _marks(
    config: ScalingConfig, state: ScalingState, decision: Decision, names: frozenset[str]
) -> dict[str, PolicyMark]:
    """Per-policy cooldown marks: every policy that proposed a change in the direction taken acted now."""
    marks = {name: mark for name, mark in state.policies.items() if name in names}
    if decision.direction == NONE:
        return marks
    now, previous = decision.time, decision.previous
    for p in decision.proposals:
        if (
            p.capacity is None
            or (p.capacity > previous) != (decision.direction == OUT)
            or p.capacity == previous
        ):
            continue
        old = marks.get(p.policy)
        chained = (
            decision.direction == OUT
            and old is not None
            and old.direction == OUT
            and now - old.time < config.cooldown_of(p.policy)
        )
        marks[p.policy] = PolicyMark(now, decision.direction, old.base if chained and old else previous)
    return marks
