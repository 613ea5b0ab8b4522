"""When a scheduled scaling action fires: `at(...)`, `rate(...)`, `cron(6 AWS fields)` and 5-field cron.

Owns the syntax and the meaning of the schedule expressions the manifest accepts (ECS reference §7.3):

* `at(yyyy-mm-ddThh:mm:ss)` fires once, at that wall-clock time in the action's time zone (years 1970-2199).
* `rate(N minutes|hours|days)` fires at anchor + k * N for every integer k: a fixed interval in absolute time
  (no DST effect). The anchor is the action's startTime, else the Unix epoch, so a restart never shifts it.
  N > 0, and the interval is at most MAX_RATE_DAYS.
* `cron(min hour dom month dow year)` (AWS: `?` in exactly one of dom/dow, dow 1-7 = SUN-SAT, `L`, `LW`, `15W`,
  `6L`, `2#1`) and plain `min hour dom month dow` (dow 0-7, 0 and 7 = SUN; when both dom and dow are
  restricted a day matches either, as in Vixie cron; a field starting with `*` counts as unrestricted).
  A field is a list of `*`, `a` or `a-b` (wrapping when a > b), each with an optional `/step`; numbers are
  ASCII digits, months and days of the week may be names (JAN, MON; any case).
  Cron fields are wall-clock times in the action's IANA time zone, so `0 9 * * *` fires at 09:00 local on
  both sides of a DST change. A wall-clock time skipped by a spring-forward gap fires at the instant it maps
  to with the earlier offset (02:30 in a 02:00->03:00 gap fires at 03:30); a time repeated by a fall-back
  fires once, at its first occurrence (so an every-minute cron pauses during the repeated hour).

This module is the only grammar: `parse` raises ValueError with a message naming the expression and, for cron,
the offending field; `problem` returns that message, and is what `manifests.semantic_autoscaling` reports, so
validation accepts exactly what the scaler can evaluate.

Pure: no clock (callers pass instants), no I/O beyond the standard library's time zone database. Instants are
aware datetimes (a naive one is taken as UTC); results are aware UTC datetimes.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
MAX_LOOKBACK = dt.timedelta(days=400)  # how far back a catch-up (last_fire) looks for a cron fire
MAX_RATE_DAYS = 36500  # the longest rate() interval: 100 years
FIRST_YEAR, LAST_YEAR = 1970, 2199  # the years of cron()'s year field and of at()
_SEARCH_YEARS = 100  # how far ahead next_fire looks for a cron fire (beyond year 2199, cron6's last year)

_AT = re.compile(r"at\(([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\)", re.ASCII)
_RATE = re.compile(r"rate\(\s*([0-9]+)\s+(minute|minutes|hour|hours|day|days)\s*\)", re.ASCII)
_CRON = re.compile(r"cron\((.*)\)")
_RATE_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()
_FORMS = "at(...), rate(...), cron(...) or a 5-field cron expression"
_AT_FORM = "at(yyyy-mm-ddThh:mm:ss)"
_RATE_FORM = "rate(N minutes|hours|days) with N > 0"
_CRON6_FORM = "cron() takes 6 fields: minute hour day-of-month month day-of-week year"
_CRON5_FORM = "a plain cron expression takes 5 fields: minute hour day-of-month month day-of-week"


@dataclass(frozen=True)
class DayRule:
    """One day field. `any` when unrestricted; otherwise a day matches any of the listed forms."""

    any: bool = True
    days: frozenset[int] = frozenset()  # dom: day numbers; dow: Python weekdays (0 = Monday)
    last: bool = False  # dom `L`
    last_weekday: bool = False  # dom `LW`
    nearest_weekday: frozenset[int] = frozenset()  # dom `15W`
    last_of: frozenset[int] = frozenset()  # dow `6L`: the last such weekday of the month
    nth: frozenset[tuple[int, int]] = frozenset()  # dow `2#1`: (weekday, k) the k-th such weekday


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]  # minutes of the day (hour * 60 + minute), sorted
    months: frozenset[int]
    years: frozenset[int] | None  # None: any year
    dom: DayRule
    dow: DayRule
    either: bool  # 5-field cron with both day fields restricted: a day matches dom OR dow


@dataclass(frozen=True)
class Schedule:
    """A parsed expression: exactly one of `at` (naive local time), `rate` (seconds) and `cron` is set."""

    expression: str
    at: dt.datetime | None = None
    rate: float | None = None
    cron: Cron | None = None


@dataclass(frozen=True)
class _Field:
    """One cron field: its name, its range and the names of its values (the first name is `low`)."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    @property
    def allowed(self) -> str:
        names = f" or {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"{self.low}-{self.high}{names}"


