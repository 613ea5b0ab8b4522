"""Benchmark: `apply` of 50 one-container tasks on an empty engine, against the floor measured in the
same run (docker SDK create+start of the same 50 containers with 8 threads); and a no-op `plan` with
those 50 tasks running. Targets: apply at most 1.15x the floor; no-op plan under 0.3 s in-process.

Starts one private engine (tests/engines.py) and stops it at the end. Where `docker-compose` is
installed, also prints `up -d --scale` of the same workload. Run: `python tests/benchmarks/apply_bench.py`.
"""

from __future__ import annotations

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
import engines as engines_lib  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.environment import Environment  # noqa: E402

N = 50
ROUNDS = 3
COMMAND = ["sleep", "3600"]


def manifests(directory: Path, endpoint: str) -> Path:
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
  desiredCount: {N}
"""
    )
    return directory


def clear(client) -> None:
    ids = [c["Id"] for c in client.api.containers(all=True)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.api.remove_container(i, force=True), ids))


def floor(client) -> float:
    def one(i: int) -> None:
        c = client.api.create_container(
            engines_lib.TEST_IMAGE, COMMAND, name=f"floor-{i}", labels={"bench": "floor"}, stop_timeout=1,
            host_config=client.api.create_host_config(mem_limit="16m"),
        )
        client.api.start(c["Id"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(N)))
    return time.perf_counter() - t0


def run(args: list[str], state: str) -> tuple[int, float, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, environ={k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")})
    t0 = time.perf_counter()
    code = cli.run([*args, "--state-dir", state], env)
    return code, time.perf_counter() - t0, out.getvalue() + err.getvalue()


def compose(endpoint: str, directory: Path) -> float | None:
    if not shutil.which("docker-compose"):
        return None
    (directory / "docker-compose.yml").write_text(
        f'version: "2.4"\nservices:\n  sleeper:\n    image: {engines_lib.TEST_IMAGE}\n    command: {COMMAND}\n    mem_limit: 16m\n'
    )
    env = dict(os.environ, DOCKER_HOST=endpoint)
    t0 = time.perf_counter()
    subprocess.run(["docker-compose", "up", "-d", "--scale", f"sleeper={N}"], cwd=directory, env=env, check=True, capture_output=True)
    took = time.perf_counter() - t0
    subprocess.run(["docker-compose", "down", "-t", "1"], cwd=directory, env=env, capture_output=True)
    return took


def main() -> int:
    reason = engines_lib.engines_unavailable_reason()
    if reason:
        print(f"apply: skipped, no engine can be started here: {reason}")
        return 1
    (engine,) = engines_lib.start_engines(1)
    tmp = Path(tempfile.mkdtemp(prefix="rbench-"))
    try:
        client = engine.client()
        path = str(manifests(tmp / "m", engine.endpoint))
        state = str(tmp / "state")
        floors, applies = [], []
        for _ in range(ROUNDS):
            clear(client)
            floors.append(floor(client))
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
        print(f"apply: {N} tasks in {a:.2f} s; floor (SDK create+start, 8 threads) {f:.2f} s; ratio {a / f:.2f}x (target <= 1.15x)")
        print(f"plan (no-op, {N} running tasks, validate+observe+plan in-process): {p:.3f} s (target < 0.3 s)")
        clear(client)
        c = compose(engine.endpoint, tmp)
        if c is None:
            print("compose: docker-compose is not installed; comparison skipped")
        else:
            print(f"compose: up -d --scale sleeper={N} in {c:.2f} s; reconciler apply / compose = {a / c:.2f}x")
        clear(client)
    finally:
        engine.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
