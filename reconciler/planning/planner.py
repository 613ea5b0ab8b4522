"""`plan(desired, observed, now, options) -> Plan`: the single, pure entry point that decides what changes.

Owns, per service and per reconcile pass: sorting tasks (observed, plus the work in flight given in
`Options.inflight`) into new and old, available (RUNNING and HEALTHY) or not, failed, dead and being
stopped; deciding what a pass launches now within `maximumPercent` and `minimumHealthyPercent` (the
Kubernetes deployment controller's rule: never more than the upper bound running or pending, never
fewer available than the lower bound, counting not-yet-healthy new tasks as unavailable); which pending
tasks' next containers start (`dependencies`); and asking `placement` where new tasks go. The first step
of a service's plan is what a pass does now; the steps after it are the projected passes that follow
once what the rollout waits for has happened (shown by `plan`, never acted on ahead of time). Every action
carries its reason. It must not do I/O, read the clock (`now` is given) or use unseeded randomness.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.model import inflight as F
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import dependencies, diff, health, placement, resources

MAX_PROJECTED_STEPS = 1000
UNCHECKED_SETTLE_SECONDS = health.UNCHECKED_SETTLE_SECONDS


@dataclass(frozen=True)
class Options:
    prune: bool = False
    targets: frozenset[str] | None = None  # service names; None = all
    desired_counts: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # autoscaler overrides
    unreachable_grace: float = 60.0  # seconds a dead engine's last-known tasks still count as running
    # Work launched and not yet seen finished: starts count toward their service and hold resources before
    # the engine lists them; tasks being stopped count as neither running nor capacity to keep.
    inflight: F.InFlight = F.NOTHING


def plan(
    desired: spec.DesiredState,
    observed: Mapping[str, obs.ClusterState],
    now: float,
    options: Options = Options(),
) -> P.Plan:
    services: list[P.ServicePlan] = []
    unreachable: dict[str, str] = {}
    orphans: list[str] = []
    one_off: list[P.StartContainers | P.StopTask] = []
    for cluster_name in sorted(desired.clusters):
        cluster = desired.clusters[cluster_name]
        state = observed.get(cluster_name) or obs.ClusterState(cluster_name, {}, ())
        for inst in state.instances.values():
            if not inst.reachable:
                unreachable[inst.endpoint] = inst.error or "unreachable"
        planner = _ClusterPlanner(cluster, state, now, options.unreachable_grace, options.inflight)
        for svc in desired.services_of(cluster_name):
            if options.targets is not None and svc.name not in options.targets:
                continue
            td = desired.task_definition_of(svc)
            if td is None:
                continue
            count, source = options.desired_counts.get(svc.name, (svc.desired_count, "manifest"))
            services.append(planner.service(svc, td, count, source))
        declared = {s.name for s in desired.services_of(cluster_name)}
        for name in sorted({t.service for t in state.tasks if t.service and t.service not in declared}):
            if options.targets is not None and name not in options.targets:
                continue
            if options.prune:
                services.append(planner.prune(name))
            else:
                orphans.append(name)
        if options.targets is None:
            one_off += planner.one_off()
    return P.Plan(services=tuple(services), unreachable=unreachable, orphans=tuple(orphans), one_off=tuple(one_off))


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


@dataclass(frozen=True)
class _Old:
    """A task of an older revision (or on a draining instance) that a rollout replaces."""

    instance: str
    task_id: str
    reason: str
    available: bool
    observed: bool = True  # False: a start still in flight (it cannot be stopped before the engine lists it)


@dataclass
class _Sorted:
    """One service's tasks as a pass sees them."""

    new_ready: list[obs.Task] = field(default_factory=list)
    new_pending: list[obs.Task] = field(default_factory=list)  # observed, not yet available
    new_settling: list[obs.Task] = field(default_factory=list)  # RUNNING without health checks, not for 40 s yet
    new_inflight: int = 0  # starts launched, not yet listed by the engine
    unknown: int = 0  # last-known tasks of an unreachable engine, within the grace period
    old: list[_Old] = field(default_factory=list)
    cleanup: list[P.StopTask] = field(default_factory=list)  # dead or failed: stop now, whatever the bounds
    advances: list[P.StartContainers] = field(default_factory=list)
    stopping: int = 0


