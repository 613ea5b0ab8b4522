"""The schedule grammar lives once: manifest validation accepts exactly what the auto scaler can parse.

`manifests.semantic_autoscaling.schedule_error` and the scaler (`scaling.policy.ScheduledAction.from_manifest`,
i.e. `scaling.schedule.parse`) are compared on random schedule-ish strings built from the grammar's own
tokens (and near misses: Unicode digits, huge numbers, stray `?`, empty list items). An accepted expression
must also be evaluable (next_fire and last_fire do not raise), and a rejected one gets a message naming it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.manifests import semantic_autoscaling as autoscaling
from reconciler.scaling import policy as P
from reconciler.scaling import schedule as S

UTC = dt.UTC

_ATOMS = [
    *(str(n) for n in (0, 1, 2, 5, 7, 8, 12, 13, 15, 23, 24, 31, 32, 59, 60, 1969, 1970, 2025, 2199, 2200)),
    "00", "007", "9" * 12, "٣", "²", "*", "?", "L", "LW", "W", "15W", "32W", "6L", "FRIL", "2#1", "MON#5",
    "2#6", "2#05", "JAN", "dec", "FOO", "MON", "sun", "SAT", "",
]  # fmt: skip
_SEPARATORS = ["", ",", "-", "/", "#", "L", "W"]


@st.composite
def _field(draw: st.DrawFn) -> str:
    items = []
    for _ in range(draw(st.integers(1, 3))):
        items.append(draw(st.sampled_from(_ATOMS)))
        if draw(st.booleans()):
            items.append(draw(st.sampled_from(_SEPARATORS)))
    return "".join(items)


@st.composite
def _cron_fields(draw: st.DrawFn) -> str:
    count = draw(st.sampled_from([4, 5, 5, 5, 6, 6, 6, 7]))
    return " ".join(draw(_field()) for _ in range(count))


# Per position: fields valid there, and near misses (drawn about one time in ten), so that about half of
# the expressions parse. cron() gets its '?' in one day field, now and then in both or neither.
_PLAUSIBLE = [
    (["0", "*/15", "5-10", "0,30", "59", "50-10"], ["60", "?", "*/0", "1,,2"]),
    (["9", "*", "8-17/2", "23", "0"], ["24", "-1", "9-"]),
    (["*", "1", "1-7,15", "31", "*/10"], ["0", "32", "L"]),
    (["*", "JAN", "jan-mar", "1/3", "12", "NOV-FEB"], ["13", "0", "JANUARY"]),
    (["*", "MON-FRI", "1", "0", "7", "SAT-MON", "sun"], ["8", "MON#1", "6L"]),
    (["*", "2025", "2020-2030", "2199"], ["1969", "2200", "?"]),
]
_AWS_DOM = ["L", "LW", "15W", "1,L"]
_AWS_DOW = ["6L", "MON#1", "FRIL", "L", "2#5"]


@st.composite
def _plausible_cron(draw: st.DrawFn) -> str:
    aws = draw(st.booleans())
    fields = []
    for k, (good, near) in enumerate(_PLAUSIBLE[: 6 if aws else 5]):
        choices = near if draw(st.integers(0, 9)) == 0 else good
        if aws and k == 2:
            choices = choices + _AWS_DOM
        if aws and k == 4:
            choices = [c for c in choices + _AWS_DOW if c != "0"]
        fields.append(draw(st.sampled_from(choices)))
    if not aws:
        return " ".join(fields)
    question = draw(st.sampled_from([2, 4, 2, 4, 2, 4, None, "both"]))
    for k in (2, 4) if question == "both" else () if question is None else (question,):
        fields[k] = "?"
    return f"cron({' '.join(fields)})"


_NUMBER = st.sampled_from(["0", "1", "5", "90", "36500", "52561", "9" * 12, "٣", "-1", ""])
_UNIT = st.sampled_from(["minute", "minutes", "hour", "hours", "day", "days", "week", "Minutes", ""])
_DATE = st.tuples(
    st.sampled_from(["1969", "1970", "2025", "2199", "2200", "0001", "٢٠٢٥", "25"]),
    st.sampled_from(["01", "02", "12", "13", "6"]),
    st.sampled_from(["01", "28", "29", "30", "31", "32"]),
    st.sampled_from(["00", "09", "23", "24"]),
    st.sampled_from(["00", "30", "59", "60"]),
    st.sampled_from(["00", "59", "60"]),
)

SCHEDULEISH = st.one_of(
    _plausible_cron(),
    _cron_fields(),
    _cron_fields().map(lambda inner: f"cron({inner})"),
    st.builds(lambda n, u, sp: f"rate({n}{sp}{u})", _NUMBER, _UNIT, st.sampled_from([" ", "  ", ""])),
    _DATE.map(lambda d: "at({}-{}-{}T{}:{}:{})".format(*d)),
    st.sampled_from(["", " ", "every(5 minutes)", "cron(", "rate(", "at()", "cron()", "* * * * *\n"]),
    st.text(alphabet="0123456789*?,-/#LW ()cronatemiuhsdy", max_size=30),
)


def scaler_accepts(expression: str) -> bool:
    try:
        P.ScheduledAction.from_manifest({"schedule": expression, "minCapacity": 1}, 0)
    except ValueError:
        return False
    return True


@settings(max_examples=1500, deadline=None)
@given(SCHEDULEISH)
@example("cron(0 9 ? * MON-FRI *)")
@example("0 9 * * ?")
@example("at(2025-6-1T9:30:00)")  # strptime took single digits; the scaler's parser never did
@example("cron(0 0 ?,1 * MON *)")
@example("? 9 * * *")  # '?' outside the day fields was parsed as '*' by the scaler
@example("0 0 ? * 2#05")
@example("rate(" + "9" * 5000 + " days)")
def test_validation_accepts_exactly_what_the_scaler_parses(expression):
    problem = autoscaling.schedule_error(expression)
    assert (problem is None) == scaler_accepts(expression), problem
    if problem is not None:
        assert expression.strip() in problem or not expression.strip()
        return
    after = dt.datetime(2025, 6, 2, tzinfo=UTC)
    for tz in ("UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        S.next_fire(expression, tz, after)
        S.last_fire(expression, tz, after - dt.timedelta(days=2), after)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("0 25 * * *", "schedule '0 25 * * *': '25' is not valid in the hour field (allowed 0-23)"),
        (
            "cron(0 0 ? 13 * *)",
            "schedule 'cron(0 0 ? 13 * *)': '13' is not valid in the month field (allowed 1-12 or JAN-DEC)",
        ),
        (
            "0 0 * * FOO-MON",
            "schedule '0 0 * * FOO-MON': 'FOO-MON' is not valid in the day-of-week field (allowed 0-7 or SUN-SAT)",
        ),
        ("? 9 * * *", "schedule '? 9 * * *': '?' is not allowed in the minute field"),
        (
            "cron(0 0 ?,1 * MON *)",
            "schedule 'cron(0 0 ?,1 * MON *)': '?' must be the whole day-of-month field, not a list item",
        ),
        (
            "cron(0 0 ? * 2#6 *)",
            "schedule 'cron(0 0 ? * 2#6 *)': '2#6' is not valid in the day-of-week field (n#k needs k within 1-5)",
        ),
        ("*/x * * * *", "schedule '*/x * * * *': bad step 'x' in the minute field '*/x'"),
        ("0 ٣ * * *", "schedule '0 ٣ * * *': '٣' is not valid in the hour field (allowed 0-23)"),
        (
            "at(2025-02-30T00:00:00)",
            "schedule 'at(2025-02-30T00:00:00)' must have the form at(yyyy-mm-ddThh:mm:ss) (a real date and time)",
        ),
        (
            "at(2200-01-01T00:00:00)",
            "schedule 'at(2200-01-01T00:00:00)': the year of at() must be within 1970-2199",
        ),
        ("rate(36501 days)", "schedule 'rate(36501 days)': the rate must be at most 36500 days (100 years)"),
        ("  ", "schedule must be at(...), rate(...), cron(...) or a 5-field cron expression"),
    ],
)
def test_messages_name_the_expression_and_the_field(expression, message):
    assert S.problem(expression) == message
    assert autoscaling.schedule_error(expression) == message
    with pytest.raises(ValueError, match="schedule"):
        S.parse(expression)


def test_rate_limit_is_inclusive():
    assert S.problem("rate(36500 days)") is None
    assert S.parse("rate(52560000 minutes)").rate == 36500 * 86400
