"""`get task-definitions`, `describe task-definition`, `get deployments`, `events`: views of cluster histories.

Owns rendering the revisions, deployments and service events kept in each cluster's history (see
`ledger`, `model.history`) in ECS's shapes (describe-task-definition, describe-services' `deployments[]` and
`events[]`) as JSON, and as tables by default; `service_history` for `describe service`. It must not
change anything: histories are read, never saved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from reconciler import histories
from reconciler.commands import common
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.model import history as H
from reconciler.model import spec
from reconciler.planning import deployments

FOLLOW_POLL = 2.0  # seconds between reads of the histories with `events --follow`


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)] if rows else [len(h) for h in headers]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*[str(x) for x in r]).rstrip() for r in [headers, *rows])


def load(session: common.Session, clusters: Sequence[str] | None = None) -> dict[str, H.History]:
    """The histories of the session's clusters (or of `clusters`), read from their engines."""
    keeper = histories.Keeper(session.engines, session.env.state().path)
    out = {}
    for name in sorted(clusters if clusters is not None else session.desired.clusters):
        try:
            out[name] = keeper.get(session.desired.clusters[name])
        except histories.HistoryUnavailable as e:
            raise UserError(str(e)) from None
    return out


def task_definition_view(rev: H.Revision, region: str | None) -> dict[str, Any]:
    """describe-task-definition's `taskDefinition`."""
    return {
        **{k: v for k, v in rev.spec.items()},
        "family": rev.family,
        "revision": rev.number,
        "taskDefinitionArn": H.arn("task-definition", rev.ref, region),
        "status": rev.status,
        "registeredAt": H.timestamp(rev.registered_at),
    }


def _revisions(session: common.Session, hs: dict[str, H.History]) -> list[tuple[str, H.Revision]]:
    out = []
    for name, h in hs.items():
        for revs in h.revisions.values():
            out += [(name, r) for r in revs]
    return sorted(out, key=lambda cr: (cr[1].family, cr[1].number, cr[0]))


def _users(session: common.Session, hs: dict[str, H.History], cluster: str, rev: H.Revision) -> list[str]:
    """Services of `cluster` whose PRIMARY deployment runs `rev`."""
    out = []
    for name, sh in hs[cluster].services.items():
        d = sh.primary
        if d is not None and d.family == rev.family and d.revision == rev.number:
            out.append(name)
    return sorted(out)


def get_task_definitions(env: Environment, paths: Sequence[str], family: str | None, as_json: bool) -> ExitStatus:
    session = common.open_session(env, paths)
    try:
        hs = load(session)
        revs = [(c, r) for c, r in _revisions(session, hs) if family in (None, r.family)]
        if family is not None and not revs:
            raise UserError(f"no registered revisions of {family} (apply registers a task definition's revisions)")
        if as_json:
            env.out(json.dumps({"taskDefinitions": [
                {**task_definition_view(r, session.desired.clusters[c].region), "cluster": c} for c, r in revs]},
                indent=2, sort_keys=True))
        else:
            rows = [[r.ref, c, r.status, H.timestamp(r.registered_at), r.task_hash, ",".join(_users(session, hs, c, r)) or "-"]
                    for c, r in revs]
            env.out(_table(rows, ["TASK DEFINITION", "CLUSTER", "STATUS", "REGISTERED", "HASH", "RUNNING IN"]))
    finally:
        session.close()
    return ExitStatus.OK


def describe_task_definition(env: Environment, ref: str, paths: Sequence[str]) -> ExitStatus:
    family, _, number = ref.removeprefix("task-definition/").partition(":")
    if number and not number.isdigit():
        raise UserError(f"describe task-definition {ref}: expected FAMILY or FAMILY:REVISION")
    session = common.open_session(env, paths)
    try:
        hs = load(session)
        revs = [(c, r) for c, r in _revisions(session, hs) if r.family == family]
        if not revs:
            raise UserError(f"no registered revisions of {family} (apply registers a task definition's revisions)")
        if number:
            found = [(c, r) for c, r in revs if r.number == int(number)]
            if not found:
                known = H.describe_revisions(tuple(sorted({r.number: r for _, r in revs}.values(), key=lambda r: r.number)))
                raise UserError(f"no revision {number} of {family}; revisions: {known}")
        else:
            top = max(r.number for _, r in revs)
            found = [(c, r) for c, r in revs if r.number == top]
        c, rev = found[0]
        env.out(json.dumps({"taskDefinition": task_definition_view(rev, session.desired.clusters[c].region)}, indent=2, sort_keys=True))
    finally:
        session.close()
    return ExitStatus.OK


