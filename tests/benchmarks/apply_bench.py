"""Benchmark: `apply` of 50 tasks on an empty engine against floors measured in the same run, and a no-op `plan`.

1. One-container tasks (`sleep`): apply against the docker SDK floor (create+start of the same 50 containers with
   8 threads). Target: at most 1.05x.
2. Two-container tasks, the shape in `twotask` (app: httpd with a health check every 5 s; sidecar dependsOn app
   HEALTHY; bridge network, so one network per task): apply (which returns once every task is RUNNING and HEALTHY)
   against a floor that does the same work with 8 threads: per task create the network and both containers and
   start app; on app's `health_status: healthy` event start sidecar (a pool of 8 threads does every engine call;
   nobody holds a thread while a health check is pending); done when the last sidecar started. Target: at most
   1.05x. Both are bounded below by the first probe 5 s after app's start.
3. A no-op `plan` with the 50 one-container tasks running. Target: under 0.3 s in-process.

The engine runs with a larger `--default-address-pool`: a stock engine's pools hold about 30 per-task networks,
so an apply of 50 such tasks there fails from the 30th on (see `twotask`). Medians of 3 rounds of section 1 and one
round of section 2 (which takes about 2 minutes: 250 engine calls and 50 health-checked containers on 2 cores);
--quick: 10 tasks, 2 and 1 rounds. Each round runs its floor first, then apply, each on an empty engine. `apply`
runs in-process (`cli.run`), as does `plan`, after one warm-up `plan` (the first command in a process pays about
1 s of imports and schema loading). Starts one private engine (tests/engines.py) and stops it at the end. Where
`docker-compose` is installed, also prints `up -d --scale` of the one-container workload. Prints lines, never
asserts. Run: `python tests/benchmarks/apply_bench.py [--quick]`.
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
import engines as engines_lib  # noqa: E402
import twotask as tt  # noqa: E402
import yaml  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.environment import Environment  # noqa: E402

N = 50
ROUNDS = 3
PAIR_ROUNDS = 1  # a two-container round takes about 2 minutes (floor + apply)
COMMAND = ["sleep", "3600"]


def manifests(directory: Path, endpoint: str, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench.yaml").write_text(
        f"""apiVersion: reconciler/v1
kind: Cluster
metadata: {{name: bench}}
spec:
  instances: [{{name: e1, endpoint: "{endpoint}"}}]
---
apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {{name: sleeper}}
spec:
  containerDefinitions:
    - name: sleeper
      image: {engines_lib.TEST_IMAGE}
      memory: 16
      command: {COMMAND}
      stopTimeout: 1
---
apiVersion: reconciler/v1
kind: Service
metadata: {{name: sleeper}}
spec:
  cluster: bench
  taskDefinition: sleeper
  desiredCount: {n}
