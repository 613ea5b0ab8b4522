"""ECS container definition to a Docker container request (`engine.api.ContainerCreate`), faithfully.

Owns the mapping of every container-definition field a plain engine can honour: image, command,
entryPoint, environment, workingDirectory, user, cpu shares, memory hard/soft limits, task-level limits,
ulimits, linuxParameters, healthCheck, stopTimeout, dockerLabels, hostname, extraHosts, DNS,
readonlyRootFilesystem, privileged, mounts, volumesFrom, logConfiguration (`LOCAL_LOG_DRIVERS`, the
drivers a plain engine has), port bindings and network mode; and the names of what a task makes on an
engine (`container_name`, `network_name`, `volume_name`), used alike to create and to remove them.
The request does not depend on the launch type: a FARGATE task definition states `networkMode: awsvpc`.
Pure: resolved environment values, volume and container ids come in through `TaskContext`;
this module must not read files or call an engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import labels as L
from reconciler.engine import api
from reconciler.model import normalize

NS = 1_000_000_000
LOCAL_LOG_DRIVERS = ("json-file", "local", "syslog", "journald", "gelf", "fluentd", "none")
DEFAULT_STOP_TIMEOUT = 30


@dataclass(frozen=True)
class TaskContext:
    """What a container request needs from the task it belongs to."""

    cluster: str
    instance: str
    task_id: str
    family: str
    task_hash: str
    group: str
    service: str | None
    task_spec: Mapping[str, Any]  # canonical task spec, containers included
    publish_address: str = "0.0.0.0"
    network: str | None = None  # user-defined bridge network of a multi-container bridge task
    namespace_holder: str | None = None  # container id whose namespaces the task shares (awsvpc pause)
    volumes: Mapping[str, str] = field(default_factory=dict)  # task volume name -> docker volume or host path
    container_ids: Mapping[str, str] = field(default_factory=dict)  # already-created containers of the task
    started_by: str = ""
    created_at: str = ""
    revision: int | None = None
    deployment: str = ""


def task_owner(ctx: TaskContext) -> str:
    """What the names of a task's containers, network and volumes start with: its service, else its family."""
    return ctx.service or ctx.family


def container_name(ctx: TaskContext, container: str) -> str:
    return f"{task_owner(ctx)}-{container}-{ctx.task_id[:12]}"


def network_name(owner: str, task_id: str) -> str:
    """The user-defined bridge network of a multi-container bridge task."""
    return f"{owner}-net-{task_id[:12]}"


def volume_name(owner: str, task_id: str, volume: str) -> str:
    """The Docker volume behind task-scoped volume `volume` of the task."""
    return f"{owner}-vol-{volume}-{task_id[:12]}"


def base_labels(ctx: TaskContext) -> dict[str, str]:
    task_level = normalize.task_level(ctx.task_spec)
    task_level["containerNames"] = [c["name"] for c in ctx.task_spec.get("containerDefinitions", [])]
    out = {
        L.MANAGED: "true",
        L.CLUSTER: ctx.cluster,
        L.INSTANCE: ctx.instance,
        L.GROUP: ctx.group,
        L.TASK: ctx.task_id,
        L.FAMILY: ctx.family,
        L.TASK_HASH: ctx.task_hash,
        L.TASK_SPEC: normalize.canonical_json(task_level),
        L.STARTED_BY: ctx.started_by,
        L.CREATED_AT: ctx.created_at,
    }
    if ctx.service:
        out[L.SERVICE] = ctx.service
    if ctx.revision is not None:
        out[L.REVISION] = str(ctx.revision)
    if ctx.deployment:
        out[L.DEPLOYMENT] = ctx.deployment
    return out


