"""Scaling benchmark: one evaluation of 100 auto-scaled services with 500 tasks, the pure part, in memory.

Run as a script: ``python tests/benchmarks/scaling_bench.py [--services N] [--tasks N] [--rounds N]``.
Target: "one scaling evaluation for 100 services with 500 tasks finishes within one 15 s evaluation period
on a 2-core machine". Measured here: parsing 500 Docker stats payloads (cgroup v2 JSON as the engine returns
it, one container per task; the previous sample of each container is kept from the last round), ECS task and
service utilization, the windowed sample store, and `policy.decide` for every service (target tracking on CPU
and on memory, one step policy with a 3-period alarm, one scheduled cron action in Europe/Berlin), with the
stores pre-filled by 15 minutes of history. Fetching the payloads from the engines is not included: the lead
adds it by calling `evaluate_all` with real payloads. Baselines measured in the same run: `json.loads` of the
same 500 payloads, and serializing the 100 scaling states to JSON (what the daemon persists each round).

Second section, against a real engine (skip it with ``--no-engine``): one private engine (tests/engines.py,
destroyed at the end) runs 100 services x 5 tiny tasks (`sleep 3600`, 12 MiB), created by `reconciler apply`
of generated manifests (each service with a target-tracking CPU policy, minCapacity 5, so nothing scales);
then `daemon.autoscaler.Autoscaler.evaluate` rounds run through a `daemon.controller.Controller` built
in-process as `watch` builds it: observe, 500 one-shot stats calls gathered concurrently, utilisation,
decisions, the state file. The first round has no previous samples; the second has, so CPU is computed.
Baseline in the same run: sequential one-shot stats calls, ~5 measured and extrapolated to 500.
It prints, it does not assert: the exit status is 0 unless the engine section cannot run.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reconciler.scaling import policy, source, stats  # noqa: E402

TARGET_SECONDS = 15.0
PERIOD = 15.0
WARMUP_ROUNDS = 60  # 15 minutes of history before measuring
START = 1_748_858_400.0  # 2025-06-02T10:00:00Z
ONLINE_CPUS = 2
NS = 1_000_000_000
MIB = 1024 * 1024

MANIFEST_BLOCK = {
    "minCapacity": 2,
    "maxCapacity": 20,
    "evaluationPeriod": "60s",
    "targetTracking": [
        {"policyName": "cpu-50", "predefinedMetric": policy.CPU, "targetValue": 50},
        {
            "policyName": "memory-70",
            "predefinedMetric": policy.MEMORY,
            "targetValue": 70,
            "scaleInCooldown": "10m",
        },
    ],
    "stepScaling": [
        {
            "policyName": "cpu-burst",
            "metric": policy.CPU,
            "statistic": "Maximum",
            "comparisonOperator": "GreaterThanOrEqualToThreshold",
            "threshold": 85,
            "evaluationPeriods": 3,
            "datapointsToAlarm": 2,
            "period": "60s",
            "adjustmentType": "PercentChangeInCapacity",
            "minAdjustmentMagnitude": 2,
            "stepAdjustments": [
                {"metricIntervalLowerBound": 0, "metricIntervalUpperBound": 10, "scalingAdjustment": 25},
                {"metricIntervalLowerBound": 10, "scalingAdjustment": 50},
            ],
            "cooldown": "2m",
        }
    ],
    "scheduled": [
        {
            "name": "business-hours",
            "schedule": "cron(0 9 ? * MON-FRI *)",
            "timezone": "Europe/Berlin",
            "minCapacity": 4,
        }
    ],
}


@dataclass(frozen=True)
class ServiceInput:
    """One auto-scaled service as the daemon knows it: its config, desiredCount, tasks and reservation."""

    name: str
    config: policy.ScalingConfig
    desired: int
    tasks: tuple[tuple[str, ...], ...]  # container ids of each task
    reserved_cpu: int  # CPU units of one task (planning.resources.reservation)
    reserved_memory: int  # MiB of one task


def evaluate_all(
    services: Sequence[ServiceInput],
    payloads: Mapping[str, str | bytes],
    previous: dict[str, Mapping[str, Any]],
    store: source.WindowedMetrics,
    states: dict[str, policy.ScalingState],
    now: float,
    placeable: Mapping[str, int] | None = None,
) -> dict[str, policy.Decision]:
    """One evaluation round: stats payloads (container id -> JSON body) to a Decision per service.

    `previous` (container id -> last parsed sample) and `states` (service -> ScalingState) are updated in
    place; a container without a payload this round contributes nothing.
    """
    decisions = {}
    for service in services:
        per_task = []
        for containers in service.tasks:
            pairs = []
            for cid in containers:
                body = payloads.get(cid)
                if body is None:
                    continue
                current = json.loads(body)
                pairs.append((previous.get(cid), current))
                previous[cid] = current
            per_task.append(stats.task_utilization(pairs, service.reserved_cpu, service.reserved_memory))
        cpu, memory = stats.service_utilization(per_task)
        if cpu is not None:
            store.add(service.name, policy.CPU, now, cpu)
        if memory is not None:
            store.add(service.name, policy.MEMORY, now, memory)
        config = service.config
        metrics = store.series(service.name, [m.key for m in config.metrics()], config.history_seconds, now)
        state = states.get(service.name) or policy.ScalingState()
        limit = placeable.get(service.name) if placeable else None
        decisions[service.name], states[service.name] = policy.decide(
            config, state, service.desired, metrics, now, limit
        )
    return decisions


# ============================================================================================== workload


def v2_payload(
    cid: str, name: str, cpu_ns: int, system_ns: int, memory_bytes: int, read: float
) -> dict[str, Any]:
    """A cgroup v2 one-shot stats payload, shaped as Docker 20.10+ returns it."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(read)) + f".{int(read % 1 * 1e9):09d}Z"
    inactive = memory_bytes // 5
    return {
        "read": stamp,
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {"current": 7, "limit": 4915},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 254, "minor": 0, "op": "read", "value": 1232896},
                {"major": 254, "minor": 0, "op": "write", "value": 40960},
            ],
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cpu_ns,
                "usage_in_kernelmode": cpu_ns // 5,
                "usage_in_usermode": cpu_ns * 4 // 5,
            },
            "system_cpu_usage": system_ns,
            "online_cpus": ONLINE_CPUS,
            "throttling_data": {"periods": 1200, "throttled_periods": 3, "throttled_time": 41000000},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {
            "usage": memory_bytes,
            "stats": {
                "active_anon": 0,
                "active_file": inactive // 2,
                "anon": memory_bytes - inactive * 2,
                "anon_thp": 0,
                "file": inactive * 2,
                "file_dirty": 0,
                "file_mapped": 4096,
                "file_writeback": 0,
                "inactive_anon": memory_bytes - inactive * 2,
                "inactive_file": inactive,
                "kernel_stack": 49152,
                "pgactivate": 12,
                "pgdeactivate": 0,
                "pgfault": 16500,
                "pglazyfree": 0,
                "pglazyfreed": 0,
                "pgmajfault": 1,
                "pgrefill": 0,
                "pgscan": 0,
                "pgsteal": 0,
                "shmem": 0,
                "slab": 1234560,
                "slab_reclaimable": 600000,
                "slab_unreclaimable": 634560,
                "sock": 0,
                "thp_collapse_alloc": 0,
                "thp_fault_alloc": 0,
                "unevictable": 0,
                "workingset_activate": 0,
                "workingset_nodereclaim": 0,
                "workingset_refault": 0,
            },
            "limit": 8241434624,
        },
        "name": f"/{name}",
        "id": cid,
        "networks": {
            "eth0": {
                "rx_bytes": 104600,
                "rx_packets": 1100,
                "rx_errors": 0,
                "rx_dropped": 0,
                "tx_bytes": 88000,
                "tx_packets": 950,
                "tx_errors": 0,
                "tx_dropped": 0,
            }
        },
    }


