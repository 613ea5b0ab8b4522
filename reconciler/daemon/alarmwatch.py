"""The alarms deployments watch, inside a running command: the monitor wired to the desired state.

Owns building one `alarms.monitor.AlarmMonitor` for a process (the daemon, or an `apply` that waits),
fed with the alarms of each desired state it adopts, sampling customized metrics over HTTP and
predefined service utilisation through the given callable, restoring and saving the states in the state
directory (`alarms.store`, which `get alarms` reads), reporting them to the metrics, and telling the caller
which services to look at again when an alarm they watch changes state. It must not decide anything about
deployments (`planning.deployments` reads the states) nor evaluate alarms itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.alarms import evaluate as E
from reconciler.alarms import monitor as AM
from reconciler.alarms import store as AS
from reconciler.clock import Clock
from reconciler.model import spec


class AlarmWatch:
    def __init__(
        self,
        state_dir: str,
        clock: Clock,
        utilisation: Callable[[str, str], float | None] | None = None,
        metrics: Any = None,
        on_service: Callable[[spec.Service], None] | None = None,
    ):
        self.metrics = metrics
        self.on_service = on_service
        self.desired: spec.DesiredState | None = None
        store = AS.AlarmStore(state_dir)
        self.monitor = AM.AlarmMonitor({}, AM.make_sampler(utilisation), clock, on_change=self._changed,
                                       states=store.load(), store=store)

    def adopt(self, previous: spec.DesiredState | None, desired: spec.DesiredState) -> None:
        """A controller listener: monitor exactly the alarms `desired` declares."""
        self.desired = desired
        for name in self.monitor.update(desired.alarms):
            if self.metrics is not None:
                self.metrics.forget_alarm(name)

    def states(self) -> Mapping[str, str]:
        """Alarm name -> OK, ALARM or INSUFFICIENT_DATA."""
        return {name: s.state for name, s in self.monitor.states().items()}

    def _changed(self, before: E.AlarmState | None, after: E.AlarmState) -> None:
        if self.metrics is not None:
            self.metrics.set_alarm_state(after.name, after.state)
        desired = self.desired
        if self.on_service is None or desired is None or (before is not None and before.state == after.state):
            return
        for svc in desired.services.values():
            if svc.alarms.enable and after.name in svc.alarms.names:
                self.on_service(svc)

    def start(self) -> None:
        self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()
