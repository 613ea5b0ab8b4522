"""Where scaling metrics come from, and the recent samples that `policy.decide` reads.

Owns the pluggable metric pipeline: the `MetricSource` protocol (the daemon asks one source per service per
evaluation for the current value of each metric the service's policies read; a source answers for the
metrics it knows and omits the rest), `StaticSource` (exact numbers, for tests and simulations),
`CompositeSource` (first source that answers wins, so a load-balancer source can drop in next to the Docker
stats one), `HttpMetricSource` (customized metrics over HTTP), and `WindowedMetrics`, the bounded in-memory
store of (timestamp, value) samples per (service, metric key) that `decide` windows over.

Customized metrics: an endpoint returns a bare number, or Prometheus text exposition from which
`parse_metric_body` reads the series of `metricName` (optionally with label matchers: `name{a="b",c!~"x.*"}`)
and SUMS the matching series (a quantity split over labels, such as queue depth per queue, adds up; pass
aggregate="Average" for a per-series gauge). Across several tasks' endpoints, values are combined with the
metric's `statistic` (default Average).

This module is the one place in `reconciler.scaling` that does I/O: `fetch_custom_metric` GETs an endpoint
over HTTP (urllib, with a timeout and a size cap) for `HttpMetricSource`. Everything else in the package,
including the parsing and the windows here, is pure. `HttpMetricSource.errors` keeps the failures of the
latest collect; the daemon's auto scaler reads it to log a metric once when it starts and stops failing.
It must not decide scaling (scaling.policy) or talk to Docker engines (the daemon feeds scaling.stats
results to a source or straight into WindowedMetrics).
"""

from __future__ import annotations

import bisect
import math
import re
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from reconciler.scaling import policy

MAX_BODY = 4 * 1024 * 1024
DEFAULT_TIMEOUT = 2.0
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPERATORS = ("=~", "!~", "!=", "=")
_AGGREGATES = ("Sum", "Average", "Minimum", "Maximum", "SampleCount")


class MetricError(Exception):
    """A customized metric could not be read or parsed; the message says which and why."""


class MetricSource(Protocol):
    def collect(self, service: str, metrics: Sequence[policy.Metric], now: float) -> Mapping[str, float]:
        """Current values, by Metric.key, of those of `metrics` this source provides for `service`."""
        ...


# ============================================================================================== sources


class StaticSource:
    """Fixed values per service and metric key; `set` changes one (a simulated clock drives it in tests)."""

    def __init__(self, values: Mapping[str, Mapping[str, float]] | None = None):
        self._values: dict[str, dict[str, float]] = {s: dict(v) for s, v in (values or {}).items()}

    def set(self, service: str, key: str, value: float | None) -> None:
        """Sets a value; None removes it (the source then omits that metric)."""
        if value is None:
            self._values.get(service, {}).pop(key, None)
        else:
            self._values.setdefault(service, {})[key] = float(value)

    def collect(self, service: str, metrics: Sequence[policy.Metric], now: float) -> Mapping[str, float]:
        known = self._values.get(service, {})
        return {m.key: known[m.key] for m in metrics if m.key in known}


class CompositeSource:
    """Asks its sources in order; each is asked only for the metrics the earlier ones did not provide."""

    def __init__(self, sources: Iterable[MetricSource]):
        self.sources = tuple(sources)

    def collect(self, service: str, metrics: Sequence[policy.Metric], now: float) -> Mapping[str, float]:
        out: dict[str, float] = {}
        for source in self.sources:
            missing = [m for m in metrics if m.key not in out]
            if not missing:
                break
            for key, value in source.collect(service, missing, now).items():
                out.setdefault(key, value)
        return out


Fetch = Callable[[str, str | None, float], float]


