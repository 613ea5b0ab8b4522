"""Task placement across container instances, against three real private engines.

Owns end-to-end evidence that the scheduler's decisions (`planning.placement`) are what actually runs on each
engine: the default spread, binpack on memory, memberOf, unplaceable tasks with ECS's reason and apply's exit
status 3, DAEMON services following the instances of the Cluster manifest, DRAINING within the deployment
bounds (sampled live), an engine that stops answering (grace period, then replacements, then no duplicates once
it is back), and FARGATE tasks on the cluster's pool with the task size as container limits.
Counts are read through each engine's own docker client, by reconciler's labels.
Must not: touch an engine the fixtures did not start, or assert on speed (deadlines only bound waits).
"""

from __future__ import annotations

import math

import helpers as h
import placement_helpers as ph
import pytest

MIB = 1024 * 1024
NAMES = ("i1", "i2", "i3")


@pytest.fixture
def fleet(engines3, run_cli, tmp_path):
    f = ph.Fleet(engines3, tmp_path, run_cli)
    try:
        yield f
    finally:
        f.close()


def write_cluster(fleet: ph.Fleet, engines=None, **per_instance) -> None:
    """cluster.yaml with instances i1.. on the given engines (default: all three); `per_instance` maps an
    instance name to extra fields, e.g. i2={"status": "DRAINING"}."""
    engines = fleet.engines if engines is None else engines
    instances = []
    for n, engine in enumerate(engines, 1):
        name = f"i{n}"
        instances.append(ph.instance(name, engine.endpoint, **per_instance.get(name, {})))
    fleet.ws.write("cluster.yaml", ph.cluster("test", instances))


def section(plan_text: str, service: str) -> list[str]:
    """The lines of `plan` output about one service (its header line to the next header or summary)."""
    out: list[str] = []
    inside = False
    for line in plan_text.splitlines():
        if line.startswith("service "):
            inside = line.startswith(f"service {service} (")
        elif not line.startswith(" "):
            inside = False
        if inside:
            out.append(line)
    assert out, f"no section for service {service} in the plan:\n{plan_text}"
    return out


def instance_views(fleet: ph.Fleet) -> dict[str, dict]:
    return {v["containerInstance"]: v for v in fleet.ws.json("get", "instances", "--json")["containerInstances"]}


# --------------------------------------------------------------------------------------------------------------


def test_default_strategy_spreads_six_tasks_two_per_instance(fleet):
    ws = fleet.ws
    write_cluster(fleet)
    ws.write("app.yaml", h.task_definition("app", ph.sleeper(cpu=128, memoryReservation=64)), h.service("app", "app", 6))

    result = ws.apply()
    assert "Apply complete: 6 started, 0 stopped, 0 failed." in result.stdout, result.stdout
    assert fleet.counts("app") == [2, 2, 2], fleet.describe("app")

    views = instance_views(fleet)
    assert sorted(views) == list(NAMES)
    for name in NAMES:
        v = views[name]
        assert v["runningTasksCount"] == 2, v
        assert v["agentConnected"] is True, v
        assert v["registeredResources"] == {"CPU": 1024, "MEMORY": 512}, v
        assert v["remainingResources"]["MEMORY"] == 512 - 2 * 64, v
        assert v["remainingResources"]["CPU"] == 1024 - 2 * 128, v
    ws.assert_converged()


