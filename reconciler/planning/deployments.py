"""Deployments as ECS runs them: revisions registered, deployments created, moved on and rolled back.

Owns, for one cluster's `History`, the rules that turn manifests and observations into history:
- `resolve` (before a pass plans): every new canonical spec of a family a service uses registers the next
  revision (an unchanged spec never does); a service's `taskDefinition: family:N` must name a registered
  revision; every change of what a service runs (revision, launch type, placement) creates a deployment
  `ecs-svc/<digits>` that supersedes the PRIMARY one; the manifests asking again for what a FAILED deployment
  ran change nothing (`Blocked`). It returns the task definition each service runs (the PRIMARY
  deployment's revision: a pin, the latest, or what a rollback returned to) and the services whose FAILED
  deployment launches nothing.
- `progress` (after a pass observed and planned a service): counts the PRIMARY deployment's failed tasks
  (tasks that stopped or failed their health checks; starts that failed), resets the count on a newly
  healthy task when `resetOnHealthyTask`, trips the circuit breaker at ECS's threshold, fails the
  deployment on an alarm in ALARM, starts the bake once every task is the new revision's and healthy,
  COMPLETES it after the bake, rolls back to the last COMPLETED deployment when asked, and retires older
  deployments whose tasks are gone.
- the service events in ECS's words.
It must not do I/O or read the clock (`now` is given); ids come from the injected `ids` function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.model import history as H
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import health

Ids = Callable[[str], str]  # kind ("deployment" or "event") -> a new unique id

ALARM = "ALARM"


@dataclass(frozen=True)
class PinError:
    service: spec.Service
    message: str


@dataclass(frozen=True)
class Resolved:
    history: H.History
    running: Mapping[str, spec.TaskDefinition] = field(default_factory=dict)  # service -> what it runs
    frozen: Mapping[str, str] = field(default_factory=dict)  # service -> why it launches nothing
    notes: Mapping[str, str] = field(default_factory=dict)  # service -> one line for plan and describe
    errors: tuple[PinError, ...] = ()

    def desired(self, desired: spec.DesiredState) -> spec.DesiredState:
        """`desired` with each service's task definition as resolved."""
        return dataclasses.replace(desired, running={**desired.running, **self.running})


def threshold(svc: spec.Service, desired: int) -> int:
    """How many failed tasks trip the circuit breaker (ECS `thresholdConfiguration`): BOUNDED_PERCENT
    (default 50) is value% of the desired count clamped to [3, 200]; UNBOUNDED_PERCENT unclamped (at least
    1); COUNT the value itself."""
    t = svc.threshold
    if t.type == spec.COUNT:
        return max(int(t.value), 1)
    n = math.ceil(desired * t.value / 100)
    if t.type == spec.UNBOUNDED_PERCENT:
        return max(n, 1)
    return min(max(n, 3), 200)


