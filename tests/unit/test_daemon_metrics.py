"""The daemon's metrics and its HTTP status listener, served for real on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.daemon import metrics as M
from reconciler.daemon import server as S


def samples(metrics: M.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers["Content-Type"], e.read().decode()


class Daemon:
    """What a daemon would hand the listener: a status dict and a readiness flag it flips."""

    def __init__(self) -> None:
        self.ready: bool | tuple[bool, str] = False
        self.status = {"clusters": {"prod": {"services": 2}}, "commit": "abc123"}

    def is_ready(self) -> bool | tuple[bool, str]:
        return self.ready


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


@pytest.fixture
def served(daemon: Daemon):
    metrics = M.Metrics()
    srv = S.StatusServer("127.0.0.1:0", status=lambda: daemon.status, ready=daemon.is_ready, metrics=metrics)
    srv.start()
    try:
        yield srv, metrics
    finally:
        srv.stop()


# -- HTTP endpoints ----------------------------------------------------------------------------------


def test_healthz_answers_ok(served):
    srv, _ = served
    assert srv.port != 0
    assert srv.url == f"http://127.0.0.1:{srv.port}"
    assert get(srv.url + "/healthz") == (200, S.TEXT, "ok\n")


def test_readyz_follows_the_readiness_callback(served, daemon):
    srv, _ = served
    status, _, body = get(srv.url + "/readyz")
    assert (status, body) == (503, "not ready\n")
    daemon.ready = True
    assert get(srv.url + "/readyz")[::2] == (200, "ok\n")
    daemon.ready = (False, "no successful reconcile\nyet")
    assert get(srv.url + "/readyz")[::2] == (503, "not ready: no successful reconcile yet\n")


def test_readyz_is_503_when_the_callback_raises():
    def broken() -> bool:
        raise RuntimeError("controller gone")

    with S.StatusServer("127.0.0.1:0", status=dict, ready=broken, metrics=M.Metrics()) as srv:
        status, _, body = get(srv.url + "/readyz")
    assert status == 503
    assert body == "not ready: readiness check failed: RuntimeError: controller gone\n"


def test_status_is_the_callbacks_dict_as_indented_sorted_json(served, daemon):
    srv, _ = served
    status, content_type, body = get(srv.url + "/status")
    assert (status, content_type) == (200, S.JSON)
    assert json.loads(body) == daemon.status
    assert body == json.dumps(daemon.status, indent=2, sort_keys=True) + "\n"
    assert body.index('"clusters"') < body.index('"commit"')


def test_status_callback_failure_is_a_500_and_the_listener_keeps_serving():
    def broken() -> dict:
        raise KeyError("prod")

    with S.StatusServer("127.0.0.1:0", status=broken, ready=lambda: True, metrics=M.Metrics()) as srv:
        status, _, body = get(srv.url + "/status")
        assert status == 500
        assert "KeyError" in body
        assert get(srv.url + "/healthz")[0] == 200


def test_metrics_endpoint_serves_the_exposition(served):
    srv, metrics = served
    metrics.set_queue_depth(7)
    status, content_type, body = get(srv.url + "/metrics")
    assert status == 200
    assert content_type == prometheus_client.CONTENT_TYPE_LATEST
    assert "reconciler_queue_depth 7.0" in body.splitlines()


@pytest.mark.parametrize("path", ["/", "/nope", "/metrics/x", "/healthz/"])
def test_unknown_paths_are_404(served, path):
    srv, _ = served
    assert get(srv.url + path)[::2] == (404, "not found\n")


def test_query_strings_are_ignored(served):
    srv, _ = served
    assert get(srv.url + "/healthz?verbose=1")[0] == 200


def test_other_methods_are_not_allowed(served):
    srv, _ = served
    request = urllib.request.Request(srv.url + "/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 405
    assert err.value.headers["Allow"] == "GET"
    err.value.close()


def test_requests_are_not_logged_to_stderr(served, capfd):
    srv, _ = served
    get(srv.url + "/healthz")
    get(srv.url + "/nope")
    assert capfd.readouterr().err == ""


def test_stop_closes_the_listener_and_is_idempotent(daemon):
    srv = S.StatusServer("127.0.0.1:0", status=lambda: daemon.status, ready=daemon.is_ready, metrics=M.Metrics())
    srv.start()
    port = srv.port
    thread = srv._thread
    srv.stop()
    assert thread is not None and not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    srv.stop()
    with pytest.raises(RuntimeError, match="not started"):
        srv.port  # noqa: B018


def test_start_twice_is_an_error(served):
    srv, _ = served
    with pytest.raises(RuntimeError, match="already started"):
        srv.start()


# -- listen addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listen, expected",
    [
        ("127.0.0.1:9400", ("127.0.0.1", 9400)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
        ("[::1]:9400", ("::1", 9400)),
        ("[::]:80", ("::", 80)),
        ("[0:0:0:0:0:0:0:1]:9400", ("::1", 9400)),
    ],
)
def test_parse_listen(listen, expected):
    assert S.parse_listen(listen) == expected


@pytest.mark.parametrize(
    "listen, message",
    [
        ("", "expected HOST:PORT"),
        ("9400", "expected HOST:PORT"),
        ("127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:", "port '' is not a number"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:65536", "port 65536 is out of range"),
        (":9400", "missing host"),
        ("::1:9400", "put an IPv6 address in brackets"),
        ("[::1]", "expected HOST:PORT"),
        ("[nope]:9400", "'nope' is not an IPv6 address"),
        ("[127.0.0.1]:9400", "'127.0.0.1' is not an IPv6 address"),
        ("256.1.1.1:9400", "'256.1.1.1' is not an IPv4 address"),
        ("bad_host!:9400", "is not a host name or IP address"),
        ("http://127.0.0.1:9400", "without a scheme"),
        ("[::1]:9400:1", "expected HOST:PORT"),
    ],
)
def test_bad_listen_strings_are_rejected_with_the_reason(listen, message):
    with pytest.raises(ValueError, match="listen address") as err:
        S.StatusServer(listen, status=dict, ready=lambda: True, metrics=M.Metrics())
    assert message in str(err.value)


def test_port_in_use_is_a_clear_error():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        srv = S.StatusServer(f"127.0.0.1:{port}", status=dict, ready=lambda: True, metrics=M.Metrics())
        with pytest.raises(ValueError) as err:
            srv.start()
    assert str(err.value) == f"cannot listen on 127.0.0.1:{port}: address already in use"


def test_address_not_on_this_host_is_a_clear_error():
    srv = S.StatusServer("192.0.2.1:0", status=dict, ready=lambda: True, metrics=M.Metrics())  # TEST-NET-1
    with pytest.raises(ValueError, match=r"^cannot listen on 192\.0\.2\.1:0: cannot assign requested address$"):
        srv.start()


# -- the collectors ----------------------------------------------------------------------------------


def test_every_method_shows_up_as_a_series():
    m = M.Metrics()
    m.observe_reconcile(0.3, ok=True)
    m.observe_reconcile(4.0, ok=False)
    m.set_queue_depth(3)
    m.set_tasks("prod", "web", {"RUNNING": 2, "PENDING": 1})
    m.count_action("start", ok=True)
    m.count_action("start", ok=True)
    m.count_action("deploy", ok=False)
    m.mark_success(1700000000.5)
    m.set_engine_up("prod", "tcp://10.0.0.1:2376", True)
    m.set_engine_up("prod", "tcp://10.0.0.2:2376", False)
    m.set_desired("prod", "web", 4, "manifest")
    m.set_desired("prod", "web", 6, "autoscaling")
    m.count_scaling("web", "out")
    m.set_backoff("prod", "web", 40)
    m.set_commit("a" * 40)
    got = samples(m)
    assert got[key("reconciler_reconcile_duration_seconds_count", result="ok")] == 1
    assert got[key("reconciler_reconcile_duration_seconds_sum", result="error")] == 4.0
    assert got[key("reconciler_reconcile_duration_seconds_bucket", result="ok", le="0.5")] == 1
    assert got[key("reconciler_queue_depth")] == 3
    assert got[key("reconciler_tasks", cluster="prod", service="web", state="RUNNING")] == 2
    assert got[key("reconciler_tasks", cluster="prod", service="web", state="PENDING")] == 1
    assert got[key("reconciler_tasks", cluster="prod", service="web", state="STOPPED")] == 0
    assert got[key("reconciler_tasks", cluster="prod", service="web", state="UNKNOWN")] == 0
    assert got[key("reconciler_actions_total", kind="start", result="ok")] == 2
    assert got[key("reconciler_actions_total", kind="deploy", result="failed")] == 1
    assert got[key("reconciler_last_successful_reconcile_timestamp_seconds")] == 1700000000.5
    assert got[key("reconciler_engine_up", cluster="prod", endpoint="tcp://10.0.0.1:2376")] == 1
    assert got[key("reconciler_engine_up", cluster="prod", endpoint="tcp://10.0.0.2:2376")] == 0
    assert got[key("reconciler_desired_count", cluster="prod", service="web", source="manifest")] == 4
    assert got[key("reconciler_desired_count", cluster="prod", service="web", source="autoscaling")] == 6
    assert got[key("reconciler_scaling_decisions_total", service="web", direction="out")] == 1
    assert got[key("reconciler_crashloop_backoff_seconds", cluster="prod", service="web")] == 40
    assert got[key("reconciler_applied_commit_info", commit="a" * 40)] == 1


def test_set_tasks_zeroes_states_that_are_no_longer_reported():
    m = M.Metrics()
    m.set_tasks("prod", "web", {"RUNNING": 1, "STOPPED": 3})
    m.set_tasks("prod", "web", {"RUNNING": 2})
    got = samples(m)
    assert got[key("reconciler_tasks", cluster="prod", service="web", state="RUNNING")] == 2
    assert got[key("reconciler_tasks", cluster="prod", service="web", state="STOPPED")] == 0


def test_forget_service_drops_its_series_only():
    m = M.Metrics()
    for service in ("web", "api"):
        m.set_tasks("prod", service, {"RUNNING": 1})
        m.set_desired("prod", service, 1, "manifest")
        m.set_backoff("prod", service, 10)
    m.forget_service("prod", "web")
    m.forget_service("prod", "never-seen")  # not an error
    names = {(name, dict(labels).get("service")) for name, labels in samples(m)}
    assert ("reconciler_tasks", "web") not in names
    assert ("reconciler_desired_count", "web") not in names
    assert ("reconciler_crashloop_backoff_seconds", "web") not in names
    assert {("reconciler_tasks", "api"), ("reconciler_desired_count", "api")} <= names
    assert ("reconciler_crashloop_backoff_seconds", "api") in names


def test_forget_engine_drops_its_series():
    m = M.Metrics()
    m.set_engine_up("prod", "unix:///a.sock", True)
    m.set_engine_up("prod", "unix:///b.sock", True)
    m.forget_engine("prod", "unix:///a.sock")
    got = samples(m)
    assert key("reconciler_engine_up", cluster="prod", endpoint="unix:///a.sock") not in got
    assert got[key("reconciler_engine_up", cluster="prod", endpoint="unix:///b.sock")] == 1


def test_set_commit_keeps_only_the_current_commit():
    m = M.Metrics()
    m.set_commit("1" * 40)
    m.set_commit("2" * 40)
    m.set_commit("2" * 40)
    got = samples(m).items()
    commits = {dict(labels)["commit"]: v for (name, labels), v in got if name == "reconciler_applied_commit_info"}
    assert commits == {"2" * 40: 1}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.set_tasks("prod", "web", {"running": 1}), "task state 'running'"),
        (lambda m: m.count_action("restart", True), "action kind 'restart'"),
        (lambda m: m.set_desired("prod", "web", 1, "cli"), "desired count source 'cli'"),
        (lambda m: m.count_scaling("web", "up"), "scaling direction 'up'"),
        (lambda m: m.set_commit(""), "empty sha"),
    ],
)
def test_label_values_outside_their_set_are_rejected(call, message):
    m = M.Metrics()
    with pytest.raises(ValueError, match="expected one of|empty sha") as err:
        call(m)
    assert message in str(err.value)


def test_two_metrics_objects_do_not_collide_nor_touch_the_global_registry():
    a, b = M.Metrics(), M.Metrics()
    a.set_queue_depth(1)
    b.set_queue_depth(2)
    a.count_action("stop", ok=True)
    assert samples(a)[key("reconciler_queue_depth")] == 1
    assert samples(b)[key("reconciler_queue_depth")] == 2
    assert key("reconciler_actions_total", kind="stop", result="ok") not in samples(b)
    assert b"reconciler_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


# -- alarm states ------------------------------------------------------------------------------------


def alarm_states(m: M.Metrics) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["alarm"], dict(labels)["state"]): v
        for (name, labels), v in samples(m).items()
        if name == "reconciler_alarm_state"
    }


def test_set_alarm_state_is_one_for_the_current_state_and_zero_for_the_others():
    m = M.Metrics()
    m.set_alarm_state("queue-high", "OK")
    m.set_alarm_state("cpu-high", "INSUFFICIENT_DATA")
    m.set_alarm_state("queue-high", "ALARM")
    assert alarm_states(m) == {
        ("queue-high", "OK"): 0,
        ("queue-high", "ALARM"): 1,
        ("queue-high", "INSUFFICIENT_DATA"): 0,
        ("cpu-high", "OK"): 0,
        ("cpu-high", "ALARM"): 0,
        ("cpu-high", "INSUFFICIENT_DATA"): 1,
    }


def test_forget_alarm_drops_its_series_only():
    m = M.Metrics()
    m.set_alarm_state("queue-high", "ALARM")
    m.set_alarm_state("cpu-high", "OK")
    m.forget_alarm("queue-high")
    m.forget_alarm("never-seen")  # not an error
    assert {alarm for alarm, _ in alarm_states(m)} == {"cpu-high"}


def test_alarm_states_outside_the_set_are_rejected():
    m = M.Metrics()
    with pytest.raises(ValueError, match="alarm state 'INSUFFICIENT'"):
        m.set_alarm_state("queue-high", "INSUFFICIENT")
    assert alarm_states(m) == {}