_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, tuple(_MONTHS))
_DOW5 = _Field("day-of-week", 0, 7, tuple(_DAYS))
_DOW6 = _Field("day-of-week", 1, 7, tuple(_DAYS))
_YEAR = _Field("year", FIRST_YEAR, LAST_YEAR)


class _FieldError(ValueError):
    """A problem inside one cron field; `parse` prefixes it with the expression."""


# ---------------------------------------------------------------------------------------------- parsing


def problem(expression: str) -> str | None:
    """Why `expression` is not a schedule (the message `parse` raises), or None when it is one."""
    try:
        parse(expression)
    except ValueError as e:
        return str(e)
    return None


@functools.lru_cache(maxsize=1024)
def parse(expression: str) -> Schedule:
    """The parsed form of `expression`; ValueError (saying what is wrong, and where) when it is not one of
    the four forms."""
    text = expression.strip()
    if not text:
        raise ValueError(f"schedule must be {_FORMS}")
    if text.startswith("at("):
        return Schedule(text, at=_at(text))
    if text.startswith("rate("):
        return Schedule(text, rate=_rate(text))
    m = _CRON.fullmatch(text)
    if not m and "(" in text:
        raise ValueError(f"schedule {text!r} must be {_FORMS}")
    fields = m.group(1).split() if m else text.split()
    try:
        return Schedule(text, cron=_cron(fields, aws=m is not None, text=text))
    except _FieldError as e:
        raise ValueError(f"schedule {text!r}: {e}") from None


def _at(text: str) -> dt.datetime:
    m = _AT.fullmatch(text)
    try:
        wall = dt.datetime(*(int(g) for g in m.groups())) if m else None
    except ValueError:  # not a calendar date or time of day: 2025-02-30, 24:00:00
        wall = None
    if wall is None:
        raise ValueError(f"schedule {text!r} must have the form {_AT_FORM} (a real date and time)")
    if not FIRST_YEAR <= wall.year <= LAST_YEAR:
        raise ValueError(f"schedule {text!r}: the year of at() must be within {FIRST_YEAR}-{LAST_YEAR}")
    return wall


def _rate(text: str) -> float:
    m = _RATE.fullmatch(text)
    count = _digits(m.group(1)) if m else None
    if not count:
        raise ValueError(f"schedule {text!r} must have the form {_RATE_FORM}")
    seconds = count * _RATE_SECONDS[m.group(2).rstrip("s")]
    if seconds > MAX_RATE_DAYS * 86400:
        raise ValueError(f"schedule {text!r}: the rate must be at most {MAX_RATE_DAYS} days (100 years)")
    return float(seconds)


def _digits(token: str) -> int | None:
    """The value of an ASCII decimal number (a huge one saturates at 10**9), or None for anything else."""
    if not (token.isascii() and token.isdigit()):
        return None
    significant = token.lstrip("0")
    return int(significant or "0") if len(significant) <= 9 else 10**9


def _cron(fields: list[str], *, aws: bool, text: str) -> Cron:
    if len(fields) != (6 if aws else 5):
        raise ValueError(f"schedule {text!r} has {len(fields)} fields; {_CRON6_FORM if aws else _CRON5_FORM}")
    minute, hour, dom, month, dow = fields[:5]
    minutes = _numbers(minute, _MINUTE)
    hours = _numbers(hour, _HOUR)
    dom_rule = _dom(dom, aws)
    months = frozenset(_numbers(month, _MONTH))
    dow_rule = _dow(dow, aws)
    years = None if not aws or fields[5] == "*" else frozenset(_numbers(fields[5], _YEAR))
    if aws and (dom == "?") == (dow == "?"):
        raise _FieldError("cron() needs '?' in exactly one of day-of-month and day-of-week")
    return Cron(
        minutes=tuple(sorted(h * 60 + m for h in hours for m in minutes)),
        months=months,
        years=years,
        dom=dom_rule,
        dow=dow_rule,
        either=not aws and not dom.startswith("*") and not dow.startswith("*"),
    )


