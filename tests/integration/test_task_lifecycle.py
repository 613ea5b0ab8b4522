"""How reconciler runs one task on a real engine: why containers stopped, start order, task networking.

Owns end-to-end evidence that an OOM kill and a plain SIGKILL are told apart (both exit 137) in `describe`,
also after the task was replaced; that `dependsOn` HEALTHY and SUCCESS hold a container back until the
condition is really met, and that shutdown runs in reverse order; that the containers of an awsvpc task share
localhost; that an engine-chosen host port is reported in `networkBindings` and serves traffic, from here and
inside the engine's namespace; and that a FARGATE service runs in the cluster's pool with its task size.
Must not: touch an engine the fixtures did not start, or assert on speed (deadlines only bound waits).
"""

from __future__ import annotations

import subprocess
import time

import helpers as h


def _only_task(ws, service_name: str) -> str:
    (task_id,) = h.by_task(h.managed(ws.client, service=service_name)).keys()
    return task_id


def _exited(ws, task_id: str, name: str) -> dict:
    return h.wait_for(
        lambda: (c := h.container_of(ws.client, task_id, name))["State"]["Status"] == "exited" and c,
        what=f"container {name} of task {task_id[:12]} to exit",
    )


def test_oom_kill_is_explained_with_the_memory_limit(ws, engine_reports_oom):
    ws.write("hog.yaml", h.task_definition("hog", h.container("hog", h.OOM, memory=16)), h.service("hog", "hog", 1))
    ws.cli("apply", "--yes", check=1)  # the task dies within its first seconds: no deployment is COMPLETED over it
    hog = _only_task(ws, "hog")
    assert _exited(ws, hog, "hog")["State"]["OOMKilled"] is True

    task = ws.describe_task(hog)
    assert task["lastStatus"] == "STOPPED"
    assert task["stopCode"] == "EssentialContainerExited"
    (c,) = task["containers"]
    assert c["exitCode"] == 137
    assert c["reason"] == "OutOfMemoryError: container hog killed due to memory usage (memory limit 16 MiB)"
    assert "OutOfMemoryError" in task["stoppedReason"] and "16 MiB" in task["stoppedReason"]
    (listed,) = ws.describe_service("hog")["tasks"]
    assert listed["taskId"] == hog and "OutOfMemoryError" in listed["stoppedReason"]

    ws.cli("apply", "--yes", check=1)  # replaces it (and the new one dies too): the stopped-task history keeps the explanation
    assert h.managed(ws.client, task_id=hog) == []
    recorded = ws.describe_task(hog)
    assert recorded["lastStatus"] == "STOPPED" and recorded["stopCode"] == "EssentialContainerExited"
    assert "OutOfMemoryError" in recorded["stoppedReason"] and "16 MiB" in recorded["stoppedReason"]
    assert recorded["containers"][0]["exitCode"] == 137
    assert hog in [t["taskId"] for t in ws.describe_service("hog")["stoppedTasks"]]


def test_sigkill_is_explained_as_a_kill_not_oom(ws):
    # The same memory limit as the OOM test: exit code 137 alone must not be read as an OOM kill.
    ws.write("victim.yaml", h.task_definition("victim", h.container("victim", memory=16)), h.service("victim", "victim", 1))
    ws.apply()
    victim = _only_task(ws, "victim")
    ws.client.api.kill(h.container_of(ws.client, victim, "victim")["Id"])  # SIGKILL
    assert _exited(ws, victim, "victim")["State"]["OOMKilled"] is False

    task = ws.describe_task(victim)
    assert task["lastStatus"] == "STOPPED" and task["stopCode"] == "EssentialContainerExited"
    (c,) = task["containers"]
    assert c["exitCode"] == 137
    assert c["reason"] == "container victim was killed by SIGKILL (137)"
    assert task["stoppedReason"] == "Essential container in task exited: container victim was killed by SIGKILL (137)"

    ws.apply()
    assert h.managed(ws.client, task_id=victim) == []
    recorded = ws.describe_task(victim)
    assert recorded["stoppedReason"] == task["stoppedReason"]
    assert "OutOfMemory" not in recorded["containers"][0]["reason"]


