"""Helpers for the auto-scaling real-engine tests: scaled services, busybox load, a metrics endpoint, the state file.

Owns: `autoscaled` (the TaskDefinition and Service documents of a service with an `autoScaling` block), the
busybox workloads that burn CPU (until /tmp/idle exists) or hold memory, `MetricServer` (a Prometheus-text
endpoint on 127.0.0.1 served from a thread of the test process, whose value the test changes), `watch` (a
`reconciler watch --listen off --scaling-period 1s` daemon through `daemon_helpers.Daemons`, so it is killed
by its recorded pid at teardown and logs to a file), reading `<cluster>.scaling.json` from the state directory,
and `exec_in` (docker exec through the SDK, for assertions and for switching a task's load off).
Must not: start, stop or reset engines, reach anything but 127.0.0.1 and the test's engine, or stop a
process other than by its recorded pid. Manifest documents and engine queries come from `helpers`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import daemon_helpers as dh
import helpers as h

# Busy unless /tmp/idle exists: `[` is a shell builtin, so the loop never forks and burns one core.
BURN = "trap 'exit 0' TERM; while :; do if [ -f /tmp/idle ]; then sleep 1; fi; done"
HELD_BYTES = 14_000_000  # about 13.4 MiB held in a shell variable: ~42 % of a 32 MiB reservation


def hold_memory(nbytes: int = HELD_BYTES) -> str:
    """Keeps `nbytes` in the shell's own memory (a variable), then idles until SIGTERM."""
    return f"x=$(head -c {nbytes} /dev/zero | tr '\\0' a); trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"


WATCH_ARGS = ("--listen", "off", "--scaling-period", "1s", "--resync", "30s")


def autoscaled(name: str, container: Mapping[str, Any], desired: int, auto_scaling: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """The TaskDefinition and Service of an auto-scaled service `name` with one container."""
    return (
        h.task_definition(name, dict(container)),
        h.service(name, name, desired, autoScaling=dict(auto_scaling)),
    )


def target(metric: str | Mapping[str, Any], value: float, scale_out: int = 2, scale_in: int = 3, **extra: Any) -> dict[str, Any]:
    """A targetTracking policy on a predefined metric (a str) or a customizedMetric (a mapping)."""
    key = "predefinedMetric" if isinstance(metric, str) else "customizedMetric"
    return {key: metric, "targetValue": value, "scaleOutCooldown": scale_out, "scaleInCooldown": scale_in, **extra}


def watch(daemons: dh.Daemons, *args: str) -> dh.Daemon:
    """`reconciler watch manifests --listen off --scaling-period 1s --resync 30s ARGS` (no listener to wait for)."""
    return daemons.start("manifests", *WATCH_ARGS, *args, ready=False)


# --------------------------------------------------------------------------------------------------------------
# The state file and the engine


def scaling_file(state: Path, cluster: str = "test") -> Path:
    return Path(state) / f"{cluster}.scaling.json"


def scaling_entry(state: Path, service: str, cluster: str = "test") -> dict[str, Any] | None:
    """The daemon's persisted entry of `service` (desiredCount, reason, state, decisions), or None."""
    try:
        entries = json.loads(scaling_file(state, cluster).read_text())
    except (OSError, ValueError):  # not written yet, or caught between truncate and write
        return None
    entry = entries.get(service) if isinstance(entries, dict) else None
    return entry if isinstance(entry, dict) else None


def app_containers(client, service: str) -> list[dict[str, Any]]:
    """Running app containers (no pause holders) of a service, list shape."""
    return [
        c for c in h.managed(client, service=service)
        if c["State"] == "running" and c["Labels"].get(h.ROLE) != "pause"
    ]  # fmt: skip


def exec_in(client, container_id: str, *command: str) -> tuple[int, str]:
    """(exit code, output) of `command` run in a container (docker exec)."""
    result = client.containers.get(container_id).exec_run(list(command))
    return result.exit_code, result.output.decode(errors="replace")


def decisions_text(state: Path, service: str) -> str:
    entry = scaling_entry(state, service) or {}
    return "\n".join(f"  {d.get('direction')}: {d.get('reason')}" for d in entry.get("decisions") or [])


# --------------------------------------------------------------------------------------------------------------
# A customized metric endpoint


class MetricServer:
    """Serves `NAME VALUE` (Prometheus text) on http://127.0.0.1:PORT/metrics from a thread; `value` is settable.

    Use as a context manager: the server thread is shut down and joined on exit."""

    def __init__(self, name: str = "queue_depth", value: float = 0):
        self.name = name
        self.value = value
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.requests += 1
                body = f"# TYPE {owner.name} gauge\n{owner.name} {owner.value:g}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metric-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/metrics"

    def __enter__(self) -> MetricServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=10)
