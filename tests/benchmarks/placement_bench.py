"""Placement benchmark: 100,000 tasks of 100 services on 10,000 simulated instances, in memory.

Run as a script: ``python tests/benchmarks/placement_bench.py [--instances N] [--services N] [--tasks N]``.
Every service uses ``spread(attribute:ecs.availability-zone), binpack(memory)`` and a ``memberOf``
constraint. Prints the throughput and peak memory against the targets, baselines measured in the same
run (the naive scheduler, a capacity-only scan, one memberOf evaluation per instance) with ratios, and
sanity checks of the result. It prints, it does not assert: the exit status is 0.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reconciler.planning import placement, query  # noqa: E402

TARGET_RATE = 20_000
TARGET_MIB = 1024
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
INSTANCE_TYPES = {  # name: (cpu units, memory MiB, architecture)
    "m5.large": (2048, 7680, "x86_64"),
    "m5.xlarge": (4096, 15360, "x86_64"),
    "c5.xlarge": (4096, 7168, "x86_64"),
    "r5.large": (2048, 15872, "x86_64"),
    "m6g.xlarge": (4096, 15360, "arm64"),
    "t3.medium": (2048, 3840, "x86_64"),
}
TEAMS = ("payments", "search", "ads", "core", "data")
EXPRESSIONS = (
    "attribute:stack == prod",
    "attribute:stack == prod and attribute:ecs.cpu-architecture == x86_64",
    "attribute:ecs.instance-type =~ m* or attribute:team in [payments, search]",
    "not (attribute:stack == staging) and attribute:ecs.os-type == linux",
    "attribute:rack !in [r00, r01, r02, r03] and attribute:gpu !exists",
)
STRATEGIES = (
    placement.Strategy("spread", "attribute:ecs.availability-zone"),
    placement.Strategy("binpack", "memory"),
)


def make_instances(n: int, rng: random.Random) -> list[placement.Instance]:
    names = list(INSTANCE_TYPES)
    instances = []
    for i in range(n):
        kind = rng.choice(names)
        cpu, memory, architecture = INSTANCE_TYPES[kind]
        attributes = {
            "ecs.availability-zone": ZONES[i % len(ZONES)],
            "ecs.instance-type": kind,
            "ecs.os-type": "linux",
            "ecs.cpu-architecture": architecture,
            "ecs.ami-id": f"ami-{i % 7:08x}",
            "stack": "prod" if rng.random() < 0.8 else "staging",
            "team": rng.choice(TEAMS),
            "rack": f"r{rng.randrange(50):02}",
        }
        if rng.random() < 0.02:
            attributes["gpu"] = ""
        instances.append(placement.Instance(f"i-{i:06}", cpu, memory, attributes))
    return instances


def make_requests(services: int, rng: random.Random) -> list[placement.TaskRequest]:
    return [
        placement.TaskRequest(
            group=f"service:svc{s:03}",
            cpu=rng.choice((64, 128, 256)),
            memory=rng.choice((128, 256, 512)),
            constraints=(placement.Constraint("memberOf", EXPRESSIONS[s % len(EXPRESSIONS)]),),
            strategies=STRATEGIES,
        )
        for s in range(services)
    ]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_fast(view: placement.ClusterView, requests, per_service: int) -> tuple[float, list]:
    results = []
    start = time.perf_counter()
    for k, req in enumerate(requests):
        results.append(placement.place(view, req, per_service, seed=k))
    return time.perf_counter() - start, results


def run_naive(instances, requests, placements: int) -> tuple[float, int]:
    """The obviously-correct scheduler on the same cluster, for a few tasks of the first service."""
    view = placement.ClusterView(instances)
    start = time.perf_counter()
    result = placement.place_naive(view, requests[0], placements, seed=0)
    return time.perf_counter() - start, len(result.placements)


def run_capacity_scan(instances, requests, placements: int) -> float:
    """A naive loop that only checks cpu and memory over all instances (first fit), per task."""
    remaining = [[i.cpu, i.memory] for i in instances]
    start = time.perf_counter()
    for k in range(placements):
        req = requests[k % len(requests)]
        for slot in remaining:
            if slot[0] >= req.cpu and slot[1] >= req.memory:
                slot[0] -= req.cpu
                slot[1] -= req.memory
                break
        else:
            raise SystemExit("capacity scan found no room")
        # first fit stops early; charge the full pass a real filter needs
        for slot in remaining:
            _ = slot[0] >= req.cpu and slot[1] >= req.memory
    return time.perf_counter() - start


def run_member_of(instances) -> tuple[float, int]:
    expr = query.parse(EXPRESSIONS[2])
    facts = [query.InstanceFacts(i.id, i.attributes) for i in instances]
    start = time.perf_counter()
    matched = sum(1 for f in facts if expr.evaluate(f))
    return time.perf_counter() - start, matched


def check(view: placement.ClusterView, instances, results, requests) -> list[str]:
    problems = []
    for instance in instances:
        cpu, memory = view.remaining(instance.id)
        if cpu < 0 or memory < 0:
            problems.append(f"{instance.id} overcommitted")
    by_id = {i.id: i for i in instances}
    for req, result in zip(requests, results, strict=True):
        zones = Counter(by_id[i].attributes["ecs.availability-zone"] for i in result.placements)
        if zones and max(zones.values()) - min(zones.get(z, 0) for z in ZONES) > 1:
            problems.append(f"{req.group} zones unbalanced: {dict(zones)}")
        expr = query.parse(req.constraints[0].expression)  # type: ignore[arg-type]
        if any(
            not expr.evaluate(query.InstanceFacts(i, by_id[i].attributes)) for i in set(result.placements)
        ):
            problems.append(f"{req.group} placed outside memberOf")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--naive-tasks", type=int, default=20)
    args = parser.parse_args()

    rng = random.Random(20240601)
    instances = make_instances(args.instances, rng)
    requests = make_requests(args.services, rng)
    per_service = args.tasks // args.services
    view = placement.ClusterView(instances)

    elapsed, results = run_fast(view, requests, per_service)
    placed = sum(len(r.placements) for r in results)
    unplaced = sum(r.unplaced for r in results)
    rate = placed / elapsed
    mib = peak_mib()
    print(
        f"placement: {placed} tasks on {len(instances)} instances in {elapsed:.2f} s = {rate:,.0f} placements/s "
        f"(target >= {TARGET_RATE:,}/s); peak memory {mib:.0f} MiB (target < {TARGET_MIB} MiB)"
        + (f"; {unplaced} unplaced" if unplaced else "")
    )
    verdict = "met" if rate >= TARGET_RATE and mib < TARGET_MIB else "MISSED"
    print(f"targets: {verdict}")

    naive_elapsed, naive_placed = run_naive(instances, requests, args.naive_tasks)
    naive_rate = naive_placed / naive_elapsed
    print(
        f"baseline: naive scheduler (every filter on every instance per task): {naive_placed} tasks in "
        f"{naive_elapsed:.2f} s = {naive_rate:,.0f} placements/s; fast path is {rate / naive_rate:,.0f}x faster"
    )
    scan_tasks = 2_000
    scan_elapsed = run_capacity_scan(instances, requests, scan_tasks)
    scan_rate = scan_tasks / scan_elapsed
    print(
        f"baseline: capacity-only scan over {len(instances)} instances: {scan_rate:,.0f} placements/s; "
        f"fast path is {rate / scan_rate:,.1f}x faster"
    )
    eval_elapsed, matched = run_member_of(instances)
    per_eval = eval_elapsed / len(instances)
    print(
        f"baseline: one memberOf evaluation per instance: {len(instances)} in {eval_elapsed * 1000:.1f} ms "
        f"({per_eval * 1e6:.2f} us each, {matched} matched); one placement costs "
        f"{(elapsed / placed) / per_eval:,.1f} evaluations"
    )
    problems = check(view, instances, results, requests)
    print(
        "checks: ok (no overcommit, zones balanced within 1 per service, memberOf respected)"
        if not problems
        else "checks: FAILED: " + "; ".join(problems[:5])
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