class Workload:
    """Per container, cumulative CPU counters driven by a per-service load that drifts over time. The load
    is spread over the service's desiredCount (as if the tasks it decided on had started), though only the
    fixed tasks report stats, so decisions feed back and the mix of out / in / none stays realistic."""

    def __init__(self, services: Sequence[ServiceInput], rng: random.Random):
        self.services = services
        self.rng = rng
        self.cpu_ns = {cid: 0 for s in services for task in s.tasks for cid in task}
        self.load = {s.name: rng.uniform(0.5, 6.0) for s in services}  # in reserved CPUs of one task
        self.desired = {s.name: s.desired for s in services}

    def round(self, now: float) -> dict[str, bytes]:
        system_ns = int(now * NS) * ONLINE_CPUS
        out = {}
        for s in self.services:
            self.load[s.name] = min(15.0, max(0.1, self.load[s.name] * self.rng.uniform(0.93, 1.07)))
            share = self.load[s.name] / max(1, self.desired[s.name])
            for t, task in enumerate(s.tasks):
                for cid in task:
                    used = share * s.reserved_cpu / 1024 * PERIOD * NS * self.rng.uniform(0.8, 1.2)
                    self.cpu_ns[cid] += int(used)
                    memory = int(s.reserved_memory * MIB * self.rng.uniform(0.3, 0.9))
                    payload = v2_payload(cid, f"{s.name}-{t}", self.cpu_ns[cid], system_ns, memory, now)
                    out[cid] = json.dumps(payload).encode()
        return out


