"""Canonical form of a task definition, and the hashes that decide keep versus replace.

Owns filling ECS and engine defaults on the desired side (essential true, protocol tcp, health check
defaults, empty lists equal to missing keys, ...) so that an unchanged manifest never shows a diff,
and hashing that canonical form. Only fields that change what runs are part of it: roles, tags and
placement live elsewhere and never replace a task. Observed specs are read back from container labels,
which hold this same canonical form, so both sides of a diff are normalized by the same code.
A task definition's canonical form and hash depend on that task definition alone: not on the services
using it, their launch type, nor the directory its manifest was checked out in.
It must not do I/O; `manifests.build` fingerprints local files before calling in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reconciler.model import units

_FALSE_DEFAULTS = (
    "privileged",
    "readonlyRootFilesystem",
    "interactive",
    "pseudoTerminal",
    "disableNetworking",
)
_IGNORED_CONTAINER_FIELDS = ("versionConsistency", "credentialSpecs", "firelensConfiguration")
HEALTH_DEFAULTS = {"interval": 30, "timeout": 5, "retries": 3, "startPeriod": 0}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any, length: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def _prune(value: Any) -> Any:
    """Drops None, empty lists and empty maps recursively: ECS treats them as absent."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            v = _prune(v)
            if v is None or v == [] or v == {}:
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _sorted_by(items: list[Any] | None, *keys: str) -> list[Any]:
    items = list(items or [])
    return sorted(items, key=lambda x: tuple(str(x.get(k, "")) if isinstance(x, Mapping) else str(x) for k in keys))


def container(c: Mapping[str, Any], network_mode: str) -> dict[str, Any]:
    """Canonical container definition."""
    out: dict[str, Any] = {k: v for k, v in c.items() if k not in _IGNORED_CONTAINER_FIELDS}
    out["essential"] = bool(c.get("essential", True))
    for key in _FALSE_DEFAULTS:
        if not out.get(key):
            out.pop(key, None)
    for key in ("cpu", "memory", "memoryReservation"):
        if out.get(key) in (0, None):
            out.pop(key, None)
    ports = []
    for p in c.get("portMappings") or []:
        q = dict(p)
        q["protocol"] = q.get("protocol") or "tcp"
        if "containerPort" in q:
            if network_mode in ("awsvpc", "host"):
                q["hostPort"] = q.get("hostPort") or q["containerPort"]
            else:
                q["hostPort"] = q.get("hostPort") or 0
        ports.append(q)
    out["portMappings"] = sorted(ports, key=lambda p: (p.get("containerPort", 0), p["protocol"], p.get("hostPort", 0)))
    out["environment"] = _sorted_by(c.get("environment"), "name")
    out["secrets"] = _sorted_by(c.get("secrets"), "name")
    out["mountPoints"] = sorted(
        ({**m, "readOnly": bool(m.get("readOnly", False))} for m in c.get("mountPoints") or []),
        key=lambda m: str(m.get("containerPath", "")),
    )
    out["volumesFrom"] = sorted(
        ({**v, "readOnly": bool(v.get("readOnly", False))} for v in c.get("volumesFrom") or []),
        key=lambda v: str(v.get("sourceContainer", "")),
    )
    out["dependsOn"] = _sorted_by(c.get("dependsOn"), "containerName")
    out["ulimits"] = _sorted_by(c.get("ulimits"), "name")
    out["extraHosts"] = _sorted_by(c.get("extraHosts"), "hostname", "ipAddress")
    hc = c.get("healthCheck")
    if hc:
        out["healthCheck"] = {**HEALTH_DEFAULTS, **{k: v for k, v in hc.items() if v is not None}}
    lp = c.get("linuxParameters")
    if lp:
        lp = dict(lp)
        caps = lp.get("capabilities") or {}
        lp["capabilities"] = {k: sorted(caps.get(k) or []) for k in ("add", "drop")}
        if not lp.get("initProcessEnabled"):
            lp.pop("initProcessEnabled", None)
        lp["tmpfs"] = _sorted_by(lp.get("tmpfs"), "containerPath")
        out["linuxParameters"] = lp
    return _prune(out)


def _volume(v: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(v)
    dvc = v.get("dockerVolumeConfiguration")
    if dvc:
        scope = dvc.get("scope") or "task"
        out["dockerVolumeConfiguration"] = {
            **dvc,
            "scope": scope,
            "autoprovision": bool(dvc.get("autoprovision", False)) if scope == "shared" else False,
            "driver": dvc.get("driver") or "local",
        }
    return out


def task_definition(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical runtime form of a task definition spec (ECS RegisterTaskDefinition input).

    Task-level fields that shape the running containers (networkMode, cpu, memory, pidMode, ipcMode,
    volumes) and the containers; the rest (roles, tags, placement, compatibilities) is bookkeeping or
    scheduling and must not cause a replacement.

    It depends on this spec alone, never on the services that use it: the launch type is not part of it
    (a FARGATE task definition states `networkMode: awsvpc`, validation sees to that, and the containers
    it runs are the same either way)."""
    network_mode = spec.get("networkMode") or "bridge"
    out: dict[str, Any] = {"networkMode": network_mode}
    if spec.get("cpu") not in (None, ""):
        out["cpu"] = units.parse_cpu(spec["cpu"])
    if spec.get("memory") not in (None, ""):
        out["memory"] = units.parse_memory(spec["memory"])
    for key in ("pidMode", "ipcMode"):
        if spec.get(key):
            out[key] = spec[key]
    out["volumes"] = sorted((_volume(v) for v in spec.get("volumes") or []), key=lambda v: str(v.get("name", "")))
    out["containerDefinitions"] = sorted(
        (container(c, network_mode) for c in spec.get("containerDefinitions") or []),
        key=lambda c: str(c.get("name", "")),
    )
    return _prune(out)


def task_level(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The task-level part of a canonical spec (everything but the containers)."""
    return {k: v for k, v in spec.items() if k != "containerDefinitions"}


def task_hash(spec: Mapping[str, Any]) -> str:
    return digest(spec)


def container_hash(c: Mapping[str, Any]) -> str:
    return digest(c)
