"""Stopping one task on one engine and removing it, with its history.

Owns the stop order (dependents before what they depend on, each container with its `stopTimeout`; all
at once when nothing depends on anything or the task is already dead), recording the stopped task in
the state directory's history (describe-tasks shape, with ECS's stop code and reason), and removing its
containers, per-task network and volumes. A stop that waits out a `stopTimeout` costs the engine nothing,
so the runner bounds stops separately from creates. It must not decide which tasks stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from reconciler import labels as L
from reconciler import observe, state, views
from reconciler.actions.launch import instance
from reconciler.actions.result import ActionResult, failure
from reconciler.clock import SYSTEM, Clock
from reconciler.engine import api, translate
from reconciler.model import observed as obs
from reconciler.model import plan as P
from reconciler.model import spec
from reconciler.planning import dependencies


class Stopper:
    def __init__(
        self,
        engines: observe.Engines,
        slot: Callable[[str], threading.Semaphore],
        state_dir: state.StateDir | None = None,
        clock: Clock = SYSTEM,
    ):
        self.engines = engines
        self.slot = slot
        self.state_dir = state_dir
        self.clock = clock

    def stop(self, desired: spec.DesiredState, action: P.StopTask) -> ActionResult:
        t0 = self.clock.monotonic()
        try:
            _, inst, engine = instance(desired, self.engines, action.cluster, action.instance)
            with self.slot(inst.endpoint):
                self._stop(engine, action)
        except Exception as e:  # noqa: BLE001 - one task's failure is reported; the next pass sees what is left
            return ActionResult("stop", action.cluster, action.service, action.instance, action.task_id, False, failure(e),
                                self.clock.monotonic() - t0)
        return ActionResult("stop", action.cluster, action.service, action.instance, action.task_id, True, action.reason,
                            self.clock.monotonic() - t0)

    def _stop(self, engine: api.Engine, action: P.StopTask) -> None:
        raw = engine.list_containers(L.selector(action.cluster, task=action.task_id))
        tasks = obs.group_tasks(action.cluster, action.instance, [obs.container_from_list(r) for r in raw])
        if not tasks:
            return
        task = tasks[0]
        app = sorted(task.app_containers, key=lambda c: c.container)
        order = [c["name"] for c in dependencies.creation_order([dict(c.spec) for c in app if c.spec])]
        by_name = {c.container: c for c in app}
        running = [by_name[n] for n in reversed(order) if n in by_name and by_name[n].running]
        ordered = any(by_name[n].spec.get("dependsOn") for n in by_name) and task.status().last_status != obs.STOPPED

        def stop(c: obs.Container) -> None:
            engine.stop_container(c.id, int(c.spec.get("stopTimeout", translate.DEFAULT_STOP_TIMEOUT)))

        if ordered:
            for c in running:
                stop(c)
        else:
            _each(stop, running)
        final = []
        for c in task.containers:
            try:
                final.append(obs.container_from_inspect(engine.inspect_container(c.id)))
            except api.NotFound:
                final.append(c)
        self._record(action, task, final)
        _each(lambda c: engine.remove_container(c.id), [c for c in task.containers if c.role != L.ROLE_PAUSE])
        for c in task.containers:
            if c.role == L.ROLE_PAUSE:
                engine.remove_container(c.id)
        task_spec = task.spec
        owner = task.service or task.family
        if task_spec.get("networkMode", "bridge") == "bridge" and len(task.expected_containers) > 1:
            engine.remove_network(translate.network_name(owner, task.id))
        for v in task_spec.get("volumes", []):
            if not (v.get("host") or (v.get("dockerVolumeConfiguration") or {}).get("scope") == "shared"):
                engine.remove_volume(translate.volume_name(owner, task.id, v["name"]))

    def _record(self, action: P.StopTask, task: obs.Task, containers: list[obs.Container]) -> None:
        if self.state_dir is None:
            return
        stopped = obs.Task(**{**task.__dict__, "containers": tuple(containers)})
        status = stopped.status()
        reason = action.reason
        if action.already_stopped and status.reason:
            reason = status.reason
        entry = views.describe_task(stopped, last_status=obs.STOPPED)
        entry.update({"desiredStatus": "STOPPED", "stopCode": action.stop_code, "stoppedReason": reason,
                      "stoppedAt": datetime.fromtimestamp(self.clock.now(), UTC).isoformat(timespec="seconds")})
        try:
            self.state_dir.record_stopped(action.cluster, entry)
        except OSError:
            pass  # history is a convenience; never fail a stop over it


def _each(fn: Callable[[obs.Container], None], containers: list[obs.Container]) -> None:
    if len(containers) <= 1:
        for c in containers:
            fn(c)
        return
    with ThreadPoolExecutor(max_workers=min(len(containers), 10)) as pool:
        list(pool.map(fn, containers))
