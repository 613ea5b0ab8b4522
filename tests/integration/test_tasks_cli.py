"""The task commands and the safety rails of the CLI against a real private engine.

Owns end-to-end evidence that `run-task --wait` passes the essential container's exit code on and that a
one-off task is never restarted by `apply`; that `stop-task`, `exec` and `logs` act on the right containers;
that `apply` without `--yes` and without a terminal changes nothing; and that `destroy --yes` removes every
managed container and network. Must not: touch an engine the fixtures did not start.
"""

from __future__ import annotations

import re

import helpers as h


def _default_networks(client) -> list[str]:
    return sorted(n["Name"] for n in client.api.networks())


def test_run_task_wait_passes_the_exit_code_and_is_never_restarted(ws):
    ws.write("job.yaml", h.task_definition("job", h.container("job", "echo working; exit 3")))
    ws.write("app.yaml", h.task_definition("app", h.container("app")), h.service("app", "app", 1))

    result = ws.cli("run-task", "job", "--wait")
    assert result.exit_code == 3, h.describe_run(["run-task", "job", "--wait"], result)
    (task_id,) = re.findall(r"task ([0-9a-f]{32}) started on i1", result.stdout)
    assert "container job exited with code 3" in result.stdout
    (job,) = h.managed(ws.client, task_id=task_id)
    assert job["Labels"][h.GROUP] == "family:job" and h.SERVICE not in job["Labels"]

    before = ws.client.api.inspect_container(job["Id"])
    plan = ws.plan()
    assert "job" not in plan.stdout, "one-off tasks are not part of any service's plan"
    ws.apply()
    ws.apply()
    jobs = h.managed(ws.client, family="job")
    assert [c["Id"] for c in jobs] == [job["Id"]], "no new task of the family was started"
    after = ws.client.api.inspect_container(job["Id"])
    assert after["State"]["Status"] == "exited" and after["State"]["ExitCode"] == 3
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"] and after["RestartCount"] == 0, "not restarted"
    (described,) = [t for t in ws.tasks() if t["taskId"] == task_id]
    assert described["group"] == "family:job" and described["lastStatus"] == "STOPPED"


def test_stop_task_stops_one_off_and_service_tasks(ws):
    ws.write("job.yaml", h.task_definition("job", h.container("job")))
    ws.write("app.yaml", h.task_definition("app", h.container("app")), h.service("app", "app", 2))
    ws.apply()

    started = ws.cli("run-task", "job", check=0)
    (job_id,) = re.findall(r"task ([0-9a-f]{32}) started", started.stdout)
    assert h.managed(ws.client, task_id=job_id)[0]["State"] == "running"
    ws.cli("stop-task", job_id[:12], check=0)
    assert h.managed(ws.client, task_id=job_id) == []
    stopped = ws.describe_task(job_id)
    assert stopped["lastStatus"] == "STOPPED"
    assert stopped["stopCode"] == "UserInitiated" and stopped["stoppedReason"] == "Task stopped by user"

    victim, survivor = sorted(h.running_task_ids(ws.client, "app"))
    result = ws.cli("stop-task", victim, "--reason", "testing", check=0)
    assert "the next apply replaces it" in result.stderr
    assert h.managed(ws.client, task_id=victim) == []
    assert h.running_task_ids(ws.client, "app") == {survivor}
    assert ws.describe_task(victim)["stoppedReason"] == "testing"
    plan = ws.plan()
    assert "Plan: 1 to add, 0 to replace, 0 to remove." in plan.stdout, plan.stdout