def test_binpack_memory_fills_one_instance_before_the_next(fleet):
    ws = fleet.ws
    write_cluster(fleet)
    binpack = [{"type": "binpack", "field": "memory"}]

    def write(desired: int) -> None:
        td = h.task_definition("app", ph.sleeper(memoryReservation=200))  # 2 fit in 512 MiB, not 3
        ws.write("app.yaml", td, h.service("app", "app", desired, placementStrategy=binpack))

    write(3)
    ws.apply()
    # Ties (three empty instances) go to the lowest instance id: i1 takes two tasks, then i2.
    assert fleet.counts("app") == [2, 1, 0], fleet.describe("app")

    write(5)
    ws.apply()
    assert fleet.counts("app") == [2, 2, 1], fleet.describe("app")
    remaining = {n: v["remainingResources"]["MEMORY"] for n, v in instance_views(fleet).items()}
    assert remaining == {"i1": 112, "i2": 112, "i3": 312}

    write(3)  # scale-in under binpack stops tasks on the least utilised instance first: i3 is emptied
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    assert "Plan: 0 to add, 0 to replace, 2 to remove." in plan.stdout, plan.stdout
    ws.apply()
    counts = fleet.counts("app")
    assert counts[2] == 0 and sum(counts) == 3, fleet.describe("app")
    ws.assert_converged()


@pytest.mark.parametrize("where", ["service", "taskDefinition"])
def test_member_of_keeps_every_task_on_matching_instances(fleet, where):
    ws = fleet.ws
    constraint = [{"type": "memberOf", "expression": "attribute:stack == blue"}]

    def write(desired: int, i3_stack: str) -> None:
        stacks = {"i1": "blue", "i2": "green", "i3": i3_stack}
        write_cluster(fleet, **{name: {"attributes": {"stack": stack}} for name, stack in stacks.items()})
        if where == "service":
            td = h.task_definition("app", ph.sleeper())
            svc = h.service("app", "app", desired, placementConstraints=constraint)
        else:
            td = h.task_definition("app", ph.sleeper(), placementConstraints=constraint)
            svc = h.service("app", "app", desired)
        ws.write("app.yaml", td, svc)

    write(5, "blue")
    plan = ws.plan()
    assert " on i2" not in plan.stdout, plan.stdout
    ws.apply()
    before = fleet.counts("app")
    assert before[1] == 0, f"a task runs on the green instance: {fleet.describe('app')}"
    assert sorted([before[0], before[2]]) == [2, 3], fleet.describe("app")  # spread over the blue ones

    write(6, "green")  # i3 leaves the blue stack: its tasks stay (ECS does not re-check), nothing new goes there
    ws.apply()
    after = fleet.counts("app")
    assert after == [before[0] + 1, 0, before[2]], f"the new task must go to i1: {fleet.describe('app')}"
    ws.assert_converged()


def test_task_too_big_for_every_instance_is_unplaced_and_apply_exits_3(fleet):
    ws = fleet.ws
    write_cluster(fleet)
    ws.write("big.yaml", h.task_definition("big", ph.sleeper(memoryReservation=1024)), h.service("big", "big", 1))
    # 300 MiB each: one per 512 MiB instance, so the fourth fits nowhere either.
    ws.write("wide.yaml", h.task_definition("wide", ph.sleeper(memoryReservation=300)), h.service("wide", "wide", 4))

    reason = "no container instance met all requirements: 3 had insufficient memory"
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    assert f"  ! 1 task(s) cannot be placed: {reason}" in section(plan.stdout, "big"), plan.stdout
    wide = section(plan.stdout, "wide")
    assert f"  ! 1 task(s) cannot be placed: {reason}" in wide, plan.stdout
    assert sum(1 for line in wide if "+ start task on" in line) == 3, plan.stdout

    result = ws.apply(check=3)
    assert "Apply incomplete: 3 started, 0 stopped, 0 failed." in result.stdout, result.stdout
    assert "2 task(s) could not be placed" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert fleet.counts("wide") == [1, 1, 1], fleet.describe("wide")
    assert fleet.counts("big") == [0, 0, 0], fleet.describe("big")

    again = ws.apply(check=3)  # still unplaceable; what runs is left alone
    assert "Apply complete" not in again.stdout, again.stdout
    assert fleet.counts("wide") == [1, 1, 1], fleet.describe("wide")


