"""Metric sources and windows: Prometheus text parsing, bare numbers, the bounded sample store, sources."""

from __future__ import annotations

import http.server
import threading

import pytest

from reconciler.scaling import policy as P
from reconciler.scaling import source

EXPOSITION = """\
# HELP http_requests_in_flight Requests being served.
# TYPE http_requests_in_flight gauge
http_requests_in_flight{handler="/api",method="GET"} 12
http_requests_in_flight{handler="/api",method="POST"} 3 1717329600000
http_requests_in_flight{handler="/health",method="GET"} 1
http_requests_in_flight_max 40
# TYPE queue_depth gauge
queue_depth{queue="emails",path="C:\\\\jobs\\\\in"} 7
queue_depth{queue="say \\"hi\\"",} 2
queue_depth{queue="broken"} NaN
queue_depth{queue="huge"} +Inf
process_cpu_seconds_total 1.25e+02
"""


@pytest.mark.parametrize(
    "metric, aggregate, expected",
    [
        ("http_requests_in_flight", "Sum", 16.0),
        ("http_requests_in_flight", "Average", 16.0 / 3),
        ("http_requests_in_flight", "Maximum", 12.0),
        ('http_requests_in_flight{handler="/api"}', "Sum", 15.0),
        ('http_requests_in_flight{handler="/api", method!="GET"}', "Sum", 3.0),
        ('http_requests_in_flight{handler=~"/a.*"}', "Sum", 15.0),
        ('http_requests_in_flight{handler!~"/a.*"}', "Sum", 1.0),
        ("http_requests_in_flight_max", "Sum", 40.0),  # exact names: no prefix matching
        ("queue_depth", "Sum", 9.0),  # NaN and +Inf are skipped
        ('queue_depth{queue="say \\"hi\\""}', "Sum", 2.0),  # escaped quotes, trailing comma in the line
        ('queue_depth{path="C:\\\\jobs\\\\in"}', "Sum", 7.0),
        ("process_cpu_seconds_total", "Sum", 125.0),
    ],
)
def test_prometheus_series_are_selected_and_aggregated(metric, aggregate, expected):
    assert source.parse_metric_body(EXPOSITION, metric, aggregate=aggregate) == pytest.approx(expected)


@pytest.mark.parametrize(
    "body, expected", [("42", 42.0), (" 0.75\n", 0.75), ("-3", -3.0), ("1e3\r\n", 1000.0)]
)
def test_bare_number_needs_no_metric_name(body, expected):
    assert source.parse_metric_body(body) == expected
    assert source.parse_metric_body(body, "ignored_name") == expected


@pytest.mark.parametrize(
    "body, metric, fragment",
    [
        (EXPOSITION, None, "metricName is needed"),
        (EXPOSITION, "missing_metric", "no finite sample of 'missing_metric'"),
        (EXPOSITION, 'queue_depth{queue="broken"}', "no finite sample"),
        (EXPOSITION, "queue_depth{queue=emails}", "metricName"),
        (EXPOSITION, "{queue='x'}", "metricName"),
        ("NaN", None, "not a finite number"),
        ("<html>oops</html>", "x", "no finite sample"),
    ],
)
def test_parse_errors_say_why(body, metric, fragment):
    with pytest.raises(source.MetricError, match=fragment):
        source.parse_metric_body(body, metric)


def test_parse_selector():
    assert source.parse_selector("up") == ("up", ())
    assert source.parse_selector('up{job="api",instance!~"10\\\\..*"}') == (
        "up",
        (("job", "=", "api"), ("instance", "!~", "10\\..*")),
    )
    with pytest.raises(ValueError):
        source.parse_selector('up{job="api"')


# ============================================================================================== windows


def test_window_is_half_open_and_ordered():
    w = source.WindowedMetrics()
    for ts, value in [(100.0, 1.0), (110.0, 2.0), (120.0, 3.0), (130.0, 4.0)]:
        w.add("web", P.CPU, ts, value)
    assert w.window("web", P.CPU, 20, 130.0) == [(120.0, 3.0), (130.0, 4.0)]  # (110, 130]
    assert w.window("web", P.CPU, 20, 125.0) == [(110.0, 2.0), (120.0, 3.0)]  # later samples are not seen
    assert w.window("web", P.MEMORY, 60, 130.0) == []
    assert w.window("api", P.CPU, 60, 130.0) == []


def test_window_is_bounded_by_count_and_age():
    w = source.WindowedMetrics(retention=60, max_samples=5)
    for k in range(10):
        w.add("web", P.CPU, 1000.0 + k, float(k))
    assert [v for _, v in w.window("web", P.CPU, 1e9, 2000.0)] == [5.0, 6.0, 7.0, 8.0, 9.0]
    w.add("web", P.CPU, 1100.0, 99.0)  # 60 s retention: everything older than 1040 goes
    assert w.window("web", P.CPU, 1e9, 2000.0) == [(1100.0, 99.0)]


