"""Benchmark: the `watch` daemon as a real process against one private engine, with baselines from the same run.

1. Event to replacement: 20 one-task services converged; kill each one's container in turn (waiting for each
   replacement and for the daemon to settle); time from `api.kill` to the replacement container's `start` event.
   Median and p90 against the target (< 1 s); baseline: `api.kill` to the `die` event of a plain container on the
   same engine (the floor of any event-driven approach), and the ratio. One kill per service: killing the same
   service again within 10 minutes is a crash loop by the daemon's policy, and the second replacement then waits
   the 10 s backoff by design (that would measure the backoff, not the event path).
2. Manifest save to convergence start: desiredCount +1 written (temp file + rename, like editors) to the first
   new container's `create` event; median of 10 against the target (< 0.5 s).
3. Event to replacement, two-container tasks: one service of 6 tasks of the shape in `twotask` (app: httpd with a
   health check every 5 s, essential; sidecar: `sleep` that ignores SIGTERM, dependsOn app HEALTHY; default
   stopTimeout 30 s; bridge network), under its own daemon. 20 kills (SIGKILL of a task's `app` through the engine
   API), each timed from `api.kill` to the `start` event of the replacement task's first container (a task id not
   seen before). Victims are spread over the tasks (the one up longest first). Two kinds, reported apart:
   - healthy: app healthy and sidecar running. After the first kill every such kill arrives while earlier dead
     tasks are still stopping (their sidecar waits out its 30 s stopTimeout in the background); the line says how
     many did.
   - never-healthy: the replacement just started (app running, health "starting", sidecar still `created`) is
     killed 1.2 s after its start. Such deaths are crash-loop failures by the daemon's policy: after the n-th, a
     next one within 10 s x 2^(n-1) of the last attempt waits out the backoff by design, so these kills are paced
     outside that window (10 s, then 20 s, ... after the previous one) and must be replaced at once too. 3 of the 20
     kills are of this kind (1 with --quick); the loop waits for the backoff window to pass if it must.
   The headline median and p90 are the healthy kills'; the never-healthy ones have their own line; both against the
   kill->die floor of section 1. Context: how long the dead tasks' sidecars took to die after the kill (the 30 s
   stopTimeout, showing SIGTERM really is ignored) and whether the daemon announced a crash loop.
4. Idle cost: 100 services with 2 tiny tasks each (`sleep`, 6 MiB), converged, daemon idle for 60 s with
   `--resync 60s`: its CPU (utime+stime from /proc) as % of one core (target < 2 %) and its RSS (target
   < 150 MiB); for context, the CPU % of the engine's dockerd (with its containerd) over the same 60 s.

Starts one private engine (tests/engines.py) and destroys it at the end; every daemon is stopped by its pid.
Prints lines, never asserts. Run: `python tests/benchmarks/daemon_bench.py [--quick] [--only kill,save,pair,idle]`
(all four take about 5 minutes on 2 cores; section 3 alone, `--only pair`, about 1.5 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
import daemon_helpers as dh  # noqa: E402
import engines as engines_lib  # noqa: E402
import helpers as h  # noqa: E402
import twotask as tt  # noqa: E402

CLUSTER = "bench"
KILLS = 20
SAVES = 10
IDLE_SERVICES = 100
IDLE_TASKS_EACH = 2
IDLE_SECONDS = 60.0
PAIR_SERVICE = "pair"
PAIR_TASKS = 6
PAIR_KILLS = 20
NEVER_HEALTHY_KILLS = 3  # of the 20: at 0, >= 12.5 s and >= 35 s (the backoff doubles), so the section takes >= 35 s
NEVER_HEALTHY_AFTER = 1.2  # seconds after the replacement's start at which it is killed while starting
BACKOFF_BASE = 10.0  # the daemon's crash-loop backoff: 10 s doubling (reconciler/daemon/crashloop.py)
BACKOFF_MARGIN = 2.5
REPLACEMENT_FLOOR_ROUNDS = 6
SECTIONS = ("kill", "save", "pair", "idle")
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
    """Every container, and every network but the engine's own (the two-container tasks' per-task networks)."""
    ids = [c["Id"] for c in client.api.containers(all=True)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.api.remove_container(i, force=True), ids))
    nets = [n["Id"] for n in client.api.networks() if n["Name"] not in ("bridge", "host", "none")]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client.api.remove_network, nets))


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


@dataclasses.dataclass
class Kill:
    kind: str  # "healthy" or "never-healthy"
    task: str  # the killed task
    latency: float  # api.kill to the replacement's first `start` event
    stopping: int  # other tasks of the service still stopping (app dead, sidecar running) at the kill
    at: float  # monotonic time of the kill
    wall: float  # the same as wall-clock time (to read against the daemon's log)


def replacement_floor(client, events: tt.Events, rounds: int) -> list[float]:
    """What the engine needs for a replacement when nothing decides anything: SIGKILL a plain (unmanaged) pair's
    app, and on its `die` event create the next pair's network and both containers and start its app (the calls
    the daemon makes), timed to that app's `start` event. Both pairs are removed after each round."""
    out = []
    for i in range(rounds):
        net, app, side = tt.sdk_create_task(client, f"rfa{i}")
        client.api.start(app)
        time.sleep(0.5)
        t0 = time.monotonic()
        client.api.kill(app)
        events.next(lambda e, cid=app: tt.action(e) == "die" and e.get("id") == cid)
        net2, app2, side2 = tt.sdk_create_task(client, f"rfb{i}")
        client.api.start(app2)
        received, _ = events.next(lambda e, cid=app2: tt.action(e) == "start" and e.get("id") == cid)
        out.append(received - t0)
        for cid in (app, side, app2, side2):
            client.api.remove_container(cid, force=True)
        for n in (net, net2):
            client.api.remove_network(n)
        time.sleep(0.3)
    return out


