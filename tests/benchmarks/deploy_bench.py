"""Benchmark: a deployment of 20 two-container tasks reaches COMPLETED within 1.2x of the floor measured in the same run.

The tasks have the shape in `twotask` (app: httpd with a health check every 5 s, essential, exits on SIGTERM;
sidecar: `sleep` as PID 1, which ignores SIGTERM, dependsOn app HEALTHY; bridge network, one network per task), with
stopTimeout 10 s on both containers (ECS's default 30 s would make the rolling section alone take about 3 minutes
a round), on a service with deploymentConfiguration {maximumPercent: 200, minimumHealthyPercent: 100}.

1. deploy-from-empty: `apply` of the service with desiredCount 20 on an empty engine and a new cluster (no
   history yet), until it exits (it waits for the service's deployment to be COMPLETED; checked afterwards with
   `get deployments SERVICE --json`: the PRIMARY deployment COMPLETED, 20 running). Floor (`twotask.sdk_rollout`,
   the docker SDK, 8 threads: apply's default `--concurrency`): per task create the network and both containers
   and start app; on app's `health_status: healthy` event start sidecar; done when the last sidecar started. Both
   are bounded below by the first probe 5 s after app's start.
2. deploy-rolling: `apply` of a new revision of the same service (an environment variable of app changed) with its
   20 tasks of section 1 running, until it exits (the new deployment COMPLETED, the old tasks gone: checked with
   `get deployments` and on the engine). Floor: the same SDK bring-up of 20 new tasks with the floor's 20 tasks of
   section 1 running, where each time a new task is up (app healthy, sidecar started) one old task starts
   stopping (sidecar, which waits out its 10 s stopTimeout, then app; both containers and the network removed; up
   to 64 stops at once, the runner's stop bound): the most minimumHealthyPercent 100 allows, while maximumPercent
   200 lets all 20 new tasks start at once. Done when the last old task was removed. Its lower bound is about
   5 s (first probe) + 10 s (stopTimeout).

Each round runs both floors (the second replaces the first's tasks), clears the engine (containers, networks and
volumes: the cluster's history too), then both applies in a new state directory. Medians of 3 rounds (--quick: 5
tasks, 1 round); about 70 s a round on 2 cores. `apply` runs in-process (`cli.run`) after a warm-up `plan` and
`destroy` (the first command in a process pays about 1 s of imports and schema loading; the first writer loads the
pause image its lock and history containers are made of). In the same process `reconciler.ledger.History.save`
and `.load` and `reconciler.histories.Keeper.put` (serialisation + save) are wrapped to time the history I/O of
each apply. The engine's container events give the breakdown of each apply: when its first container was created,
when the last new task was up (its sidecar started), when the last old container was removed, and how long apply
took to exit after that.

The engine runs with a larger `--default-address-pool`: the rollout holds 40 per-task networks at once, more than
a stock engine's pools (see `twotask`). Starts one private engine (tests/engines.py) and destroys it at the end.
Prints lines; a ratio above its target is printed `OVER TARGET`, never asserted: exits non-zero only when the run
itself fails (no engine, an apply or a floor failing, a deployment not COMPLETED). Run:
`python tests/benchmarks/deploy_bench.py [--quick] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "benchmarks"))
import engines as engines_lib  # noqa: E402
import twotask as tt  # noqa: E402
from apply_bench import run  # noqa: E402  (cli.run in-process: (exit code, seconds, output))

from reconciler import histories, ledger  # noqa: E402

N = 20
ROUNDS = 3
STOP_TIMEOUT = 10
CONCURRENCY = 8  # apply's default --concurrency (creates and starts per engine)
STOP_THREADS = 64  # the runner's stop bound per engine
TARGET = 1.2
SERVICE = "deploy"
APPLY_TIMEOUT = "300s"


class RunFailed(Exception):
    """The run itself failed (not a slow result): printed, exit 1."""


# --------------------------------------------------------------------------------------------------------------
# Manifests


def manifests(directory: Path, endpoint: str, n: int, revision: str) -> str:
    """The service of `n` tasks whose app carries REVISION=`revision` (a new value is a new task definition)."""
    docs = copy.deepcopy(tt.documents(endpoint, SERVICE, n, stop_timeout=STOP_TIMEOUT))
    for doc in docs:
        if doc["kind"] == "TaskDefinition":
            doc["spec"]["containerDefinitions"][0]["environment"] = [{"name": "REVISION", "value": revision}]
        if doc["kind"] == "Service":
            doc["spec"]["deploymentConfiguration"] = {"maximumPercent": 200, "minimumHealthyPercent": 100}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "deploy.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(directory)


# --------------------------------------------------------------------------------------------------------------
# reconciler in-process, with its history I/O timed


class HistoryTimes:
    """Wraps `ledger.History.save`/`.load` and `histories.Keeper.put` in this process; each call's seconds go to the
    current `phase`."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.calls: list[tuple[str, str, float]] = []  # (phase, what, seconds)

    def install(self) -> None:
        ledger.History.save = self._timed("save", ledger.History.save)
        ledger.History.load = self._timed("load", ledger.History.load)
        histories.Keeper.put = self._timed("put", histories.Keeper.put)

    def _timed(self, what: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls.append((self.phase, what, time.perf_counter() - t0))

        return wrapper

    def of(self, phase: str, what: str) -> list[float]:
        return [s for p, w, s in self.calls if p == phase and w == what]


def apply(path: str, state: str) -> tuple[float, float]:
    """(seconds, its monotonic start) of `apply PATH --yes` until it exits; RunFailed unless it exits 0 with
    "Apply complete"."""
    began = time.monotonic()
    code, took, output = run(["apply", path, "--yes", "--timeout", APPLY_TIMEOUT], state)
    if code != 0 or "Apply complete" not in output:
        raise RunFailed(f"apply {path} exited {code}:\n{output[-4000:]}")
    return took, began


def completed(path: str, state: str, n: int, revision: int, not_primary: str | None = None) -> str:
    """The id of the service's PRIMARY deployment, checked with `get deployments --json`: COMPLETED, `n` running,
    of task definition revision `revision`, and `not_primary` (an earlier deployment) no longer PRIMARY."""
    code, _, output = run(["get", "deployments", SERVICE, path, "--json"], state)
    if code != 0:
        raise RunFailed(f"get deployments exited {code}:\n{output[-2000:]}")
    views = json.loads(output)["deployments"]
    primary = [d for d in views if d["status"] == "PRIMARY"]
    if len(primary) != 1:
        raise RunFailed(f"{len(primary)} PRIMARY deployments after apply: {views}")
    d = primary[0]
    problems = []
    if d["rolloutState"] != "COMPLETED":
        problems.append(f"rolloutState {d['rolloutState']} ({d['rolloutStateReason']})")
    if d["runningCount"] != n:
        problems.append(f"runningCount {d['runningCount']}, not {n}")
    if not d["taskDefinition"].endswith(f"/{SERVICE}:{revision}"):
        problems.append(f"taskDefinition {d['taskDefinition']}, not revision {revision}")
    if not_primary is not None and d["id"] == not_primary:
        problems.append(f"still deployment {not_primary}")
    if problems:
        raise RunFailed(f"deployment {d['id']} after apply: {'; '.join(problems)}")
    return str(d["id"])


# --------------------------------------------------------------------------------------------------------------
# What the engine saw


def breakdown(events: tt.Events, began: float, took: float, old_tasks: set[str]) -> dict[str, float]:
    """Seconds after apply began: `create` (first container created), `up` (last new task's sidecar started),
    `removed` (last old container removed, 0 without old tasks), `tail` (apply's exit after the later of the two)."""
    events.pump()
    seen = [(at - began, e) for at, e in events.history if at >= began and tt.attr(e, tt.SERVICE) == SERVICE]
    creates = [t for t, e in seen if tt.action(e) == "create"]
    ups = [t for t, e in seen if tt.action(e) == "start" and tt.attr(e, tt.CONTAINER) == "sidecar"
           and tt.attr(e, tt.TASK) not in old_tasks]
    removed = [t for t, e in seen if tt.action(e) == "destroy" and tt.attr(e, tt.TASK) in old_tasks]
    out = {"create": min(creates, default=0.0), "up": max(ups, default=0.0), "removed": max(removed, default=0.0)}
    out["tail"] = took - max(out["up"], out["removed"])
    return out


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def rounds_text(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def verdict(ratio: float) -> str:
    return f"ratio {ratio:.2f} (target <= {TARGET})" + (" OVER TARGET" if ratio > TARGET else "")


# --------------------------------------------------------------------------------------------------------------


def bench(engine, tmp: Path, n: int, rounds: int) -> None:
    client = engine.client()
    events = tt.Events(client)
    times = HistoryTimes()
    try:
        ignored = tt.sidecar_ignores_sigterm(client, timeout=2)
        path_a = manifests(tmp / "rev-a", engine.endpoint, n, "a")
        path_b = manifests(tmp / "rev-b", engine.endpoint, n, "b")
        warm = str(tmp / "state-warm")
        for args in (["plan", path_a], ["destroy", path_a, "--yes"]):  # imports, schemas; the pause image loaded
            code, _, output = run(args, warm)
            if code != 0:
                raise RunFailed(f"warm-up {args[0]} exited {code}:\n{output[-2000:]}")
        times.install()
        floor_a, floor_b, floor_b_up, apply_a, apply_b = [], [], [], [], []
        parts_a: list[dict[str, float]] = []
        parts_b: list[dict[str, float]] = []
        for r in range(rounds):
            tt.clear(client, volumes=True)
            up, _, first = tt.sdk_rollout(client, n, f"fa{r}-", STOP_TIMEOUT, threads=CONCURRENCY, stop_threads=STOP_THREADS)
            floor_a.append(up)
            up, removed, _ = tt.sdk_rollout(client, n, f"fb{r}-", STOP_TIMEOUT, old=first, threads=CONCURRENCY,
                                            stop_threads=STOP_THREADS)
            floor_b.append(removed)
            floor_b_up.append(up)
            tt.clear(client, volumes=True)
            state = str(tmp / f"state-{r}")

            times.phase = f"a{r}"
            took, began = apply(path_a, state)
            apply_a.append(took)
            parts_a.append(breakdown(events, began, took, set()))
            times.phase = "check"
            first_id = completed(path_a, state, n, 1)
            old_tasks = set(tt.tasks_of(client, SERVICE))
            if len(old_tasks) != n or not tt.settled(client, SERVICE, n):
                raise RunFailed(f"after the first apply: {len(old_tasks)} tasks, not {n} settled ones")

            times.phase = f"b{r}"
            took, began = apply(path_b, state)
            apply_b.append(took)
            parts_b.append(breakdown(events, began, took, old_tasks))
            times.phase = "check"
            completed(path_b, state, n, 2, not_primary=first_id)
            left = set(tt.tasks_of(client, SERVICE))
            if left & old_tasks or not tt.settled(client, SERVICE, n):
                raise RunFailed(f"after the rolling apply: {len(left & old_tasks)} old tasks left, "
                                f"{len(left - old_tasks)} new ones")
        tt.clear(client, volumes=True)

        fa, fb, aa, ab = med(floor_a), med(floor_b), med(apply_a), med(apply_b)
        print(f"deploy-from-empty: median {aa:.2f} s, floor {fa:.2f} s, {verdict(aa / fa)}")
        print(f"  apply of {n} two-container tasks (app healthy -> sidecar, bridge) from an empty engine and a new cluster "
              f"until exit (deployment COMPLETED); floor: SDK, {CONCURRENCY} threads: network + 2 creates + start app, "
              f"sidecar on app's healthy event, until the last sidecar started")
        print(f"deploy-rolling: median {ab:.2f} s, floor {fb:.2f} s, {verdict(ab / fb)}")
        print(f"  apply of a new revision of the {n}-task service (maximumPercent 200, minimumHealthyPercent 100, "
              f"stopTimeout {STOP_TIMEOUT} s) until exit (new deployment COMPLETED, old tasks gone); floor: the SDK "
              f"bring-up of {n} new tasks, one old task stopped (sidecar, app; removed with its network; up to "
              f"{STOP_THREADS} at once) as each new one is up, until the last old task was removed")
        for label, parts, floor_up in (("from-empty", parts_a, floor_a), ("rolling", parts_b, floor_b_up)):
            removed = f", last old container removed {med([p['removed'] for p in parts]):.2f} s" if label == "rolling" else ""
            print(f"  breakdown {label} (median, s after apply began): first create {med([p['create'] for p in parts]):.2f} s, "
                  f"last new task up {med([p['up'] for p in parts]):.2f} s (floor {med(floor_up):.2f} s){removed}, "
                  f"exit {med([p['tail'] for p in parts]):.2f} s after that")
        for label, phase in (("from-empty", "a"), ("rolling", "b")):
            per_round = []
            for r in range(rounds):
                saves, puts = times.of(f"{phase}{r}", "save"), times.of(f"{phase}{r}", "put")
                loads = times.of(f"{phase}{r}", "load")
                took = (apply_a if phase == "a" else apply_b)[r]
                per_round.append((len(saves), sum(saves), sum(puts), max(saves, default=0.0), len(loads), sum(loads), took))
            count = med([float(x[0]) for x in per_round])
            total, puts, worst = med([x[1] for x in per_round]), med([x[2] for x in per_round]), max(x[3] for x in per_round)
            share = med([x[1] / x[6] for x in per_round]) * 100
            print(f"  history {label}: {count:.0f} saves (History.save) taking {total:.2f} s in all ({share:.1f} % of apply, "
                  f"longest of all rounds {worst * 1000:.0f} ms); with serialisation (Keeper.put) {puts:.2f} s; "
                  f"{med([float(x[4]) for x in per_round]):.0f} load(s) {med([x[5] for x in per_round]):.2f} s (medians a round)")
        print(f"  rounds: from-empty apply {rounds_text(apply_a)} s vs floor {rounds_text(floor_a)} s; rolling apply "
              f"{rounds_text(apply_b)} s vs floor {rounds_text(floor_b)} s")
        print(f"  context: sidecar SIGTERM check: stop -t 2 took {ignored:.1f} s (about 2 s: SIGTERM ignored, so each old "
              f"task's stop waits out its {STOP_TIMEOUT} s stopTimeout)")
    finally:
        events.close()
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 tasks, 1 round (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help=f"rounds (default {ROUNDS}; 1 with --quick)")
    args = parser.parse_args()
    n = 5 if args.quick else N
    rounds = args.rounds or (1 if args.quick else ROUNDS)
    reason = engines_lib.engines_unavailable_reason()
    if reason:
        print(f"deploy: skipped, no engine can be started here: {reason}")
        return 1
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="rdpbench-"))
    try:
        engine = tt.start_engine_with_pool(engines_lib, tmp / "bin")  # 40 per-task networks during the rollout
        try:
            bench(engine, tmp, n, rounds)
        finally:
            engine.destroy()
    except RunFailed as e:
        print(f"deploy: the run failed: {e}")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"(whole benchmark {time.monotonic() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
