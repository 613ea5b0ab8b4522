"""The cluster writer lock on a real private engine: writers with different state directories exclude each
other, `--lock-wait` waits, a holder killed with SIGKILL leaves a stale lock the next writer breaks, and
`unlock` shows and breaks a lock.

Owns end-to-end evidence that the lock lives on the engine (a created, never started container named
`reconciler-lock.<cluster>` whose labels name the holder), not in a state directory. Each apply holding the
lock is held open by a task whose init container waits for a file the test creates (a bind-mounted gate).
Must not: touch an engine the fixtures did not start, stop a process other than by its recorded pid, or
assert on speed (deadlines only bound waits).
"""

from __future__ import annotations

import contextlib
import socket
import time

import docker.errors
import helpers as h

LOCK = "reconciler-lock.test"
PID = "io.reconciler.lock.pid"  # spelled out: the tests check the product's labels, not its constants
COMMAND = "io.reconciler.lock.command"
PAUSE_IMAGE = "reconciler/pause:1"


def gated(ws):
    """A service of one task whose start waits for `ws.root/gate/go`; returns the gate's path."""
    gate = ws.root / "gate"
    gate.mkdir()
    td = h.task_definition(
        "app",
        h.container("init", "while [ ! -e /gate/go ]; do sleep 0.1; done", essential=False,
                    mountPoints=[{"sourceVolume": "gate", "containerPath": "/gate"}]),
        h.container("app", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
        volumes=[{"name": "gate", "host": {"sourcePath": str(gate)}}],
    )
    ws.write("app.yaml", td, h.service("app", "app", 1))
    return gate / "go"


def lock_container(ws):
    try:
        return ws.client.api.inspect_container(LOCK)
    except docker.errors.NotFound:
        return None


def held_by(ws, proc) -> bool:
    c = lock_container(ws)
    return bool(c) and c["Config"]["Labels"].get(PID) == str(proc.pid)


def state_dir(ws, name: str) -> list[str]:
    return ["--state-dir", str(ws.root / name)]  # after Workspace's own --state-dir: the last one wins


def test_two_applies_with_different_state_dirs_one_acts_the_other_names_it_or_waits(ws):
    go = gated(ws)
    with contextlib.suppress(docker.errors.ImageNotFound):  # both writers then load the lock's image at once
        ws.client.images.remove(PAUSE_IMAGE, force=True)
    a = ws.start("apply", "--yes", *state_dir(ws, "state-a"), log="a")
    b = ws.start("apply", "--yes", *state_dir(ws, "state-b"), log="b")
    h.wait_for(lambda: a.poll() is not None or b.poll() is not None, timeout=60, what="one apply to give up")
    loser, winner, winner_state = (a, b, "state-b") if a.poll() is not None else (b, a, "state-a")
    out = ws.output(loser)
    assert loser.returncode == 1, out
    assert winner.poll() is None, ws.output(winner)
    (line,) = [x for x in out.splitlines() if x.startswith("error: ")]
    assert line.startswith(
        f"error: cluster test is locked by reconciler apply (pid {winner.pid} on host {socket.gethostname()}, "
        f"state dir {ws.root / winner_state}, since "
    ), out
    assert line.endswith(f") on {ws.engine.endpoint}; retry later, pass --lock-wait, or break a stale lock with "
                         "`reconciler unlock test`"), out
    assert "Plan:" not in out and "Traceback" not in out, "the refused apply must not plan or act"

    lock = lock_container(ws)
    assert lock["State"]["Status"] == "created" and lock["Config"]["Labels"][COMMAND] == "apply"
    assert lock["Config"]["Labels"][PID] == str(winner.pid)
    assert lock["Config"]["Labels"].get(h.MANAGED) is None

    waiting = ws.start("apply", "--yes", "--lock-wait", "60s", *state_dir(ws, "state-c"), log="waiting")
    time.sleep(1.5)  # the waiter must still be waiting for the lock, not failing
    assert waiting.poll() is None, ws.output(waiting)
    go.touch()
    assert winner.wait(timeout=60) == 0, ws.output(winner)
    assert waiting.wait(timeout=60) == 0, ws.output(waiting)
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in ws.output(waiting), "it waited, then found nothing to do"
    assert len(h.by_task(h.managed(ws.client, service="app"))) == 1, "exactly one apply acted"
    assert lock_container(ws) is None, "every writer gave its lock back"


def test_a_holder_killed_with_sigkill_leaves_a_stale_lock_the_next_apply_breaks(ws):
    go = gated(ws)
    killed = ws.start("apply", "--yes", *state_dir(ws, "state-a"), log="killed")
    h.wait_for(lambda: "Plan: 1 to add" in ws.output(killed) and held_by(ws, killed), timeout=60,
               what="the first apply to plan under its lock")
    killed.kill()  # SIGKILL, by its pid
    killed.wait(timeout=10)
    assert held_by(ws, killed), "a killed holder cannot give its lock back"
    go.touch()

    result = ws.apply()
    assert (
        f"warning: broke the stale writer lock of cluster test on {ws.engine.endpoint}: reconciler apply "
        f"(pid {killed.pid} on host {socket.gethostname()}, state dir {ws.root / 'state-a'}, since "
    ) in result.stderr, result.stderr
    assert "is no longer running" in result.stderr
    assert lock_container(ws) is None
    h.wait_for(lambda: len(h.running_task_ids(ws.client, "app")) == 1, what="the service to run")
    ws.assert_converged()


def test_unlock_shows_the_holder_refuses_a_live_one_and_breaks_it_with_force(ws):
    go = gated(ws)
    holder = ws.start("apply", "--yes", *state_dir(ws, "state-a"), log="holder")
    h.wait_for(lambda: held_by(ws, holder), timeout=60, what="the apply to take its lock")

    refused = ws.cli("unlock", "test")
    assert refused.exit_code == 1, h.describe_run(["unlock", "test"], refused)
    assert f"{ws.engine.endpoint}: locked by reconciler apply (pid {holder.pid} on host " in refused.stdout
    assert "still running on this host" in refused.stdout
    assert "which still runs on this host; stop it first" in refused.stderr and "--force" in refused.stderr
    assert held_by(ws, holder)

    forced = ws.cli("unlock", "test", "--force", check=0)
    assert "Removed the writer lock of cluster test on 1 engine(s)." in forced.stdout
    assert lock_container(ws) is None
    go.touch()
    assert holder.wait(timeout=60) == 0, ws.output(holder)  # its release finds nothing of its own to remove
    assert "not locked" in ws.cli("unlock", "test", check=0).stdout


def test_the_daemon_holds_the_engine_lock_while_it_runs(ws):
    ws.write("app.yaml", h.task_definition("app", h.container("app")), h.service("app", "app", 1))
    daemon = ws.start("watch", "--listen", "off", "--resync", "30s", *state_dir(ws, "state-d"), log="daemon")
    h.wait_for(lambda: held_by(ws, daemon) and h.running_task_ids(ws.client, "app"), timeout=60,
               what="the daemon to lock the cluster and run the service")
    assert lock_container(ws)["Config"]["Labels"][COMMAND] == "watch"

    refused = ws.apply(check=1)
    assert f"cluster test is locked by reconciler watch (pid {daemon.pid} on host " in refused.stderr, refused.stderr
    daemon.terminate()  # SIGTERM, by its pid: an orderly stop gives the lock back
    assert daemon.wait(timeout=60) == 0, ws.output(daemon)
    assert lock_container(ws) is None
    assert "Plan: 0 to add, 0 to replace, 0 to remove." in ws.apply().stdout
