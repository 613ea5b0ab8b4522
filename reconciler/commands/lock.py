"""`unlock`: shows who holds a cluster's writer lock and breaks it.

Owns the command-level flow: read the lock on every engine of the cluster, print its holder, refuse (unless
`--force`) while that holder still runs on this host, then remove the lock objects. What a lock is and
whose it is are `clusterlock`'s; this module must not take locks nor touch any other container.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler import clusterlock, observe
from reconciler.commands import common
from reconciler.engine import api
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.model import spec


def unlock(env: Environment, cluster: str, paths: Sequence[str], force: bool) -> ExitStatus:
    desired = common.load_desired(env, paths)
    if cluster not in desired.clusters:
        known = ", ".join(sorted(desired.clusters)) or "none"
        raise UserError(f"no cluster named {cluster} in the manifests (clusters: {known})")
    engines = observe.Engines(env.engine_factory)
    try:
        return _unlock(env, cluster, clusterlock.members(desired.clusters[cluster]), engines, force)
    finally:
        engines.close()


def _unlock(
    env: Environment, cluster: str, instances: Sequence[spec.Instance], engines: observe.Engines, force: bool
) -> ExitStatus:
    found: list[tuple[api.Engine, clusterlock.Slot, str]] = []
    unreachable = 0
    for inst in instances:
        try:
            engine = engines.get(inst)
            slot = clusterlock.read(engine, cluster)
        except api.EngineError as e:
            env.err(f"error: engine {e.endpoint} is unreachable: {e.message}; its lock (if any) is left")
            unreachable += 1
            continue
        if slot.container_id is None:
            env.out(f"{inst.endpoint}: not locked")
        elif slot.holder is None:
            env.err(f"error: {inst.endpoint}: a container named {clusterlock.container_name(cluster)} is no reconciler "
                    "lock; left alone (remove or rename it yourself)")
            unreachable += 1
        else:
            verdict = clusterlock.liveness(slot.holder)
            env.out(f"{inst.endpoint}: locked by {slot.holder.describe()}, {_state(verdict)}")
            found.append((engine, slot, verdict))
    alive = [slot.holder for _, slot, verdict in found if verdict == clusterlock.ALIVE and slot.holder]
    if alive and not force:
        raise UserError(
            f"cluster {cluster} is locked by {alive[0].describe()}, which still runs on this host; "
            "stop it first (its lock goes with it), or pass --force to break the lock anyway"
        )
    removed = 0
    for engine, slot, _ in found:
        try:
            removed += int(clusterlock.remove(engine, slot))
        except api.EngineError as e:
            env.err(f"error: engine {e.endpoint}: could not remove the lock: {e.message}")
            unreachable += 1
    if found:
        env.out(f"Removed the writer lock of cluster {cluster} on {removed} engine(s).")
    elif not unreachable:
        env.out(f"Cluster {cluster} is not locked.")
    return ExitStatus.ERROR if unreachable else ExitStatus.OK


def _state(verdict: str) -> str:
    if verdict == clusterlock.ALIVE:
        return "still running on this host"
    if verdict == clusterlock.DEAD:
        return "no longer running (stale)"
    return "on another host (cannot be checked from here)"