def make_services(count: int, tasks: int) -> list[ServiceInput]:
    config = policy.ScalingConfig.from_manifest(MANIFEST_BLOCK)
    out = []
    for s in range(count):
        per = tasks // count + (1 if s < tasks % count else 0)
        out.append(
            ServiceInput(
                name=f"svc{s:03}",
                config=config,
                desired=per,
                tasks=tuple((f"{s:03}{t:03}" + "ab" * 29,) for t in range(per)),
                reserved_cpu=(256, 512, 1024)[s % 3],
                reserved_memory=(512, 1024, 2048)[s % 3],
            )
        )
    return out


def follow(
    services: list[ServiceInput], workload: Workload, decisions: Mapping[str, policy.Decision]
) -> list[ServiceInput]:
    """Applies the decisions, as the daemon does by writing desiredCount."""
    for name, decision in decisions.items():
        workload.desired[name] = decision.desired
    return [dataclasses.replace(s, desired=decisions[s.name].desired) for s in services]


# ============================================================================================== measuring


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--no-engine", action="store_true", help="skip the section against a real engine")
    args = parser.parse_args()
    pure(args)
    if args.no_engine:
        return 0
    return engine_section(args.services, args.tasks)


def pure(args: argparse.Namespace) -> None:
    rng = random.Random(20250602)
    services = make_services(args.services, args.tasks)
    workload = Workload(services, rng)
    previous: dict[str, Mapping[str, Any]] = {}
    states: dict[str, policy.ScalingState] = {}
    store = source.WindowedMetrics(retention=services[0].config.history_seconds + PERIOD)
    now = START
    for _ in range(WARMUP_ROUNDS):
        now += PERIOD
        decisions = evaluate_all(services, workload.round(now), previous, store, states, now)
        services = follow(services, workload, decisions)

    timings, baselines, persist, directions = [], [], [], {"out": 0, "in": 0, "none": 0}
    bodies = 0
    for _ in range(args.rounds):
        now += PERIOD
        payloads = workload.round(now)
        bodies += sum(len(b) for b in payloads.values())
        started = time.perf_counter()
        for body in payloads.values():
            json.loads(body)
        baselines.append(time.perf_counter() - started)
        started = time.perf_counter()
        decisions = evaluate_all(services, payloads, previous, store, states, now)
        timings.append(time.perf_counter() - started)
        started = time.perf_counter()
        for state in states.values():
            json.dumps(state.to_dict())
        persist.append(time.perf_counter() - started)
        for d in decisions.values():
            directions[d.direction] += 1
        services = follow(services, workload, decisions)

    elapsed, worst = statistics.median(timings), max(timings)
    baseline = statistics.median(baselines)
    containers = sum(len(t) for s in services for t in s.tasks)
    print(
        f"scaling: one evaluation of {len(services)} services with {args.tasks} tasks ({containers} stats payloads, "
        f"{bodies / args.rounds / containers / 1024:.1f} KiB each) in {elapsed * 1000:.1f} ms median, "
        f"{worst * 1000:.1f} ms worst of {args.rounds} (target < {TARGET_SECONDS:.0f} s per evaluation period, "
        f"{TARGET_SECONDS / elapsed:,.0f}x headroom)"
    )
    print(f"targets: {'met' if worst < TARGET_SECONDS else 'MISSED'}")
    print(
        f"baseline: json.loads of the same {containers} payloads: {baseline * 1000:.1f} ms median; the whole "
        f"evaluation costs {elapsed / baseline:.2f}x that"
    )
    print(
        f"baseline: serializing {len(states)} scaling states to JSON: {statistics.median(persist) * 1000:.1f} ms "
        f"median ({statistics.median(persist) / elapsed:.2f}x the evaluation)"
    )
    print(
        f"checks: {sum(directions.values())} decisions: {directions['out']} out, {directions['in']} in, "
        f"{directions['none']} none"
    )


# ============================================================================================== real engine

ENGINE_TASK_MEMORY = 12  # MiB per tiny task; at 6 MiB runc's own start-up sometimes fails under load
APPLY_ATTEMPTS = 3  # `apply` again starts only what an earlier one could not (a loaded engine fails a few)
BASELINE_CALLS = 5