def healthcheck(hc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not hc:
        return None
    command = list(hc.get("command") or [])
    if command and command[0] == "CMD-SHELL" and len(command) > 2:
        command = ["CMD-SHELL", " ".join(command[1:])]
    return {
        "test": command,
        "interval": int(hc.get("interval", 30)) * NS,
        "timeout": int(hc.get("timeout", 5)) * NS,
        "retries": int(hc.get("retries", 3)),
        "start_period": int(hc.get("startPeriod", 0)) * NS,
    }


def _ports(c: Mapping[str, Any], ctx: TaskContext) -> tuple[tuple[str, ...], dict[str, Any]]:
    exposed: list[str] = []
    bindings: dict[str, Any] = {}
    for p in c.get("portMappings") or []:
        if "containerPort" not in p:
            continue
        key = f"{p['containerPort']}/{p.get('protocol', 'tcp')}"
        exposed.append(key)
        host_port = p.get("hostPort") or 0
        mode = ctx.task_spec.get("networkMode", "bridge")
        if mode == "awsvpc":
            host_port = 0  # the task has its own address; publish on an engine-chosen port as well
        bindings[key] = (ctx.publish_address, host_port) if host_port else (ctx.publish_address,)
    return tuple(exposed), bindings


def pause_request(ctx: TaskContext, image: str) -> api.ContainerCreate:
    """The awsvpc namespace holder: owns the task's network namespace and its published ports."""
    exposed: list[str] = []
    bindings: dict[str, Any] = {}
    for c in ctx.task_spec.get("containerDefinitions", []):
        e, b = _ports(c, ctx)
        exposed.extend(e)
        bindings.update(b)
    labels = {**base_labels(ctx), L.ROLE: L.ROLE_PAUSE, L.CONTAINER: "~pause"}
    return api.ContainerCreate(
        name=container_name(ctx, "pause"),
        image=image,
        labels=labels,
        command=("/pause",),
        exposed_ports=tuple(exposed),
        host_config={"port_bindings": bindings, "network_mode": "bridge", "init": False},
        stop_timeout=1,
    )


def _memory_limits(c: Mapping[str, Any], ctx: TaskContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    memory = c.get("memory")
    task_memory = ctx.task_spec.get("memory")
    if task_memory and (memory is None or memory > task_memory):
        memory = task_memory  # task-level memory is a hard cap for each of its containers
    if memory:
        out["mem_limit"] = f"{int(memory)}m"
    if c.get("memoryReservation") and (not memory or c["memoryReservation"] < memory):
        out["mem_reservation"] = f"{int(c['memoryReservation'])}m"
    lp = c.get("linuxParameters") or {}
    if lp.get("maxSwap") is not None and memory:
        out["memswap_limit"] = f"{int(memory) + int(lp['maxSwap'])}m"
    if lp.get("swappiness") is not None:
        out["mem_swappiness"] = int(lp["swappiness"])
    return out


def _mounts(c: Mapping[str, Any], ctx: TaskContext) -> list[str]:
    binds = []
    for m in c.get("mountPoints") or []:
        source = ctx.volumes.get(m.get("sourceVolume", ""))
        if not source or "containerPath" not in m:
            continue
        binds.append(f"{source}:{m['containerPath']}:{'ro' if m.get('readOnly') else 'rw'}")
    return binds


def _linux(c: Mapping[str, Any]) -> dict[str, Any]:
    lp = c.get("linuxParameters") or {}
    out: dict[str, Any] = {}
    caps = lp.get("capabilities") or {}
    if caps.get("add"):
        out["cap_add"] = list(caps["add"])
    if caps.get("drop"):
        out["cap_drop"] = list(caps["drop"])
    if lp.get("initProcessEnabled"):
        out["init"] = True
    if lp.get("sharedMemorySize"):
        out["shm_size"] = f"{int(lp['sharedMemorySize'])}m"
    tmpfs = {}
    for t in lp.get("tmpfs") or []:
        opts = [f"size={int(t.get('size', 0))}m", *(t.get("mountOptions") or [])]
        tmpfs[t["containerPath"]] = ",".join(opts)
    if tmpfs:
        out["tmpfs"] = tmpfs
    devices = []
    for d in lp.get("devices") or []:
        perms = "".join(p[0] for p in (d.get("permissions") or ["read", "write", "mknod"]))
        devices.append(f"{d['hostPath']}:{d.get('containerPath') or d['hostPath']}:{perms}")
    if devices:
        out["devices"] = devices
    return out


def container_request(c: Mapping[str, Any], ctx: TaskContext, environment: Mapping[str, str]) -> api.ContainerCreate:
    """The request for one container definition `c` (canonical form) of the task in `ctx`."""
    mode = ctx.task_spec.get("networkMode", "bridge")
    hc: dict[str, Any] = {}
    exposed: tuple[str, ...] = ()
    if ctx.namespace_holder:
        hc["network_mode"] = f"container:{ctx.namespace_holder}"
    elif mode == "host":
        hc["network_mode"] = "host"
    elif mode == "none" or c.get("disableNetworking"):
        hc["network_mode"] = "none"
    else:
        exposed, bindings = _ports(c, ctx)
        if bindings:
            hc["port_bindings"] = bindings
        hc["network_mode"] = ctx.network or "bridge"
    if c.get("cpu"):
        hc["cpu_shares"] = max(int(c["cpu"]), 2)
    if ctx.task_spec.get("cpu"):
        hc["nano_cpus"] = int(ctx.task_spec["cpu"]) * NS // 1024
    hc.update(_memory_limits(c, ctx))
    hc.update(_linux(c))
    if c.get("ulimits"):
        hc["ulimits"] = [{"name": u["name"], "soft": u["softLimit"], "hard": u["hardLimit"]} for u in c["ulimits"]]
    if c.get("privileged"):
        hc["privileged"] = True
    if c.get("readonlyRootFilesystem"):
        hc["read_only"] = True
    if c.get("extraHosts"):
        hc["extra_hosts"] = {h["hostname"]: h["ipAddress"] for h in c["extraHosts"]}
    if c.get("dnsServers"):
        hc["dns"] = list(c["dnsServers"])
    if c.get("dnsSearchDomains"):
        hc["dns_search"] = list(c["dnsSearchDomains"])
    if c.get("dockerSecurityOptions"):
        hc["security_opt"] = list(c["dockerSecurityOptions"])
    if c.get("systemControls"):
        hc["sysctls"] = {s["namespace"]: s["value"] for s in c["systemControls"]}
    binds = _mounts(c, ctx)
    if binds:
        hc["binds"] = binds
    if c.get("volumesFrom"):
        hc["volumes_from"] = [
            f"{ctx.container_ids[v['sourceContainer']]}:{'ro' if v.get('readOnly') else 'rw'}"
            for v in c["volumesFrom"]
            if v.get("sourceContainer") in ctx.container_ids
        ]
    for key, arg in (("pidMode", "pid_mode"), ("ipcMode", "ipc_mode")):
        value = ctx.task_spec.get(key)
        if value == "host":
            hc[arg] = "host"
        elif value == "task" and ctx.namespace_holder:
            hc[arg] = f"container:{ctx.namespace_holder}"
        elif value == "none" and key == "ipcMode":
            hc[arg] = "none"
    log = c.get("logConfiguration") or {}
    driver = log.get("logDriver")
    if driver in LOCAL_LOG_DRIVERS:
        hc["log_config"] = {"type": driver, "config": dict(log.get("options") or {})}
    restart = c.get("restartPolicy") or {}
    if restart.get("enabled"):
        hc["restart_policy"] = {"Name": "unless-stopped"}
    labels = {str(k): str(v) for k, v in (c.get("dockerLabels") or {}).items()}
    labels.update(base_labels(ctx))
    labels[L.ROLE] = L.ROLE_CONTAINER
    labels[L.CONTAINER] = c["name"]
    labels[L.CONTAINER_HASH] = normalize.container_hash(c)
    labels[L.CONTAINER_SPEC] = normalize.canonical_json(c)
    aliases = [c["name"]]
    for other in ctx.task_spec.get("containerDefinitions", []):
        for link in other.get("links") or []:
            target, _, alias = link.partition(":")
            if target == c["name"] and alias:
                aliases.append(alias)
    return api.ContainerCreate(
        name=container_name(ctx, c["name"]),
        image=c["image"],
        labels=labels,
        command=tuple(c["command"]) if "command" in c else None,
        entrypoint=tuple(c["entryPoint"]) if "entryPoint" in c else None,
        environment=dict(environment),
        working_dir=c.get("workingDirectory"),
        user=c.get("user"),
        hostname=c.get("hostname") if not ctx.namespace_holder and mode != "host" else None,
        healthcheck=healthcheck(c.get("healthCheck")),
        stop_timeout=int(c.get("stopTimeout", DEFAULT_STOP_TIMEOUT)),
        tty=bool(c.get("pseudoTerminal")),
        stdin_open=bool(c.get("interactive")),
        exposed_ports=exposed,
        host_config=hc,
        network=ctx.network if hc.get("network_mode") == ctx.network and ctx.network else None,
        aliases=tuple(aliases),
    )

