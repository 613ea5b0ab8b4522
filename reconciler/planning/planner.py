"""`plan(desired, observed, now) -> Plan`: the single, pure entry point that decides what changes.

Owns, per service: sorting observed tasks into keep / replace (spec drift, failed, unhealthy, on a
draining instance) / remove (scale-in, surplus, pruned), laying replacements out in waves that respect
`maximumPercent` and `minimumHealthyPercent`, and asking `placement` where new tasks go. Every action
carries its reason. It must not do I/O, read the clock (`now` is given) or use unseeded randomness.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import diff, placement, resources


@dataclass(frozen=True)
class Options:
    prune: bool = False
    targets: frozenset[str] | None = None  # service names; None = all
    desired_counts: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # autoscaler overrides
    unreachable_grace: float = 60.0  # seconds a dead engine's last-known tasks still count as running
    # Tasks another writer is starting right now, by cluster: they hold resources the observation may not
    # show yet (the daemon plans one service while another's starts are still in flight).
    reservations: Mapping[str, tuple[placement.PlacedTask, ...]] = field(default_factory=dict)


def plan(
    desired: spec.DesiredState,
    observed: Mapping[str, obs.ClusterState],
    now: float,
    options: Options = Options(),
) -> P.Plan:
    services: list[P.ServicePlan] = []
    unreachable: dict[str, str] = {}
    orphans: list[str] = []
    for cluster_name in sorted(desired.clusters):
        cluster = desired.clusters[cluster_name]
        state = observed.get(cluster_name) or obs.ClusterState(cluster_name, {}, ())
        for inst in state.instances.values():
            if not inst.reachable:
                unreachable[inst.endpoint] = inst.error or "unreachable"
        planner = _ClusterPlanner(cluster, state, now, options.unreachable_grace, options.reservations.get(cluster_name, ()))
        for svc in desired.services_of(cluster_name):
            if options.targets is not None and svc.name not in options.targets:
                continue
            td = desired.task_definitions.get(svc.task_definition)
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
    return P.Plan(services=tuple(services), unreachable=unreachable, orphans=tuple(orphans))


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


class _ClusterPlanner:
    """Plans the services of one cluster against one shared view of its instances' capacity."""

    def __init__(
        self,
        cluster: spec.Cluster,
        state: obs.ClusterState,
        now: float,
        grace: float = 0.0,
        reservations: Iterable[placement.PlacedTask] = (),
    ):
        self.cluster = cluster
        self.state = state
        self.now = now
        self.grace = grace
        self.statuses = {t.id: t.status() for t in state.tasks}
        self.live = [t for t in state.tasks if self.statuses[t.id].last_status == obs.RUNNING]
        self.pool = {i.name: i for i in cluster.all_instances()}
        self.placed: list[placement.PlacedTask] = [
            placement.PlacedTask(
                instance_id=t.instance,
                group=t.group,
                task_id=t.id,
                **resources.reservation(t.spec),
            )
            for t in self.live
            if t.instance in self.pool
        ]
        self.placed += [r for r in reservations if r.instance_id in self.pool]

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

    # -- services --------------------------------------------------------------------------------

    def _why_replace(self, task: obs.Task, td: spec.TaskDefinition, grace: int) -> str | None:
        status = self.statuses[task.id]
        inst = self.pool.get(task.instance)
        if inst is None:
            return f"instance {task.instance} is no longer in the cluster"
        if inst.status == spec.DRAINING:
            return f"instance {task.instance} is DRAINING"
        if status.health == obs.UNHEALTHY and self.now - task.created >= grace:
            return "task failed container health checks"
        if task.task_hash != td.task_hash:
            return f"task definition {td.family} changed"
        return None

    def service(self, svc: spec.Service, td: spec.TaskDefinition, desired: int, source: str) -> P.ServicePlan:
        tasks = self.state.tasks_of(svc.name)
        if svc.scheduling_strategy == spec.DAEMON:
            return self._daemon(svc, td, tasks)
        dead = [t for t in tasks if self.statuses[t.id].last_status != obs.RUNNING]
        live = [t for t in tasks if self.statuses[t.id].last_status == obs.RUNNING]
        reasons = {t.id: self._why_replace(t, td, svc.health_check_grace_period) for t in live}
        current = [t for t in live if reasons[t.id] is None]
        outdated = [t for t in live if reasons[t.id] is not None]
        unknown = self._unknown(svc, td)

        # Scale-in picks among up-to-date tasks only; tasks on an unreachable engine are assumed alive for
        # the grace period (so nothing replaces them) but never cause a reachable task to be stopped.
        scale_in: list[obs.Task] = []
        if len(current) > desired:
            view = self.view(svc.launch_type, [t.id for t in outdated])
            chosen = set(placement.choose_to_stop(view, svc.group, len(current) - desired, svc.strategies))
            scale_in = [t for t in current if t.id in chosen]
            current = [t for t in current if t.id not in chosen]
        need = max(desired - len(current) - len(unknown), 0)

        first = [self._stop(t, self.statuses[t.id].reason or "task stopped", self.statuses[t.id].stop_code) for t in dead]
        first += [self._stop(t, f"scale-in to desired count {desired}") for t in scale_in]
        surplus = outdated[need:]  # outdated tasks beyond what the new ones replace go without waiting
        first += [self._stop(t, reasons[t.id] or "surplus") for t in surplus]
        outdated = outdated[:need]
        steps, unplaced, why = self._rolling(svc, td, need, outdated, reasons, first, len(current) + len(unknown))

        warnings = list(td.warnings)
        if unknown:
            where = ", ".join(sorted({u.instance for u in unknown}))
            warnings.append(
                f"{len(unknown)} task(s) on unreachable instance(s) {where} counted as running "
                f"for up to {self.grace:.0f}s after the engine stopped answering"
            )
        lines: list[str] = []
        for old_spec in {t.task_hash: t.spec for t in live if t.task_hash != td.task_hash}.values():
            lines.extend(d for d in diff.spec_diff(old_spec, td.spec) if d not in lines)
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
            ),
            replaced={t.id for t in dead + outdated},
        )

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

    def _rolling(
        self,
        svc: spec.Service,
        td: spec.TaskDefinition,
        need: int,
        outdated: list[obs.Task],
        reasons: Mapping[str, str | None],
        first_stops: list[P.StopTask],
        healthy_now: int,
    ) -> tuple[tuple[P.Step, ...], int, str | None]:
        """Waves of starts and stops within the deployment bounds, placing each wave's starts.

        Bounds follow ECS: running + pending <= floor(desired * maximumPercent / 100); healthy
        >= ceil(desired * minimumHealthyPercent / 100). A wave starts what the upper bound allows and
        fits, then stops old tasks as far as the lower bound allows once the new ones are healthy; the
        next wave places again with what those stops freed (a static host port, memory). Only when
        maximumPercent leaves no room at all (100 / 100) is one old task stopped first. The waves end
        when all is replaced, or when a wave could neither start nor stop anything: what is left to
        start is reported as unplaced and the remaining old tasks keep running.
        """
        desired = healthy_now + need
        max_total = max(desired * svc.maximum_percent // 100, 1)
        min_healthy = math.ceil(desired * svc.minimum_healthy_percent / 100)
        request = self.request(svc, td)
        old = list(outdated)
        stopped_ids = [s.task_id for s in first_stops]
        running = healthy_now + len(old)
        remaining = need
        steps: list[P.Step] = []
        pending_stops = list(first_stops)
        why: str | None = None
        while remaining > 0 or old:
            room = max(max_total - running, 0)
            starts: list[P.StartTask] = []
            if min(remaining, room):
                result = placement.place(self.view(svc.launch_type, stopped_ids), request, min(remaining, room), _seed(svc.name))
                for inst in result.placements:
                    starts.append(self._start(svc, td, inst, old, need - remaining + len(starts), desired))
                    self.placed.append(
                        placement.PlacedTask(instance_id=inst, group=svc.group, task_id=f"new:{svc.name}:{len(self.placed)}",
                                             cpu=request.cpu, memory=request.memory, ports=request.ports)
                    )
                why = result.reason if result.unplaced else None
            k = min(len(old), max(running + len(starts) - min_healthy, 0))
            if not starts and not k and old and room == 0 and why is None:
                k = 1  # no headroom either way (100 / 100): stop one old task so the next wave can start
            if not starts and not k and not pending_stops:
                break
            stops = pending_stops + [self._stop(t, reasons.get(t.id) or "replaced") for t in old[:k]]
            pending_stops = []
            stopped_ids.extend(t.id for t in old[:k])
            wait = bool(starts) and any(not s.already_stopped for s in stops)
            steps.append(P.Step(starts=tuple(starts), stops=tuple(stops), wait=wait))
            running += len(starts) - k
            remaining -= len(starts)
            old = old[k:]
        if pending_stops:  # nothing to start or replace: the failed, scaled-in and surplus tasks still go
            steps.append(P.Step(stops=tuple(pending_stops)))
        return tuple(steps), remaining, (why or "no container instance had room") if remaining else None

    def _start(
        self, svc: spec.Service, td: spec.TaskDefinition, instance: str, old: list[obs.Task], i: int, desired: int
    ) -> P.StartTask:
        if i < len(old):
            reason = f"replaces {old[i].id[:12]}: {self._reason_of(old[i], td)}"
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

    def _reason_of(self, task: obs.Task, td: spec.TaskDefinition) -> str:
        return self._why_replace(task, td, 0) or "replaced"

    def _daemon(self, svc: spec.Service, td: spec.TaskDefinition, tasks: list[obs.Task]) -> P.ServicePlan:
        """One task per eligible instance. Replacements go instance by instance in waves that keep
        ceil(targets * minimumHealthyPercent / 100) running (ECS's DAEMON default of 0 allows one wave):
        a wave stops its old tasks, then starts their replacements and waits for them to be healthy."""
        request = self.request(svc, td)
        live = [t for t in tasks if self.statuses[t.id].last_status == obs.RUNNING]
        dead = [t for t in tasks if self.statuses[t.id].last_status != obs.RUNNING]
        view = self.view(svc.launch_type, [t.id for t in tasks])
        eligible = placement.daemon_targets(view, request)
        targets = set(eligible)
        first = [self._stop(t, self.statuses[t.id].reason or "task stopped", self.statuses[t.id].stop_code) for t in dead]
        first += [self._stop(t, f"instance {t.instance} no longer eligible for the daemon") for t in live if t.instance not in targets]
        fresh: list[str] = []  # instances with no task at all: start at once
        swaps: list[tuple[str, list[obs.Task]]] = []  # instances whose tasks must be replaced
        lines: list[str] = []
        for inst in sorted(targets):
            here = [t for t in live if t.instance == inst]
            keep = [t for t in here if self._why_replace(t, td, svc.health_check_grace_period) is None]
            first += [self._stop(t, "more than one daemon task on the instance") for t in keep[1:]]
            if keep:
                continue
            if here:
                swaps.append((inst, here))
                for t in here:
                    if t.task_hash != td.task_hash:
                        lines.extend(d for d in diff.spec_diff(t.spec, td.spec) if d not in lines)
            else:
                fresh.append(inst)

        def start(inst: str, reason: str) -> P.StartTask:
            return P.StartTask(self.cluster.name, svc.name, inst, td, reason, svc.launch_type, svc.group)

        steps: list[P.Step] = []
        if first or fresh:
            steps.append(P.Step(starts=tuple(start(i, "daemon task for the instance") for i in fresh), stops=tuple(first)))
        min_healthy = math.ceil(len(targets) * svc.minimum_healthy_percent / 100)
        running = sum(1 for i in targets if any(t.instance == i for t in live))  # instances with a task now
        batch = max(running - min_healthy, 1)
        for n in range(0, len(swaps), batch):
            wave = swaps[n : n + batch]
            stops = tuple(self._stop(t, self._why_replace(t, td, svc.health_check_grace_period) or "replaced") for _, here in wave for t in here)
            steps.append(P.Step(stops=stops))
            steps.append(P.Step(starts=tuple(start(inst, "replaces the instance's daemon task") for inst, _ in wave), wait=True))
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
            ),
            replaced={t.id for t in dead} | {t.id for _, here in swaps for t in here},
        )

    def prune(self, name: str) -> P.ServicePlan:
        tasks = self.state.tasks_of(name)
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