class HttpMetricSource:
    """Customized metrics over HTTP. `urls(service, metric)` lists the endpoints to read (one per task, say);
    by default the metric's own url. Values of several endpoints combine with the metric's statistic; a
    metric no endpoint answered is omitted. `errors[(service, key)]` holds the failures of the latest
    collect (also when other endpoints answered) and is cleared when all endpoints answer."""

    def __init__(
        self,
        fetch: Fetch | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        urls: Callable[[str, policy.Metric], Sequence[str]] | None = None,
    ):
        self.fetch: Fetch = fetch or fetch_custom_metric
        self.timeout = timeout
        self.urls = urls or (lambda service, metric: [metric.url] if metric.url else [])
        self.errors: dict[tuple[str, str], str] = {}

    def collect(self, service: str, metrics: Sequence[policy.Metric], now: float) -> Mapping[str, float]:
        out: dict[str, float] = {}
        for metric in metrics:
            if metric.url is None:
                continue
            values, failures = [], []
            for url in self.urls(service, metric):
                try:
                    values.append(self.fetch(url, metric.name or None, self.timeout))
                except MetricError as e:
                    failures.append(str(e))
            if values:
                out[metric.key] = combine(values, metric.statistic)
            if failures:
                self.errors[(service, metric.key)] = "; ".join(failures)
            else:
                self.errors.pop((service, metric.key), None)
        return out


def combine(values: Sequence[float], statistic: str = "Average") -> float:
    """Values of several tasks as one: Average, Minimum, Maximum, Sum or SampleCount."""
    if not values:
        raise ValueError("no values to combine")
    return policy.statistic(values, statistic)


# ============================================================================================== windows


class WindowedMetrics:
    """Recent samples per (service, metric key): at most `max_samples` each, none older than `retention` s
    before the newest. Non-finite values are dropped. Samples arriving out of order are inserted in place."""

    def __init__(self, retention: float = 3600.0, max_samples: int = 2000):
        self.retention = retention
        self.max_samples = max_samples
        self._series: dict[tuple[str, str], deque[tuple[float, float]]] = {}

    def add(self, service: str, metric: str, ts: float, value: float) -> None:
        if not math.isfinite(value) or not math.isfinite(ts):
            return
        series = self._series.setdefault((service, metric), deque(maxlen=self.max_samples))
        if series and ts < series[-1][0]:
            ordered = list(series)
            ordered.insert(bisect.bisect_right([t for t, _ in ordered], ts), (ts, float(value)))
            series.clear()
            series.extend(ordered[-self.max_samples :])
        else:
            series.append((ts, float(value)))
        horizon = series[-1][0] - self.retention
        while series and series[0][0] < horizon:
            series.popleft()

    def add_all(self, service: str, values: Mapping[str, float], ts: float) -> None:
        """Adds what a MetricSource collected at `ts`."""
        for metric, value in values.items():
            self.add(service, metric, ts, value)

    def window(self, service: str, metric: str, seconds: float, now: float) -> list[tuple[float, float]]:
        """Samples with now - seconds < ts <= now, oldest first."""
        out = []
        for ts, value in reversed(self._series.get((service, metric), ())):
            if ts <= now - seconds:
                break
            if ts <= now:
                out.append((ts, value))
        out.reverse()
        return out

    def series(
        self, service: str, metrics: Iterable[str], seconds: float, now: float
    ) -> dict[str, list[tuple[float, float]]]:
        """`decide`'s `metrics` argument: the window of each metric key."""
        return {key: self.window(service, key, seconds, now) for key in metrics}

    def forget(self, service: str) -> None:
        for key in [k for k in self._series if k[0] == service]:
            del self._series[key]

    def services(self) -> set[str]:
        return {service for service, _ in self._series}


# ============================================================================================== parsing


def parse_selector(text: str) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    """`name{label="v",other!~"re"}` as (name, ((label, operator, value), ...)); ValueError when malformed."""
    text = text.strip()
    m = _NAME.match(text)
    if not m:
        raise ValueError(f"{text!r} does not start with a metric name")
    pos = m.end()
    if pos == len(text):
        return m.group(), ()
    if text[pos] != "{" or not text.endswith("}"):
        raise ValueError(f"{text!r}: expected label matchers in braces after the metric name")
    matchers, end = _labels(text, pos, operators=_OPERATORS)
    if end != len(text):
        raise ValueError(f"{text!r}: unexpected text after the label matchers")
    return m.group(), tuple(matchers)