def service_history(session: common.Session, svc: spec.Service, history: H.History) -> dict[str, Any]:
    """describe-services' history fields of `svc`: ARNs, `deployments[]`, `events[]` and the one line
    that says why the service does not run what its manifest asks, if it does not."""
    cstate = session.observed.get(svc.cluster)
    tasks = cstate.tasks_of(svc.name) if cstate else []
    region = session.desired.clusters[svc.cluster].region
    sh = history.service(svc.name)
    # As describe-services, the deployments that are not INACTIVE; and the FAILED one the manifests still ask
    # for (what the PRIMARY rolled back, or the latest FAILED while the service is held back), so the
    # failure stays in sight until the manifests move on.
    failed = {sh.blocked.deployment} if sh.blocked is not None else set()
    if sh.primary is not None and sh.primary.rollback_of:
        failed.add(sh.primary.rollback_of)
    shown = [d for d in sh.deployments if d.status != H.INACTIVE or d.id in failed] or list(sh.deployments[:1])
    out: dict[str, Any] = {
        "serviceArn": H.arn("service", f"{svc.cluster}/{svc.name}", region),
        "clusterArn": H.arn("cluster", svc.cluster, region),
        "deployments": [deployments.deployment_view(d, tasks, region) for d in shown],
        "events": [{"id": e.id, "createdAt": H.timestamp(e.created_at), "message": e.message} for e in sh.events],
    }
    primary = sh.primary
    if primary is not None:
        out["taskDefinition"] = H.arn("task-definition", primary.task_definition, region)
    if sh.blocked is not None and primary is not None:
        out["deploymentNote"] = deployments.blocked_line(sh, primary)
    return out


def get_deployments(env: Environment, service: str, paths: Sequence[str], as_json: bool) -> ExitStatus:
    session = common.open_session(env, paths)
    try:
        svc = session.desired.services.get(service)
        if svc is None:
            raise UserError(f"no service named {service} in the manifests")
        history = load(session, [svc.cluster])[svc.cluster]
        cstate = session.observed.get(svc.cluster)
        tasks = cstate.tasks_of(service) if cstate else []
        region = session.desired.clusters[svc.cluster].region
        views = [deployments.deployment_view(d, tasks, region) for d in history.service(service).deployments]
        if as_json:
            env.out(json.dumps({"deployments": views}, indent=2, sort_keys=True))
        else:
            rows = [[v["id"], v["status"], v["rolloutState"], v["taskDefinition"].rpartition("/")[2], v["desiredCount"],
                     v["runningCount"], v["pendingCount"], v["failedTasks"], v["createdAt"], v["rolloutStateReason"]]
                    for v in views]
            env.out(_table(rows, ["ID", "STATUS", "ROLLOUT", "TASK DEFINITION", "DESIRED", "RUNNING", "PENDING", "FAILED",
                                  "CREATED", "REASON"]))
    finally:
        session.close()
    return ExitStatus.OK


def _events(hs: dict[str, H.History], services: set[str] | None) -> list[tuple[str, H.Event]]:
    out = [(name, e) for h in hs.values() for name, sh in h.services.items() if services is None or name in services
           for e in sh.events]
    return sorted(out, key=lambda ne: (ne[1].created_at, ne[1].id))


def events(env: Environment, service: str | None, paths: Sequence[str], follow: bool, as_json: bool) -> ExitStatus:
    """Service events, oldest first; `follow` keeps printing new ones until interrupted."""
    session = common.open_session(env, paths)
    try:
        clusters = None
        if service is not None:
            svc = session.desired.services.get(service)
            if svc is None:
                raise UserError(f"no service named {service} in the manifests")
            clusters = [svc.cluster]
        wanted = {service} if service else None
        seen: set[str] = set()
        while True:
            for name, e in _events(load(session, clusters), wanted):
                if e.id in seen:
                    continue
                seen.add(e.id)
                if as_json:
                    env.out(json.dumps({"service": name, "id": e.id, "createdAt": H.timestamp(e.created_at), "message": e.message},
                                       sort_keys=True))
                else:
                    env.out(f"{H.timestamp(e.created_at)}  {e.message}")
            if not follow:
                break
            try:
                time.sleep(FOLLOW_POLL)
            except KeyboardInterrupt:
                break
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
    return ExitStatus.OK


def get_alarms(env: Environment, paths: Sequence[str], as_json: bool) -> ExitStatus:
    """The manifests' alarms with the states the daemon (or an apply that waited) last saved."""
    from reconciler.alarms import report
    from reconciler.alarms import store as alarm_store

    desired = common.load_desired(env, paths)
    rows = report.rows(desired.alarms, alarm_store.AlarmStore(env.state().path).load(), env.clock.now())
    if as_json:
        env.out(json.dumps({"MetricAlarms": rows}, indent=2, sort_keys=True, default=str))
        return ExitStatus.OK
    table = [[r["AlarmName"], r["StateValue"] + (" (stale)" if r.get("Stale") else ""), r.get("StateUpdatedTimestamp") or "-",
              f"{r['Statistic']} {r['ComparisonOperator']} {r['Threshold']:g}", r.get("StateReason") or ""] for r in rows]
    env.out(_table(table, ["ALARM", "STATE", "SINCE", "CONDITION", "REASON"]))
    return ExitStatus.OK