def test_daemon_runs_one_task_per_instance_and_follows_added_instances(fleet):
    ws = fleet.ws
    svc = h.service("agent", "agent", 0, schedulingStrategy="DAEMON")
    del svc["spec"]["desiredCount"]
    ws.write("agent.yaml", h.task_definition("agent", ph.sleeper()), svc)

    write_cluster(fleet, engines=fleet.engines[:2])
    ws.apply()
    assert fleet.counts("agent") == [1, 1, 0], fleet.describe("agent")
    before = fleet.running("agent")
    ws.assert_converged()

    write_cluster(fleet)  # the third engine joins the cluster
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    assert "+ start task on i3: daemon task for the instance" in plan.stdout, plan.stdout
    assert "Plan: 1 to add, 0 to replace, 0 to remove." in plan.stdout, plan.stdout
    ws.apply()
    after = fleet.running("agent")
    assert [len(ids) for ids in after] == [1, 1, 1], fleet.describe("agent")
    assert after[:2] == before[:2], "the tasks on i1 and i2 must be left alone"
    assert ws.services()["agent"]["desiredCount"] == 3
    ws.assert_converged()


@pytest.mark.parametrize(("min_healthy", "max_percent"), [(100, 200), (50, 100)])
def test_draining_instance_moves_its_tasks_within_minimum_healthy(fleet, min_healthy, max_percent):
    ws = fleet.ws
    desired = 6
    write_cluster(fleet)
    td = h.task_definition("app", ph.sleeper())
    ws.write("app.yaml", td, h.service("app", "app", desired, max_percent=max_percent, min_healthy=min_healthy))
    ws.apply()
    assert fleet.counts("app") == [2, 2, 2], fleet.describe("app")
    drained = fleet.running("app")[2]

    write_cluster(fleet, i3={"status": "DRAINING"})
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    assert plan.stdout.count("on i3: instance i3 is DRAINING") == 2, plan.stdout
    assert "+ start task on i3" not in plan.stdout, plan.stdout

    sampler = ph.CountSampler(fleet.clients, "app", leaving=[2], arriving=[0, 1])
    sampler.start()
    try:
        proc = ws.start("apply", "--yes", log="drain-apply")
        proc.wait(timeout=180)
    finally:
        sampler.stop()
    output = ws.output(proc)
    assert proc.returncode == 0, output
    assert sampler.error is None, sampler.error
    assert sampler.samples, "the sampler took no sample"

    floor = math.ceil(desired * min_healthy / 100)
    ceiling = desired * max_percent // 100
    low = min(r for r, _ in sampler.samples)
    high = max(a for _, a in sampler.samples)
    assert low >= floor, f"running tasks dropped to {low} < {floor}; samples {sampler.samples}\n{output}"
    assert high <= ceiling, f"{high} tasks at once > {ceiling}; samples {sampler.samples}\n{output}"

    assert fleet.counts("app") == [3, 3, 0], fleet.describe("app")
    assert fleet.containers("app")[2] == [], "the drained tasks' containers are removed"
    assert not drained & set().union(*fleet.running("app"))
    assert instance_views(fleet)["i3"]["status"] == "DRAINING"
    ws.assert_converged()