def test_out_of_order_and_non_finite_samples():
    w = source.WindowedMetrics()
    w.add("web", P.CPU, 10.0, 1.0)
    w.add("web", P.CPU, 30.0, 3.0)
    w.add("web", P.CPU, 20.0, 2.0)
    w.add("web", P.CPU, 40.0, float("nan"))
    assert w.window("web", P.CPU, 100, 50.0) == [(10.0, 1.0), (20.0, 2.0), (30.0, 3.0)]


def test_series_feeds_decide_and_forget_drops_a_service():
    w = source.WindowedMetrics()
    w.add_all("web", {P.CPU: 90.0, P.MEMORY: 40.0}, 995.0)
    w.add_all("api", {P.CPU: 10.0}, 995.0)
    series = w.series("web", [P.CPU, P.MEMORY], 60, 1000.0)
    assert series == {P.CPU: [(995.0, 90.0)], P.MEMORY: [(995.0, 40.0)]}
    cfg = P.ScalingConfig.from_manifest(
        {
            "minCapacity": 1,
            "maxCapacity": 10,
            "targetTracking": [{"predefinedMetric": P.CPU, "targetValue": 45}],
        }
    )
    decision, _ = P.decide(cfg, P.ScalingState(), 2, series, 1000.0)
    assert decision.desired == 4
    w.forget("web")
    assert w.services() == {"api"}


# ============================================================================================== sources

CPU_METRIC, MEMORY_METRIC = P.Metric(P.CPU), P.Metric(P.MEMORY)
QUEUE = P.Metric("queue_depth", "http://web:9100/metrics", "Maximum")


def test_static_source_answers_what_it_knows():
    s = source.StaticSource({"web": {P.CPU: 80.0}})
    assert s.collect("web", [CPU_METRIC, MEMORY_METRIC], 0.0) == {P.CPU: 80.0}
    s.set("web", P.MEMORY, 30)
    s.set("web", P.CPU, None)
    assert s.collect("web", [CPU_METRIC, MEMORY_METRIC], 0.0) == {P.MEMORY: 30.0}
    assert s.collect("api", [CPU_METRIC], 0.0) == {}


def test_composite_source_first_answer_wins_and_asks_only_for_the_rest():
    asked = []

    class Recording:
        def collect(self, service, metrics, now):
            asked.append([m.key for m in metrics])
            return {m.key: 1.0 for m in metrics}

    composite = source.CompositeSource([source.StaticSource({"web": {P.CPU: 80.0}}), Recording()])
    assert composite.collect("web", [CPU_METRIC, MEMORY_METRIC], 0.0) == {P.CPU: 80.0, P.MEMORY: 1.0}
    assert asked == [[P.MEMORY]]


def test_http_source_combines_endpoints_and_keeps_errors():
    bodies = {"http://t1/m": "queue_depth 4\n", "http://t2/m": "queue_depth 9\n", "http://t3/m": None}

    def fetch(url, name, timeout):
        if bodies[url] is None:
            raise source.MetricError(f"{url}: connection refused")
        return source.parse_metric_body(bodies[url], name)

    http = source.HttpMetricSource(fetch=fetch, urls=lambda service, metric: list(bodies))
    assert http.collect("web", [CPU_METRIC, QUEUE], 0.0) == {QUEUE.key: 9.0}  # Maximum of 4 and 9
    assert http.errors == {("web", QUEUE.key): "http://t3/m: connection refused"}
    bodies["http://t1/m"] = bodies["http://t2/m"] = None
    assert http.collect("web", [QUEUE], 0.0) == {}
    assert http.errors[("web", QUEUE.key)].count("connection refused") == 3
    bodies.update({"http://t1/m": "1", "http://t2/m": "2", "http://t3/m": "3"})
    assert http.collect("web", [QUEUE], 0.0) == {QUEUE.key: 3.0} and http.errors == {}
    assert source.combine([1.0, 2.0, 6.0]) == 3.0


class _Handler(http.server.BaseHTTPRequestHandler):
    routes = {"/number": (200, b"17.5\n"), "/prom": (200, EXPOSITION.encode()), "/fail": (503, b"busy")}

    def do_GET(self):  # noqa: N802 - the http.server hook name
        status, body = self.routes.get(self.path, (404, b"no"))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_custom_metric_over_http(server):
    assert source.fetch_custom_metric(f"{server}/number", None, 5) == 17.5
    assert source.fetch_custom_metric(f"{server}/prom", 'http_requests_in_flight{method="GET"}', 5) == 13.0
    with pytest.raises(source.MetricError, match="HTTP 503"):
        source.fetch_custom_metric(f"{server}/fail", None, 5)
    with pytest.raises(source.MetricError, match="/prom: no finite sample"):
        source.fetch_custom_metric(f"{server}/prom", "nope", 5)


def test_fetch_custom_metric_unreachable():
    with pytest.raises(source.MetricError, match="127.0.0.1:9"):
        source.fetch_custom_metric("http://127.0.0.1:9/metrics", None, 2)
