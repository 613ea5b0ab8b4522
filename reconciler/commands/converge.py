"""`plan`, `apply` and `destroy`: compare desired with observed and, for the last two, converge.

Owns the command-level flow (validate, observe, plan, confirm, lock, run passes, summarize) and the exit
statuses of these commands. `apply` runs reconcile passes, the daemon's machinery: each pass snapshots
the work in flight, observes, plans and launches what the plan says to do now, then the command waits
for an action to end (or a short poll) and passes again, until every targeted service is settled, a
new task fails (its service's rollout halts, old tasks kept), or the deadline passes. `--no-wait` stops
after the first pass's actions have ended. Planning is `planning.planner`'s and acting `actions`'.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler import clusterlock, histories, observe, state
from reconciler.actions import gc
from reconciler.actions.result import ActionResult
from reconciler.actions.runner import Runner
from reconciler.commands import common
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.manifests import locate
from reconciler.model import history as H
from reconciler.model import inflight as F
from reconciler.model import plan as P
from reconciler.model import spec, units
from reconciler.planning import deployments, health, planner

DEFAULT_GRACE = 60.0  # seconds before tasks of an engine that stopped answering are placed elsewhere
DEFAULT_TIMEOUT = 1800.0  # seconds apply waits for its rollouts at most
POLL = 0.25  # seconds between passes while nothing is in flight (waiting for health checks)
BUSY_POLL = 1.0  # seconds between passes while actions are in flight, unless they all end sooner


def _with_deployments(result: P.Plan, books: _Books) -> P.Plan:
    """The plan with each service's deployment line: the revision it runs and what its deployment does."""
    services = []
    for sp in result.services:
        services.append(dataclasses.replace(sp, deployment=books.describe(sp)))
    return dataclasses.replace(result, services=tuple(services))