def engine_manifests(directory: Path, endpoint: str, services: int, per_service: int) -> Path:
    """One cluster on the engine, one tiny task definition, `services` auto-scaled services of `per_service`
    tasks each; minCapacity = desiredCount, so idle tasks never make the evaluation scale anything in."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "reconciler/v1",
            "kind": "Cluster",
            "metadata": {"name": "bench"},
            "spec": {"instances": [{"name": "e1", "endpoint": endpoint}]},
        },
        {
            "apiVersion": "reconciler/v1",
            "kind": "TaskDefinition",
            "metadata": {"name": "tiny"},
            "spec": {
                "containerDefinitions": [
                    {
                        "name": "tiny",
                        "image": "localhost/busybox:static",
                        "command": ["sleep", "3600"],
                        "memory": ENGINE_TASK_MEMORY,
                        "stopTimeout": 1,
                    }
                ]
            },
        },
    ]
    for n in range(services):
        documents.append(
            {
                "apiVersion": "reconciler/v1",
                "kind": "Service",
                "metadata": {"name": f"svc{n:03}"},
                "spec": {
                    "cluster": "bench",
                    "taskDefinition": "tiny",
                    "desiredCount": per_service,
                    "autoScaling": {
                        "minCapacity": per_service,
                        "maxCapacity": per_service * 2,
                        "targetTracking": [{"predefinedMetric": policy.CPU, "targetValue": 50}],
                    },
                },
            }
        )
    (directory / "bench.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return directory


def engine_section(services: int, tasks: int) -> int:
    """Apply `tasks` tiny tasks over `services` services on a private engine, then time scaling rounds."""
    import engines as engines_lib

    from reconciler import cli
    from reconciler.daemon import autoscaler, controller
    from reconciler.environment import Environment

    per_service = max(1, tasks // services)
    reason = engines_lib.engines_unavailable_reason()
    if reason:
        print(f"engine: skipped, no engine can be started here: {reason}")
        return 1
    (engine,) = engines_lib.start_engines(1)
    tmp = Path(tempfile.mkdtemp(prefix="rscale-"))
    ctl = None
    try:
        path = str(engine_manifests(tmp / "m", engine.endpoint, services, per_service))
        state = str(tmp / "state")
        out = io.StringIO()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env = Environment(stdout=out, stderr=out, environ=environ, state_dir=state)
        started = time.perf_counter()
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            out.seek(0)
            out.truncate()
            code = cli.run(["apply", path, "--yes", "--state-dir", state], env)
            if code == 0:
                break
            failed = [line for line in out.getvalue().splitlines() if "FAILED" in line]
            print(f"engine: apply attempt {attempt} exited {code}; {len(failed)} failed, e.g. {failed[:1]}")
        applied = time.perf_counter() - started
        if code != 0:
            print(out.getvalue()[-4000:])
            print(f"engine: apply of {services * per_service} tasks failed with exit status {code}")
            return 1

        # As `watch` wires it: the Controller (manifests, engines, state directory) and its Autoscaler.
        ctl = controller.Controller(env, controller.Settings(paths=[path]))
        if not ctl.load():
            print("engine: the generated manifests are invalid:\n" + "\n".join(ctl.manifest_errors))
            return 1
        assert ctl.desired is not None
        scaler = autoscaler.Autoscaler(ctl)
        scaler.restore(ctl.desired)
        rounds = []
        for _ in range(2):
            started = time.perf_counter()
            decisions = scaler.evaluate(time.time())
            rounds.append(time.perf_counter() - started)
            sampled = len(scaler.previous)
            time.sleep(1.0)  # the next one-shot sample is a later one, so CPU has a delta
        now = time.time()
        with_cpu = sum(1 for name in decisions if scaler.samples.series(name, [policy.CPU], 60.0, now).get(policy.CPU))

        # Baseline: one-shot stats calls one after the other, as a loop without the thread pool would make them.
        cstate = ctl.observed["bench"]
        ids = [c.id for t in cstate.tasks for c in t.app_containers if c.running][:BASELINE_CALLS]
        client = ctl.engines.get(ctl.desired.clusters["bench"].instance("e1"))
        calls = []
        for cid in ids:
            started = time.perf_counter()
            client.stats(cid)
            calls.append(time.perf_counter() - started)
        per_call = statistics.mean(calls)
        sequential = per_call * services * per_service
    finally:
        if ctl is not None:
            ctl.engines.close()
        engine.destroy()
        shutil.rmtree(tmp, ignore_errors=True)

    total = services * per_service
    first, second = rounds
    print(
        f"engine: {total} tasks of {services} services started by `reconciler apply` in {applied:.1f} s ({attempt} run(s)) "
        f"(one private engine, {os.cpu_count()} CPUs)"
    )
    print(
        f"engine: one scaling evaluation of {services} services / {total} tasks ({sampled} one-shot stats "
        f"gathered concurrently, {autoscaler.STATS_CONCURRENCY} at a time): first round {first:.2f} s (no "
        f"previous samples), second round {second:.2f} s (CPU computed for {with_cpu} of {len(decisions)} services)"
    )
    print(f"targets: {'met' if max(first, second) < TARGET_SECONDS else 'MISSED'} (< {TARGET_SECONDS:.0f} s per evaluation period)")
    print(
        f"baseline: sequential one-shot stats: {per_call:.3f} s per call (mean of {len(calls)}), extrapolated to "
        f"{total} calls: {sequential:.0f} s; the concurrent second round is {sequential / second:.0f}x faster"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