@pytest.mark.parametrize("restart", [False, True], ids=["tasks-come-back-stopped", "tasks-come-back-running"])
def test_unreachable_engine_grace_then_replacements_then_no_duplicates(fleet, restart):
    ws = fleet.ws
    desired = 6
    write_cluster(fleet)
    # With a restart policy the engine restarts the lost tasks when it comes back: a surplus to stop.
    fields = {"restartPolicy": {"enabled": True}} if restart else {}
    ws.write("app.yaml", h.task_definition("app", ph.sleeper(**fields)), h.service("app", "app", desired))
    ws.apply()
    assert fleet.counts("app") == [2, 2, 2], fleet.describe("app")
    lost = fleet.engines[2]

    lost.stop()
    # Default grace (60 s): the last-known tasks of i3 still count; nothing is placed for them yet.
    plan = ws.plan()
    assert plan.exit_code == 1, plan.stdout + plan.stderr
    assert f"error: engine {lost.endpoint} (instance i3, cluster test) is unreachable" in plan.stderr, plan.stderr
    warning = "2 task(s) on unreachable instance(s) i3 counted as running for up to 60s"
    assert warning in plan.stdout, plan.stdout
    assert "+ start task" not in plan.stdout, plan.stdout
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in plan.stdout, plan.stdout

    # No grace: the tasks of i3 are placed on the instances that answer.
    result = ws.apply("--unreachable-grace", "0s", check=1)
    assert lost.endpoint in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "Apply complete: 2 started, 0 stopped, 0 failed." in result.stdout, result.stdout
    assert fleet.counts("app", only=[0, 1]) == [3, 3], fleet.describe("app", only=[0, 1])

    lost.start()
    if restart:
        h.wait_for(lambda: len(fleet.running("app", only=[2])[0]) == 2, what="the engine to restart the lost tasks")
    else:
        assert fleet.running("app", only=[2]) == [set()], fleet.describe("app")
    plan = ws.plan("--detailed-exitcode")
    assert plan.exit_code == 2, plan.stdout + plan.stderr
    if restart:
        assert "Plan: 0 to add, 0 to replace, 2 to remove." in plan.stdout, plan.stdout
        assert plan.stdout.count("scale-in to desired count 6") == 2, plan.stdout
    else:
        assert "+ start task" not in plan.stdout, plan.stdout
    ws.apply()
    running = fleet.running("app")
    all_ids = [t for ids in running for t in ids]
    assert len(all_ids) == desired == len(set(all_ids)), fleet.describe("app")
    leftovers = [
        c["Names"][0] for ids, found in zip(running, fleet.containers("app"), strict=True) for c in found
        if c["Labels"][h.TASK] not in ids
    ]
    assert leftovers == [], f"containers of stopped tasks remain: {fleet.describe('app')}"
    # Scale-in stops from the fullest instances (spread): the surplus goes from i1 and i2, not i3.
    assert fleet.counts("app") == ([2, 2, 2] if restart else [3, 3, 0]), fleet.describe("app")
    ws.assert_converged()


def test_fargate_service_runs_on_the_pool_with_task_size_limits(fleet):
    ws = fleet.ws
    e1, e2, pool = fleet.engines
    ws.write(
        "cluster.yaml",
        ph.cluster(
            "test",
            [ph.instance("i1", e1.endpoint), ph.instance("i2", e2.endpoint)],
            fargate=[{"name": "pool-1", "endpoint": pool.endpoint}],
        ),
    )
    fargate_td = h.task_definition(
        "fg",
        ph.sleeper(stopTimeout=2),  # FARGATE allows 2-120 s; SLEEPER exits at once on SIGTERM anyway
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
    )
    ws.write("fg.yaml", fargate_td, h.service("fg", "fg", 2, launchType="FARGATE"))
    ws.write("ec2.yaml", h.task_definition("ec2", ph.sleeper()), h.service("ec2", "ec2", 2))

    ws.apply()
    assert fleet.counts("fg") == [0, 0, 2], fleet.describe("fg")
    assert fleet.counts("ec2")[2] == 0 and sum(fleet.counts("ec2")) == 2, fleet.describe("ec2")

    client = fleet.clients[2]
    for task_id in fleet.running("fg")[2]:
        app = h.container_of(client, task_id, "app")
        assert app["HostConfig"]["NanoCpus"] == 256 * 10**9 // 1024 == 250_000_000, app["HostConfig"]
        assert app["HostConfig"]["Memory"] == 512 * MIB, app["HostConfig"]
        roles = sorted(c["Labels"].get(h.ROLE, "app") for c in h.managed(client, task_id=task_id))
        assert "pause" in roles, f"an awsvpc task has its namespace holder: {roles}"
    fg = [t for t in ws.tasks() if t["group"] == "service:fg"]
    assert len(fg) == 2 and all(t["containerInstance"] == "pool-1" for t in fg), fg
    ws.assert_converged()