def _plan(
    session: common.Session, prune: bool, targets: frozenset[str] | None, grace: float,
    inflight: F.InFlight = F.NOTHING,
) -> P.Plan:
    return planner.plan(
        session.desired,
        session.observed,
        session.env.clock.now(),
        planner.Options(
            prune=prune,
            targets=targets,
            unreachable_grace=grace,
            desired_counts=session.env.state().scaled_counts(session.desired.services.values()),
            inflight=inflight,
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
        books = _Books(env, session, write=False, targets=names)
        books.load()
        books.resolve(env.clock.now())
        result = _with_deployments(_plan(session, prune, names, grace), books)
        unreachable = session.report_unreachable()
        if as_json:
            env.out(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        else:
            env.out(result.render())
    finally:
        session.close()
    if unreachable:
        return ExitStatus.ERROR
    if detailed and not result.settled:  # a rollout that waits is not converged either
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
def _locked(
    env: Environment, clusters: Sequence[str], wait: float, desired: spec.DesiredState | None = None, command: str = "apply"
) -> Iterator[None]:
    """Holds the writer lock of every cluster for the whole command, waiting up to `wait` seconds in all: the
    state directory's (shared with the daemon and other commands of that directory), then, with `desired`,
    the one on the cluster's engines (`clusterlock`: shared with every writer of the cluster, wherever it runs)."""
    store = env.state()
    deadline = env.clock.monotonic() + wait
    engines = observe.Engines(env.engine_factory)
    with contextlib.ExitStack() as stack:
        stack.callback(engines.close)
        try:
            for name in sorted(clusters):
                stack.enter_context(store.lock(name, max(0.0, deadline - env.clock.monotonic())))
                if desired is not None:
                    lock = clusterlock.ClusterLock(desired.clusters[name], engines, command, store.path,
                                                   notify=lambda text: env.err(f"warning: {text}"))
                    stack.enter_context(lock.holding(max(0.0, deadline - env.clock.monotonic())))
        except state.LockTimeout as e:
            raise UserError(f"{e}; retry later or pass --lock-wait") from None
        except clusterlock.LockError as e:
            raise UserError(e.line()) from None
        except OSError as e:
            raise UserError(f"cannot lock the state directory {store.path}: {e.strerror or e}") from None
        yield


class _Books:
    """The deployments one command resolves and moves on: every cluster's history, loaded once under the
    writer lock, resolved before each pass plans and moved on from what the pass saw; saved only when
    `write` (never by `plan`)."""

    def __init__(self, env: Environment, session: common.Session, write: bool, targets: frozenset[str] | None = None):
        self.env = env
        self.session = session
        self.manifest = session.desired  # as the manifests say; session.desired is what the passes plan
        self.write = write
        self.targets = targets
        self.keeper = histories.Keeper(session.engines, env.state().path)
        self.histories: dict[str, H.History] = {}
        self.resolved: dict[str, deployments.Resolved] = {}
        self.failed_starts: dict[str, dict[str, str]] = {}  # service -> task id -> message
        self.alarm_states: Callable[[], Mapping[str, str]] = dict

    def load(self) -> None:
        """Reads every cluster's history. A writer needs them all; `plan` goes on without one it cannot
        read (the engines' trouble is reported on its own), planning that cluster's services as written."""
        for name, cluster in sorted(self.manifest.clusters.items()):
            try:
                self.histories[name] = self.keeper.get(cluster)
            except histories.HistoryUnavailable as e:
                if self.write:
                    raise UserError(str(e)) from None

    def resolve(self, now: float) -> None:
        """Resolves what every service runs; a pin to a revision that does not exist is a located error."""
        counts = {name: c for name, (c, _) in self.env.state().scaled_counts(self.manifest.services.values()).items()}
        running: dict[str, spec.TaskDefinition] = {}
        errors = []
        for name, history in self.histories.items():
            res = deployments.resolve(history, self.manifest, now, histories.new_id, counts, self.targets)
            self.resolved[name] = res
            running.update(res.running)
            errors += res.errors
        for err in errors:
            self.env.err(locate.field_error(err.service.source, "Service", err.service.name, ("spec", "taskDefinition"), err.message))
        if errors:
            raise UserError(f"{len(errors)} service(s) pin a revision that does not exist; nothing was changed")
        self.session.desired = dataclasses.replace(self.manifest, running=running)

    def save(self, final: bool = False) -> None:
        """Saves the changed histories: before this returns when a deployment is new or ended (or `final`),
        else in the background (events, counts)."""
        if not self.write:
            return
        try:
            for name, res in self.resolved.items():
                cluster = self.manifest.clusters[name]
                before = self.histories[name]
                if res.history is not before:
                    self.histories[name] = self.keeper.put(cluster, res.history, wait=histories.milestone(before, res.history))
            if final:
                self.keeper.flush()
        except histories.HistoryUnavailable as e:
            raise UserError(str(e)) from None

    def history(self, cluster: str) -> H.History:
        res = self.resolved.get(cluster)
        return res.history if res is not None else self.histories.get(cluster, H.History(cluster))

    def _set(self, cluster: str, history: H.History) -> None:
        self.resolved[cluster] = dataclasses.replace(self.resolved[cluster], history=history)

    def primary(self, cluster: str, service: str) -> H.Deployment | None:
        return self.history(cluster).service(service).primary

    def progress(self, result: P.Plan, inflight: F.InFlight, now: float) -> bool:
        """Moves each planned service's deployment on; True when one of them now runs something else (the
        pass must resolve and plan again before it launches anything)."""
        moved = False
        for sp in result.services:
            svc = self.session.desired.services.get(sp.service)
            cstate = self.session.observed.get(sp.cluster)
            if svc is None or cstate is None or sp.cluster not in self.resolved:
                continue
            before = self.primary(sp.cluster, sp.service)
            tasks = [t for t in cstate.tasks_of(sp.service) if t.id not in inflight.stopping]
            history = deployments.progress(self.history(sp.cluster), svc, sp, tasks, now, histories.new_id,
                                           self.failed_starts.pop(sp.service, {}), self.alarm_states())
            if sp.unplaced:
                history = deployments.add_event(history, sp.service, deployments.unplaced_message(sp.service, sp.unplaced_reason),
                                                now, histories.new_id, repeat=False)
            self._set(sp.cluster, history)
            after = history.service(sp.service).primary
            if before is not None and after is not None and (after.id != before.id or after.rollout_state != before.rollout_state):
                moved = True
                for event in reversed(history.service(sp.service).events[:3]):
                    if event.created_at == now and "deployment" in event.message and "started" not in event.message:
                        self.env.out(f"deploy {sp.service}: {event.message}")
        self.save()
        return moved

    def stamp(self, sp: P.ServicePlan, step: P.Step) -> P.Step:
        """`step` with its starts labelled with the service's deployment; nothing new once it FAILED."""
        res = self.resolved.get(sp.cluster)
        if res is not None and sp.service in res.frozen:
            return P.Step(stops=tuple(s for s in step.stops if s.already_stopped))
        d = self.primary(sp.cluster, sp.service)
        if d is None or not step.starts:
            return step
        return dataclasses.replace(step, starts=tuple(dataclasses.replace(s, deployment=d.id) for s in step.starts))

    def launched(self, sp: P.ServicePlan, step: P.Step, ids: Sequence[str], now: float) -> None:
        if sp.cluster in self.resolved:
            self._set(sp.cluster, deployments.step_events(self.history(sp.cluster), step, ids, now, histories.new_id))

    def breaker(self, service: str) -> bool:
        """Whether failures of the service's new tasks are the deployment's to judge (circuit breaker or
        alarms), rather than halting this command at the first one."""
        svc = self.session.desired.services.get(service)
        return svc is not None and (svc.circuit_breaker or svc.alarms.enable)

    def finished(self, sp: P.ServicePlan) -> bool:
        d = self.primary(sp.cluster, sp.service)
        return d is None or d.done

    def describe(self, sp: P.ServicePlan) -> str:
        """One line: the deployment the service is in, or the one this plan would create."""
        res = self.resolved.get(sp.cluster)
        if res is None:
            return ""
        note = res.notes.get(sp.service)
        if note:
            return note
        before = self.histories.get(sp.cluster, H.History(sp.cluster)).service(sp.service).primary
        d = res.history.service(sp.service).primary
        if d is None:
            return ""
        if before is None or before.id != d.id:
            was = f" (was {before.task_definition})" if before is not None else ""
            new = "" if res.history.latest(d.family) == self.histories[sp.cluster].latest(d.family) else ", a new revision"
            return f"new deployment of {d.task_definition}{new}{was}"
        return f"deployment {d.id} of {d.task_definition}: {d.rollout_state}" + (
            f" ({d.failed_tasks} failed task(s))" if d.failed_tasks else "")

    def verdict(self, cluster: str, service: str) -> tuple[bool, str]:
        """(whether the service runs what its manifest asks, completed; the line that says what runs)."""
        sh = self.history(cluster).service(service)
        d = sh.primary
        if d is None:
            return True, ""
        res = self.resolved.get(cluster)
        note = res.notes.get(service) if res is not None else None
        if note:
            return False, note
        if d.rollout_state == H.FAILED:
            return False, f"deployment {d.id} FAILED: {d.rollout_state_reason} {service} runs what was left of it"
        if d.rollout_state != H.COMPLETED:  # cut short (--no-wait, --timeout, tasks that fit nowhere): not a failure
            return True, f"deployment {d.id} of {d.task_definition} is {d.rollout_state}"
        return True, f"{service} runs {d.task_definition} (deployment {d.id} COMPLETED)"


@dataclass
class _Progress:
    """What one apply launched, and what became of it."""

    launched: dict[str, tuple[str, float]] = field(default_factory=dict)  # task id -> (service, deadline)
    started: dict[str, tuple[str, float]] = field(default_factory=dict)  # ... once its start action succeeded
    healthy: set[str] = field(default_factory=set)  # started task ids seen RUNNING and HEALTHY
    halted: dict[str, str] = field(default_factory=dict)  # service -> why its rollout halted
    failed: set[tuple[str, str]] = field(default_factory=set)  # (action, task id) that failed
    reported: set[str] = field(default_factory=set)  # task ids whose failure was printed
    counted: set[str] = field(default_factory=set)  # failed starts of services whose circuit breaker counts them


def _runner(env: Environment, session: common.Session, concurrency: int, on_result) -> Runner:
    return Runner(session.engines, state_dir=env.state(), concurrency=concurrency, environ=env.environ,
                  clock=env.clock, on_result=on_result, on_progress=env.out)


def _converge(
    env: Environment, session: common.Session, books: _Books, first: P.Plan, prune: bool, names: frozenset[str] | None,
    concurrency: int, grace: float, wait: bool, timeout: float,
) -> ExitStatus:
    """Runs passes from `first` (the plan the user confirmed) until every targeted service's deployment is
    done (COMPLETED after its bake, or FAILED), or a new task of a service without a circuit breaker fails."""
    progress = _Progress()

    def on_result(r: ActionResult) -> None:
        env.out(r.line())
        if r.ok and r.action == "start" and r.task_id in progress.launched:
            progress.started[r.task_id] = progress.launched.pop(r.task_id)
        if not r.ok:
            if r.action == "start" and r.service and books.breaker(r.service):
                progress.counted.add(r.task_id)  # the circuit breaker's to count, not this command's to fail on
            else:
                progress.failed.add((r.action, r.task_id))
            if r.action == "start" and r.service:
                books.failed_starts.setdefault(r.service, {})[r.task_id] = r.message
                if not books.breaker(r.service):
                    progress.halted.setdefault(r.service, f"task failed to start: {r.message}")

    runner = _runner(env, session, concurrency, on_result)
    clock = env.clock
    deadline = clock.monotonic() + timeout
    result = first
    try:
        gc.collect(session.desired, session.engines, session.observed)
        while True:
            cursor = runner.completed()
            _launch(env, session, books, runner, result, progress)
            if not wait:
                runner.drain()
                break
            if runner.idle():
                runner.wait(cursor, POLL)
            else:
                runner.drain(BUSY_POLL)  # a pass per action that ends would only observe the engines more often
            inflight = runner.inflight()
            started = set(progress.started)  # before observing: a start that ends meanwhile is judged next pass
            session.refresh()
            _judge(env, session, books, progress, started)
            result = _pass_plan(session, books, prune, _active(names, result, progress), grace, inflight)
            done = all((sp.settled and (books.finished(sp) or sp.unplaced)) or sp.service in progress.halted
                       or (books.finished(sp) and books.primary(sp.cluster, sp.service) is not None
                           and books.primary(sp.cluster, sp.service).rollout_state == H.FAILED)
                       for sp in result.services)
            if runner.idle() and done:
                break
            if clock.monotonic() > deadline:
                for sp in result.services:
                    if not (sp.settled and books.finished(sp)):
                        waits = ", ".join(sp.waiting) or ("the deployment's bake time" if sp.settled else "the rollout")
                        progress.halted.setdefault(sp.service, f"timed out after {timeout:.0f}s waiting for {waits}")
                runner.drain()
                break
    finally:
        runner.shutdown()
        books.save(final=True)
    return _summary(env, session, books, runner.results, result, progress)


def _pass_plan(
    session: common.Session, books: _Books, prune: bool, names: frozenset[str] | None, grace: float, inflight: F.InFlight
) -> P.Plan:
    """A pass's plan: resolve, plan, move the deployments on; again when one of them changed what its
    service runs (a rollback) so nothing is launched against what no longer holds."""
    now = session.env.clock.now()
    for _ in range(3):
        books.resolve(now)
        result = _plan(session, prune, names, grace, inflight)
        if not books.progress(result, inflight, now):
            return result
    return result


def _active(names: frozenset[str] | None, result: P.Plan, progress: _Progress) -> frozenset[str] | None:
    """The services still to plan: those targeted, less those whose rollout halted."""
    if not progress.halted:
        return names
    every = names if names is not None else frozenset(sp.service for sp in result.services)
    return frozenset(every - set(progress.halted))


def _launch(env: Environment, session: common.Session, books: _Books, runner: Runner, result: P.Plan, progress: _Progress) -> None:
    now = env.clock.now()
    for sp in result.services:
        step = books.stamp(sp, sp.now)
        if sp.service in progress.halted or step.empty:
            continue
        ours = [s for s in step.stops if s.task_id in progress.started or s.task_id in progress.launched]
        if ours and not books.breaker(sp.service):  # the planner gave up on a task this apply started: the rollout halts
            for s in ours:
                progress.failed.add(("start", s.task_id))
                env.out(f"start  {sp.service} task {s.task_id[:12]} on {s.instance}: FAILED {s.reason}")
            progress.halted.setdefault(sp.service, f"a new task failed: {ours[0].reason}")
            step = P.Step(stops=tuple(ours))
        ids = runner.launch(session.desired, step)
        books.launched(sp, step, ids, now)
        for start, task_id in zip(step.starts, ids, strict=True):
            allowed = health.seconds_allowed(start.task_definition.spec)
            progress.launched[task_id] = (sp.service, env.clock.monotonic() + allowed)
    books.save()


def _judge(env: Environment, session: common.Session, books: _Books, progress: _Progress, started: set[str]) -> None:
    """Halts the rollout of a service one of whose new tasks (started, and so listed by its engine) stopped,
    turned unhealthy or ran out of time. A new task stays watched after it became healthy: one that exits
    before the apply ends fails it too (no "Apply complete" over tasks that exit right after starting)."""
    tasks = {t.id: t for cstate in session.observed.values() for t in cstate.tasks}
    now = env.clock.monotonic()
    for task_id, (service, deadline) in list(progress.started.items()):
        if task_id not in started or ("start", task_id) in progress.failed or books.breaker(service):
            continue
        task = tasks.get(task_id)
        if task_id in progress.healthy:
            if task is None or task.status().last_status != "STOPPED":
                continue
            why = f"stopped after it became healthy: {task.status().reason or 'stopped'}"
        else:
            verdict = health.verdict(task)
            if verdict.done and verdict.failure is None:
                progress.healthy.add(task_id)
                continue
            failure = verdict.failure if verdict.done else ("timed out waiting for health checks" if now > deadline else None)
            if failure is None:
                continue
            why = f"did not become healthy: {failure}"
        progress.failed.add(("start", task_id))
        env.out(f"start  {service} task {task_id[:12]} on {task.instance if task else '-'}: FAILED {why}")
        progress.halted.setdefault(service, f"a new task {why}")


def _summary(
    env: Environment, session: common.Session, books: _Books, results: list[ActionResult], last: P.Plan, progress: _Progress
) -> ExitStatus:
    for service, why in sorted(progress.halted.items()):
        sp = next((s for s in last.services if s.service == service), None)
        kept = sum(1 for c in session.observed.values() for t in c.tasks_of(service)
                   if sp is not None and t.task_hash != next((a.task_definition.task_hash for a in sp.starts), t.task_hash)
                   and t.status().last_status == "RUNNING")
        env.out(f"deploy {service}: FAILED deployment halted: {why}" + (f"; {kept} old task(s) kept running" if kept else ""))
    failed = progress.failed
    started = len({r.task_id for r in results if r.ok and r.action == "start"} - {t for a, t in failed if a == "start"})
    breaker_failed = len(progress.counted)
    stopped = sum(1 for r in results if r.ok and r.action == "stop")
    lines, deployment_failed = [], False
    for sp in last.services:
        ok, line = books.verdict(sp.cluster, sp.service)
        if line:
            lines.append(line)
        if not ok and sp.service not in progress.halted:
            deployment_failed = True
    head = ("Apply failed" if deployment_failed or progress.halted or failed
            else "Apply incomplete" if last.unplaced else "Apply complete")
    env.out(f"{head}: {started} started, {stopped} stopped, {len(failed) + breaker_failed} failed." + (f" {'; '.join(lines)}." if lines else ""))
    if progress.halted or (failed and not deployment_failed):
        return ExitStatus.ERROR
    if deployment_failed:
        return ExitStatus.DEPLOYMENT_FAILED
    if last.unplaced:
        env.err(f"error: {last.unplaced} task(s) could not be placed (see the plan above)")
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
    no_wait: bool = False,
    timeout: str | None = None,
) -> ExitStatus:
    names = common.parse_target(targets)
    wait = duration("--lock-wait", lock_wait)
    grace = duration("--unreachable-grace", unreachable_grace, DEFAULT_GRACE)
    limit = duration("--timeout", timeout, DEFAULT_TIMEOUT)
    if concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if limit <= 0:
        raise UserError("--timeout must be positive")
    desired = common.load_desired(env, paths)
    common.require_services(desired, names)
    with _locked(env, list(desired.clusters), wait, desired, "apply"):
        session = common.Session(env, desired, observe.Engines(env.engine_factory), remember=True)
        try:
            return _apply_locked(env, session, prune, yes, names, concurrency, grace, not no_wait, limit)
        finally:
            session.close()


def _apply_locked(
    env: Environment, session: common.Session, prune: bool, yes: bool, names: frozenset[str] | None, concurrency: int,
    grace: float, wait: bool, timeout: float,
) -> ExitStatus:
    session.refresh()
    books = _Books(env, session, write=True, targets=names)
    books.load()
    books.resolve(env.clock.now())
    result = _plan(session, prune, names, grace)
    unreachable = session.report_unreachable()
    env.out(_with_deployments(result, books).render())
    if not result.changed and all(sp.settled for sp in result.services) and all(
        books.finished(sp) for sp in result.services
    ):
        books.save(final=True)  # bookkeeping only: revisions registered, deployments of what already runs
        if any(not books.verdict(sp.cluster, sp.service)[0] for sp in result.services):
            status = _summary(env, session, books, [], result, _Progress())
        else:
            status = ExitStatus.OK
            lines = [line for sp in result.services if (line := books.verdict(sp.cluster, sp.service)[1])]
            if lines:
                env.out(f"Nothing to apply: {'; '.join(lines)}.")
        if status != ExitStatus.OK:
            return status
        if result.unplaced:
            env.err(f"error: {result.unplaced} task(s) could not be placed")
            return ExitStatus.UNPLACED
        return ExitStatus.ERROR if unreachable else ExitStatus.OK
    _confirm(env, "Apply these changes?", yes)
    books.save()
    alarms = None
    if wait and any(s.alarms.enable for s in session.desired.services.values()):
        from reconciler.daemon import alarmwatch

        alarms = alarmwatch.AlarmWatch(env.state().path, env.clock)
        measured = {n: a for n, a in books.manifest.alarms.items() if "predefinedMetricType" not in a.metric}
        for name in sorted(set(books.manifest.alarms) - set(measured)):
            env.err(f"warning: alarm {name} reads a service's utilisation, which only the daemon measures; "
                    "this apply does not evaluate it (a running watch does)")
        alarms.adopt(None, dataclasses.replace(books.manifest, alarms=measured))
        alarms.start()
        books.alarm_states = alarms.states
    try:
        status = _converge(env, session, books, result, prune, names, concurrency, grace, wait, timeout)
    finally:
        if alarms is not None:
            alarms.stop()
    # Record what every instance runs now, not what it ran before this apply: if an engine stops answering
    # before the next command, its tasks then count as running during --unreachable-grace instead of being
    # replaced at once (observation records them; an unreachable engine is no error here).
    session.refresh()
    return ExitStatus.ERROR if unreachable and status == ExitStatus.OK else status


def destroy(
    env: Environment, paths: Sequence[str], yes: bool, concurrency: int, lock_wait: str | None,
    targets: Sequence[str] | None = None,
) -> ExitStatus:
    """Removes every task the reconciler manages in the clusters of `paths` (services and one-off tasks), or
    only the tasks of the `--target` services."""
    names = common.parse_target(targets)
    desired = common.load_desired(env, paths)
    if concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    with _locked(env, list(desired.clusters), duration("--lock-wait", lock_wait), desired, "destroy"):
        session = common.Session(env, desired, observe.Engines(env.engine_factory))
        try:
            return _destroy_locked(env, session, yes, concurrency, names)
        finally:
            session.close()


def _destroy_locked(env: Environment, session: common.Session, yes: bool, concurrency: int, names: frozenset[str] | None) -> ExitStatus:
    session.refresh()
    unreachable = session.report_unreachable()
    stops = [
        P.StopTask(cstate.cluster, task.service, task.instance, task.id, "destroy", "UserInitiated",
                   already_stopped=task.status().last_status != "RUNNING")
        for cstate in session.observed.values()
        for task in cstate.tasks
        if names is None or task.service in names
    ]
    by_service: dict[tuple[str, str], list[P.StopTask]] = {}
    for s in stops:
        by_service.setdefault((s.cluster, s.service or f"(task {s.task_id[:12]})"), []).append(s)
    for (c, name), v in sorted(by_service.items()):
        env.out(f"service {name} (cluster {c}): {len(v)} task(s) to remove")
    env.out(f"Destroy: {len(stops)} to remove.")
    if not stops:
        return ExitStatus.ERROR if unreachable else ExitStatus.OK
    _confirm(env, "Remove every managed task?" if names is None else f"Remove every task of {', '.join(sorted(names))}?", yes)
    runner = _runner(env, session, concurrency, lambda r: env.out(r.line()))
    try:
        runner.launch(session.desired, P.Step(stops=tuple(stops)))
        runner.drain()
    finally:
        runner.shutdown()
    failed = [r for r in runner.results if not r.ok]
    env.out(f"Destroy complete: {len(runner.results) - len(failed)} stopped, {len(failed)} failed.")
    if failed:
        return ExitStatus.ERROR
    return ExitStatus.ERROR if unreachable else ExitStatus.OK