def _parts(text: str, field: _Field, *, aws_day: bool) -> list[str]:
    """The list items of a field; `?` only as a whole cron() day field (the caller handles that case)."""
    parts = text.split(",")
    if "" in parts:
        raise _FieldError(f"empty list item in the {field.name} field {text!r}")
    if "?" in parts:
        raise _FieldError(
            f"'?' must be the whole {field.name} field, not a list item"
            if aws_day
            else f"'?' is not allowed in the {field.name} field"
        )
    return parts


def _value(token: str, part: str, field: _Field) -> int:
    number = _digits(token)
    if number is None and field.names and token.upper() in field.names:
        number = field.names.index(token.upper()) + field.low
    if number is None or not field.low <= number <= field.high:
        raise _FieldError(f"{part!r} is not valid in the {field.name} field (allowed {field.allowed})")
    return number


def _numbers(text: str, field: _Field) -> list[int]:
    """The values of a plain cron field: lists of `*`, `a`, `a-b` (wrapping when a > b), each with `/step`."""
    out: set[int] = set()
    for part in _parts(text, field, aws_day=False):
        out.update(_range(part, field))
    return sorted(out)


def _range(part: str, field: _Field) -> list[int]:
    """The values of one list item `*`, `a` or `a-b`, with an optional `/step`."""
    low, high = field.low, field.high
    base, slash, step_text = part.partition("/")
    step = _digits(step_text) if slash else 1
    if not step:
        raise _FieldError(f"bad step {step_text!r} in the {field.name} field {part!r}")
    if base == "*":
        start, end = low, high
    else:
        first, dash, last = base.partition("-")
        start = _value(first, part, field)
        end = _value(last, part, field) if dash else (high if slash else start)
    span = list(range(start, end + 1)) if start <= end else [*range(start, high + 1), *range(low, end + 1)]
    return span[::step]


def _dom(text: str, aws: bool) -> DayRule:
    if text == "*" or (aws and text == "?"):
        return DayRule()
    days: set[int] = set()
    nearest: set[int] = set()
    last = last_weekday = False
    for part in _parts(text, _DOM, aws_day=aws):
        if aws and part == "L":
            last = True
        elif aws and part == "LW":
            last_weekday = True
        elif aws and part.endswith("W"):
            nearest.add(_value(part[:-1], part, _DOM))
        else:
            days.update(_range(part, _DOM))
    return DayRule(False, frozenset(days), last, last_weekday, frozenset(nearest))


def _weekday(number: int, aws: bool) -> int:
    """Python weekday (0 = Monday) of a cron day-of-week: AWS 1-7 = SUN-SAT, plain 0-7 with 0 and 7 = SUN."""
    return (number - 2) % 7 if aws else (number - 1) % 7


def _dow(text: str, aws: bool) -> DayRule:
    if text == "*" or (aws and text == "?"):
        return DayRule()
    field = _DOW6 if aws else _DOW5
    days: set[int] = set()
    last_of: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for part in _parts(text, field, aws_day=aws):
        if aws and part == "L":  # alone, L is the last day of the week: Saturday
            days.add(_weekday(7, aws))
        elif aws and part.endswith("L"):
            last_of.add(_weekday(_value(part[:-1], part, field), aws))
        elif aws and "#" in part:
            day, _, k = part.partition("#")
            n = _digits(k)
            if n is None or not 1 <= n <= 5:
                raise _FieldError(f"{part!r} is not valid in the {field.name} field (n#k needs k within 1-5)")
            nth.add((_weekday(_value(day, part, field), aws), n))
        else:
            days.update(_weekday(n, aws) for n in _range(part, field))
    return DayRule(False, frozenset(days), last_of=frozenset(last_of), nth=frozenset(nth))


