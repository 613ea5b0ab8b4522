"""What a task reserves on a container instance, from its canonical spec (ECS accounting).

A task reserves its task-level cpu/memory when set, else the sum of its containers' `cpu` and
`memoryReservation` (else `memory`). Static host ports are reserved per protocol: fixed `hostPort`s in
bridge mode and every `containerPort` in host mode; dynamic ports and awsvpc tasks (which publish from
their own network namespace on engine-chosen ports) reserve none. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def reservation(spec: Mapping[str, Any]) -> dict[str, Any]:
    containers = list(spec.get("containerDefinitions") or [])
    cpu = spec.get("cpu")
    if cpu is None:
        cpu = sum(int(c.get("cpu") or 0) for c in containers)
    memory = spec.get("memory")
    if memory is None:
        memory = sum(int(c.get("memoryReservation") or c.get("memory") or 0) for c in containers)
    mode = spec.get("networkMode", "bridge")
    ports: set[tuple[int, str]] = set()
    for c in containers:
        for p in c.get("portMappings") or []:
            proto = p.get("protocol", "tcp")
            if mode == "host" and p.get("containerPort"):
                ports.add((int(p["containerPort"]), proto))
            elif mode == "bridge" and p.get("hostPort"):
                ports.add((int(p["hostPort"]), proto))
    return {"cpu": int(cpu), "memory": int(memory), "ports": frozenset(ports)}