def _labels(text: str, pos: int, operators: Sequence[str] = ("=",)) -> tuple[list[tuple[str, str, str]], int]:
    """Parses `{a="x",b!="y"}` starting at the brace; returns the (label, op, value) list and the end."""
    out = []
    pos += 1
    while True:
        pos = _skip_spaces(text, pos)
        if pos < len(text) and text[pos] == "}":
            return out, pos + 1
        m = _LABEL.match(text, pos)
        if not m:
            raise ValueError(f"bad label name at column {pos + 1} of {text!r}")
        pos = _skip_spaces(text, m.end())
        op = next((o for o in operators if text.startswith(o, pos)), None)
        if op is None:
            raise ValueError(f"expected {' or '.join(operators)} after label {m.group()!r}")
        value, pos = _quoted(text, _skip_spaces(text, pos + len(op)))
        out.append((m.group(), op, value))
        pos = _skip_spaces(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "}":
            raise ValueError(f"expected ',' or '}}' at column {pos + 1} of {text!r}")


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    if pos >= len(text) or text[pos] != '"':
        raise ValueError(f"expected a quoted label value at column {pos + 1} of {text!r}")
    out = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(text[pos + 1], "\\" + text[pos + 1]))
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise ValueError(f"unterminated label value in {text!r}")


def _sample_line(line: str) -> tuple[str, dict[str, str], float] | None:
    """(name, labels, value) of one exposition line; None for comments, blanks and malformed lines."""
    m = _NAME.match(line)
    if not m:
        return None
    labels: dict[str, str] = {}
    pos = m.end()
    if pos < len(line) and line[pos] == "{":
        try:
            pairs, pos = _labels(line, pos)
        except ValueError:
            return None
        labels = {name: value for name, _, value in pairs}
    fields = line[pos:].split()
    if not fields:
        return None
    try:
        return m.group(), labels, float(fields[0])
    except ValueError:
        return None


def _matches(labels: Mapping[str, str], matchers: Iterable[tuple[str, str, str]]) -> bool:
    for name, op, wanted in matchers:
        value = labels.get(name, "")
        if op == "=" and value != wanted:
            return False
        if op == "!=" and value == wanted:
            return False
        if op == "=~" and not re.fullmatch(wanted, value):
            return False
        if op == "!~" and re.fullmatch(wanted, value):
            return False
    return True


def _bare_number(body: str) -> float | None:
    try:
        value = float(body.strip())
    except ValueError:
        return None
    return value


def parse_metric_body(body: str, metric: str | None = None, *, aggregate: str = "Sum") -> float:
    """The value of an endpoint's response: a bare number, or the `aggregate` of the finite values of the
    Prometheus series matching `metric` (a name with optional label matchers). Raises MetricError."""
    if aggregate not in _AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(_AGGREGATES)}")
    number = _bare_number(body)
    if number is not None:
        if not math.isfinite(number):
            raise MetricError(f"the response is {body.strip()!r}, not a finite number")
        return number
    if not metric:
        raise MetricError("the response is not a bare number; metricName is needed to read Prometheus text")
    try:
        name, matchers = parse_selector(metric)
    except ValueError as e:
        raise MetricError(f"metricName {metric!r}: {e}") from None
    values = []
    for raw in body.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        sample = _sample_line(line)
        if sample and sample[0] == name and _matches(sample[1], matchers) and math.isfinite(sample[2]):
            values.append(sample[2])
    if not values:
        raise MetricError(f"no finite sample of {metric!r} in the response")
    return policy.statistic(values, aggregate)


def fetch_custom_metric(url: str, metric_name: str | None, timeout: float = DEFAULT_TIMEOUT) -> float:
    """GETs `url` and parses the body with parse_metric_body. Raises MetricError naming the url."""
    request = urllib.request.Request(
        url,
        headers={
            "Accept": "text/plain;version=0.0.4;q=0.9, */*;q=0.1",
            "User-Agent": "reconciler-autoscaling",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BODY + 1)
            charset = response.headers.get_content_charset() or "utf-8"
    except urllib.error.HTTPError as e:
        raise MetricError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise MetricError(f"{url}: {reason}") from None
    if len(body) > MAX_BODY:
        raise MetricError(f"{url}: the response is larger than {MAX_BODY} bytes")
    try:
        return parse_metric_body(body.decode(charset, errors="replace"), metric_name)
    except MetricError as e:
        raise MetricError(f"{url}: {e}") from None