def pair_kills(engine, client, tmp: Path, kills: int, never_healthy_target: int) -> tuple[list[Kill], list[float], list[float], int, dh.Daemon]:
    """Section 3 (see the module doc): (the kills, the replacement floor, the dead tasks' sidecar kill->die times
    seen, crash-loop announcements in the daemon's log, the daemon, still running: the caller stops it)."""
    manifests = tmp / "pair"
    manifests.mkdir()
    (manifests / "pair.yaml").write_text(dh.dump(*tt.documents(engine.endpoint, PAIR_SERVICE, PAIR_TASKS, cluster=CLUSTER)))
    events = tt.Events(client)
    daemon = dh.Daemon(tmp, tmp / "pair-state", [str(manifests)], tmp / "pair-daemon.log")
    daemon.start()
    try:
        daemon.wait_ready()
        wait_until(lambda: tt.settled(client, PAIR_SERVICE, PAIR_TASKS), timeout=120, what=f"{PAIR_TASKS} healthy pairs")
        floor = replacement_floor(client, events, REPLACEMENT_FLOOR_ROUNDS)  # with the 6 pairs up, the daemon idle
        known: set[str] = set(tt.tasks_of(client, PAIR_SERVICE))
        out: list[Kill] = []
        never_healthy, last_never_healthy = 0, 0.0

        def stopping(tasks: dict) -> int:
            return sum(1 for m in tasks.values()
                       if (m.get("app") or {}).get("State") != "running" and (m.get("sidecar") or {}).get("State") == "running")

        def kill(kind: str, task: str, app_id: str, tasks: dict) -> tuple[str, float]:
            """Kills `app_id`; returns (the replacement's task id, when its first start event arrived)."""
            events.pump()
            known.update(tt.attr(e, tt.TASK) for _, e in events.history if tt.attr(e, tt.TASK))
            known.update(tasks)
            t0, wall = time.monotonic(), time.time()
            client.api.kill(app_id)
            received, event = events.next(
                lambda e: tt.action(e) == "start" and tt.attr(e, tt.SERVICE) == PAIR_SERVICE and tt.attr(e, tt.TASK) not in known,
                timeout=120,
            )
            replacement = tt.attr(event, tt.TASK)
            known.add(replacement)
            out.append(Kill(kind, task, received - t0, stopping(tasks), t0, wall))
            daemon.check_alive()
            return replacement, received

        def with_one_up() -> dict | None:
            tasks = tt.tasks_of(client, PAIR_SERVICE)
            return tasks if any(tt.task_up(m) for m in tasks.values()) else None

        def never_healthy_due() -> float:
            """When the next never-healthy kill is outside the crash-loop backoff (monotonic time)."""
            if never_healthy == 0:
                return 0.0
            return last_never_healthy + BACKOFF_BASE * 2 ** (never_healthy - 1) + BACKOFF_MARGIN

        while len(out) < kills:
            time.sleep(1.2)  # let the daemon's delayed re-checks of the previous kill (up to 1 s) run out
            needed = never_healthy_target - never_healthy
            if needed > 0 and kills - len(out) <= 2 * needed:  # each never-healthy kill follows a healthy one
                time.sleep(max(0.0, never_healthy_due() - time.monotonic()))
            tasks = wait_until(with_one_up, timeout=60, what="a healthy task to kill")
            up = [(tid, m) for tid, m in tasks.items() if tt.task_up(m)]
            victim, members = min(up, key=lambda item: item[1]["app"]["Created"])  # the one up longest
            replacement, started = kill("healthy", victim, members["app"]["Id"], tasks)
            due = time.monotonic() >= never_healthy_due() and never_healthy < never_healthy_target
            if len(out) >= kills or not due:
                continue
            time.sleep(max(0.0, started + NEVER_HEALTHY_AFTER - time.monotonic()))
            tasks = tt.tasks_of(client, PAIR_SERVICE)
            fresh = tasks.get(replacement, {})
            if not (tt.starting(fresh.get("app")) and (fresh.get("sidecar") or {}).get("State") == "created"):
                print(f"pair: note: replacement {replacement[:12]} was not starting {NEVER_HEALTHY_AFTER} s after its start; not killed")
                continue
            kill("never-healthy", replacement, fresh["app"]["Id"], tasks)
            never_healthy, last_never_healthy = never_healthy + 1, out[-1].at
        time.sleep(1.0)
        events.pump()
        killed = {k.task: k.at for k in out if k.kind == "healthy"}
        sidecar_deaths = [received - killed[tt.attr(e, tt.TASK)] for received, e in events.history
                          if tt.action(e) == "die" and tt.attr(e, tt.CONTAINER) == "sidecar" and tt.attr(e, tt.TASK) in killed]
        announced = len(daemon.logged("crash-looping"))
        return out, floor, sidecar_deaths, announced, daemon
    except BaseException:
        print(f"pair daemon log tail:\n{daemon.tail(40)}", file=sys.stderr)
        stop_abandoning(daemon)
        raise
    finally:
        events.close()


