"""An alarm on a customized metric read over real HTTP, on loopback, driven by a ManualClock.

A tiny exporter on 127.0.0.1 (an ephemeral port, started and stopped here) serves Prometheus text whose
value the test sets; the monitor reads it with `make_sampler` (scaling.source's HTTP fetch and parser)
every 5 s of manual time, evaluates a 10 s, 1-period alarm, and goes OK -> ALARM -> OK. The states reach
the Prometheus gauge, `alarms.json` (as another process reads it) and the `get alarms` rows; when the
exporter goes away the alarm falls to INSUFFICIENT_DATA naming the error. Nothing sleeps and nothing is
timed: the clock moves only when the test moves it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.alarms import evaluate as E
from reconciler.alarms import monitor as MON
from reconciler.alarms import report
from reconciler.alarms.store import AlarmStore
from reconciler.clock import ManualClock
from reconciler.daemon.metrics import Metrics
from reconciler.model import spec

T0 = 1_800_000_000.0  # a multiple of the period


class Exporter:
    """Serves `queue_depth{queue="a"} <value>` (and an unrelated series) on 127.0.0.1."""

    def __init__(self) -> None:
        self.value = 0.0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = (
                    "# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\n"
                    f'queue_depth{{queue="a"}} {exporter.value}\nother_metric 12345\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, name="exporter", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if not self.thread.is_alive():
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def exporter():
    ex = Exporter()
    try:
        yield ex
    finally:
        ex.close()


def test_alarm_goes_ok_alarm_ok_then_insufficient_data_when_the_exporter_goes(exporter, tmp_path):
    alarm = spec.Alarm(
        name="queue-high",
        metric={"customizedMetric": {"url": exporter.url, "metricName": 'queue_depth{queue="a"}'}},
        threshold=80.0,
        comparison_operator="GreaterThanOrEqualToThreshold",
        statistic="Average",
        period=10,
        evaluation_periods=1,
    )
    clock = ManualClock(T0)
    metrics = Metrics()
    store = AlarmStore(str(tmp_path))
    transitions: list[str] = []

    def on_change(before, after):
        metrics.set_alarm_state(after.name, after.state)
        transitions.append(after.state)

    mon = MON.AlarmMonitor({alarm.name: alarm}, MON.make_sampler(timeout=5.0), clock, on_change, store=store)

    def run_for(seconds: int) -> E.AlarmState:
        """Ticks every 5 s of manual time (the sample interval of a 10 s period) for `seconds`."""
        for _ in range(seconds // 5):
            clock.advance(5)
            mon.tick(clock.now())
        return mon.states()[alarm.name]

    exporter.value = 12.0
    mon.tick(clock.now())
    assert transitions == [E.INSUFFICIENT_DATA]
    ok = run_for(10)  # the period [T0, T0 + 10) has ended: 12 < 80
    assert (ok.state, ok.updated_at) == (E.OK, T0 + 10)
    assert ok.reason.startswith("Threshold Crossed: 1 out of the last 1 datapoints [12.0 (")

    exporter.value = 93.0
    assert run_for(10).state == E.OK  # [T0 + 10, T0 + 20): 12 then 93, an average of 52.5
    alarmed = run_for(10)  # [T0 + 20, T0 + 30): 93 and 93
    assert (alarmed.state, alarmed.updated_at) == (E.ALARM, T0 + 30)
    assert alarmed.reason.endswith(
        "was greater than or equal to the threshold (80.0) (minimum 1 datapoint for OK -> ALARM transition)."
    )
    assert alarmed.datapoints[-1] == E.Datapoint(T0 + 20, 93.0, 2)

    saved = store.load()  # what `reconciler get alarms` reads, in another process
    assert saved[alarm.name].state == E.ALARM
    [row] = report.rows({alarm.name: alarm}, saved, clock.now())
    assert (row["StateValue"], row["Stale"], row["MetricName"]) == ("ALARM", False, 'queue_depth{queue="a"}')

    exporter.value = 3.0
    back = run_for(10)  # [T0 + 30, T0 + 40): 93 then 3, an average of 48
    assert (back.state, back.updated_at) == (E.OK, T0 + 40)
    assert run_for(10).updated_at == T0 + 40  # still OK: no transition, the timestamp stays
    assert "ALARM -> OK transition" in back.reason
    assert transitions == [E.INSUFFICIENT_DATA, E.OK, E.ALARM, E.OK]

    body = metrics.render()[0].decode()
    assert 'reconciler_alarm_state{alarm="queue-high",state="OK"} 1.0' in body
    assert 'reconciler_alarm_state{alarm="queue-high",state="ALARM"} 0.0' in body

    exporter.close()  # the endpoint is gone: datapoints go missing from [T0 + 60, T0 + 70) on
    assert run_for(30).state == E.OK  # at T0 + 80 the evaluation range still holds [T0 + 50, T0 + 60)
    gone = run_for(10)  # at T0 + 90 all three periods of the range are missing
    assert gone.state == E.INSUFFICIENT_DATA
    assert gone.error is not None and gone.error.startswith(exporter.url)
    assert gone.reason == f"Insufficient Data: 1 datapoint was unknown. Last error reading the metric: {gone.error}"
    assert transitions[-1] == E.INSUFFICIENT_DATA
    assert store.load()[alarm.name].error == gone.error
