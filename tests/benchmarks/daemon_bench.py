"""Benchmark: the `watch` daemon as a real process against one private engine, with baselines from the same run.

1. Event to replacement: 20 one-task services converged; kill each one's container in turn (waiting for each
   replacement and for the daemon to settle); time from `api.kill` to the replacement container's `start` event.
   Median and p90 against the target (< 1 s); baseline: `api.kill` to the `die` event of a plain container on the
   same engine (the floor of any event-driven approach), and the ratio. One kill per service: killing the same
   service again within 10 minutes is a crash loop by the daemon's policy, and the second replacement then waits
   the 10 s backoff by design (that would measure the backoff, not the event path).
2. Manifest save to convergence start: desiredCount +1 written (temp file + rename, like editors) to the first
   new container's `create` event; median of 10 against the target (< 0.5 s).
3. Idle cost: 100 services with 2 tiny tasks each (`sleep`, 6 MiB), converged, daemon idle for 60 s with
   `--resync 60s`: its CPU (utime+stime from /proc) as % of one core (target < 2 %) and its RSS (target
   < 150 MiB); for context, the CPU % of the engine's dockerd (with its containerd) over the same 60 s.

Starts one private engine (tests/engines.py) and destroys it at the end; every daemon is stopped by its pid.
Prints lines, never asserts. Run: `python tests/benchmarks/daemon_bench.py [--quick]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import daemon_helpers as dh  # noqa: E402
import engines as engines_lib  # noqa: E402
import helpers as h  # noqa: E402

CLUSTER = "bench"
KILLS = 20
SAVES = 10
IDLE_SERVICES = 100
IDLE_TASKS_EACH = 2
IDLE_SECONDS = 60.0
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------------------
# Manifests


def cluster_doc(endpoint: str) -> dict:
    return h.cluster(CLUSTER, [endpoint])


def service_docs(name: str, desired: int, container: dict | None = None) -> list[dict]:
    return [
        h.task_definition(name, container or h.container(name)),
        h.service(name, name, desired, cluster_name=CLUSTER),
    ]


def tiny(name: str) -> dict:
    return {"name": name, "image": h.IMAGE, "command": ["sleep", "86400"], "memory": 6, "stopTimeout": 1}


# --------------------------------------------------------------------------------------------------------------
# Engine events with their receipt time


class EventLog:
    """Container events of the engine, each with the monotonic time it was received, on a queue."""

    def __init__(self, client):
        self.events: queue.Queue = queue.Queue()
        self._stream = client.api.events(decode=True, filters={"type": "container"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream raises once closed
            for event in self._stream:
                self.events.put((time.monotonic(), event))

    def drain(self) -> None:
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def wait(self, match, timeout: float = 30.0) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching engine event")
            received, event = self.events.get(timeout=left)
            if match(event):
                return received, event

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()


def action(event: dict) -> str:
    return str(event.get("Action") or event.get("status") or "")


def service_of(event: dict) -> str | None:
    return ((event.get("Actor") or {}).get("Attributes") or {}).get(h.SERVICE)


# --------------------------------------------------------------------------------------------------------------
# Helpers


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def wait_until(check, timeout: float = 60.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def running_containers(client, service: str) -> list[dict]:
    return client.api.containers(filters={"label": [f"{h.SERVICE}={service}"], "status": "running"})


def settled(client, service: str, count: int) -> bool:
    """Exactly `count` containers of `service`, all running (the dead ones removed)."""
    everything = client.api.containers(all=True, filters={"label": [f"{h.SERVICE}={service}"]})
    return len(everything) == count and all(c["State"] == "running" for c in everything)


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def children(pid: int, name: str) -> list[int]:
    """Direct children of `pid` whose executable name contains `name` (dockerd's containerd)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (entry / "stat").read_text()
            if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid and name in raw[raw.index("(") + 1 : raw.rindex(")")]:
                out.append(int(entry.name))
    return out


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def clear(client) -> None:
    ids = [c["Id"] for c in client.api.containers(all=True)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.api.remove_container(i, force=True), ids))


# --------------------------------------------------------------------------------------------------------------
# The measurements


