"""`plan`, `apply` and `destroy`: compare desired with observed and, for the last two, converge.

Owns the command-level flow (validate, observe, plan, confirm, lock, execute, summarize) and the
exit statuses of these commands. Planning is `planning.planner`'s and execution the executor's.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence

from reconciler import executor, observe, state
from reconciler.commands import common
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.model import plan as P
from reconciler.model import units
from reconciler.planning import planner

DEFAULT_GRACE = 60.0  # seconds before tasks of an engine that stopped answering are placed elsewhere


def _plan(session: common.Session, prune: bool, targets: frozenset[str] | None, grace: float) -> P.Plan:
    return planner.plan(
        session.desired,
        session.observed,
        time.time(),
        planner.Options(
            prune=prune,
            targets=targets,
            unreachable_grace=grace,
            desired_counts=session.env.state().scaled_counts(session.desired.services.values()),
        ),
    )


def duration(flag: str, value: str | None, default: float = 0.0) -> float:
    if value is None:
        return default
    try:
        return units.parse_duration(value)
    except ValueError as e:
        raise UserError(f"{flag} {value}: {e}") from None


def plan(
    env: Environment, paths: Sequence[str], as_json: bool, detailed: bool, targets: Sequence[str] | None, prune: bool,
    unreachable_grace: str | None,
) -> ExitStatus:
    names = common.parse_target(targets)
    grace = duration("--unreachable-grace", unreachable_grace, DEFAULT_GRACE)
    session = common.open_session(env, paths)
    try:
        common.require_services(session.desired, names)
        result = _plan(session, prune, names, grace)
        unreachable = session.report_unreachable()
        if as_json:
            env.out(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        else:
            env.out(result.render())
    finally:
        session.close()
    if unreachable:
        return ExitStatus.ERROR
    if detailed and result.changed:
        return ExitStatus.CHANGES
    return ExitStatus.OK


def _confirm(env: Environment, question: str, yes: bool) -> None:
    if yes:
        return
    if not env.interactive():
        raise UserError("refusing to change anything without confirmation: no terminal to ask on (pass --yes)")
    env.stdout.write(f"{question} [y/N] ")
    env.stdout.flush()
    answer = env.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("cancelled; nothing was changed")


@contextlib.contextmanager
def _locked(env: Environment, clusters: Sequence[str], wait: float) -> Iterator[None]:
    """Holds the writer lock of every cluster (shared with the daemon) for the whole command."""
    store = env.state()
    with contextlib.ExitStack() as stack:
        try:
            for name in sorted(clusters):
                stack.enter_context(store.lock(name, wait))
        except state.LockTimeout as e:
            raise UserError(f"{e}; retry later or pass --lock-wait") from None
        except OSError as e:
            raise UserError(f"cannot lock the state directory {store.path}: {e.strerror or e}") from None
        yield


def _execute(env: Environment, session: common.Session, result: P.Plan, concurrency: int) -> ExitStatus:
    ex = executor.Executor(
        session.desired,
        session.engines,
        state_dir=env.state(),
        concurrency=concurrency,
        on_result=lambda r: env.out(r.line()),
        on_progress=env.out,
        environ=env.environ,
    )
    ex.collect_garbage(session.observed)
    results = ex.apply(result)
    failed = [r for r in results if not r.ok]
    # Counts are of tasks: a "deploy" line only reports a halted deployment, and a task that started but
    # then failed its health checks is reported twice (started, then failed) yet counts once, as failed.
    failed_tasks = {(r.action, r.task_id) for r in failed if r.action in ("start", "stop")}
    started = len({r.task_id for r in results if r.ok and r.action == "start"} - {t for a, t in failed_tasks if a == "start"})
    stopped = sum(1 for r in results if r.ok and r.action == "stop")
    env.out(f"Apply complete: {started} started, {stopped} stopped, {len(failed_tasks)} failed.")
    if failed:
        return ExitStatus.ERROR
    if result.unplaced:
        env.err(f"error: {result.unplaced} task(s) could not be placed (see the plan above)")
        return ExitStatus.UNPLACED
    return ExitStatus.OK


def apply(
    env: Environment,
    paths: Sequence[str],
    prune: bool,
    yes: bool,
    targets: Sequence[str] | None,
    concurrency: int,
    lock_wait: str | None,
    unreachable_grace: str | None,
) -> ExitStatus:
    names = common.parse_target(targets)
    wait = duration("--lock-wait", lock_wait)
    grace = duration("--unreachable-grace", unreachable_grace, DEFAULT_GRACE)
    if concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    desired = common.load_desired(env, paths)
    common.require_services(desired, names)
    with _locked(env, list(desired.clusters), wait):
        session = common.Session(env, desired, observe.Engines(env.engine_factory), remember=True)
        return _apply_locked(env, session, prune, yes, names, concurrency, grace)


def _apply_locked(
    env: Environment, session: common.Session, prune: bool, yes: bool, names: frozenset[str] | None, concurrency: int,
    grace: float,
) -> ExitStatus:
    try:
        session.refresh()
        result = _plan(session, prune, names, grace)
        unreachable = session.report_unreachable()
        env.out(result.render())
        if not result.changed:
            if result.unplaced:
                env.err(f"error: {result.unplaced} task(s) could not be placed")
                return ExitStatus.UNPLACED
            return ExitStatus.ERROR if unreachable else ExitStatus.OK
        _confirm(env, "Apply these changes?", yes)
        status = _execute(env, session, result, concurrency)
        # Record what every instance runs now, not what it ran before this apply: if an engine stops answering
        # before the next command, its tasks then count as running during --unreachable-grace instead of being
        # replaced at once (observation records them; an unreachable engine is no error here).
        session.refresh()
    finally:
        session.close()
    return ExitStatus.ERROR if unreachable and status == ExitStatus.OK else status


def destroy(env: Environment, paths: Sequence[str], yes: bool, concurrency: int, lock_wait: str | None) -> ExitStatus:
    """Removes every task the reconciler manages in the clusters of `paths` (services and one-off tasks)."""
    desired = common.load_desired(env, paths)
    with _locked(env, list(desired.clusters), duration("--lock-wait", lock_wait)):
        session = common.Session(env, desired, observe.Engines(env.engine_factory))
        return _destroy_locked(env, session, yes, concurrency)


def _destroy_locked(env: Environment, session: common.Session, yes: bool, concurrency: int) -> ExitStatus:
    try:
        session.refresh()
        unreachable = session.report_unreachable()
        stops = []
        for cstate in session.observed.values():
            for task in cstate.tasks:
                stops.append(P.StopTask(cstate.cluster, task.service, task.instance, task.id, "destroy", "UserInitiated",
                                        already_stopped=task.status().last_status != "RUNNING"))
        by_service: dict[tuple[str, str], list[P.StopTask]] = {}
        for s in stops:
            by_service.setdefault((s.cluster, s.service or f"(task {s.task_id[:12]})"), []).append(s)
        result = P.Plan(
            services=tuple(
                P.ServicePlan(cluster=c, service=name, family="", desired=0, running=len(v),
                              steps=(P.Step(stops=tuple(v)),), remove=len(v), pruned=True)
                for (c, name), v in sorted(by_service.items())
            )
        )
        for (c, name), v in sorted(by_service.items()):
            env.out(f"service {name} (cluster {c}): {len(v)} task(s) to remove")
        env.out(f"Destroy: {len(stops)} to remove.")
        if not stops:
            return ExitStatus.ERROR if unreachable else ExitStatus.OK
        _confirm(env, "Remove every managed task?", yes)
        status = _execute(env, session, result, concurrency)
    finally:
        session.close()
    return ExitStatus.ERROR if unreachable else status
