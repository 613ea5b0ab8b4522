"""Benchmark: `reconciler destroy --yes` of 50 two-container tasks against a parallel `docker stop` of the same set.

The tasks have the shape in `twotask` (app: httpd with a health check, exits on SIGTERM; sidecar: `sleep` as PID 1,
which ignores SIGTERM, dependsOn app HEALTHY; bridge network, one network per task), with stopTimeout 10 s on both
containers, so every task's stop waits out those 10 s for its sidecar. Each set is made by `reconciler apply` (so
both are identical: the same containers, labels and per-task networks) and is settled (every app healthy, every
sidecar running) before it is torn down.

- baseline: the docker SDK stops all 100 containers of the set at once (one thread each, `stop(timeout=10)`), then
  removes the containers and the 50 networks (16 threads). It ignores `dependsOn`: a floor, not a rival.
- reconciler: `python -m reconciler destroy PATH --yes` as a process (what a user runs; its Python start-up is
  printed for context). It stops each task in reverse dependency order (sidecar, then app), 64 tasks at a time per
  engine, and removes containers and networks.

Target: destroy at most 1.2x the baseline. Context lines: when the sidecars died after the teardown began (about
the 10 s stopTimeout when SIGTERM is really ignored), and what was left on the engine afterwards (nothing).

The engine runs with a larger `--default-address-pool` (a stock engine holds about 30 per-task networks; see
`twotask`). Starts one private engine (tests/engines.py) and destroys it at the end. Prints lines, never asserts.
Medians of 2 rounds (1 with --quick). Run: `python tests/benchmarks/destroy_bench.py [--quick]` (--quick: 10 tasks).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
import engines as engines_lib  # noqa: E402
import twotask as tt  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.environment import Environment  # noqa: E402

N = 50
ROUNDS = 2  # a round: two applies of 50 health-checked pairs (25-45 s each on 2 cores) and two teardowns
STOP_TIMEOUT = 10
SERVICE = "pairs"


def environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}


def apply(path: str, state: str) -> float:
    out = io.StringIO()
    t0 = time.perf_counter()
    code = cli.run(["apply", path, "--yes", "--state-dir", state], Environment(stdout=out, stderr=out, environ=environ()))
    took = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"apply exited {code}:\n{out.getvalue()[-3000:]}")
    return took


def wait_settled(client, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not tt.settled(client, SERVICE, n):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} settled pairs")
        time.sleep(0.2)


def leftovers(client) -> tuple[int, int]:
    """(containers of the service, non-default networks) still on the engine."""
    containers = client.api.containers(all=True, filters={"label": [f"{tt.SERVICE}={SERVICE}"]})
    networks = [x for x in client.api.networks() if x["Name"] not in ("bridge", "host", "none")]
    return len(containers), len(networks)


def baseline(client) -> tuple[float, list[float]]:
    """(seconds, each sidecar's `stop` call duration): stop every container at once, then remove everything."""
    containers = client.api.containers(all=True, filters={"label": [f"{tt.SERVICE}={SERVICE}"]})
    networks = [x["Id"] for x in client.api.networks() if x["Name"] not in ("bridge", "host", "none")]
    sidecar_stops: list[float] = []
    lock = threading.Lock()

    def stop(c: dict) -> None:
        t0 = time.perf_counter()
        client.api.stop(c["Id"], timeout=STOP_TIMEOUT)
        if (c.get("Labels") or {}).get(tt.CONTAINER) == "sidecar":
            with lock:
                sidecar_stops.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(containers)) as pool:
        list(pool.map(stop, containers))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda c: client.api.remove_container(c["Id"]), containers))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client.api.remove_network, networks))
    return time.perf_counter() - t0, sidecar_stops


def destroy(path: str, state: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler", "destroy", path, "--yes", "--state-dir", state],
        capture_output=True, text=True, env=environ(), timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"destroy exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return took, proc.stdout


def startup() -> float:
    """Seconds for `python -m reconciler --version` (the CLI's start-up, included in the destroy time)."""
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "reconciler", "--version"], capture_output=True, env=environ(), check=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def deaths(events: tt.Events, since: float, role: str) -> list[float]:
    """Seconds from `since` to each `die` event of the service's `role` containers received after it."""
    events.pump()
    return [received - since for received, e in events.history
            if received >= since and tt.action(e) == "die" and tt.attr(e, tt.CONTAINER) == role]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 tasks (a smoke run)")
    args = parser.parse_args()
    n = 10 if args.quick else N

    reason = engines_lib.engines_unavailable_reason()
    if reason:
        print(f"destroy: skipped, no engine can be started here: {reason}")
        return 1
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="rdsbench-"))
    engine = tt.start_engine_with_pool(engines_lib, tmp / "bin")
    client = engine.client()
    events = tt.Events(client)
    try:
        ignored = tt.sidecar_ignores_sigterm(client, timeout=2)
        manifests = tmp / "m"
        manifests.mkdir()
        docs = tt.documents(engine.endpoint, SERVICE, n, stop_timeout=STOP_TIMEOUT)
        (manifests / "pairs.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        path, state = str(manifests), str(tmp / "state")
        base, dest, applies, side_stops, side_base, side_dest, app_dest, left = [], [], [], [], [], [], [], []
        output = ""
        for _ in range(1 if args.quick else ROUNDS):
            applies.append(apply(path, state))
            wait_settled(client, n)
            t0 = time.monotonic()
            took, stops = baseline(client)
            base.append(took)
            side_stops.extend(stops)
            side_base.extend(deaths(events, t0, "sidecar"))
            applies.append(apply(path, state))
            wait_settled(client, n)
            t0 = time.monotonic()
            took, output = destroy(path, state)
            dest.append(took)
            side_dest.extend(deaths(events, t0, "sidecar"))
            app_dest.extend(deaths(events, t0, "app"))
            left.append(leftovers(client))
        b, d = statistics.median(base), statistics.median(dest)
        print(
            f"destroy: {n} two-container tasks (stopTimeout {STOP_TIMEOUT} s, sidecar ignores SIGTERM) in {d:.2f} s; "
            f"baseline (SDK: all {2 * n} containers stopped at once, then removed with the {n} networks) {b:.2f} s; "
            f"ratio {d / b:.2f}x (target <= 1.2x)"
        )
        print(
            f"  context: CLI start-up {startup():.2f} s (in the destroy time); sidecar SIGTERM check: stop -t 2 took "
            f"{ignored:.1f} s; baseline sidecar stops median {statistics.median(side_stops):.1f} s; sidecars died after "
            f"median {statistics.median(side_base):.1f} s (baseline) and {statistics.median(side_dest):.1f} s, apps "
            f"{statistics.median(app_dest):.1f} s (destroy, reverse dependency order); left after destroy: "
            f"{left[-1][0]} containers, {left[-1][1]} networks; destroy said: "
            f"{next((x for x in output.splitlines() if x.startswith('Destroy complete')), '?')!r}"
        )
        print(f"  rounds: destroy {', '.join(f'{x:.2f}' for x in dest)} s vs baseline {', '.join(f'{x:.2f}' for x in base)} s")
        print(f"(setup: applies of {n} pairs took {', '.join(f'{x:.1f}' for x in applies)} s; whole benchmark "
              f"{time.monotonic() - began:.0f} s)")
    finally:
        events.close()
        client.close()
        engine.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