def _summarize(sp: P.ServicePlan, replaced: set[str]) -> P.ServicePlan:
    """Sets the plan's counts from its steps: a start paired with a stop of a failed or outdated task is
    a replacement; the other starts are additions and the other stops removals."""
    starts = len(sp.starts)
    old = sum(1 for s in sp.stops if s.task_id in replaced)
    replace = min(starts, old)
    return dataclasses.replace(sp, add=starts - replace, replace=replace, remove=len(sp.stops) - replace)


def reservations(plan_: P.ServicePlan) -> tuple[placement.PlacedTask, ...]:
    """What the starts of a service plan will hold once carried out (see Options.reservations)."""
    out = []
    for i, a in enumerate(plan_.starts):
        res = resources.reservation(a.task_definition.spec)
        out.append(placement.PlacedTask(instance_id=a.instance, group=a.group, task_id=f"inflight:{plan_.service}:{i}", **res))
    return tuple(out)


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
    td = desired.task_definitions[svc.task_definition]
    state = observed.get(svc.cluster) or obs.ClusterState(svc.cluster, {}, ())
    cp = _ClusterPlanner(desired.clusters[svc.cluster], state, 0.0)
    running = sum(1 for t in cp.live if t.service == service)
    extra = max(upto - running, 0)
    if not extra:
        return running
    result = placement.place(cp.view(svc.launch_type), cp.request(svc, td), extra, _seed(service))
    return running + len(result.placements)