def kill_to_die_floor(client, events: EventLog, rounds: int) -> list[float]:
    """`api.kill` to the `die` event of a plain (unmanaged) container, `rounds` times."""
    out = []
    for i in range(rounds):
        c = client.api.create_container(h.IMAGE, ["sleep", "3600"], name=f"floor-{i}", stop_timeout=1)
        client.api.start(c["Id"])
        events.drain()
        t0 = time.monotonic()
        client.api.kill(c["Id"])
        received, _ = events.wait(lambda e, cid=c["Id"]: action(e) == "die" and e.get("id") == cid)
        out.append(received - t0)
        client.api.remove_container(c["Id"], force=True)
    return out


def event_to_replacement(client, events: EventLog, daemon: dh.Daemon, services: list[str]) -> list[float]:
    """Kills the one task of each service in turn; each kill is that service's first failure (see the module doc)."""
    out = []
    for name in services:
        time.sleep(1.2)  # let the daemon's delayed re-checks of the previous round (up to 1 s) run out
        (victim,) = running_containers(client, name)
        events.drain()
        t0 = time.monotonic()
        client.api.kill(victim["Id"])
        received, _ = events.wait(
            lambda e, old=victim["Id"], s=name: action(e) == "start" and service_of(e) == s and e.get("id") != old
        )
        out.append(received - t0)
        daemon.check_alive()
        wait_until(lambda s=name: settled(client, s, 1), what=f"{name} settled")
    return out


def save_to_create(client, events: EventLog, daemon: dh.Daemon, path: Path, rounds: int, start: int) -> list[float]:
    out = []
    desired = start
    for _ in range(rounds):
        wait_until(lambda n=desired: settled(client, "grow", n), what=f"{desired} settled tasks")
        time.sleep(0.5)
        desired += 1
        text = dh.dump(*service_docs("grow", desired))
        events.drain()
        t0 = time.monotonic()
        dh.write_atomically(path, text)
        received, _ = events.wait(lambda e: action(e) == "create" and service_of(e) == "grow")
        out.append(received - t0)
        daemon.check_alive()
    wait_until(lambda: settled(client, "grow", desired), what=f"{desired} settled tasks")
    return out


