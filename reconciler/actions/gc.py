"""Garbage of interrupted runs: per-task networks and volumes whose task has no containers left.

Owns the sweep that `apply` runs before it acts and the daemon runs when it takes a cluster's lock. It
must run only while no start is in flight in the cluster (a start makes its network before its
containers), and must not touch anything without the reconciler's labels.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler import labels as L
from reconciler import observe
from reconciler.engine import api
from reconciler.model import observed as obs
from reconciler.model import spec


def collect(desired: spec.DesiredState, engines: observe.Engines, observed: Mapping[str, obs.ClusterState]) -> None:
    for name, cstate in observed.items():
        cluster = desired.clusters.get(name)
        if cluster is None:
            continue
        live = {t.id for t in cstate.tasks}
        for inst in cluster.all_instances():
            if not cstate.reachable(inst.name):
                continue
            try:
                engine = engines.get(inst)
                for net in engine.list_networks(L.selector(name)):
                    if (net.get("Labels") or {}).get(L.TASK) not in live:
                        engine.remove_network(net["Name"])
                for vol in engine.list_volumes(L.selector(name)):
                    tid = (vol.get("Labels") or {}).get(L.TASK)
                    if tid and tid not in live:
                        engine.remove_volume(vol["Name"])
            except api.EngineError:
                continue