def stop_abandoning(daemon: dh.Daemon) -> None:
    """SIGTERM, and a second SIGTERM a second later: in-flight stops (30 s stopTimeouts) are abandoned, the
    cluster lock is released, the process exits; SIGKILL if it does not within 30 s. By its pid only."""
    with contextlib.suppress(Exception):
        daemon.signal(signal.SIGTERM)
        time.sleep(1.0)
        daemon.signal(signal.SIGTERM)
        assert daemon.proc is not None
        daemon.proc.wait(timeout=30)
    daemon.close()


def ms(values: list[float], p: float | None = None) -> str:
    return f"{(percentile(values, p) if p is not None else statistics.median(values)) * 1000:.0f} ms"


def print_pair(out: list[Kill], floor: float, replacement: list[float], sidecar_deaths: list[float], announced: int) -> None:
    ok = [k for k in out if k.kind == "healthy"]
    young = [k for k in out if k.kind == "never-healthy"]
    during = [k for k in ok if k.stopping]
    if ok:
        lat = [k.latency for k in ok]
        print(
            f"event to replacement, two-container tasks (the median covers healthy kills: app healthy, sidecar up): "
            f"median {ms(lat)}, p90 {ms(lat, 0.9)}, max {ms([max(lat)])} over {len(ok)} kills, {len(during)} of them while "
            f"{min((k.stopping for k in during), default=0)}-{max((k.stopping for k in during), default=0)} other task(s) "
            f"were stopping (target < 1000 ms); floor kill->die event {floor * 1000:.0f} ms; ratio {statistics.median(lat) / floor:.1f}x"
        )
    if young:
        lat = [k.latency for k in young]
        print(
            f"event to replacement, two-container tasks (never-healthy: replacement killed {NEVER_HEALTHY_AFTER} s after its "
            f"start, sidecar not started; paced outside the crash-loop backoff): median {ms(lat)}, max {ms([max(lat)])} "
            f"over {len(young)} kills [{', '.join(f'{v * 1000:.0f}' for v in lat)} ms] (target < 1000 ms); "
            f"ratio {statistics.median(lat) / floor:.1f}x"
        )
    every = [k.latency for k in out]
    if replacement and ok:
        rf = statistics.median(replacement)
        print(
            f"  floor of the whole replacement (SDK on the same engine, nothing deciding: kill -> die event -> network + "
            f"2 creates + start app -> start event): median {rf * 1000:.0f} ms over {len(replacement)}; healthy-kill "
            f"median / this floor = {statistics.median([k.latency for k in ok]) / rf:.2f}x"
        )
    deaths = f"median {statistics.median(sidecar_deaths):.1f} s (n={len(sidecar_deaths)})" if sidecar_deaths else "none seen"
    print(
        f"  context: all {len(out)} kills median {ms(every)}, p90 {ms(every, 0.9)}; dead tasks' sidecars died {deaths} "
        f"after the kill (stopTimeout 30 s, SIGTERM ignored); crash loop announced {announced} time(s)"
    )


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
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections to run, of {','.join(SECTIONS)} "
                        "(default: all; the kill->die floor is measured whenever kill or pair runs)")
    args = parser.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if only - set(SECTIONS):
        parser.error(f"unknown section(s): {', '.join(sorted(only - set(SECTIONS)))}")
    kills, saves, idle = (5, 3, 15.0) if args.quick else (KILLS, SAVES, IDLE_SECONDS)
    pair_kills_n = 6 if args.quick else PAIR_KILLS

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
        fm = statistics.median(kill_to_die_floor(client, events, kills)) if only & {"kill", "pair"} else 0.0

        if only & {"kill", "save"}:
            manifests = tmp / "manifests"
            manifests.mkdir()
            (manifests / "cluster.yaml").write_text(dh.dump(cluster_doc(engine.endpoint)))
            victims = [f"k{i:02d}" for i in range(kills)] if "kill" in only else []
            (manifests / "kill.yaml").write_text(dh.dump(*(doc for name in victims for doc in service_docs(name, 1))))
            path = manifests / "grow.yaml"
            path.write_text(dh.dump(*service_docs("grow", 1)))
            daemon = dh.Daemon(tmp, tmp / "state", [str(manifests)], tmp / "daemon.log")
            daemon.start()
            daemon.wait_ready()
            for name in [*victims, "grow"]:
                wait_until(lambda s=name: settled(client, s, 1), what=f"the task of {name}")

            if "kill" in only:
                latency = event_to_replacement(client, events, daemon, victims)
                lm, lp = statistics.median(latency), percentile(latency, 0.9)
                print(
                    f"event to replacement: median {lm * 1000:.0f} ms, p90 {lp * 1000:.0f} ms over {kills} kills (target < 1000 ms); "
                    f"floor kill->die event {fm * 1000:.0f} ms (median); ratio {lm / fm:.1f}x"
                )

            if "save" in only:
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

        if "pair" in only:
            pair, replacement, sidecar_deaths, announced, daemon = pair_kills(engine, client, tmp, pair_kills_n, 1 if args.quick else NEVER_HEALTHY_KILLS)
            print_pair(pair, fm, replacement, sidecar_deaths, announced)
            stop_abandoning(daemon)
            daemon = None
            clear(client)

        applied = None
        if "idle" in only:
            cpu, engine_cpu, rss, peak, applied = idle_cost(engine, client, tmp, idle)
            n = IDLE_SERVICES * IDLE_TASKS_EACH
            print(
                f"idle ({IDLE_SERVICES} services, {n} tasks, {idle:.0f} s, --resync 60s): daemon CPU {cpu:.2f} % of one core "
                f"(target < 2 %), RSS {rss / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB (target < 150 MiB); "
                f"context: the engine's dockerd+containerd {engine_cpu:.2f} % over the same window"
            )
        setup = f"apply of the {IDLE_SERVICES * IDLE_TASKS_EACH} idle tasks took {applied:.1f} s; " if applied is not None else ""
        print(f"({setup}whole benchmark {time.monotonic() - began:.0f} s)")
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