def idle_cost(engine, client, tmp: Path, seconds: float) -> tuple[float, float, int, int, float]:
    """(daemon CPU %, dockerd CPU %, daemon RSS KiB, daemon peak RSS KiB, apply seconds)."""
    manifests = tmp / "idle"
    manifests.mkdir()
    (manifests / "cluster.yaml").write_text(dh.dump(cluster_doc(engine.endpoint)))
    for i in range(IDLE_SERVICES):
        name = f"s{i:03d}"
        (manifests / f"{name}.yaml").write_text(dh.dump(*service_docs(name, IDLE_TASKS_EACH, tiny(name))))
    state = tmp / "idle-state"
    began = time.monotonic()
    result = subprocess.run(  # the CLI converges the 200 tasks; the daemon then only keeps them
        [sys.executable, "-m", "reconciler", "apply", str(manifests), "--yes", "--state-dir", str(state), "--concurrency", "8"],
        capture_output=True, text=True, env=dh.cli_environ(), timeout=900,
    )  # fmt: skip
    applied = time.monotonic() - began
    if result.returncode != 0:
        raise RuntimeError(f"apply of the idle workload failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    running = len(client.api.containers(filters={"label": [f"{h.MANAGED}=true"], "status": "running"}))
    if running != IDLE_SERVICES * IDLE_TASKS_EACH:
        raise RuntimeError(f"expected {IDLE_SERVICES * IDLE_TASKS_EACH} running containers, found {running}")
    daemon = dh.Daemon(tmp, state, [str(manifests), "--resync", "60s"], tmp / "idle-daemon.log")
    try:
        daemon.start()
        daemon.wait_ready(timeout=120)
        time.sleep(3)  # the first pass and its enqueued keys finish; then the daemon is idle
        engine_pids = [engine.pid, *children(engine.pid, "containerd")]  # dockerd and its containerd

        def engine_cpu() -> float:
            return sum(cpu_seconds(p) for p in engine_pids)

        d0, e0, t0 = cpu_seconds(daemon.pid), engine_cpu(), time.monotonic()
        time.sleep(seconds)
        d1, e1, t1 = cpu_seconds(daemon.pid), engine_cpu(), time.monotonic()
        rss, peak = memory_kib(daemon.pid, "VmRSS"), memory_kib(daemon.pid, "VmHWM")
        daemon.check_alive()
        actions = [m for m in daemon.messages() if m.startswith(("start ", "stop "))]
        if actions:
            print(f"idle: note: the daemon acted while idle: {actions[:3]}")
        wall = t1 - t0
        return 100 * (d1 - d0) / wall, 100 * (e1 - e0) / wall, rss, peak, applied
    finally:
        with contextlib.suppress(Exception):
            daemon.stop(timeout=30)
        daemon.close()


# --------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and a 15 s idle window (a smoke run)")
    args = parser.parse_args()
    kills, saves, idle = (5, 3, 15.0) if args.quick else (KILLS, SAVES, IDLE_SECONDS)

    reason = engines_lib.engines_unavailable_reason()
    if reason:
        print(f"daemon: skipped, no engine can be started here: {reason}")
        return 1
    began = time.monotonic()
    (engine,) = engines_lib.start_engines(1)
    tmp = Path(tempfile.mkdtemp(prefix="rdbench-"))
    client = engine.client()
    events = EventLog(client)
    daemon: dh.Daemon | None = None
    try:
        floor = kill_to_die_floor(client, events, kills)

        manifests = tmp / "manifests"
        manifests.mkdir()
        (manifests / "cluster.yaml").write_text(dh.dump(cluster_doc(engine.endpoint)))
        victims = [f"k{i:02d}" for i in range(kills)]
        (manifests / "kill.yaml").write_text(dh.dump(*(doc for name in victims for doc in service_docs(name, 1))))
        path = manifests / "grow.yaml"
        path.write_text(dh.dump(*service_docs("grow", 1)))
        daemon = dh.Daemon(tmp, tmp / "state", [str(manifests)], tmp / "daemon.log")
        daemon.start()
        daemon.wait_ready()
        for name in [*victims, "grow"]:
            wait_until(lambda s=name: settled(client, s, 1), what=f"the task of {name}")

        latency = event_to_replacement(client, events, daemon, victims)
        fm, lm, lp = statistics.median(floor), statistics.median(latency), percentile(latency, 0.9)
        print(
            f"event to replacement: median {lm * 1000:.0f} ms, p90 {lp * 1000:.0f} ms over {kills} kills (target < 1000 ms); "
            f"floor kill->die event {fm * 1000:.0f} ms (median); ratio {lm / fm:.1f}x"
        )

        saved = save_to_create(client, events, daemon, path, saves, 1)
        sm = statistics.median(saved)
        print(
            f"manifest save to first create: median {sm * 1000:.0f} ms, max {max(saved) * 1000:.0f} ms over {saves} saves "
            f"(target < 500 ms; includes the 200 ms file debounce)"
        )
        daemon.stop(timeout=30)
        daemon.close()
        daemon = None
        clear(client)

        cpu, engine_cpu, rss, peak, applied = idle_cost(engine, client, tmp, idle)
        n = IDLE_SERVICES * IDLE_TASKS_EACH
        print(
            f"idle ({IDLE_SERVICES} services, {n} tasks, {idle:.0f} s, --resync 60s): daemon CPU {cpu:.2f} % of one core "
            f"(target < 2 %), RSS {rss / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB (target < 150 MiB); "
            f"context: the engine's dockerd+containerd {engine_cpu:.2f} % over the same window"
        )
        print(f"(setup: apply of the {n} idle tasks took {applied:.1f} s; whole benchmark {time.monotonic() - began:.0f} s)")
    except BaseException:
        if daemon is not None:
            print(f"daemon log tail:\n{daemon.tail(40)}", file=sys.stderr)
        raise
    finally:
        if daemon is not None:
            with contextlib.suppress(Exception):
                daemon.signal(signal.SIGTERM)
            daemon.close()
        events.close()
        client.close()
        engine.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