def test_depends_on_healthy_starts_after_the_first_passing_health_check(ws):
    interval = 5  # the schema's minimum (ECS: 5-300 s); Docker probes first one interval after the start
    db = h.container(
        "db",
        h.httpd(80, "db"),
        healthCheck={"command": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:80/"], "interval": interval, "timeout": 2, "retries": 3},
    )
    app = h.container("app", dependsOn=[{"containerName": "db", "condition": "HEALTHY"}])
    ws.write("app.yaml", h.task_definition("app", db, app), h.service("app", "app", 1))
    ws.apply()
    task_id = _only_task(ws, "app")

    db_state = h.container_of(ws.client, task_id, "db")["State"]
    app_state = h.container_of(ws.client, task_id, "app")["State"]
    assert app_state["Status"] == "running"
    passed = [entry for entry in db_state["Health"]["Log"] if entry["ExitCode"] == 0]
    assert passed, db_state["Health"]
    first_healthy = h.parse_time(passed[0]["End"])
    app_started = h.parse_time(app_state["StartedAt"])
    db_started = h.parse_time(db_state["StartedAt"])
    assert app_started > first_healthy, f"app started {app_started}, db first healthy {first_healthy}"
    assert (app_started - db_started).total_seconds() > interval * 0.9, "no health probe runs before one interval"
    (task,) = ws.tasks()
    assert task["lastStatus"] == "RUNNING" and task["healthStatus"] == "HEALTHY"
    ws.assert_converged()

    since = time.time() - 1
    ws.cli("stop-task", task_id, check=0)
    events = ws.client.events(
        since=since,
        until=time.time() + 1,
        decode=True,
        filters={"type": "container", "event": "die", "label": f"{h.TASK}={task_id}"},
    )
    order = [e["Actor"]["Attributes"][h.CONTAINER] for e in events]
    assert order == ["app", "db"], "shutdown runs in the reverse of the startup dependency order"


def test_depends_on_success_waits_for_the_init_container(ws):
    init = h.container("init", "sleep 1; echo migrated; exit 0", essential=False)
    app = h.container("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}])
    ws.write("app.yaml", h.task_definition("app", init, app), h.service("app", "app", 1))
    ws.apply()
    task_id = _only_task(ws, "app")

    init_state = h.container_of(ws.client, task_id, "init")["State"]
    app_state = h.container_of(ws.client, task_id, "app")["State"]
    assert init_state["Status"] == "exited" and init_state["ExitCode"] == 0
    assert app_state["Status"] == "running"
    assert h.parse_time(app_state["StartedAt"]) >= h.parse_time(init_state["FinishedAt"])
    (task,) = ws.tasks()
    assert task["lastStatus"] == "RUNNING"
    ws.assert_converged()


def test_depends_on_success_not_met_fails_the_task_and_leaves_nothing(ws):
    init = h.container("init", "exit 1", essential=False)
    app = h.container("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}])
    ws.write("app.yaml", h.task_definition("app", init, app), h.service("app", "app", 1))
    result = ws.apply(check=1)
    assert "dependency init" in result.stdout and "application error (1)" in result.stdout, result.stdout
    assert "condition SUCCESS cannot be met" in result.stdout
    assert h.managed(ws.client) == []
    assert [n["Name"] for n in ws.client.api.networks() if n["Name"] not in ("bridge", "host", "none")] == []


def test_awsvpc_containers_share_localhost(ws):
    srv = h.container("srv", h.httpd(8080, "from-srv"), portMappings=[{"containerPort": 8080}])
    cli = h.container(
        "cli",
        "trap 'exit 0' TERM; while true; do wget -q -O- http://127.0.0.1:8080/; sleep 0.5 & wait; done",
    )
    ws.write("pair.yaml", h.task_definition("pair", srv, cli, networkMode="awsvpc"), h.service("pair", "pair", 1))
    ws.apply()
    task_id = _only_task(ws, "pair")

    members = h.managed(ws.client, task_id=task_id)
    (holder,) = [c for c in members if c["Labels"][h.ROLE] == "pause"]
    for name in ("srv", "cli"):
        inspect = h.container_of(ws.client, task_id, name)
        assert inspect["HostConfig"]["NetworkMode"] == f"container:{holder['Id']}"

    def fetched() -> bool:
        result = ws.cli("exec", task_id, "--container", "cli", "--", "wget", "-q", "-O-", "http://127.0.0.1:8080/")
        return result.exit_code == 0 and result.stdout.strip() == "from-srv"

    h.wait_for(fetched, timeout=20, interval=0.3, what="cli to reach srv on 127.0.0.1:8080")
    h.wait_for(
        lambda: "from-srv" in ws.cli("logs", task_id, "--container", "cli", "--tail", "5").stdout,
        what="cli's own loop to log srv's page",
    )
    (task,) = ws.tasks()
    (binding,) = next(c for c in task["containers"] if c["name"] == "srv")["networkBindings"]
    assert binding["containerPort"] == 8080 and binding["hostPort"] > 0
    assert h.http_get(f"http://{ws.engine.address}:{binding['hostPort']}/").strip() == "from-srv"


def test_dynamic_host_port_is_reported_and_serves(ws):
    web = h.container("web", h.httpd(80, "dynamic"), portMappings=[{"containerPort": 80}])
    ws.write("web.yaml", h.task_definition("web", web), h.service("web", "web", 1))
    ws.apply()
    task_id = _only_task(ws, "web")

    (task,) = ws.tasks()
    assert task["taskId"] == task_id
    (binding,) = task["containers"][0]["networkBindings"]
    assert binding["containerPort"] == 80 and binding["protocol"] == "tcp" and binding["bindIP"] == "0.0.0.0"
    port = binding["hostPort"]
    published = h.container_of(ws.client, task_id, "web")["NetworkSettings"]["Ports"]["80/tcp"]
    assert str(port) in {b["HostPort"] for b in published}, published
    assert ws.describe_task(task_id)["containers"][0]["networkBindings"] == [binding]

    assert h.http_get(f"http://{ws.engine.address}:{port}/").strip() == "dynamic"

    def inside_namespace() -> str:
        proc = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ws.engine.netns}", "busybox", "wget", "-q", "-O-", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return proc.stdout.strip() if proc.returncode == 0 else ""

    assert h.wait_for(inside_namespace, timeout=15, what="127.0.0.1 inside the engine's namespace") == "dynamic"


def test_fargate_service_runs_in_the_pool_with_the_task_size(ws):
    ws.write("cluster.yaml", h.cluster("test", [ws.engine.endpoint], fargate=True))
    td = h.task_definition(
        "small",
        h.container("small", h.httpd(8080, "fargate"), portMappings=[{"containerPort": 8080}], memoryReservation=None, stopTimeout=2),
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
    )
    ws.write("small.yaml", td, h.service("small", "small", 1, launchType="FARGATE"))
    ws.apply()
    task_id = _only_task(ws, "small")

    host_config = h.container_of(ws.client, task_id, "small")["HostConfig"]
    assert host_config["NanoCpus"] == 250_000_000  # 256 CPU units = a quarter of a CPU
    assert host_config["Memory"] == 512 * 1024 * 1024  # the task memory caps its containers
    (task,) = ws.tasks()
    assert task["containerInstance"] == "i1" and task["lastStatus"] == "RUNNING"
    (binding,) = task["containers"][0]["networkBindings"]
    assert h.http_get(f"http://{ws.engine.address}:{binding['hostPort']}/").strip() == "fargate"
    ws.assert_converged()