# ---------------------------------------------------------------------------------------------- matching


def _nearest_weekday(year: int, month: int, day: int) -> int | None:
    """Quartz `15W`: the weekday nearest to `day`, not crossing into another month; None if the month is short."""
    length = calendar.monthrange(year, month)[1]
    if day > length:
        return None
    weekday = dt.date(year, month, day).weekday()
    if weekday == 5:  # Saturday: Friday before, or Monday after when Friday is in the previous month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, or Friday before when Monday is in the next month
        return day + 1 if day < length else day - 2
    return day


def _last_weekday(year: int, month: int) -> int:
    length = calendar.monthrange(year, month)[1]
    weekday = dt.date(year, month, length).weekday()
    return length - max(0, weekday - 4)


def _dom_matches(rule: DayRule, day: dt.date) -> bool:
    if rule.any or day.day in rule.days:
        return True
    length = calendar.monthrange(day.year, day.month)[1]
    if rule.last and day.day == length:
        return True
    if rule.last_weekday and day.day == _last_weekday(day.year, day.month):
        return True
    return any(_nearest_weekday(day.year, day.month, n) == day.day for n in rule.nearest_weekday)


def _dow_matches(rule: DayRule, day: dt.date) -> bool:
    weekday = day.weekday()
    if rule.any or weekday in rule.days:
        return True
    length = calendar.monthrange(day.year, day.month)[1]
    if weekday in rule.last_of and day.day + 7 > length:
        return True
    return (weekday, (day.day - 1) // 7 + 1) in rule.nth


def day_matches(cron: Cron, day: dt.date) -> bool:
    """Whether `cron` fires on local calendar day `day` (at some of its times)."""
    if day.month not in cron.months or (cron.years is not None and day.year not in cron.years):
        return False
    if cron.either:
        return _dom_matches(cron.dom, day) or _dow_matches(cron.dow, day)
    return _dom_matches(cron.dom, day) and _dow_matches(cron.dow, day)


# ---------------------------------------------------------------------------------------------- instants


def zone(tz: str | dt.tzinfo | None) -> dt.tzinfo:
    """A tzinfo for an IANA name (None or "" = UTC); ValueError for an unknown name."""
    if isinstance(tz, dt.tzinfo):
        return tz
    if not tz:
        return UTC
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {tz!r}") from e


def aware(instant: dt.datetime) -> dt.datetime:
    """`instant` in UTC; a naive datetime is taken as UTC."""
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def local_to_utc(wall: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The UTC instant of naive wall-clock `wall` in `tz` (fold=0: the earlier offset for gaps and repeats)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _cron_fires(
    cron: Cron, tz: dt.tzinfo, after: dt.datetime, until: dt.datetime, descending: bool
) -> Iterator[dt.datetime]:
    """Fire instants in (after, until], ascending or descending (in time, not in wall-clock order)."""
    slack = _slack(tz, after, until)
    low_wall = after.astimezone(tz).replace(tzinfo=None) - slack
    high_wall = until.astimezone(tz).replace(tzinfo=None) + slack
    for day in _days(cron, low_wall.date(), high_wall.date(), descending):
        midnight = dt.datetime.combine(day, dt.time())
        lo = max(0, int((low_wall - midnight).total_seconds() // 60))
        hi = min(1439, int((high_wall - midnight).total_seconds() // 60))
        minutes = cron.minutes[bisect.bisect_left(cron.minutes, lo) : bisect.bisect_right(cron.minutes, hi)]
        for instant in _day_instants(midnight, minutes, tz, descending):
            if after < instant <= until:
                yield instant
            elif (instant <= after) if descending else (instant > until):
                return


def _slack(tz: dt.tzinfo, after: dt.datetime, until: dt.datetime) -> dt.timedelta:
    """How far outside [wall(after), wall(until)] a wall-clock time may lie and still fire inside (after,
    until]: the offset changes within a day of either end (a time in a spring-forward gap maps with the old
    offset; the first pass of a repeated hour lies before a fall-back), plus a minute."""
    day = dt.timedelta(days=1)
    offsets = [
        t.astimezone(tz).utcoffset() or dt.timedelta() for t in (after - day, after, until, until + day)
    ]
    return max(offsets) - min(offsets) + dt.timedelta(minutes=1)


def _day_instants(
    midnight: dt.datetime, minutes: tuple[int, ...], tz: dt.tzinfo, descending: bool
) -> Iterator[dt.datetime]:
    """The UTC instants of a day's fire minutes in time order. On a day with a DST change a time in the gap
    maps (fold=0) after some later wall-clock times, so that day is sorted; other days are monotonic."""
    tomorrow = midnight + dt.timedelta(days=1)
    ordered = reversed(minutes) if descending else minutes
    instants = (local_to_utc(midnight + dt.timedelta(minutes=m), tz) for m in ordered)
    if _offset(midnight, tz) == _offset(tomorrow, tz):
        return instants
    return iter(sorted(instants, reverse=descending))


def _offset(wall: dt.datetime, tz: dt.tzinfo) -> dt.timedelta | None:
    return wall.replace(tzinfo=tz, fold=0).utcoffset()


def _days(cron: Cron, first: dt.date, last: dt.date, descending: bool) -> Iterator[dt.date]:
    """Days in [first, last] on which `cron` fires, skipping whole months and years that cannot match."""
    one = dt.timedelta(days=1)
    day = last if descending else first
    while first <= day <= last:
        if cron.years is not None and day.year not in cron.years:
            day = dt.date(day.year, 1, 1) - one if descending else dt.date(day.year + 1, 1, 1)
        elif day.month not in cron.months:
            day = _month_start(day) - one if descending else _month_end(day) + one
        else:
            if day_matches(cron, day):
                yield day
            day = day - one if descending else day + one


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _month_end(day: dt.date) -> dt.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _rate_fire(interval: float, anchor: dt.datetime, instant: dt.datetime, *, after: bool) -> dt.datetime:
    """The last fire at or before `instant`, or (after=True) the first fire strictly after it."""
    elapsed = (instant - anchor).total_seconds()
    k = elapsed // interval
    if after:
        k += 1
    return anchor + dt.timedelta(seconds=k * interval)


def next_fire(
    expression: str, tz: str | dt.tzinfo | None, after: dt.datetime, *, anchor: dt.datetime | None = None
) -> dt.datetime | None:
    """The first fire strictly after `after` (UTC), or None when there is none (a past at(), an impossible cron)."""
    schedule, zone_info, after = parse(expression), zone(tz), aware(after)
    if schedule.at is not None:
        instant = local_to_utc(schedule.at, zone_info)
        return instant if instant > after else None
    if schedule.rate is not None:
        return _rate_fire(schedule.rate, aware(anchor or EPOCH), after, after=True)
    assert schedule.cron is not None
    horizon = dt.datetime(max(after.year + _SEARCH_YEARS, 2200), 1, 1, tzinfo=UTC)
    return next(_cron_fires(schedule.cron, zone_info, after, horizon, descending=False), None)


def last_fire(
    expression: str,
    tz: str | dt.tzinfo | None,
    start: dt.datetime,
    end: dt.datetime,
    *,
    anchor: dt.datetime | None = None,
) -> dt.datetime | None:
    """The latest fire in (start, end] (UTC), or None. A cron looks back at most MAX_LOOKBACK from `end`."""
    schedule, zone_info, start, end = parse(expression), zone(tz), aware(start), aware(end)
    if end <= start:
        return None
    if schedule.at is not None:
        instant = local_to_utc(schedule.at, zone_info)
        return instant if start < instant <= end else None
    if schedule.rate is not None:
        instant = _rate_fire(schedule.rate, aware(anchor or EPOCH), end, after=False)
        return instant if instant > start else None
    assert schedule.cron is not None
    start = max(start, end - MAX_LOOKBACK)
    return next(_cron_fires(schedule.cron, zone_info, start, end, descending=True), None)


def fired_between(
    expression: str,
    tz: str | dt.tzinfo | None,
    start: dt.datetime,
    end: dt.datetime,
    *,
    anchor: dt.datetime | None = None,
) -> bool:
    """Whether the schedule fires at least once in (start, end]."""
    return last_fire(expression, tz, start, end, anchor=anchor) is not None
