"""Scaling decisions on a simulated clock: target tracking, step scaling, scheduled actions, state.

Tables for the arithmetic (proportional scale-out, tolerance, step bounds, percent rounding), simulated
evaluation sequences for cooldowns, stabilization, schedules across DST changes and restarts (the state
round-trips through JSON), and properties (bounds always hold, the state always round-trips).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.scaling import policy as P
from reconciler.scaling import schedule as S

CPU, MEMORY = P.CPU, P.MEMORY
UTC = dt.UTC
T0 = dt.datetime(2025, 6, 2, 12, 0, tzinfo=UTC).timestamp()  # a Monday


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


def tt(name="cpu-50", metric=CPU, target=50, **extra):
    block = {"policyName": name, "targetValue": target, **extra}
    block["customizedMetric" if isinstance(metric, dict) else "predefinedMetric"] = metric
    return block


def step_policy(
    name="cpu-high", *, threshold=70, comparison="GreaterThanOrEqualToThreshold", steps=None, **extra
):
    return {
        "policyName": name,
        "metric": extra.pop("metric", CPU),
        "comparisonOperator": comparison,
        "threshold": threshold,
        "adjustmentType": extra.pop("adjustmentType", "ChangeInCapacity"),
        "stepAdjustments": steps or [{"metricIntervalLowerBound": 0, "scalingAdjustment": 2}],
        **extra,
    }


def config(*, low=1, high=10, targets=(), steps=(), scheduled=(), **kw) -> P.ScalingConfig:
    block = {"minCapacity": low, "maxCapacity": high}
    if targets:
        block["targetTracking"] = list(targets)
    if steps:
        block["stepScaling"] = list(steps)
    if scheduled:
        block["scheduled"] = list(scheduled)
    block.update(kw.pop("block", {}))
    return P.ScalingConfig.from_manifest(block, **kw)


def once(cfg, current, values, now=T0, state=None, placeable=None):
    """One decision with one sample per metric key, a second before `now`."""
    metrics = {key: [(now - 1, value)] for key, value in values.items()}
    return P.decide(cfg, state or P.ScalingState(), current, metrics, now, placeable)


class Sim:
    """Evaluations on a simulated clock; `persist` round-trips the state through JSON every time."""

    def __init__(self, cfg, desired, now=T0, persist=False):
        self.cfg, self.desired, self.now, self.persist = cfg, desired, now, persist
        self.state = P.ScalingState()
        self.decisions: list[P.Decision] = []

    def run(self, values=None, *, dt_=15.0, at=None, placeable=None, samples=None) -> P.Decision:
        self.now = at if at is not None else self.now + dt_
        metrics = (
            samples if samples is not None else {k: [(self.now - 1, v)] for k, v in (values or {}).items()}
        )
        decision, state = P.decide(self.cfg, self.state, self.desired, metrics, self.now, placeable)
        if self.persist:
            state = P.ScalingState.from_dict(json.loads(json.dumps(state.to_dict())))
        self.state, self.desired = state, decision.desired
        self.decisions.append(decision)
        return decision


# ============================================================================================== config


def test_from_manifest_reads_every_field_with_defaults():
    cfg = config(
        targets=[
            tt("cpu", scaleOutCooldown="1m", scaleInCooldown=120, disableScaleIn=True),
            tt(
                "queue",
                {"url": "http://q:9100/metrics", "metricName": "queue_depth", "statistic": "Maximum"},
                10,
            ),
        ],
        steps=[
            step_policy(
                "mem",
                metric=MEMORY,
                statistic="Maximum",
                evaluationPeriods=3,
                datapointsToAlarm=2,
                period="30s",
                adjustmentType="PercentChangeInCapacity",
                minAdjustmentMagnitude=2,
                cooldown="90s",
                steps=[
                    {"metricIntervalLowerBound": 0, "metricIntervalUpperBound": 10, "scalingAdjustment": 10},
                    {"metricIntervalLowerBound": 10, "scalingAdjustment": 50},
                ],
            )
        ],
        scheduled=[
            {
                "name": "nightly",
                "schedule": "cron(0 22 * * ? *)",
                "timezone": "Europe/Berlin",
                "startTime": "2025-01-01T00:00:00+01:00",
                "endTime": dt.datetime(2026, 1, 1),
                "maxCapacity": 2,
            },
            {
                "name": "once",
                "schedule": "at(2025-07-01T08:00:00)",
                "minCapacity": 4,
                "startTime": dt.date(2025, 1, 1),
            },
        ],
        block={"evaluationPeriod": "30s"},
    )
    cpu, queue = cfg.target_tracking
    assert (cpu.scale_out_cooldown, cpu.scale_in_cooldown, cpu.disable_scale_in, cpu.tolerance) == (
        60,
        120,
        True,
        0.1,
    )
    assert queue.scale_out_cooldown == queue.scale_in_cooldown == 300
    assert queue.metric.key == "http://q:9100/metrics#queue_depth" and queue.metric.statistic == "Maximum"
    (mem,) = cfg.step_scaling
    assert (mem.statistic, mem.evaluation_periods, mem.datapoints_to_alarm, mem.period, mem.cooldown) == (
        "Maximum",
        3,
        2,
        30,
        90,
    )
    assert mem.steps == (P.StepAdjustment(0, 10, 10), P.StepAdjustment(10, None, 50))
    assert mem.min_adjustment_magnitude == 2
    nightly, at = cfg.scheduled
    assert nightly.start == utc(2024, 12, 31, 23) and nightly.end == utc(2026, 1, 1)
    assert (nightly.min_capacity, nightly.max_capacity, nightly.timezone) == (None, 2, "Europe/Berlin")
    assert at.start == utc(2025, 1, 1) and at.timezone == "UTC"
    assert cfg.window == 30 and cfg.scale_in_stabilization == 300
    assert [m.key for m in cfg.metrics()] == [CPU, "http://q:9100/metrics#queue_depth", MEMORY]
    assert cfg.history_seconds == 90


def test_step_defaults_and_unnamed_policies():
    cfg = config(targets=[{"predefinedMetric": CPU, "targetValue": 60}], steps=[step_policy(policyName=None)])
    assert cfg.target_tracking[0].name == "targetTracking[0]"
    s = cfg.step_scaling[0]
    assert s.name == "stepScaling[0]"
    assert (s.statistic, s.evaluation_periods, s.datapoints_to_alarm, s.period, s.cooldown) == (
        "Average",
        1,
        1,
        60,
        300,
    )
    assert cfg.window == 60


@pytest.mark.parametrize(
    "block, fragment",
    [
        ({"minCapacity": 5, "maxCapacity": 2}, "not a valid range"),
        (
            {"minCapacity": 1, "maxCapacity": 2, "scheduled": [{"name": "x", "schedule": "cron(0 9 * * *)"}]},
            "fields",
        ),
        (
            {
                "minCapacity": 1,
                "maxCapacity": 2,
                "scheduled": [
                    {"name": "x", "schedule": "0 9 * * *", "minCapacity": 1, "timezone": "Mars/Base"}
                ],
            },
            "time zone",
        ),
        (
            {
                "minCapacity": 1,
                "maxCapacity": 2,
                "targetTracking": [{"predefinedMetric": "Nope", "targetValue": 1}],
            },
            "predefined",
        ),
    ],
)
def test_from_manifest_rejects_what_validation_rejects(block, fragment):
    with pytest.raises(ValueError, match=fragment):
        P.ScalingConfig.from_manifest(block)


# ============================================================================================== target tracking


@pytest.mark.parametrize(
    "current, value, target, expected",
    [
        (2, 85.0, 50, 4),  # ceil(3.4)
        (4, 100.0, 50, 8),
        (3, 60.0, 50, 4),  # ceil(3.6)
        (10, 56.0, 50, 10),  # ceil(11.2) = 12, clamped to maxCapacity 10
        (5, 56.0, 50, 6),  # 5.6 -> 6: just outside the 10 % tolerance
        (5, 55.0, 50, 5),  # exactly 10 % above: within tolerance
        (5, 45.0, 50, 5),  # exactly 10 % below: within tolerance
        (5, 54.9, 50, 5),
        (1, 200.0, 50, 4),
        (6, 25.0, 50, 3),  # scale-in on a first evaluation: nothing to stabilize against
        (6, 0.0, 50, 1),  # 0 proposed, raised to minCapacity 1
    ],
)
def test_proportional_target_tracking(current, value, target, expected):
    cfg = config(targets=[tt(target=target)])
    decision, _ = once(cfg, current, {CPU: value})
    assert decision.desired == expected
    assert decision.direction == ("out" if expected > current else "in" if expected < current else "none")


def test_reason_names_metric_target_counts_and_policy():
    decision, _ = once(config(targets=[tt()]), 2, {CPU: 85.0})
    assert decision.reason == "CPU 85.0% > target 50.0%: 2 -> 4 (target tracking cpu-50)"
    assert (decision.policy, decision.previous, decision.metrics, decision.clamped) == (
        "cpu-50",
        2,
        {"cpu-50": 85.0},
        None,
    )
    json.dumps(decision.to_dict())
    assert P.Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


def test_within_tolerance_explains_no_change():
    decision, _ = once(config(targets=[tt()]), 4, {CPU: 52.0})
    assert (decision.direction, decision.desired, decision.policy) == ("none", 4, None)
    assert "within 10% of target 50.0%" in decision.reason


def test_tolerance_is_configurable():
    decision, _ = once(config(targets=[tt()], tolerance=0.0), 4, {CPU: 52.0})
    assert decision.desired == 5  # ceil(4.16)


def test_metric_is_averaged_over_the_evaluation_period():
    cfg = config(targets=[tt()])
    samples = {CPU: [(T0 - 90, 1000.0), (T0 - 50, 60.0), (T0 - 30, 100.0), (T0 - 5, 140.0), (T0 + 5, 1000.0)]}
    decision, _ = P.decide(cfg, P.ScalingState(), 2, samples, T0)
    assert decision.metrics == {"cpu-50": 100.0}  # (60 + 100 + 140) / 3; too old and future samples ignored
    assert decision.desired == 4


def test_window_follows_evaluation_period():
    cfg = config(targets=[tt()], block={"evaluationPeriod": "2m"})
    decision, _ = P.decide(cfg, P.ScalingState(), 2, {CPU: [(T0 - 90, 100.0)]}, T0)
    assert decision.desired == 4


def test_policy_without_samples_makes_no_proposal_and_says_so():
    cfg = config(targets=[tt(), tt("mem-60", MEMORY, 60)])
    decision, _ = P.decide(cfg, P.ScalingState(), 3, {CPU: [(T0 - 120, 99.0)], MEMORY: [(T0 - 10, 90.0)]}, T0)
    cpu, mem = decision.proposals
    assert cpu.capacity is None and "no samples of CPU in the last 60 s" in cpu.note
    assert mem.capacity == 5 and decision.desired == 5 and decision.policy == "mem-60"
    decision, _ = P.decide(cfg, P.ScalingState(), 3, {}, T0)
    assert (decision.direction, decision.desired) == ("none", 3)
    assert "no samples of CPU" in decision.reason and "no samples of memory" in decision.reason


def test_custom_metric_scales_from_zero_with_one_task_as_base():
    queue = {"url": "http://q/metrics", "metricName": "queue_depth"}
    cfg = config(low=0, targets=[tt("queue", queue, 10)])
    decision, _ = once(cfg, 0, {"http://q/metrics#queue_depth": 30.0})
    assert decision.desired == 3
    assert decision.reason == "queue_depth 30 > target 10: 0 -> 3 (target tracking queue)"
    decision, _ = once(cfg, 0, {"http://q/metrics#queue_depth": 0.0})
    assert decision.desired == 0


def test_disable_scale_in_never_proposes_fewer_but_scales_out():
    cfg = config(targets=[tt(disableScaleIn=True)])
    decision, _ = once(cfg, 6, {CPU: 5.0})
    assert (decision.desired, decision.direction) == (6, "none")
    assert "scale-in is disabled" in decision.proposals[0].note
    decision, _ = once(cfg, 2, {CPU: 100.0})
    assert decision.desired == 4


def test_scale_out_cooldown_counts_capacity_already_added():
    sim = Sim(config(targets=[tt()], high=20), 2)
    assert sim.run({CPU: 85.0}).desired == 4  # 2 -> 4 starts the cooldown
    held = sim.run({CPU: 85.0})  # the metric still shows the 2 old tasks: ceil(2 * 1.7) = 4, already there
    assert (held.desired, held.direction) == (4, "none")
    assert "within the scale-out cooldown" in held.proposals[0].note
    more = sim.run({CPU: 150.0})  # asks for more than was added: ceil(2 * 3) = 6
    assert (more.desired, more.direction) == (6, "out")
    assert sim.state.scale_out_base == 2  # the chain still counts from 2
    assert sim.run({CPU: 150.0}).desired == 6  # ceil(2 * 3) = 6 again: held
    after = sim.run({CPU: 85.0}, at=sim.now + 300)  # cooldown over: proportional on 6 again
    assert after.desired == 11 and sim.state.scale_out_base == 6


def test_scale_out_cooldown_is_configurable():
    sim = Sim(config(targets=[tt(scaleOutCooldown=0)], high=50), 2)
    assert [sim.run({CPU: 100.0}).desired for _ in range(3)] == [4, 8, 16]  # no cooldown: compounding


def test_scale_in_waits_for_cooldown_after_scale_out_and_after_scale_in():
    cfg = config(targets=[tt(scaleInCooldown="2m")], scale_in_stabilization=0)
    sim = Sim(cfg, 2)
    assert sim.run({CPU: 100.0}).desired == 4
    held = sim.run({CPU: 20.0}, dt_=60)
    assert held.desired == 4 and "scale-in cooldown, 60 s left" in held.proposals[0].note
    assert sim.run({CPU: 20.0}, dt_=61).desired == 2  # 121 s after the scale-out
    assert sim.run({CPU: 10.0}, dt_=60).desired == 2  # 60 s after the scale-in: waits
    assert sim.run({CPU: 10.0}, dt_=61).desired == 1


def test_scale_in_stabilization_takes_the_highest_recent_recommendation():
    cfg = config(targets=[tt(scaleInCooldown=0, scaleOutCooldown=0)])
    sim = Sim(cfg, 10)
    assert sim.run({CPU: 50.0}, at=T0).desired == 10  # recommendation 10
    assert sim.run({CPU: 35.0}, at=T0 + 60).desired == 10  # wants 7: 10 is still in the window
    held = sim.run({CPU: 20.0}, at=T0 + 120)  # wants 4
    assert held.desired == 10 and "highest recommendation in the last 300 s is 10" in held.proposals[0].note
    assert sim.run({CPU: 20.0}, at=T0 + 299).desired == 10
    down = sim.run({CPU: 20.0}, at=T0 + 301)  # the 10 left the window; 7 (T0+60) is the highest now
    assert (down.desired, down.direction) == (7, "in")


def test_stabilization_holds_through_a_brief_spike_so_it_does_not_flap():
    cfg = config(targets=[tt(scaleInCooldown=0)])
    sim = Sim(cfg, 8)
    desired = []
    for k in range(40):  # 10 minutes of 15 s evaluations: low load with a short in-tolerance bump every 4 min
        value = 52.0 if k in (0, 16, 32) else 20.0
        desired.append(sim.run({CPU: value}, at=T0 + 15 * k).desired)
    assert desired == [8] * 40  # every window holds a recommendation of 8: no scale-in, no flapping
    assert sim.run({CPU: 20.0}, at=T0 + 15 * 32 + 301).desired == 4


def test_stabilization_window_is_configurable():
    sim = Sim(config(targets=[tt(scaleInCooldown=0)], scale_in_stabilization=60), 10)
    sim.run({CPU: 50.0}, at=T0)
    assert sim.run({CPU: 20.0}, at=T0 + 30).desired == 10
    assert sim.run({CPU: 20.0}, at=T0 + 61).desired == 4


def test_recommendation_history_stays_small():
    sim = Sim(config(targets=[tt(scaleInCooldown=0)]), 5)
    for k in range(200):
        sim.run({CPU: 30.0 + (k % 7)}, dt_=15)
    assert len(sim.state.recommendations["cpu-50"]) <= 21


# ============================================================================================== step scaling

UP_STEPS = [
    {"metricIntervalLowerBound": 0, "metricIntervalUpperBound": 10, "scalingAdjustment": 1},
    {"metricIntervalLowerBound": 10, "metricIntervalUpperBound": 20, "scalingAdjustment": 2},
    {"metricIntervalLowerBound": 20, "scalingAdjustment": 3},
]
DOWN_STEPS = [
    {"metricIntervalLowerBound": -10, "metricIntervalUpperBound": 0, "scalingAdjustment": -1},
    {"metricIntervalLowerBound": -20, "metricIntervalUpperBound": -10, "scalingAdjustment": -2},
    {"metricIntervalUpperBound": -20, "scalingAdjustment": -3},
]


@pytest.mark.parametrize(
    "value, expected",
    [(69.9, 5), (70.0, 6), (79.9, 6), (80.0, 7), (89.9, 7), (90.0, 8), (250.0, 8)],
)
def test_step_bounds_above_threshold_lower_inclusive(value, expected):
    cfg = config(high=20, steps=[step_policy(threshold=70, steps=UP_STEPS)])
    assert once(cfg, 5, {CPU: value})[0].desired == expected


@pytest.mark.parametrize(
    "value, comparison, expected",
    [
        (30.0, "LessThanOrEqualToThreshold", 9),  # offset 0 with a <= alarm: (-10, 0]
        (30.0, "LessThanThreshold", 10),  # not breaching
        (25.0, "LessThanThreshold", 9),
        (20.0, "LessThanThreshold", 8),  # offset -10: (-20, -10], upper inclusive below the threshold
        (10.1, "LessThanThreshold", 8),
        (10.0, "LessThanThreshold", 7),  # offset -20: (-inf, -20]
        (0.0, "LessThanThreshold", 7),
    ],
)
def test_step_bounds_below_threshold_upper_inclusive(value, comparison, expected):
    cfg = config(steps=[step_policy(threshold=30, comparison=comparison, steps=DOWN_STEPS)])
    assert once(cfg, 10, {CPU: value})[0].desired == expected


def test_step_alarm_needs_datapoints_to_alarm_of_evaluation_periods():
    cfg = config(steps=[step_policy(evaluationPeriods=3, datapointsToAlarm=2, period="1m", steps=UP_STEPS)])

    def decide(values):  # one sample per period, newest first
        samples = {CPU: [(T0 - 60 * k - 10, v) for k, v in enumerate(values)]}
        return P.decide(cfg, P.ScalingState(), 4, samples, T0)[0]

    fired = decide([85.0, 60.0, 95.0])
    assert fired.desired == 6 and "in 2 of 3 periods" in fired.reason  # newest breaching datapoint: 85 -> +2
    assert fired.metrics == {"cpu-high": 85.0}
    ok = decide([60.0, 85.0, 60.0])
    assert ok.desired == 4 and "alarm OK" in ok.proposals[0].note
    assert decide([95.0, 95.0]).desired == 7  # the third period has no samples; 2 of 3 still breach
    sparse = decide([95.0])
    assert sparse.desired == 4 and "insufficient data: 1 of 3 periods" in sparse.proposals[0].note


@pytest.mark.parametrize("stat, expected", [("Average", 5), ("Maximum", 7), ("Minimum", 4)])
def test_step_statistic_per_period(stat, expected):
    cfg = config(steps=[step_policy(statistic=stat, steps=UP_STEPS)])
    samples = {CPU: [(T0 - 50, 60.0), (T0 - 30, 72.0), (T0 - 10, 95.0)]}  # average 75.67
    assert P.decide(cfg, P.ScalingState(), 4, samples, T0)[0].desired == expected


@pytest.mark.parametrize(
    "capacity, percent, expected",
    [
        (4, 25, 1),
        (3, 10, 1),  # 0.3 -> 1
        (10, -5, -1),  # -0.5 -> -1
        (10, 150, 15),
        (7, 50, 3),  # 3.5 truncated
        (7, -50, -3),  # -3.5 truncated toward zero
        (3, -100, -3),
        (0, 50, 0),
        (1, 100, 1),
    ],
)
def test_percent_change_rounding(capacity, percent, expected):
    assert P.percent_change(capacity, percent) == expected


@pytest.mark.parametrize(
    "kind, adjustment, capacity, magnitude, expected",
    [
        ("PercentChangeInCapacity", 25, 4, 2, 6),  # §7.2: 25 % of 4 = 1, raised to 2
        ("PercentChangeInCapacity", 25, 4, None, 5),
        ("PercentChangeInCapacity", -10, 10, 3, 7),
        ("PercentChangeInCapacity", 50, 10, 2, 15),  # already above the magnitude
        ("PercentChangeInCapacity", -50, 1, None, 0),
        ("ChangeInCapacity", -3, 2, None, 0),  # never negative
        ("ChangeInCapacity", 2, 2, None, 4),
        ("ExactCapacity", 5, 2, None, 5),
        ("ExactCapacity", 1, 9, None, 1),
    ],
)
def test_apply_adjustment(kind, adjustment, capacity, magnitude, expected):
    assert P.apply_adjustment(kind, adjustment, capacity, magnitude) == expected


def test_percent_step_with_min_adjustment_magnitude_in_a_decision():
    steps = [{"metricIntervalLowerBound": 0, "scalingAdjustment": 25}]
    cfg = config(
        steps=[step_policy(adjustmentType="PercentChangeInCapacity", minAdjustmentMagnitude=2, steps=steps)]
    )
    decision, _ = once(cfg, 4, {CPU: 80.0})
    assert decision.desired == 6
    assert "+25%, at least 2" in decision.reason


def test_exact_capacity_step():
    steps = [{"metricIntervalLowerBound": 0, "scalingAdjustment": 8}]
    cfg = config(steps=[step_policy(adjustmentType="ExactCapacity", steps=steps)])
    decision, _ = once(cfg, 3, {CPU: 99.0})
    assert decision.desired == 8 and "exactly 8" in decision.reason


def test_step_cooldown_counts_added_capacity_and_holds_scale_in():
    cfg = config(high=20, steps=[step_policy(threshold=70, steps=UP_STEPS, cooldown="5m")])
    sim = Sim(cfg, 4)
    assert sim.run({CPU: 85.0}).desired == 6  # +2
    held = sim.run({CPU: 85.0}, dt_=60)  # counted from 4: 4 + 2 = 6, already there
    assert held.desired == 6 and "already cover it" in held.proposals[0].note
    assert sim.run({CPU: 95.0}, dt_=60).desired == 7  # the +3 step counts from 4: 7
    assert sim.run({CPU: 95.0}, dt_=60).desired == 7
    assert sim.run({CPU: 95.0}, dt_=301).desired == 10  # cooldown over: 7 + 3

    down = config(
        steps=[step_policy("cpu-low", threshold=30, comparison="LessThanThreshold", steps=DOWN_STEPS)]
    )
    sim = Sim(down, 8)
    assert sim.run({CPU: 25.0}).desired == 7
    held = sim.run({CPU: 25.0}, dt_=60)
    assert held.desired == 7 and "cooldown, 240 s left" in held.proposals[0].note
    assert sim.run({CPU: 25.0}, dt_=241).desired == 6


def test_step_in_alarm_without_a_matching_step():
    steps = [{"metricIntervalUpperBound": 0, "scalingAdjustment": -1}]
    cfg = config(
        steps=[step_policy(threshold=50, steps=steps)]
    )  # a >= alarm with only a below-threshold step
    decision, _ = once(cfg, 4, {CPU: 60.0})
    assert decision.desired == 4 and "no step matches the offset +10" in decision.reason


# ============================================================================================== combining


def test_largest_proposal_wins_for_scale_out():
    cfg = config(
        high=20,
        targets=[tt(), tt("mem-60", MEMORY, 60)],
        steps=[step_policy(steps=[{"metricIntervalLowerBound": 0, "scalingAdjustment": 6}])],
    )
    decision, _ = once(cfg, 4, {CPU: 75.0, MEMORY: 30.0})  # cpu 6, memory 2, step 10
    assert [p.capacity for p in decision.proposals] == [6, 2, 10]
    assert (decision.desired, decision.policy) == (10, "cpu-high")
    assert decision.reason.endswith("4 -> 10 (step scaling cpu-high)")
    assert decision.metrics == {"cpu-50": 75.0, "mem-60": 30.0, "cpu-high": 75.0}


def test_largest_proposal_wins_for_scale_in_too():
    cfg = config(targets=[tt(), tt("mem-60", MEMORY, 60)])
    assert once(cfg, 10, {CPU: 10.0, MEMORY: 18.0})[0].desired == 3  # cpu 2, memory 3
    blocked = once(cfg, 10, {CPU: 10.0, MEMORY: 60.0})[0]  # memory at target holds 10
    assert (blocked.desired, blocked.direction) == (10, "none")


def test_clamped_to_max_is_reported():
    decision, _ = once(config(targets=[tt()]), 5, {CPU: 140.0})
    assert (decision.desired, decision.direction) == (10, "out")
    assert decision.clamped == "target tracking cpu-50 asked for 14; capped at maxCapacity 10"
    assert decision.reason == "CPU 140.0% > target 50.0%: 5 -> 10 (target tracking cpu-50)"


def test_clamped_to_min_is_reported():
    decision, _ = once(config(low=2, targets=[tt()]), 5, {CPU: 5.0})
    assert decision.desired == 2
    assert decision.clamped == "target tracking cpu-50 asked for 1; raised to minCapacity 2"


def test_placeable_caps_growth_and_is_reported():
    cfg = config(targets=[tt()])
    decision, _ = once(cfg, 4, {CPU: 100.0}, placeable=6)
    assert (decision.desired, decision.direction) == (6, "out")
    assert decision.clamped == "only 6 placeable: 8 capped at 6"
    full, state = once(cfg, 6, {CPU: 80.0}, placeable=6)
    assert (full.desired, full.direction, full.clamped) == (6, "none", "only 6 placeable: 10 capped at 6")
    both, _ = once(cfg, 6, {CPU: 100.0}, placeable=6)
    assert (
        both.clamped
        == "target tracking cpu-50 asked for 12; capped at maxCapacity 10; only 6 placeable: 10 capped at 6"
    )
    assert state.decisions == (full,)  # a clamp is noteworthy even without a change


def test_placeable_never_shrinks_a_service():
    cfg = config(targets=[tt()])
    decision, _ = once(cfg, 8, {CPU: 50.0}, placeable=5)
    assert (decision.desired, decision.clamped) == (8, None)
    decision, _ = once(cfg, 8, {CPU: 100.0}, placeable=5)
    assert (decision.desired, decision.direction) == (8, "none") and "only 5 placeable" in decision.clamped
    assert once(cfg, 8, {CPU: 10.0}, placeable=5)[0].desired == 2  # scale-in is the policies' call


def test_current_outside_bounds_is_clamped_even_without_policies():
    decision, _ = once(config(low=2, high=6), 9, {})
    assert (decision.desired, decision.direction, decision.policy) == (6, "in", None)
    assert decision.reason == "capacity 9 above maxCapacity 6: 9 -> 6"


# ============================================================================================== scheduled


def berlin_actions():
    return [
        {
            "name": "business-hours",
            "schedule": "cron(0 9 * * ? *)",
            "timezone": "Europe/Berlin",
            "minCapacity": 3,
        },
        {
            "name": "evening",
            "schedule": "0 18 * * *",
            "timezone": "Europe/Berlin",
            "minCapacity": 1,
            "maxCapacity": 4,
        },
    ]


def fires(sim: Sim, start: float, end: float, every: float = 900.0) -> list[tuple[str, str]]:
    out = []
    sim.run(at=start)
    t = start
    while t < end:
        t += every
        decision = sim.run(at=t)
        out.extend(
            (name, dt.datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")) for name in decision.fired
        )
    return out


def test_cron_in_berlin_keeps_local_time_across_spring_forward():
    sim = Sim(config(high=10, scheduled=berlin_actions()), 1)
    fired = fires(sim, utc(2025, 3, 28, 0), utc(2025, 4, 1, 0))
    assert fired == [
        ("business-hours", "03-28 08:00"),  # 09:00 CET
        ("evening", "03-28 17:00"),
        ("business-hours", "03-29 08:00"),
        ("evening", "03-29 17:00"),
        ("business-hours", "03-30 07:00"),  # 09:00 CEST: the day the clocks went forward
        ("evening", "03-30 16:00"),
        ("business-hours", "03-31 07:00"),
        ("evening", "03-31 16:00"),
    ]


def test_cron_in_berlin_across_fall_back_and_capacity_follows():
    sim = Sim(config(high=10, scheduled=berlin_actions()), 1)
    sim.run(at=utc(2025, 10, 25, 6, 0))
    assert sim.run(at=utc(2025, 10, 25, 6, 59)).desired == 1
    raised = sim.run(at=utc(2025, 10, 25, 7, 0))  # 09:00 CEST
    assert (raised.desired, raised.policy) == (3, "business-hours")
    assert raised.reason == "scheduled action 'business-hours' raised minCapacity to 3: 1 -> 3"
    assert sim.run(at=utc(2025, 10, 26, 6, 30)).fired == ("evening",)
    assert sim.run(at=utc(2025, 10, 26, 7, 0)).fired == ()  # 08:00 CET on the day the clocks went back
    again = sim.run(at=utc(2025, 10, 26, 8, 0))  # 09:00 CET
    assert again.fired == ("business-hours",)


def test_cron_in_new_york_across_both_dst_changes():
    action = {"name": "open", "schedule": "0 9 * * MON-FRI", "timezone": "America/New_York", "minCapacity": 2}
    spring = Sim(config(scheduled=[action]), 1)
    assert fires(spring, utc(2025, 3, 6, 0), utc(2025, 3, 12, 0)) == [
        ("open", "03-06 14:00"),  # Thursday, EST
        ("open", "03-07 14:00"),
        ("open", "03-10 13:00"),  # Monday after the switch on Sunday March 9: EDT
        ("open", "03-11 13:00"),
    ]
    fall = Sim(config(scheduled=[action]), 1)
    assert fires(fall, utc(2025, 10, 30, 0), utc(2025, 11, 5, 0)) == [
        ("open", "10-30 13:00"),
        ("open", "10-31 13:00"),
        ("open", "11-03 14:00"),  # EST from Sunday November 2
        ("open", "11-04 14:00"),
    ]


def test_at_fires_once():
    cfg = config(
        scheduled=[
            {
                "name": "launch",
                "schedule": "at(2025-06-02T14:00:00)",
                "timezone": "Europe/Berlin",
                "minCapacity": 5,
            }
        ]
    )
    sim = Sim(cfg, 2)
    sim.run(at=utc(2025, 6, 2, 11, 0))
    assert sim.run(at=utc(2025, 6, 2, 11, 59)).desired == 2
    launched = sim.run(at=utc(2025, 6, 2, 12, 0, 10))  # 14:00 CEST
    assert (launched.desired, launched.fired) == (5, ("launch",))
    assert launched.reason == "scheduled action 'launch' raised minCapacity to 5: 2 -> 5"
    assert sim.run(at=utc(2025, 6, 2, 12, 1)).fired == ()
    assert sim.state.bounds.min_capacity == 5 and sim.state.bounds.action == "launch"


def test_rate_anchored_at_start_time():
    action = {
        "name": "tick",
        "schedule": "rate(2 hours)",
        "startTime": "2025-06-02T00:30:00Z",
        "maxCapacity": 8,
    }
    sim = Sim(config(scheduled=[action]), 1)
    assert [t for _, t in fires(sim, utc(2025, 6, 1, 22), utc(2025, 6, 2, 7))] == [
        "06-02 00:30",
        "06-02 02:30",
        "06-02 04:30",
        "06-02 06:30",
    ]


def test_rate_without_start_time_is_anchored_at_the_epoch():
    sim = Sim(config(scheduled=[{"name": "tick", "schedule": "rate(90 minutes)", "minCapacity": 2}]), 1)
    assert [t for _, t in fires(sim, utc(2025, 6, 2, 0, 0), utc(2025, 6, 2, 4))] == [
        "06-02 01:30",
        "06-02 03:00",
    ]


def test_start_and_end_time_limit_a_recurring_action():
    action = {
        "name": "hourly",
        "schedule": "0 * * * *",
        "startTime": "2025-06-02T02:00:00Z",
        "endTime": "2025-06-02T04:00:00Z",
        "minCapacity": 2,
    }
    sim = Sim(config(scheduled=[action]), 1)
    assert [t for _, t in fires(sim, utc(2025, 6, 2, 0), utc(2025, 6, 2, 7))] == [
        "06-02 02:00",
        "06-02 03:00",
        "06-02 04:00",
    ]


def test_missed_evaluations_fire_each_due_action_once_in_order():
    cfg = config(scheduled=berlin_actions())
    sim = Sim(cfg, 1)
    sim.run(at=utc(2025, 6, 2, 5, 0))  # 07:00 CEST
    late = sim.run(at=utc(2025, 6, 3, 5, 0))  # a day later: 09:00 and 18:00 both passed
    assert late.fired == ("business-hours", "evening")
    assert (sim.state.bounds.min_capacity, sim.state.bounds.max_capacity, sim.state.bounds.action) == (
        1,
        4,
        "evening",
    )
    assert sim.run(at=utc(2025, 6, 3, 5, 15)).fired == ()


def test_first_evaluation_fires_nothing_from_the_past():
    sim = Sim(config(scheduled=berlin_actions()), 1)
    assert sim.run(at=utc(2025, 6, 2, 12, 0)).fired == ()
    assert sim.state.bounds is None


def test_scheduled_max_lowers_capacity_and_clamps_policies():
    night = {"name": "night", "schedule": "0 22 * * *", "maxCapacity": 2}
    sim = Sim(config(targets=[tt()], scheduled=[night]), 5)
    sim.run({CPU: 50.0}, at=utc(2025, 6, 2, 21, 59))
    lowered = sim.run({CPU: 50.0}, at=utc(2025, 6, 2, 22, 0))
    assert (lowered.desired, lowered.direction, lowered.policy) == (2, "in", "night")
    assert lowered.reason == "scheduled action 'night' lowered maxCapacity to 2: 5 -> 2"
    capped = sim.run({CPU: 100.0}, at=utc(2025, 6, 2, 22, 15))
    assert capped.desired == 2
    assert (
        capped.clamped
        == "target tracking cpu-50 asked for 4; capped at maxCapacity 2 (set by scheduled action 'night')"
    )


def test_scheduled_min_above_current_max_raises_max():
    action = {"name": "peak", "schedule": "0 9 * * *", "minCapacity": 15}
    sim = Sim(config(high=10, scheduled=[action]), 3)
    sim.run(at=utc(2025, 6, 2, 8, 0))
    assert sim.run(at=utc(2025, 6, 2, 9, 0)).desired == 15
    assert (sim.state.bounds.min_capacity, sim.state.bounds.max_capacity) == (15, 15)


def test_manifest_change_of_bounds_drops_the_scheduled_override():
    action = {"name": "peak", "schedule": "0 9 * * *", "minCapacity": 5}
    sim = Sim(config(scheduled=[action]), 1)
    sim.run(at=utc(2025, 6, 2, 8, 0))
    sim.run(at=utc(2025, 6, 2, 9, 0))
    assert sim.run(at=utc(2025, 6, 2, 9, 15)).min_capacity == 5
    sim.cfg = config(high=12, scheduled=[action])  # the manifest now says 1..12
    decision = sim.run(at=utc(2025, 6, 2, 9, 30))
    assert (decision.min_capacity, decision.max_capacity, decision.desired) == (1, 12, 5)


# ============================================================================================== state


def test_state_round_trips_through_json():
    cfg = config(targets=[tt()], steps=[step_policy()], scheduled=berlin_actions())
    sim = Sim(cfg, 2)
    sim.run({CPU: 90.0}, at=utc(2025, 6, 2, 6, 50))
    sim.run({CPU: 90.0}, at=utc(2025, 6, 2, 7, 5))
    sim.run({CPU: 20.0}, at=utc(2025, 6, 2, 7, 20))
    data = json.loads(json.dumps(sim.state.to_dict()))
    assert P.ScalingState.from_dict(data) == sim.state
    assert sim.state.bounds is not None and sim.state.policies and sim.state.recommendations


def test_from_dict_of_nothing_or_another_version_is_a_fresh_state():
    assert P.ScalingState.from_dict(None) == P.ScalingState()
    assert P.ScalingState.from_dict({"version": 99, "lastScaleOut": 5}) == P.ScalingState()


def test_restart_mid_cooldown_does_not_flap():
    cfg = config(targets=[tt()], steps=[step_policy(threshold=90, steps=UP_STEPS)])
    loads = [85.0, 85.0, 20.0, 20.0, 20.0, 95.0, 95.0] + [20.0] * 30 + [52.0] + [20.0] * 30
    plain, restarted = Sim(cfg, 2), Sim(cfg, 2, persist=True)
    for value in loads:
        plain.run({CPU: value}, dt_=15)
        restarted.run({CPU: value}, dt_=15)
    assert [d.desired for d in restarted.decisions] == [d.desired for d in plain.decisions]
    changes = [
        (k, d.previous, d.desired, d.policy) for k, d in enumerate(plain.decisions) if d.direction != "none"
    ]
    assert changes == [
        (0, 2, 4, "cpu-50"),  # the first high sample scales out
        (5, 4, 5, "cpu-high"),  # the step alarm; target tracking is in its scale-out cooldown
        (26, 5, 2, "cpu-50"),  # 300 s after the last recommendation of 10 (k = 6) and the last scale-out
        (57, 2, 1, "cpu-50"),  # 300 s after the in-tolerance bump at k = 37
    ]


def test_restart_from_persisted_state_respects_scale_in_cooldown():
    cfg = config(targets=[tt()])
    sim = Sim(cfg, 2)
    sim.run({CPU: 100.0}, at=T0)
    saved = json.dumps(sim.state.to_dict())
    revived = Sim(cfg, 4)
    revived.state = P.ScalingState.from_dict(json.loads(saved))
    assert revived.run({CPU: 10.0}, at=T0 + 200).desired == 4  # a fresh state would scale in to 1
    assert Sim(cfg, 4).run({CPU: 10.0}, at=T0 + 200).desired == 1


def test_decision_history_keeps_only_noteworthy_decisions_and_is_bounded():
    sim = Sim(config(targets=[tt(scaleOutCooldown=0)], high=100), 1)
    for _ in range(5):
        sim.run({CPU: 50.0})
    assert sim.state.decisions == ()
    for _ in range(30):
        sim.run({CPU: 60.0})
    assert len(sim.state.decisions) == P.DECISION_HISTORY
    assert sim.state.decisions[-1] == sim.decisions[-1]


def test_removed_policies_are_forgotten():
    sim = Sim(config(targets=[tt()], steps=[step_policy()]), 2)
    sim.run({CPU: 90.0})
    assert set(sim.state.policies) == {"cpu-50", "cpu-high"}
    sim.cfg = config(targets=[tt("other")])
    sim.run({CPU: 50.0})
    assert set(sim.state.policies) == set() and set(sim.state.recommendations) == {"other"}


# ============================================================================================== properties

values = st.floats(min_value=0, max_value=400, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    low=st.integers(0, 5),
    span=st.integers(0, 10),
    start=st.integers(0, 20),
    loads=st.lists(st.tuples(values, values, st.integers(1, 400)), min_size=1, max_size=25),
    placeable=st.none() | st.integers(0, 20),
)
def test_decisions_stay_in_bounds_and_state_round_trips(low, span, start, loads, placeable):
    cfg = config(
        low=low,
        high=low + span,
        targets=[tt(scaleOutCooldown=30), tt("mem", MEMORY, 70, disableScaleIn=True)],
        steps=[
            step_policy(threshold=80, steps=UP_STEPS),
            step_policy("low", threshold=20, comparison="LessThanThreshold", steps=DOWN_STEPS),
        ],
    )
    sim = Sim(cfg, start)
    for cpu, memory, gap in loads:
        before = sim.desired
        decision = sim.run({CPU: cpu, MEMORY: memory}, dt_=gap, placeable=placeable)
        if decision.desired > before:
            assert decision.desired <= cfg.max_capacity
            assert placeable is None or decision.desired <= max(before, placeable)
        if placeable is None or decision.desired <= before:
            assert cfg.min_capacity <= decision.desired <= cfg.max_capacity or decision.desired == before
        assert P.ScalingState.from_dict(json.loads(json.dumps(sim.state.to_dict()))) == sim.state


# ============================================================================================== schedule module


def instant(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_next_fire_keeps_wall_clock_time_in_the_zone():
    fires_ = []
    t = instant(2025, 3, 28)
    for _ in range(4):
        t = S.next_fire("cron(0 9 * * ? *)", "Europe/Berlin", t)
        fires_.append(t.strftime("%d %H:%M"))
    assert fires_ == ["28 08:00", "29 08:00", "30 07:00", "31 07:00"]


def test_times_in_a_dst_gap_and_overlap():
    # 02:30 does not exist on 2025-03-30 in Berlin: it fires when the clocks say 03:30 (01:30 UTC)
    assert S.next_fire("30 2 * * *", "Europe/Berlin", instant(2025, 3, 30)) == instant(2025, 3, 30, 1, 30)
    # 02:30 happens twice on 2025-10-26: it fires once, at the first (CEST) one
    first = S.next_fire("30 2 * * *", "Europe/Berlin", instant(2025, 10, 26))
    assert first == instant(2025, 10, 26, 0, 30)
    assert S.next_fire("30 2 * * *", "Europe/Berlin", first) == instant(2025, 10, 27, 1, 30)
    # a gap time and a later wall time can map to instants out of wall-clock order; fires are in time order
    assert S.next_fire("15,45 2,3 * * *", "Europe/Berlin", instant(2025, 3, 30, 1, 0)) == instant(
        2025, 3, 30, 1, 15
    )
    assert S.next_fire("15,45 2,3 * * *", "Europe/Berlin", instant(2025, 3, 30, 1, 15)) == instant(
        2025, 3, 30, 1, 45
    )


def test_fires_found_outside_the_wall_clock_interval():
    berlin = "Europe/Berlin"
    # (03:30, 03:50] CEST on the spring-forward day contains 02:45, which fires at 03:45 CEST
    assert S.last_fire(
        "45 2 * * *", berlin, instant(2025, 3, 30, 1, 30), instant(2025, 3, 30, 1, 50)
    ) == instant(2025, 3, 30, 1, 45)
    # (01:50 CEST, 02:10 CET] on the fall-back day contains the first 02:30 (CEST), after 02:10 on the wall
    assert S.last_fire(
        "30 2 * * *", berlin, instant(2025, 10, 25, 23, 50), instant(2025, 10, 26, 1, 10)
    ) == instant(2025, 10, 26, 0, 30)
    assert not S.fired_between("30 2 * * *", berlin, instant(2025, 10, 26, 0, 30), instant(2025, 10, 26, 2))


def test_every_minute_cron_over_a_day_and_a_short_interval():
    fires_ = S.last_fire("* * * * *", "America/New_York", instant(2025, 11, 1), instant(2025, 11, 3))
    assert fires_ == instant(2025, 11, 3)
    new_york = "America/New_York"
    assert S.fired_between("* * * * *", new_york, instant(2025, 11, 2, 4, 59, 30), instant(2025, 11, 2, 5))
    # 06:00Z is the second 01:00 of the fall-back: repeated wall times already fired in the first pass
    assert not S.fired_between(
        "* * * * *", new_york, instant(2025, 11, 2, 5, 59, 30), instant(2025, 11, 2, 6, 59)
    )
    assert S.fired_between("* * * * *", new_york, instant(2025, 11, 2, 6, 59), instant(2025, 11, 2, 7))
    assert not S.fired_between(
        "* * * * *", "UTC", instant(2025, 6, 2, 0, 0, 1), instant(2025, 6, 2, 0, 0, 59)
    )


@pytest.mark.parametrize(
    "expression, after, expected",
    [
        ("cron(0 10 ? * 6L 2026)", instant(2025, 3, 28), instant(2026, 1, 30, 10)),  # last Friday
        ("cron(0 10 ? * 2#1 *)", instant(2025, 3, 28), instant(2025, 4, 7, 10)),  # first Monday
        ("cron(0 10 LW * ? *)", instant(2025, 3, 28), instant(2025, 3, 31, 10)),  # last weekday
        ("cron(0 10 L * ? *)", instant(2025, 2, 2), instant(2025, 2, 28, 10)),
        ("cron(0 10 15W * ? *)", instant(2025, 6, 1), instant(2025, 6, 16, 10)),  # Sunday 15th -> Monday
        ("cron(0 10 1W * ? *)", instant(2025, 11, 1), instant(2025, 11, 3, 10)),  # Saturday 1st -> Monday 3rd
        ("cron(0 10 ? * L *)", instant(2025, 6, 2), instant(2025, 6, 7, 10)),  # L alone: Saturday
        ("cron(*/20 8-9 ? * MON-FRI *)", instant(2025, 6, 2, 9, 41), instant(2025, 6, 3, 8)),
        ("cron(15 12 * * ? *)", instant(2025, 6, 2, 12, 15), instant(2025, 6, 3, 12, 15)),
        ("0 0 13 * FRI", instant(2025, 6, 1), instant(2025, 6, 6)),  # both restricted: Friday OR the 13th
        ("0 0 */10 * *", instant(2025, 6, 2), instant(2025, 6, 11)),  # 1, 11, 21, 31
        ("0 0 * * 7", instant(2025, 6, 2), instant(2025, 6, 8)),  # 7 is Sunday too
        ("0 0 * * SAT-MON", instant(2025, 6, 3), instant(2025, 6, 7)),  # a wrapping range
        ("0 0 31 2 *", instant(2025, 1, 1), None),
        ("rate(1 day)", instant(2025, 6, 2, 0, 0, 1), instant(2025, 6, 3)),
        ("at(2025-06-02T14:00:00)", instant(2025, 6, 2), instant(2025, 6, 2, 14)),
        ("at(2025-06-02T14:00:00)", instant(2025, 6, 2, 14), None),
    ],
)
def test_next_fire_forms(expression, after, expected):
    assert S.next_fire(expression, "UTC", after) == expected


def test_fired_between_and_last_fire():
    assert S.fired_between("0 9 * * *", "UTC", instant(2025, 6, 2, 8, 59), instant(2025, 6, 2, 9))
    assert not S.fired_between("0 9 * * *", "UTC", instant(2025, 6, 2, 9), instant(2025, 6, 2, 9, 30))
    assert S.last_fire("0 9 * * *", "UTC", instant(2025, 5, 1), instant(2025, 6, 2, 12)) == instant(
        2025, 6, 2, 9
    )
    anchor = instant(2025, 6, 2, 0, 10)
    assert S.last_fire(
        "rate(30 minutes)", None, instant(2025, 6, 2, 1), instant(2025, 6, 2, 1, 45), anchor=anchor
    ) == instant(2025, 6, 2, 1, 40)
    assert S.last_fire("0 9 * * *", "UTC", instant(2025, 6, 2, 10), instant(2025, 6, 2, 9)) is None


@pytest.mark.parametrize(
    "bad", ["cron(0 9 * * *)", "cron(0 9 1 * MON *)", "0 9 ? * *", "every day", "rate(0 minutes)"]
)
def test_invalid_expressions_raise(bad):
    with pytest.raises(ValueError):
        S.parse(bad)