class _ClusterPlanner:
    """Plans the services of one cluster against one shared view of its instances' capacity."""

    def __init__(
        self,
        cluster: spec.Cluster,
        state: obs.ClusterState,
        now: float,
        grace: float = 0.0,
        inflight: F.InFlight = F.NOTHING,
    ):
        self.cluster = cluster
        self.state = state
        self.now = now
        self.grace = grace
        self.inflight = inflight
        self.statuses = {t.id: t.status() for t in state.tasks}
        self.live = [t for t in state.tasks if self.statuses[t.id].last_status == obs.RUNNING]
        self.pool = {i.name: i for i in cluster.all_instances()}
        listed = {t.id for t in state.tasks}
        self.launching = [s for s in inflight.starts_of(cluster.name) if s.task_id not in listed]
        # Listed tasks whose start is still in flight: half-made for now, never judged, advanced or stopped.
        self.starting = {s.task_id for s in inflight.starts_of(cluster.name)} & listed
        holding = [t for t in state.tasks if self.statuses[t.id].last_status in (obs.RUNNING, obs.PENDING)]
        self.placed: list[placement.PlacedTask] = [
            placement.PlacedTask(instance_id=t.instance, group=t.group, task_id=t.id, **resources.reservation(t.spec))
            for t in holding
            if t.instance in self.pool
        ]
        self.placed += [
            placement.PlacedTask(instance_id=s.instance, group=s.group, task_id=s.task_id, cpu=s.cpu, memory=s.memory, ports=s.ports)
            for s in self.launching
            if s.instance in self.pool
        ]

    # -- instances -------------------------------------------------------------------------------

    def _instances(self, launch_type: str) -> list[placement.Instance]:
        declared = self.cluster.fargate if launch_type == spec.FARGATE else self.cluster.instances
        if not declared:
            declared = self.cluster.fargate or self.cluster.instances
        out = []
        for inst in declared:
            state = self.state.instances.get(inst.name)
            reachable = bool(state and state.reachable)
            out.append(
                placement.Instance(
                    id=inst.name,
                    cpu=inst.cpu if inst.cpu is not None else (state.cpu if state else 0),
                    memory=inst.memory if inst.memory is not None else (state.memory if state else 0),
                    attributes={**(state.attributes if state else {}), **inst.attributes},
                    status=inst.status,
                    connected=reachable,
                )
            )
        return out

    def view(self, launch_type: str, exclude: Iterable[str] = ()) -> placement.ClusterView:
        excluded = set(exclude)
        return placement.ClusterView(
            self._instances(launch_type), [p for p in self.placed if p.task_id not in excluded]
        )

    def request(self, svc: spec.Service, td: spec.TaskDefinition) -> placement.TaskRequest:
        constraints = svc.constraints
        td_constraints = tuple(
            placement.Constraint("memberOf", c.get("expression"))
            for c in td.raw.get("placementConstraints") or []
            if c.get("type") == "memberOf"
        )
        res = resources.reservation(td.spec)
        return placement.TaskRequest(
            group=svc.group,
            cpu=res["cpu"],
            memory=res["memory"],
            ports=res["ports"],
            constraints=td_constraints + constraints,
            strategies=svc.strategies,
        )

    # -- sorting tasks ---------------------------------------------------------------------------

    def _why_outdated(self, task: obs.Task, td: spec.TaskDefinition) -> str | None:
        inst = self.pool.get(task.instance)
        if inst is None:
            return f"instance {task.instance} is no longer in the cluster"
        if inst.status == spec.DRAINING:
            return f"instance {task.instance} is DRAINING"
        if task.task_hash != td.task_hash:
            return f"task definition {td.family} changed" if td.revision is None else f"runs {task.ref}, not {td.ref}"
        return None

    def _failed(self, task: obs.Task, grace: int) -> bool:
        status = self.statuses[task.id]
        return status.health == obs.UNHEALTHY and self.now - task.created >= grace

    def _settled(self, task: obs.Task) -> bool:
        """Whether a RUNNING, HEALTHY task counts as available: at once with a health check on an essential
        container, else once it has been running `UNCHECKED_SETTLE_SECONDS` (from its creation)."""
        return health.checked(task) or self.now - task.created >= UNCHECKED_SETTLE_SECONDS

    def _pending(self, task: obs.Task, out: _Sorted) -> bool:
        """Moves a PENDING task on (its next containers) or fails it; False when it failed."""
        if task.id in self.inflight.advancing:
            return True
        step = dependencies.progress(task, self.now)
        if step.failure:
            out.cleanup.append(self._stop(task, f"Task failed to start: {step.failure}", "TaskFailedToStart"))
            return False
        if step.ready:
            waited = any(c.container in step.ready and c.spec.get("dependsOn") for c in task.app_containers)
            why = "their dependsOn conditions hold" if waited else "the task was created but never started (an interrupted start)"
            out.advances.append(P.StartContainers(self.cluster.name, task.service, task.instance, task.id, step.ready, why))
        return True

    def _sort(self, svc: spec.Service, td: spec.TaskDefinition) -> _Sorted:
        out = _Sorted()
        for task in self.state.tasks_of(svc.name):
            if task.id in self.inflight.stopping:
                out.stopping += 1
                continue
            if task.id in self.starting:
                if task.task_hash == td.task_hash:
                    out.new_inflight += 1
                else:
                    out.old.append(_Old(task.instance, task.id, f"task definition {td.family} changed", False, observed=False))
                continue
            status = self.statuses[task.id]
            if status.last_status == obs.STOPPED:
                out.cleanup.append(self._stop(task, status.reason or "task stopped", status.stop_code))
                continue
            if status.last_status == obs.PENDING and not self._pending(task, out):
                continue
            outdated = self._why_outdated(task, td)
            if status.last_status == obs.RUNNING and self._failed(task, svc.health_check_grace_period):
                # Replaced within the deployment bounds, like an old task: a replacement first where
                # maximumPercent allows, else stopped first as far as minimumHealthyPercent allows.
                out.old.append(_Old(task.instance, task.id, "Task failed container health checks", False))
                continue
            healthy = status.last_status == obs.RUNNING and status.health == obs.HEALTHY
            available = healthy and self._settled(task)
            if outdated is not None:
                out.old.append(_Old(task.instance, task.id, outdated, available))
            elif available:
                out.new_ready.append(task)
            elif healthy:
                out.new_settling.append(task)
            else:
                out.new_pending.append(task)
        for s in self.launching:
            if s.service != svc.name:
                continue
            if s.task_hash == td.task_hash:
                out.new_inflight += 1
            else:
                out.old.append(_Old(s.instance, s.task_id, f"task definition {td.family} changed", False, observed=False))
        out.unknown = len(self._unknown(svc, td))
        return out

    # -- services --------------------------------------------------------------------------------

    def service(self, svc: spec.Service, td: spec.TaskDefinition, desired: int, source: str) -> P.ServicePlan:
        if svc.scheduling_strategy == spec.DAEMON:
            return self._daemon(svc, td)
        tasks = self.state.tasks_of(svc.name)
        live = [t for t in tasks if self.statuses[t.id].last_status == obs.RUNNING]
        sorted_ = self._sort(svc, td)
        self._scale_in(svc, sorted_, desired)
        steps, waiting, unplaced, why = self._rolling(svc, td, desired, sorted_)

        warnings = list(td.warnings)
        unknown = self._unknown(svc, td)
        if unknown:
            where = ", ".join(sorted({u.instance for u in unknown}))
            warnings.append(
                f"{len(unknown)} task(s) on unreachable instance(s) {where} counted as running "
                f"for up to {self.grace:.0f}s after the engine stopped answering"
            )
        lines: list[str] = []
        for old_spec in {t.task_hash: t.spec for t in live if t.task_hash != td.task_hash}.values():
            lines.extend(d for d in diff.spec_diff(old_spec, td.spec) if d not in lines)
        replaced = {s.task_id for s in sorted_.cleanup if not s.reason.startswith("scale-in")} | {o.task_id for o in sorted_.old}
        return _summarize(
            P.ServicePlan(
                cluster=self.cluster.name,
                service=svc.name,
                family=td.family,
                desired=desired,
                running=len(live),
                steps=steps,
                unplaced=unplaced,
                unplaced_reason=why,
                diff=tuple(lines),
                warnings=tuple(warnings),
                desired_source=source,
                waiting=waiting,
            ),
            replaced=replaced,
        )

    def _scale_in(self, svc: spec.Service, s: _Sorted, desired: int) -> None:
        """Stops new tasks beyond the desired count: pending ones first, then by the placement strategy.
        Tasks on an unreachable engine fill the count but never push a reachable task out."""
        surplus = len(s.new_ready) + len(s.new_settling) + len(s.new_pending) + s.new_inflight - desired
        if surplus <= 0:
            return
        pending = s.new_pending[:surplus]
        s.new_pending = s.new_pending[len(pending):]
        surplus -= len(pending)
        # The rest by the placement strategy, among the running ones (those not yet past ECS's 40 s too).
        chosen: set[str] = set()
        running = s.new_ready + s.new_settling
        if surplus > 0 and running:
            ids = {t.id for t in running}
            view = self.view(svc.launch_type, [p.task_id for p in self.placed if p.group == svc.group and p.task_id not in ids])
            chosen = set(placement.choose_to_stop(view, svc.group, min(surplus, len(running)), svc.strategies))
        s.cleanup += [self._stop(t, f"scale-in to desired count {desired}") for t in pending]
        s.cleanup += [self._stop(t, f"scale-in to desired count {desired}") for t in running if t.id in chosen]
        s.new_ready = [t for t in s.new_ready if t.id not in chosen]
        s.new_settling = [t for t in s.new_settling if t.id not in chosen]

    def _unknown(self, svc: spec.Service, td: spec.TaskDefinition) -> list[obs.UnknownTask]:
        """Last-known tasks of `svc` on unreachable instances that are still within the grace period."""
        out = []
        for u in self.state.unknown:
            inst = self.state.instances.get(u.instance)
            since = inst.unreachable_since if inst and inst.unreachable_since is not None else self.now
            if u.service == svc.name and u.task_hash == td.task_hash and self.now - since < self.grace:
                out.append(u)
        return out

    def _stop(self, task: obs.Task, reason: str, code: str | None = None) -> P.StopTask:
        status = self.statuses[task.id]
        return P.StopTask(
            cluster=self.cluster.name,
            service=task.service,
            instance=task.instance,
            task_id=task.id,
            reason=reason,
            stop_code=code or "ServiceSchedulerInitiated",
            already_stopped=status.last_status == obs.STOPPED,
        )

    def _stop_old(self, svc: spec.Service, old: _Old) -> P.StopTask:
        return P.StopTask(self.cluster.name, svc.name, old.instance, old.task_id, old.reason)

    def _rolling(
        self, svc: spec.Service, td: spec.TaskDefinition, desired: int, s: _Sorted
    ) -> tuple[tuple[P.Step, ...], tuple[str, ...], int, str | None]:
        """This pass's actions, then the projected passes after it, within the deployment bounds.

        Bounds follow ECS: running + pending <= floor(desired * maximumPercent / 100) and available
        (RUNNING and HEALTHY) >= ceil(desired * minimumHealthyPercent / 100). Each pass, as the Kubernetes
        deployment controller does: start what the upper bound allows and fits; stop old tasks that are not
        available first, then available ones as far as the lower bound allows, counting new tasks that are
        not yet healthy as unavailable (so old tasks go only once their replacements are healthy). Only when
        the bounds leave no move at all and nothing is in flight is one old task stopped first: an unavailable
        (unhealthy) one when no replacement can start (ECS stops unhealthy tasks one by one then), else, at
        100 / 100, an available one.
        A pass that can neither start nor stop leaves the rest unplaced; the old tasks keep running.
        Returns (steps, what the next pass waits for, how many cannot be placed, why).
        """
        max_total = max(desired * svc.maximum_percent // 100, 1)
        min_healthy = math.ceil(desired * svc.minimum_healthy_percent / 100)
        request = self.request(svc, td)
        ready = len(s.new_ready) + s.unknown
        settling = len(s.new_settling)
        pending = len(s.new_pending) + s.new_inflight + settling
        old = sorted((o for o in s.old if o.observed), key=lambda o: o.available)  # unavailable ones go first
        old_fixed = len(s.old) - len(old)  # old starts in flight: they count, but cannot be stopped yet
        gone: list[str] = [c.task_id for c in s.cleanup if c.already_stopped]  # the rest hold resources until stopped
        stopping = s.stopping
        steps: list[P.Step] = []
        waiting: tuple[str, ...] = ()
        why: str | None = None
        unplaced = 0
        after = ""
        for _ in range(MAX_PROJECTED_STEPS):
            first = not steps and not after
            total_new = ready + pending
            everything = total_new + len(old) + old_fixed
            need = max(desired - total_new, 0)
            room = max(max_total - everything, 0)
            starts: list[P.StartTask] = []
            if min(need, room):
                result = placement.place(self.view(svc.launch_type, gone), request, min(need, room), _seed(svc.name))
                for inst in result.placements:
                    starts.append(self._start(svc, td, inst, old, len(starts), desired))
                    self.placed.append(
                        placement.PlacedTask(instance_id=inst, group=svc.group, task_id=f"new:{svc.name}:{len(self.placed)}",
                                             cpu=request.cpu, memory=request.memory, ports=request.ports)
                    )
                why = result.reason if result.unplaced else None
            down = max(everything - min_healthy - pending, 0)
            unavailable_old = [o for o in old if not o.available]
            unavailable = unavailable_old[:down]
            down -= len(unavailable)
            available_old = [o for o in old if o.available]
            k = min(len(available_old), down, max(ready + len(available_old) - min_healthy, 0))
            stops = unavailable + available_old[:k]
            if not starts and not stops and not pending and not stopping:
                if need and unavailable_old:
                    stops = unavailable_old[:1]  # no replacement can start: unhealthy ones go one by one (ECS)
                elif available_old and room == 0 and why is None:
                    stops = available_old[:1]  # no headroom either way (100 / 100): one old task goes first
            actions = [self._stop_old(svc, o) for o in stops]
            advances: tuple[P.StartContainers, ...] = ()
            if first:
                actions = list(s.cleanup) + actions
                stopped = {a.task_id for a in actions}
                advances = tuple(a for a in s.advances if a.task_id not in stopped)
            if starts or actions or advances:
                steps.append(P.Step(starts=tuple(starts), stops=tuple(actions), advances=advances, after=after))
            elif not first:
                unplaced = need
                break
            # What the next pass waits for, then that pass as if it had happened.
            became = pending + len(starts)
            stopped_now = len(stops) + stopping + (len(s.cleanup) if first else 0)
            left = len(old) - len(stops) + old_fixed
            waits = []
            if became - settling:
                waits.append(f"{became - settling} new task(s) to become healthy")
            if settling and left:  # only old tasks still to stop wait for them
                waits.append(f"{settling} new task(s) without a health check to run {UNCHECKED_SETTLE_SECONDS:.0f}s")
            if stopped_now:
                waits.append(f"{stopped_now} task(s) to stop")
            if first:
                waiting = tuple(waits)
            if not waits:
                unplaced = need - len(starts)
                break
            unplaced = 0
            after = " and ".join(waits)
            ready += became
            pending = 0
            settling = 0
            stopping = 0
            gone += [o.task_id for o in stops]
            old = [o for o in old if o not in stops]
            old += [dataclasses.replace(o, observed=True, available=True) for o in s.old if not o.observed] if old_fixed else []
            old_fixed = 0
        return tuple(steps), waiting, unplaced, (why or "no container instance had room") if unplaced else None

    def _start(
        self, svc: spec.Service, td: spec.TaskDefinition, instance: str, old: list[_Old], i: int, desired: int
    ) -> P.StartTask:
        if i < len(old):
            reason = f"replaces {old[i].task_id[:12]}: {old[i].reason}"
        else:
            reason = f"desired count {desired}"
        return P.StartTask(
            cluster=self.cluster.name,
            service=svc.name,
            instance=instance,
            task_definition=td,
            reason=reason,
            launch_type=svc.launch_type,
            group=svc.group,
        )

    def _daemon(self, svc: spec.Service, td: spec.TaskDefinition) -> P.ServicePlan:
        """One task per eligible instance. Replacements go instance by instance: a pass stops old tasks on
        as many instances as keep ceil(targets * minimumHealthyPercent / 100) available (at least one at a
        time; ECS's DAEMON default of 0 allows all at once); an instance left without a task gets its new
        one, and the next instances go once those are healthy."""
        request = self.request(svc, td)
        tasks = self.state.tasks_of(svc.name)
        live = [t for t in tasks if self.statuses[t.id].last_status == obs.RUNNING]
        view = self.view(svc.launch_type, [t.id for t in tasks])
        eligible = placement.daemon_targets(view, request)
        targets = set(eligible)
        s = _Sorted()
        here: dict[str, list[tuple[obs.Task, bool, str | None]]] = {}  # instance -> (task, available, outdated)
        busy: set[str] = set()  # instances with a task being stopped or a start in flight
        for task in tasks:
            if task.id in self.inflight.stopping or task.id in self.starting:
                busy.add(task.instance)
                continue
            status = self.statuses[task.id]
            if status.last_status == obs.STOPPED:
                s.cleanup.append(self._stop(task, status.reason or "task stopped", status.stop_code))
            elif task.instance not in targets:
                s.cleanup.append(self._stop(task, f"instance {task.instance} no longer eligible for the daemon"))
            elif status.last_status == obs.PENDING and not self._pending(task, s):
                pass
            elif status.last_status == obs.RUNNING and self._failed(task, svc.health_check_grace_period):
                s.cleanup.append(self._stop(task, "Task failed container health checks"))
            else:
                available = status.last_status == obs.RUNNING and status.health == obs.HEALTHY and self._settled(task)
                here.setdefault(task.instance, []).append((task, available, self._why_outdated(task, td)))
        busy |= {p.instance for p in self.launching if p.service == svc.name}
        fresh: list[str] = []
        swaps: list[str] = []
        unavailable = 0
        settling = 0
        lines: list[str] = []
        for inst in sorted(targets):
            entries = here.get(inst, [])
            current = [e for e in entries if e[2] is None]
            old = [e for e in entries if e[2] is not None]
            if len(current) > 1:
                s.cleanup += [self._stop(t, "more than one daemon task on the instance") for t, _, _ in current[1:]]
            if current:
                s.cleanup += [self._stop(t, why or "replaced") for t, _, why in old]  # replaced already
                if not current[0][1]:
                    unavailable += 1
                    task = current[0][0]
                    if self.statuses[task.id].health == obs.HEALTHY:
                        settling += 1  # healthy, not yet past ECS's 40 s without a health check
                continue
            if inst in busy:
                unavailable += 1
                continue
            if old:
                swaps.append(inst)
                for t, _, _ in old:
                    if t.task_hash != td.task_hash:
                        lines.extend(d for d in diff.spec_diff(t.spec, td.spec) if d not in lines)
            else:
                fresh.append(inst)

        def start(inst: str, reason: str) -> P.StartTask:
            return P.StartTask(self.cluster.name, svc.name, inst, td, reason, svc.launch_type, svc.group)

        min_healthy = math.ceil(len(targets) * svc.minimum_healthy_percent / 100)
        budget = max(len(targets) - min_healthy, 1)
        steps: list[P.Step] = []
        now_swaps = swaps[: max(budget - unavailable, 0)]
        first_stops = list(s.cleanup) + [self._stop(t, why or "replaced") for inst in now_swaps for t, _, why in here[inst]]
        if first_stops or fresh or s.advances:
            steps.append(P.Step(starts=tuple(start(i, "daemon task for the instance") for i in fresh), stops=tuple(first_stops),
                                advances=tuple(s.advances)))
        waits = []
        waited = unavailable + len(fresh) - (0 if swaps else settling)  # settling tasks hold up only more swaps
        if waited:
            waits.append(f"{waited} daemon task(s) to become healthy or stop")
        if now_swaps:
            waits.append(f"{len(now_swaps)} old daemon task(s) to stop")
        rest = swaps[len(now_swaps):]
        after = " and ".join(waits)
        if now_swaps:
            steps.append(P.Step(starts=tuple(start(i, "replaces the instance's daemon task") for i in now_swaps),
                                after=f"{len(now_swaps)} old daemon task(s) to stop"))
            after = f"{len(now_swaps)} new daemon task(s) to become healthy"
        for n in range(0, len(rest), budget):
            wave = rest[n : n + budget]
            steps.append(P.Step(stops=tuple(self._stop(t, why or "replaced") for inst in wave for t, _, why in here[inst]), after=after))
            steps.append(P.Step(starts=tuple(start(i, "replaces the instance's daemon task") for i in wave),
                                after=f"{len(wave)} old daemon task(s) to stop"))
            after = f"{len(wave)} new daemon task(s) to become healthy"
        warnings = list(td.warnings)
        warnings += [f"instance {i} gets no daemon task: {why}" for i, why in sorted(eligible.left_out.items())
                     if self.pool.get(i) and self.pool[i].status == spec.ACTIVE and self.state.reachable(i)]
        return _summarize(
            P.ServicePlan(
                cluster=self.cluster.name,
                service=svc.name,
                family=td.family,
                desired=len(targets),
                running=len(live),
                steps=tuple(steps),
                diff=tuple(lines),
                warnings=tuple(warnings),
                waiting=tuple(waits),
            ),
            replaced={c.task_id for c in s.cleanup} | {t.id for inst in swaps for t, _, _ in here[inst]},
        )

    def prune(self, name: str) -> P.ServicePlan:
        tasks = [t for t in self.state.tasks_of(name) if t.id not in self.inflight.stopping]
        stops = tuple(self._stop(t, "service is no longer declared (--prune)") for t in tasks)
        family = tasks[0].family if tasks else "?"
        return P.ServicePlan(
            cluster=self.cluster.name,
            service=name,
            family=family,
            desired=0,
            running=sum(1 for t in tasks if self.statuses[t.id].last_status == obs.RUNNING),
            steps=(P.Step(stops=stops),) if stops else (),
            remove=len(stops),
            pruned=True,
        )

    def one_off(self) -> list[P.StartContainers | P.StopTask]:
        """One-off tasks (run-task) whose next containers can start, or that can never start (removed)."""
        out: _Sorted = _Sorted()
        for task in self.state.tasks:
            if task.service or task.id in self.inflight.stopping or task.id in self.starting:
                continue
            if self.statuses[task.id].last_status != obs.PENDING:
                continue
            self._pending(task, out)
        return [*out.advances, *out.cleanup]


def _summarize(sp: P.ServicePlan, replaced: set[str]) -> P.ServicePlan:
    """Sets the plan's counts from its steps (this pass and the projected ones): a start paired with a stop
    of a failed or outdated task is a replacement; the other starts are additions and the other stops
    removals; `advance` counts the pending tasks whose next containers start now."""
    starts = len(sp.starts)
    old = sum(1 for s in sp.stops if s.task_id in replaced)
    replace = min(starts, old)
    return dataclasses.replace(sp, add=starts - replace, replace=replace, remove=len(sp.stops) - replace,
                               advance=len(sp.now.advances))


def run_task(
    desired: spec.DesiredState,
    observed: Mapping[str, obs.ClusterState],
    cluster: str,
    td: spec.TaskDefinition,
    count: int,
    launch_type: str,
    seed: int = 0,
) -> tuple[list[P.StartTask], int, str | None]:
    """Placements for `count` one-off tasks of `td` (ECS RunTask): starts, how many fit nowhere, and why."""
    state = observed.get(cluster) or obs.ClusterState(cluster, {}, ())
    cp = _ClusterPlanner(desired.clusters[cluster], state, 0.0)
    group = f"family:{td.family}"
    res = resources.reservation(td.spec)
    constraints = tuple(
        placement.Constraint("memberOf", c.get("expression"))
        for c in td.raw.get("placementConstraints") or []
        if c.get("type") == "memberOf"
    )
    request = placement.TaskRequest(group=group, cpu=res["cpu"], memory=res["memory"], ports=res["ports"], constraints=constraints)
    result = placement.place(cp.view(launch_type), request, count, seed)
    starts = [
        P.StartTask(cluster, None, inst, td, "run-task", launch_type, group) for inst in result.placements
    ]
    return starts, result.unplaced, result.reason


def capacity(desired: spec.DesiredState, observed: Mapping[str, obs.ClusterState], service: str, upto: int) -> int:
    """How many tasks of `service` the cluster can run, counting those running, up to `upto`.

    The auto scaler clamps to this, and says so, rather than asking for tasks that fit nowhere.
    """
    svc = desired.services[service]
    td = desired.task_definition_of(svc)
    assert td is not None
    state = observed.get(svc.cluster) or obs.ClusterState(svc.cluster, {}, ())
    cp = _ClusterPlanner(desired.clusters[svc.cluster], state, 0.0)
    running = sum(1 for t in cp.live if t.service == service)
    extra = max(upto - running, 0)
    if not extra:
        return running
    result = placement.place(cp.view(svc.launch_type), cp.request(svc, td), extra, _seed(service))
    return running + len(result.placements)
