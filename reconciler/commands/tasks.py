"""`run-task`, `stop-task` and `exec`: one-off tasks outside services, and commands inside tasks.

Owns these commands' flow: placing one-off tasks like service tasks (the planner places them, the
executor starts them; they are never restarted), waiting for them when asked and passing the essential
container's exit code on, stopping a task by id (through the executor, so it is recorded like any stop),
and running a command in a task's container. It must not plan services, and must not create or remove
containers itself: starting and stopping go through the executor, `exec` only runs a command in a
container that exists.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence

from reconciler import executor, labels
from reconciler.commands import common, inspect
from reconciler.engine import api
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import planner


def _cluster(desired: spec.DesiredState, name: str | None) -> str:
    if name:
        if name not in desired.clusters:
            raise UserError(f"no cluster named {name} in the manifests")
        return name
    if len(desired.clusters) == 1:
        return next(iter(desired.clusters))
    if "default" in desired.clusters:
        return "default"
    raise UserError(f"the manifests declare {len(desired.clusters)} clusters; choose one with --cluster")


def run_task(
    env: Environment, family: str, paths: Sequence[str], cluster: str | None, count: int, wait: bool, launch_type: str
) -> ExitStatus:
    if count < 1:
        raise UserError("--count must be at least 1")
    name = family.split(":")[0]
    session = common.open_session(env, paths)
    try:
        td = session.desired.task_definitions.get(name)
        if td is None:
            raise UserError(f"no task definition family {name} in the manifests")
        cname = _cluster(session.desired, cluster)
        if session.report_unreachable():
            env.err("warning: some engines are unreachable; placing on the others")
        starts, unplaced, reason = planner.run_task(
            session.desired, session.observed, cname, td, count, launch_type, zlib.crc32(str(time.time_ns()).encode())
        )
        ex = executor.Executor(session.desired, session.engines, env.state(), on_result=lambda r: env.out(r.line()),
                               environ=env.environ, started_by="run-task")
        results = [ex.start_task(s) for s in starts]
        if unplaced:
            env.err(f"error: {unplaced} task(s) could not be placed: {reason}")
        failed = [r for r in results if not r.ok]
        if failed:
            return ExitStatus.ERROR
        for r in results:
            env.out(f"task {r.task_id} started on {r.instance}")
        if not wait:
            return ExitStatus.UNPLACED if unplaced else ExitStatus.OK
        codes = [_wait_for_exit(session, cname, r) for r in results]
    finally:
        session.close()
    nonzero = [c for c in codes if c]
    return nonzero[0] if nonzero else ExitStatus.OK  # type: ignore[return-value]


def _wait_for_exit(session: common.Session, cluster: str, result: executor.ActionResult) -> int:
    inst = session.desired.clusters[cluster].instance(result.instance)
    engine = session.engines.get(inst)
    while True:
        raw = engine.list_containers({labels.MANAGED: "true", labels.TASK: result.task_id})
        containers = [obs.container_from_list(r) for r in raw]
        essential = [c for c in containers if c.role != labels.ROLE_PAUSE and c.essential]
        if not essential:
            return 1
        done = [c for c in essential if c.exited]
        if done:
            code = done[0].exit_code
            session.env.out(f"task {result.task_id[:12]}: {obs.explain_exit(done[0])}")
            return int(code if code is not None else 1) & 0xFF
        time.sleep(0.2)


def stop_task(env: Environment, task_id: str, paths: Sequence[str], reason: str) -> ExitStatus:
    session = common.open_session(env, paths)
    try:
        task = inspect.find_task(session, task_id)
        ex = executor.Executor(session.desired, session.engines, env.state(), on_result=lambda r: env.out(r.line()),
                               environ=env.environ)
        result = ex.stop_task(P.StopTask(task.cluster, task.service, task.instance, task.id, reason, "UserInitiated",
                                         already_stopped=task.status().last_status == obs.STOPPED))
    finally:
        session.close()
    if task.service:
        env.err(f"note: task belonged to service {task.service}; the next apply replaces it")
    return ExitStatus.OK if result.ok else ExitStatus.ERROR


def exec_(
    env: Environment, task_id: str, paths: Sequence[str], container: str | None, command: Sequence[str], interactive: bool = False
) -> ExitStatus:
    if not command:
        raise UserError("exec: give the command after --, e.g. reconciler exec TASK -- sh -c 'echo hi'")
    session = common.open_session(env, paths)
    try:
        task = inspect.find_task(session, task_id)
        candidates = [c for c in task.app_containers if container in (None, c.container)]
        if container is None:
            candidates = sorted(candidates, key=lambda c: (not c.essential, c.container))
        if not candidates:
            names = ", ".join(c.container for c in task.app_containers)
            raise UserError(f"task {task.id[:12]} has no container {container} (containers: {names})")
        target = candidates[0]
        if not target.running:
            raise UserError(f"container {target.container} of task {task.id[:12]} is not running")
        inst = session.desired.clusters[task.cluster].instance(task.instance)
        try:
            if interactive and not env.interactive():
                raise UserError("exec --interactive needs a terminal on stdin and stdout")
            code = session.engines.get(inst).exec(target.id, list(command), interactive)
        except api.EngineError as e:
            raise UserError(f"exec failed on {e.endpoint}: {e.message}") from None
    finally:
        session.close()
    return code  # type: ignore[return-value]