"""
    )
    return directory


def clear(client) -> None:
    """Every container and every network but the engine's own (per-task networks too: a later apply would
    otherwise spend its time sweeping them as leftovers)."""
    ids = [c["Id"] for c in client.api.containers(all=True)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.api.remove_container(i, force=True), ids))
    nets = [n["Id"] for n in client.api.networks() if n["Name"] not in ("bridge", "host", "none")]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client.api.remove_network, nets))


def pair_manifests(directory: Path, endpoint: str, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pairs.yaml").write_text(yaml.safe_dump_all(tt.documents(endpoint, "pairs", n), sort_keys=False))
    return directory


def pair_floor(client, n: int, threads: int = 8) -> float:
    """Section 2's floor (see the module doc): seconds until the last sidecar started (`twotask.sdk_rollout`
    with nothing old to stop)."""
    up, _, _ = tt.sdk_rollout(client, n, "floor", threads=threads)
    return up


def floor(client, n: int) -> float:
    def one(i: int) -> None:
        c = client.api.create_container(
            engines_lib.TEST_IMAGE, COMMAND, name=f"floor-{i}", labels={"bench": "floor"}, stop_timeout=1,
            host_config=client.api.create_host_config(mem_limit="16m"),
        )
        client.api.start(c["Id"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - t0


def run(args: list[str], state: str) -> tuple[int, float, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")})
    t0 = time.perf_counter()
    code = cli.run([*args, "--state-dir", state], env)
    return code, time.perf_counter() - t0, out.getvalue() + err.getvalue()


def compose(endpoint: str, directory: Path, n: int) -> float | None:
    if not shutil.which("docker-compose"):
        return None
    (directory / "docker-compose.yml").write_text(
        f'version: "2.4"\nservices:\n  sleeper:\n    image: {engines_lib.TEST_IMAGE}\n    command: {COMMAND}\n    mem_limit: 16m\n'
    )
    env = dict(os.environ, DOCKER_HOST=endpoint)
    t0 = time.perf_counter()
    subprocess.run(["docker-compose", "up", "-d", "--scale", f"sleeper={n}"], cwd=directory, env=env, check=True, capture_output=True)
    took = time.perf_counter() - t0
    subprocess.run(["docker-compose", "down", "-t", "1"], cwd=directory, env=env, capture_output=True)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 tasks, 2 rounds (a smoke run)")
    args = parser.parse_args()
    n, rounds, pair_rounds = (10, 2, 1) if args.quick else (N, ROUNDS, PAIR_ROUNDS)
    reason = engines_lib.engines_unavailable_reason()
    if reason:
        print(f"apply: skipped, no engine can be started here: {reason}")
        return 1
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="rbench-"))
    engine = tt.start_engine_with_pool(engines_lib, tmp / "bin")  # 50 per-task networks (see twotask)
    try:
        client = engine.client()
        path = str(manifests(tmp / "m", engine.endpoint, n))
        pairs = str(pair_manifests(tmp / "pairs", engine.endpoint, n))
        state = str(tmp / "state")
        floors, applies, pair_floors, pair_applies = [], [], [], []
        run(["plan", pairs], state)  # warm-up: the first in-process command pays about 1 s of imports and schema loading
        for _ in range(pair_rounds):
            clear(client)
            pair_floors.append(pair_floor(client, n))
            clear(client)
            code, took, output = run(["apply", pairs, "--yes"], state)
            if code != 0:
                print(output)
                return 1
            pair_applies.append(took)
        for _ in range(rounds):
            clear(client)
            floors.append(floor(client, n))
            clear(client)
            code, took, output = run(["apply", path, "--yes"], state)
            if code != 0:
                print(output)
                return 1
            applies.append(took)
        noops = []
        for _ in range(5):
            code, took, output = run(["plan", path, "--detailed-exitcode"], state)
            if code != 0:
                print(output)
                return 1
            noops.append(took)
        f, a, p = statistics.median(floors), statistics.median(applies), statistics.median(noops)
        pf, pa = statistics.median(pair_floors), statistics.median(pair_applies)
        print(f"apply: {n} tasks in {a:.2f} s; floor (SDK create+start, 8 threads) {f:.2f} s; ratio {a / f:.2f}x (target <= 1.05x)")
        print(
            f"apply, two-container tasks (app healthy -> sidecar, bridge): {n} tasks in {pa:.2f} s; floor (SDK, 8 threads: "
            f"network + 2 creates + start app, sidecar on app's healthy event) {pf:.2f} s; ratio {pa / pf:.2f}x (target <= 1.05x)"
        )
        print(f"  rounds: apply {', '.join(f'{x:.2f}' for x in applies)} s vs floor {', '.join(f'{x:.2f}' for x in floors)} s; "
              f"two-container apply {', '.join(f'{x:.2f}' for x in pair_applies)} s vs floor {', '.join(f'{x:.2f}' for x in pair_floors)} s")
        print(f"plan (no-op, {n} running tasks, validate+observe+plan in-process): {p:.3f} s (target < 0.3 s)")
        clear(client)
        c = compose(engine.endpoint, tmp, n)
        if c is None:
            print("compose: docker-compose is not installed; comparison skipped")
        else:
            print(f"compose: up -d --scale sleeper={n} in {c:.2f} s; reconciler apply / compose = {a / c:.2f}x")
        clear(client)
        print(f"(whole benchmark {time.monotonic() - began:.0f} s)")
    finally:
        engine.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