def fingerprint(svc: spec.Service, revision: int, task_hash: str) -> str:
    """What a deployment runs: changing any of it is a new deployment (a desired count alone is not)."""
    doc = {
        "revision": revision,
        "hash": task_hash,
        "launchType": svc.launch_type,
        "constraints": [dataclasses.astuple(c) for c in svc.constraints],
        "strategies": [dataclasses.astuple(s) for s in svc.strategies],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# -- events ----------------------------------------------------------------------------------------------


def _event(sh: H.ServiceHistory, message: str, now: float, ids: Ids, repeat: bool = True) -> H.ServiceHistory:
    """`sh` with `message` as its newest event; with `repeat=False` the same message as the newest one is
    not added again."""
    if not repeat and sh.events and sh.events[0].message == message:
        return sh
    event = H.Event(ids("event"), now, message)
    return dataclasses.replace(sh, events=(event, *sh.events)[: H.EVENT_LIMIT])


def add_event(history: H.History, service: str, message: str, now: float, ids: Ids, repeat: bool = True) -> H.History:
    sh = history.service(service)
    after = _event(sh, message, now, ids, repeat)
    return history if after is sh else history.with_service(service, after)


def started_message(service: str, task_ids: Iterable[str]) -> str:
    ids = list(task_ids)
    tasks = " ".join(f"(task {t})" for t in ids)
    return f"(service {service}) has started {len(ids)} tasks: {tasks}."


def stopped_message(service: str, task_ids: Iterable[str]) -> str:
    ids = list(task_ids)
    tasks = " ".join(f"(task {t})" for t in ids)
    return f"(service {service}) has stopped {len(ids)} running tasks: {tasks}."


def unplaced_message(service: str, reason: str | None) -> str:
    return (f"(service {service}) was unable to place a task because no container instance met all of its "
            f"requirements. Reason: {reason or 'no container instance had room'}.")


def step_events(history: H.History, step: P.Step, started: Iterable[str], now: float, ids: Ids) -> H.History:
    """The events of one launched step: the tasks it started and the running tasks it stopped."""
    by_service: dict[str, list[str]] = {}
    for start, task_id in zip(step.starts, started, strict=False):
        if start.service:
            by_service.setdefault(start.service, []).append(task_id)
    for service, task_ids in sorted(by_service.items()):
        history = add_event(history, service, started_message(service, task_ids), now, ids)
    stopped: dict[str, list[str]] = {}
    for stop in step.stops:
        if stop.service and not stop.already_stopped:
            stopped.setdefault(stop.service, []).append(stop.task_id)
    for service, task_ids in sorted(stopped.items()):
        history = add_event(history, service, stopped_message(service, task_ids), now, ids)
    return history


# -- revisions and deployments ------------------------------------------------------------------------------


def register(history: H.History, td: spec.TaskDefinition, now: float) -> tuple[H.History, H.Revision]:
    """`td` as a revision of its family: the latest one when its spec is unchanged, else the next number."""
    latest = history.latest(td.family)
    if latest is not None and latest.task_hash == td.task_hash:
        return history, latest
    rev = H.Revision(family=td.family, number=(latest.number if latest else 0) + 1, task_hash=td.task_hash,
                     spec=td.spec, raw=td.raw, registered_at=now, source=td.source)
    revisions = {**history.revisions, td.family: (*history.revisions_of(td.family), rev)}
    return dataclasses.replace(history, revisions=revisions), rev


def resolve(
    history: H.History, desired: spec.DesiredState, now: float, ids: Ids, counts: Mapping[str, int] | None = None,
    targets: frozenset[str] | None = None,
) -> Resolved:
    """Registers the revisions the cluster's services use and creates the deployments their manifests ask
    for (see the module docstring). `counts` are desired counts that override the manifests' (auto scaling);
    with `targets`, only those services are resolved (`apply --target` deploys nothing else)."""
    counts = counts or {}
    running: dict[str, spec.TaskDefinition] = {}
    frozen: dict[str, str] = {}
    notes: dict[str, str] = {}
    errors: list[PinError] = []
    for svc in desired.services_of(history.cluster):
        td = desired.task_definitions.get(svc.task_definition)
        if td is None or (targets is not None and svc.name not in targets):
            continue
        history, latest = register(history, td, now)
        if svc.revision is None:
            wanted = latest
        else:
            wanted = history.revision(svc.task_definition, svc.revision)
            if wanted is None:
                errors.append(PinError(svc, f"no revision {svc.revision} of {svc.task_definition}; revisions: "
                                            f"{H.describe_revisions(history.revisions_of(svc.task_definition))}"))
                continue
        history, primary = _deploy(history, svc, wanted, counts.get(svc.name, svc.desired_count), now, ids)
        sh = history.service(svc.name)
        rev = history.revision(primary.family, primary.revision)
        running[svc.name] = rev.task_definition(td.warnings) if rev is not None else td
        if primary.rollout_state == H.FAILED:
            frozen[svc.name] = f"deployment {primary.id} FAILED: {primary.rollout_state_reason}"
        if sh.blocked is not None:
            notes[svc.name] = blocked_line(sh, primary)
    return Resolved(history, running, frozen, notes, tuple(errors))


def blocked_line(sh: H.ServiceHistory, primary: H.Deployment) -> str:
    """"manifest asks web:4; deployment ecs-svc/… FAILED at …: …; running web:3 after rollback"."""
    b = sh.blocked
    assert b is not None
    head = f"manifest asks {b.ref}; deployment {b.deployment} FAILED at {H.timestamp(b.at)}: {b.reason}"
    if primary.rollback_of:
        return f"{head}; running {primary.task_definition} after rollback"
    return f"{head}; not rolled back: it launches nothing more and the service keeps the tasks it had"


def _deploy(
    history: H.History, svc: spec.Service, rev: H.Revision, desired: int, now: float, ids: Ids
) -> tuple[H.History, H.Deployment]:
    """The PRIMARY deployment of `svc` once the manifests ask for `rev`: the current one when it runs what
    they ask (or they ask what failed), else a new one that supersedes it."""
    sh = history.service(svc.name)
    wanted = fingerprint(svc, rev.number, rev.task_hash)
    primary = sh.primary
    if sh.blocked is not None and sh.blocked.fingerprint == wanted and primary is not None:
        return history, primary
    if sh.blocked is not None:  # the manifests ask for something else now: the failure is behind us
        sh = dataclasses.replace(sh, blocked=None)
        history = history.with_service(svc.name, sh)
    if primary is not None and (primary.fingerprint == wanted):
        if primary.desired_count != desired and svc.scheduling_strategy != spec.DAEMON:  # DAEMON: progress counts
            primary = dataclasses.replace(primary, desired_count=desired)
            history = history.with_service(svc.name, _replace(sh, primary))
        return history, primary
    new = H.Deployment(id=ids("deployment"), family=rev.family, revision=rev.number, task_hash=rev.task_hash,
                       fingerprint=wanted, desired_count=desired, created_at=now, updated_at=now,
                       launch_type=svc.launch_type, rollout_state_reason="ECS deployment in progress.")
    older = tuple(dataclasses.replace(d, status=H.ACTIVE, updated_at=now) if d.status == H.PRIMARY else d
                  for d in sh.deployments)
    sh = dataclasses.replace(sh, deployments=_trim((new, *older)), blocked=None)
    what = f"{rev.ref}" + (f" (was {primary.task_definition})" if primary else "")
    sh = _event(sh, f"(service {svc.name}) (deployment {new.id}) deployment started: {what}.", now, ids)
    return history.with_service(svc.name, sh), new


def _replace(sh: H.ServiceHistory, d: H.Deployment) -> H.ServiceHistory:
    return dataclasses.replace(sh, deployments=tuple(d if x.id == d.id else x for x in sh.deployments))


def _trim(deployments: tuple[H.Deployment, ...]) -> tuple[H.Deployment, ...]:
    """At most DEPLOYMENT_LIMIT, dropping the oldest INACTIVE ones (and always keeping a COMPLETED one)."""
    out = list(deployments)
    keep = next((d.id for d in out if d.rollout_state == H.COMPLETED), None)
    while len(out) > H.DEPLOYMENT_LIMIT:
        victim = next((d for d in reversed(out) if d.status == H.INACTIVE and d.id != keep), None)
        if victim is None:
            break
        out.remove(victim)
    return tuple(out)


# -- progress ------------------------------------------------------------------------------------------------


def _belongs(task: obs.Task, d: H.Deployment) -> bool:
    if task.deployment:
        return task.deployment == d.id
    return task.task_hash == d.task_hash and task.created >= d.created_at


def progress(
    history: H.History,
    svc: spec.Service,
    sp: P.ServicePlan | None,
    tasks: Iterable[obs.Task],
    now: float,
    ids: Ids,
    failed_starts: Mapping[str, str] | None = None,
    alarms: Mapping[str, str] | None = None,
) -> H.History:
    """Moves the PRIMARY deployment of `svc` on from what a pass saw (see the module docstring).

    `sp` is the pass's plan of the service (None: not planned), `tasks` the service's observed tasks,
    `failed_starts` task id -> message of this deployment's starts that failed before the engine listed a
    task, `alarms` alarm name -> state.
    """
    sh = history.service(svc.name)
    d = sh.primary
    if d is None:
        return history
    tasks = list(tasks)
    before = sh
    if sp is not None and sp.desired != d.desired_count and not d.done:
        d = dataclasses.replace(d, desired_count=sp.desired)
        sh = _replace(sh, d)
    if not d.done:
        d, reason = _count(svc, d, tasks, now, failed_starts or {})
        sh = _replace(sh, d)
        failure = None
        # A rollback is the remedy, not a new risk: alarms (likely still ringing over what it undoes) do not
        # fail it, and if its own tasks trip the breaker it does not roll back again.
        again = d.rollback_of is None
        if svc.circuit_breaker and d.failed_tasks >= threshold(svc, d.desired_count):
            failure = (reason or "tasks failed to start", svc.rollback and again)
        watched = svc.alarms.enable and again
        alarmed = sorted(n for n in svc.alarms.names if (alarms or {}).get(n) == ALARM) if watched else []
        if failure is None and alarmed:
            failure = (f"alarm(s) {', '.join(alarmed)} in ALARM state", svc.alarms.rollback)
        if failure is not None:
            sh = _fail(svc, sh, d, failure[0], failure[1], now, ids)
        else:
            sh = _steady(svc, sh, d, sp, tasks, now, ids)
    sh = _retire(svc, sh, tasks, now)
    if sh is before:
        return history
    return history.with_service(svc.name, sh)


def _count(
    svc: spec.Service, d: H.Deployment, tasks: list[obs.Task], now: float, failed_starts: Mapping[str, str]
) -> tuple[H.Deployment, str | None]:
    """The deployment with its new failures and healthy tasks counted; the newest failure's reason."""
    failed = list(d.failed_ids)
    healthy = list(d.healthy_ids)
    count = d.failed_tasks
    reason = None
    for task in sorted(tasks, key=lambda t: t.created):
        if not _belongs(task, d):
            continue
        status = task.status()
        if task.id not in healthy and health.available(task, now):
            healthy.append(task.id)
            if svc.reset_on_healthy_task:
                count = 0
        bad = status.last_status == obs.STOPPED or (status.last_status == obs.RUNNING and status.health == obs.UNHEALTHY)
        if bad and task.id not in failed:
            failed.append(task.id)
            count += 1
            if status.last_status == obs.RUNNING:
                reason = "tasks failed container health checks"
            elif task.id in healthy:
                reason = f"tasks stopped after they were healthy ({status.reason or 'stopped'})"
            else:
                reason = f"tasks failed to start ({status.reason or 'stopped'})"
    for task_id, message in sorted(failed_starts.items()):
        if task_id not in failed:
            failed.append(task_id)
            count += 1
            reason = f"tasks failed to start ({message})"
    if (count, tuple(failed), tuple(healthy)) == (d.failed_tasks, d.failed_ids, d.healthy_ids):
        return d, reason
    return dataclasses.replace(d, failed_tasks=count, failed_ids=tuple(failed[-H.FAILED_IDS_LIMIT:]),
                               healthy_ids=tuple(healthy[-H.FAILED_IDS_LIMIT:]), updated_at=now), reason


def _fail(svc: spec.Service, sh: H.ServiceHistory, d: H.Deployment, reason: str, rollback: bool, now: float, ids: Ids) -> H.ServiceHistory:
    """`d` FAILED for `reason`; with `rollback`, a new deployment back to the last COMPLETED one."""
    by_alarm = reason.startswith("alarm")
    why = reason if by_alarm else f"ECS deployment circuit breaker: {reason}"
    sh = _replace(sh, dataclasses.replace(d, rollout_state=H.FAILED, rollout_state_reason=f"{why}.", updated_at=now))
    sh = _event(sh, f"(service {svc.name}) (deployment {d.id}) deployment failed: {reason}.", now, ids)
    summary = reason if by_alarm else f"{d.failed_tasks} {reason}"
    if d.rollback_of is None or sh.blocked is None:  # a rollback that fails leaves the original failure blocked
        sh = dataclasses.replace(sh, blocked=H.Blocked(d.fingerprint, d.id, summary, now, d.task_definition))
    target = sh.last_completed(excluding=d.id) if rollback else None
    if target is None:
        if rollback:
            sh = _event(sh, f"(service {svc.name}) (deployment {d.id}) no COMPLETED deployment to roll back to.", now, ids)
        return sh
    back = H.Deployment(id=ids("deployment"), family=target.family, revision=target.revision, task_hash=target.task_hash,
                        fingerprint=target.fingerprint, desired_count=d.desired_count, created_at=now, updated_at=now,
                        launch_type=target.launch_type, rollout_state_reason=f"rolling back to deployment {target.id}.",
                        rollback_of=d.id)
    older = tuple(dataclasses.replace(x, status=H.ACTIVE, updated_at=now) if x.status == H.PRIMARY else x for x in sh.deployments)
    sh = dataclasses.replace(sh, deployments=_trim((back, *older)))
    return _event(sh, f"(service {svc.name}) (deployment {back.id}) rolling back to deployment {target.id} "
                      f"({target.task_definition}).", now, ids)


def _steady(
    svc: spec.Service, sh: H.ServiceHistory, d: H.Deployment, sp: P.ServicePlan | None, tasks: list[obs.Task], now: float, ids: Ids
) -> H.ServiceHistory:
    """Starts the bake once the service is all `d` and healthy, and completes `d` after it."""
    live = [t for t in tasks if t.status().last_status != obs.STOPPED]
    steady = (
        sp is not None and sp.settled and not sp.unplaced
        and len(live) == d.desired_count
        and all(t.task_hash == d.task_hash and health.stable(t, now) for t in live)
    )
    if not steady:
        if d.steady_at is not None:
            return _replace(sh, dataclasses.replace(d, steady_at=None, updated_at=now))
        return sh
    bake = 0.0 if d.rollback_of else svc.bake_time  # a rollback returns to what completed before: no bake
    if d.steady_at is None:
        d = dataclasses.replace(d, steady_at=now, updated_at=now)
        sh = _replace(sh, d)
        if bake > 0:
            sh = _event(sh, f"(service {svc.name}) (deployment {d.id}) new tasks are healthy; baking for "
                            f"{svc.bake_time / 60:g} minutes.", now, ids)
    if now - d.steady_at < bake:
        return sh
    done = dataclasses.replace(d, rollout_state=H.COMPLETED, rollout_state_reason=f"ECS deployment {d.id} completed.", updated_at=now)
    sh = _replace(sh, done)
    sh = _event(sh, f"(service {svc.name}) (deployment {d.id}) deployment completed.", now, ids)
    return _event(sh, f"(service {svc.name}) has reached a steady state.", now, ids)


def _retire(svc: spec.Service, sh: H.ServiceHistory, tasks: list[obs.Task], now: float) -> H.ServiceHistory:
    """Older deployments whose tasks are all gone become INACTIVE, and all of them once PRIMARY completed
    (tasks of the same revision that are left count as the PRIMARY's then)."""
    primary = sh.primary
    live = {t.task_hash for t in tasks if t.status().last_status != obs.STOPPED}
    out = []
    changed = False
    for d in sh.deployments:
        if d.status == H.ACTIVE and (d.task_hash not in live or (primary is not None and primary.rollout_state == H.COMPLETED)):
            d = dataclasses.replace(d, status=H.INACTIVE, updated_at=now)
            changed = True
        out.append(d)
    return dataclasses.replace(sh, deployments=tuple(out)) if changed else sh


# -- views -----------------------------------------------------------------------------------------------------


def counts(d: H.Deployment, tasks: Iterable[obs.Task]) -> dict[str, int]:
    """runningCount and pendingCount of a deployment, from the service's observed tasks (by revision)."""
    running = pending = 0
    for t in tasks:
        if t.task_hash != d.task_hash:
            continue
        s = t.status().last_status
        running += s == obs.RUNNING
        pending += s == obs.PENDING
    return {"runningCount": running, "pendingCount": pending}


def deployment_view(d: H.Deployment, tasks: Iterable[obs.Task], region: str | None = None) -> dict[str, object]:
    """A `deployments[]` item of describe-services."""
    return {
        "id": d.id,
        "status": d.status,
        "taskDefinition": H.arn("task-definition", d.task_definition, region),
        "desiredCount": d.desired_count,
        **counts(d, tasks),
        "failedTasks": d.failed_tasks,
        "createdAt": H.timestamp(d.created_at),
        "updatedAt": H.timestamp(d.updated_at),
        "launchType": d.launch_type,
        "rolloutState": d.rollout_state,
        "rolloutStateReason": d.rollout_state_reason,
        **({"rollbackOf": d.rollback_of} if d.rollback_of else {}),
    }
