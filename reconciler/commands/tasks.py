"""`run-task`, `stop-task` and `exec`: one-off tasks outside services, and commands inside tasks.

Owns these commands' flow: placing one-off tasks like service tasks (the planner places them, `actions`
starts them; they are never restarted), moving them on through their `dependsOn` ordering until they
run, waiting for them when asked and passing the essential container's exit code on, stopping a task by
id (through `actions`, so it is recorded like any stop), and running a command in a task's container.
It must not plan services, and must not create or remove containers itself: starting and stopping go
through `actions`, `exec` only runs a command in a container that exists.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

from reconciler import labels
from reconciler.actions.result import ActionResult
from reconciler.actions.runner import Runner
from reconciler.commands import common, inspect
from reconciler.engine import api
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.model import history as H
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import dependencies, planner

POLL = 0.2


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


def _revision(session: common.Session, cluster: str, td: spec.TaskDefinition, number: int | None) -> spec.TaskDefinition:
    """`FAMILY:N`: exactly revision N of the cluster's history. `FAMILY`: the manifest's spec, numbered when
    the history has it (run-task registers nothing: that is apply's, under the writer lock)."""
    from reconciler.commands.history import load

    try:
        history = load(session, [cluster])[cluster]
    except UserError:
        if number is not None:
            raise
        return td  # the history cannot be read: the manifest's spec runs, unnumbered
    if number is None:
        rev = history.by_hash(td.family, td.task_hash)
        return dataclasses.replace(td, revision=rev.number) if rev is not None else td
    rev = history.revision(td.family, number)
    if rev is None:
        known = H.describe_revisions(history.revisions_of(td.family))
        raise UserError(f"no revision {number} of {td.family} in cluster {cluster}; revisions: {known}")
    return rev.task_definition(td.warnings)


def run_task(
    env: Environment, family: str, paths: Sequence[str], cluster: str | None, count: int, wait: bool, launch_type: str
) -> ExitStatus:
    if count < 1:
        raise UserError("--count must be at least 1")
    name, _, number = family.removeprefix("task-definition/").partition(":")
    if number and not number.isdigit():
        raise UserError(f"run-task {family}: expected FAMILY or FAMILY:REVISION")
    session = common.open_session(env, paths)
    try:
        td = session.desired.task_definitions.get(name)
        if td is None:
            raise UserError(f"no task definition family {name} in the manifests")
        cname = _cluster(session.desired, cluster)
        td = _revision(session, cname, td, int(number) if number else None)
        if session.report_unreachable():
            env.err("warning: some engines are unreachable; placing on the others")
        starts, unplaced, reason = planner.run_task(
            session.desired, session.observed, cname, td, count, launch_type, zlib.crc32(str(env.clock.now()).encode())
        )
        runner = Runner(session.engines, env.state(), environ=env.environ, started_by="run-task", clock=env.clock,
                        on_result=lambda r: env.out(r.line()))
        try:
            ids = runner.launch(session.desired, P.Step(starts=tuple(starts)))
            runner.drain()
            results = [r for r in runner.results if r.task_id in ids]
            if unplaced:
                env.err(f"error: {unplaced} task(s) could not be placed: {reason}")
            if any(not r.ok for r in results):
                return ExitStatus.ERROR
            if not _until_started(session, runner, cname, results):
                return ExitStatus.ERROR
        finally:
            runner.shutdown()
        for r in results:
            env.out(f"task {r.task_id} started on {r.instance}")
        if not wait:
            return ExitStatus.UNPLACED if unplaced else ExitStatus.OK
        codes = [_wait_for_exit(session, cname, r) for r in results]
    finally:
        session.close()
    nonzero = [c for c in codes if c]
    return nonzero[0] if nonzero else ExitStatus.OK  # type: ignore[return-value]


def _until_started(session: common.Session, runner: Runner, cluster: str, results: list[ActionResult]) -> bool:
    """Starts the tasks' remaining containers as their `dependsOn` conditions come to hold; False (and the
    task removed) when one can never start. A task interrupted here is moved on by the daemon's passes."""
    env = session.env
    waiting = {r.task_id for r in results}
    ok = True
    while waiting:
        cstate = session.refresh([cluster])[cluster]
        tasks = {t.id: t for t in cstate.tasks if t.id in waiting}
        for task_id in list(waiting):
            task = tasks.get(task_id)
            if task is None or task.status().last_status != obs.PENDING:
                waiting.discard(task_id)
                continue
            progress = dependencies.progress(task, env.clock.now())
            if progress.failure:
                env.err(f"error: task {task_id[:12]} failed to start: {progress.failure}")
                runner.launch(session.desired, P.Step(stops=(P.StopTask(cluster, None, task.instance, task_id,
                                                                         f"Task failed to start: {progress.failure}",
                                                                         "TaskFailedToStart"),)))
                waiting.discard(task_id)
                ok = False
            elif progress.ready:
                runner.launch(session.desired, P.Step(advances=(P.StartContainers(cluster, None, task.instance, task_id,
                                                                                  progress.ready, "their dependsOn conditions hold"),)))
        runner.drain()
        if waiting:
            env.clock.sleep(POLL)
    return ok


def _wait_for_exit(session: common.Session, cluster: str, result: ActionResult) -> int:
    inst = session.desired.clusters[cluster].instance(result.instance)
    engine = session.engines.get(inst)
    while True:
        raw = engine.list_containers(labels.selector(task=result.task_id))
        containers = [obs.container_from_list(r) for r in raw]
        essential = [c for c in containers if c.role != labels.ROLE_PAUSE and c.essential]
        if not essential:
            return 1
        done = [c for c in essential if c.exited]
        if done:
            code = done[0].exit_code
            session.env.out(f"task {result.task_id[:12]}: {obs.explain_exit(done[0])}")
            return int(code if code is not None else 1) & 0xFF
        session.env.clock.sleep(POLL)


def stop_task(env: Environment, task_id: str, paths: Sequence[str], reason: str) -> ExitStatus:
    session = common.open_session(env, paths)
    try:
        task = inspect.find_task(session, task_id)
        runner = Runner(session.engines, env.state(), environ=env.environ, clock=env.clock, on_result=lambda r: env.out(r.line()))
        try:
            runner.launch(session.desired, P.Step(stops=(P.StopTask(task.cluster, task.service, task.instance, task.id, reason,
                                                                     "UserInitiated",
                                                                     already_stopped=task.status().last_status == obs.STOPPED),)))
            runner.drain()
        finally:
            runner.shutdown()
        result = runner.results[0]
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