def test_exec_runs_in_the_chosen_container_and_passes_its_exit_code(ws):
    td = h.task_definition("app", h.container("app", environment=h.env(WHO="app")), h.container("side", environment=h.env(WHO="side"), essential=False))
    ws.write("app.yaml", td, h.service("app", "app", 1))
    ws.apply()
    (task_id,) = h.running_task_ids(ws.client, "app")

    hi = ws.cli("exec", task_id, "--", "echo", "hi", check=0)
    assert hi.stdout == "hi\n"
    essential = ws.cli("exec", task_id[:12], "--", "sh", "-c", "echo $WHO", check=0)
    assert essential.stdout == "app\n", "without --container, exec picks the essential container"
    side = ws.cli("exec", task_id, "--container", "side", "--", "sh", "-c", "echo $WHO", check=0)
    assert side.stdout == "side\n"
    ws.cli("exec", task_id, "--", "sh", "-c", "exit 4", check=4)
    missing = ws.cli("exec", task_id, "--container", "nope", "--", "true", check=1)
    assert "has no container nope" in missing.stderr and "Traceback" not in missing.stderr


def test_logs_tail_shows_the_latest_lines(ws):
    td = h.task_definition("chatty", h.container("chatty", h.CHATTY, environment=h.env(GREETING="hello")))
    ws.write("chatty.yaml", td, h.service("chatty", "chatty", 1))
    ws.apply()
    (task_id,) = h.running_task_ids(ws.client, "chatty")

    def enough_lines() -> bool:
        return ws.cli("logs", "chatty", "--tail", "20").stdout.count("\n") >= 8

    h.wait_for(enough_lines, timeout=30, interval=0.5, what="8 log lines")
    result = ws.cli("logs", "chatty", "--tail", "5", check=0)
    lines = result.stdout.splitlines()
    assert len(lines) == 5, result.stdout
    numbers = [int(m.group(1)) for line in lines if (m := re.fullmatch(r"line (\d+) hello", line))]
    assert len(numbers) == 5 and numbers == sorted(numbers) and numbers[0] > 1, lines
    by_task = ws.cli("logs", task_id, "--tail", "1", check=0)
    assert re.fullmatch(r"line \d+ hello\n", by_task.stdout)


def test_apply_without_yes_or_terminal_changes_nothing(ws):
    ws.write("app.yaml", h.task_definition("app", h.container("app")), h.service("app", "app", 2))
    result = ws.cli("apply")  # stdin is /dev/null: nobody to ask
    assert result.exit_code != 0
    assert "refusing to change anything without confirmation" in result.stderr and "--yes" in result.stderr
    assert "Traceback" not in result.stderr
    assert h.managed(ws.client) == []
    assert ws.client.api.containers(all=True) == []  # not even the cluster's history: nothing was confirmed

    ws.apply()
    ws.write("app.yaml", h.task_definition("app", h.container("app")), h.service("app", "app", 0))
    assert ws.cli("apply").exit_code != 0
    assert len(h.running_task_ids(ws.client, "app")) == 2, "a refused scale-in stops nothing"
    result = ws.cli("destroy")
    assert result.exit_code != 0 and "refusing" in result.stderr
    assert len(h.running_task_ids(ws.client, "app")) == 2


def test_destroy_removes_everything_managed(ws):
    two = h.task_definition("pair", h.container("a"), h.container("b"))  # bridge, two containers: a task network
    vpc = h.task_definition("vpc", h.container("v"), networkMode="awsvpc")
    ws.write("pair.yaml", two, h.service("pair", "pair", 2))
    ws.write("vpc.yaml", vpc, h.service("vpc", "vpc", 1))
    ws.write("job.yaml", h.task_definition("job", h.container("job", "exit 0")))
    ws.apply()
    ws.cli("run-task", "job", "--wait", check=0)
    assert len(h.by_task(h.managed(ws.client))) == 4
    assert len(_default_networks(ws.client)) == 3 + 2

    result = ws.cli("destroy", "--yes", check=0)
    assert "Destroy: 4 to remove." in result.stdout
    # Only the cluster's history is left (revisions and deployments outlive the tasks, as in ECS).
    assert [c["Names"] for c in ws.client.api.containers(all=True)] == [["/reconciler-history.test"]]
    assert _default_networks(ws.client) == ["bridge", "host", "none"]
    again = ws.cli("destroy", "--yes", check=0)
    assert "Destroy: 0 to remove." in again.stdout
