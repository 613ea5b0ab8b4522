"""Semantic rules about one TaskDefinition as a whole: its size, its launch type, its constraints.

Owns the task-level checks (ECS reference §1.4-§1.7): family equals metadata.name, container names and
at least one essential container, container memory versus memoryReservation, task cpu/memory parsing and
the EC2 range, containers fitting inside the task size, every FARGATE restriction, and task-level
placement constraints. How containers of a task relate to each other (network mode, ports, health
checks, dependsOn, volume and container references, logging) is in semantic_containers.py. Also owns
the small defensive accessors (`containers`, `network_mode`, `is_fargate`, ...) all rule modules share.
Every rule is a generator over one document yielding located diagnostics.

It must not do I/O, must not raise on odd values (the schema has vetted shapes, but every access is
defensive anyway), and must not look at other documents: cross-document rules live in semantic.py and
semantic_service.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from reconciler.manifests import document
from reconciler.model import units

Diagnostics = Iterator[document.Diagnostic]
CONTAINERS = ("spec", "containerDefinitions")

EC2_CPU_MIN = 128
EC2_CPU_MAX = 196608
FARGATE_LOG_DRIVERS = ("awslogs", "splunk", "awsfirelens")
FARGATE_TIMEOUT_RANGE = (2, 120)
MAX_PLACEMENT_CONSTRAINTS = 10


# ---------------------------------------------------------------- accessors


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def containers(doc: document.Document) -> list[tuple[int, Mapping[str, Any]]]:
    """(index, container) for every container definition that is a mapping."""
    return [
        (i, c) for i, c in enumerate(items(doc.spec.get("containerDefinitions"))) if isinstance(c, Mapping)
    ]


def label(container: Mapping[str, Any], index: int) -> str:
    name = string(container.get("name"))
    return f"'{name}'" if name else f"#{index}"


def container_names(doc: document.Document) -> dict[str, int]:
    """Container name -> index of its first definition."""
    out: dict[str, int] = {}
    for i, c in containers(doc):
        name = string(c.get("name"))
        if name is not None and name not in out:
            out[name] = i
    return out


def is_essential(container: Mapping[str, Any]) -> bool:
    return container.get("essential", True) is not False


def network_mode(doc: document.Document) -> str:
    """The task's network mode; ECS defaults to bridge when it is unset."""
    return string(doc.spec.get("networkMode")) or "bridge"


def compatibilities(doc: document.Document) -> list[str]:
    return [c for c in items(doc.spec.get("requiresCompatibilities")) if isinstance(c, str)]


def is_fargate(doc: document.Document) -> bool:
    return "FARGATE" in compatibilities(doc)


def is_ec2(doc: document.Document) -> bool:
    """EC2-style hosts: requiresCompatibilities absent (ECS then validates for EC2/EXTERNAL), EC2 or EXTERNAL."""
    compat = compatibilities(doc)
    return not compat or "EC2" in compat or "EXTERNAL" in compat


def task_size(doc: document.Document, field: str) -> int | None:
    """Task-level cpu or memory in units/MiB; None when unset or unparseable (reported by rule_task_size)."""
    value = doc.spec.get(field)
    if value is None:
        return None
    try:
        return units.parse_cpu(value) if field == "cpu" else units.parse_memory(value)
    except ValueError:
        return None


def has_health_check(container: Mapping[str, Any]) -> bool:
    hc = container.get("healthCheck")
    if not isinstance(hc, Mapping):
        return False
    command = items(hc.get("command"))
    return bool(command) and command[0] != "NONE"


def host_source_path(volume: Mapping[str, Any]) -> str | None:
    """The bind-mounted host path; None for a name-only volume or an empty sourcePath (Docker picks the path)."""
    return string(mapping(volume.get("host")).get("sourcePath")) or None


def at_container(i: int, *rest: str | int) -> document.Pointer:
    return (*CONTAINERS, i, *rest)


# ---------------------------------------------------------------- rules


def rule_family(doc: document.Document) -> Diagnostics:
    family = doc.spec.get("family")
    if family is not None and family != doc.name:
        yield doc.diagnostic(
            ("spec", "family"), f"spec.family {family!r} differs from metadata.name {doc.name!r}"
        )


def rule_containers(doc: document.Document) -> Diagnostics:
    """Container names are unique; at least one container is essential (essential defaults to true)."""
    seen: dict[str, int] = {}
    for i, c in containers(doc):
        name = string(c.get("name"))
        if name is None:
            continue
        if name in seen:
            yield doc.diagnostic(
                at_container(i, "name"),
                f"container name {name!r} is already used by containerDefinitions[{seen[name]}]",
            )
        else:
            seen[name] = i
    listed = containers(doc)
    if not listed:
        yield doc.diagnostic(CONTAINERS, "the task definition declares no containers")
    elif not any(is_essential(c) for _, c in listed):
        yield doc.diagnostic(
            CONTAINERS, "no container is essential; at least one must be (essential defaults to true)"
        )


def rule_container_memory(doc: document.Document) -> Diagnostics:
    """memoryReservation < memory; on EC2 without task memory every container sets one of them."""
    needs_limit = is_ec2(doc) and doc.spec.get("memory") is None
    for i, c in containers(doc):
        memory, reservation = integer(c.get("memory")), integer(c.get("memoryReservation"))
        if memory is not None and reservation is not None and reservation >= memory:
            yield doc.diagnostic(
                at_container(i, "memoryReservation"),
                f"container {label(c, i)} memoryReservation ({reservation} MiB) must be less than memory ({memory} MiB)",
            )
        if needs_limit and not memory and not reservation:
            yield doc.diagnostic(
                at_container(i),
                f"container {label(c, i)} sets neither memory nor memoryReservation, which EC2 requires when the task sets no memory",
            )


def rule_task_size(doc: document.Document) -> Diagnostics:
    """Task cpu/memory parse, EC2 cpu range, and the containers fit inside the task size."""
    for field, parse in (("cpu", units.parse_cpu), ("memory", units.parse_memory)):
        value = doc.spec.get(field)
        if value is None:
            continue
        try:
            parse(value)
        except ValueError as e:
            yield doc.diagnostic(("spec", field), f"task {e}")
    cpu, memory = task_size(doc, "cpu"), task_size(doc, "memory")
    if cpu is not None and is_ec2(doc) and not EC2_CPU_MIN <= cpu <= EC2_CPU_MAX:
        yield doc.diagnostic(
            ("spec", "cpu"),
            f"task cpu {cpu} units is outside the EC2 range {EC2_CPU_MIN}-{EC2_CPU_MAX} (0.125-192 vCPU)",
        )
    if cpu is not None:
        parts = [(label(c, i), integer(c.get("cpu"))) for i, c in containers(doc)]
        total = sum(v for _, v in parts if v)
        if total > cpu:
            detail = ", ".join(f"{n} {v}" for n, v in parts if v)
            yield doc.diagnostic(
                ("spec", "cpu"),
                f"containers reserve {total} CPU units ({detail}), more than the task cpu {cpu}",
            )
    if memory is not None:
        parts = []
        for i, c in containers(doc):
            reserved = integer(c.get("memoryReservation"))
            if reserved is None:
                reserved = integer(c.get("memory"))
            parts.append((label(c, i), reserved))
        total = sum(v for _, v in parts if v)
        if total > memory:
            detail = ", ".join(f"{n} {v}" for n, v in parts if v)
            yield doc.diagnostic(
                ("spec", "memory"),
                f"containers reserve {total} MiB of memory ({detail}), more than the task memory {memory} MiB",
            )


def rule_fargate(doc: document.Document) -> Diagnostics:
    """Restrictions that apply when FARGATE is in requiresCompatibilities (ECS reference §1.7 item 2)."""
    if not is_fargate(doc):
        return
    spec = doc.spec
    if network_mode(doc) != "awsvpc":
        yield doc.diagnostic(
            ("spec", "networkMode"),
            f"FARGATE requires networkMode awsvpc, not {network_mode(doc)}"
            + ("" if spec.get("networkMode") else " (the default when unset)"),
        )
    yield from _fargate_size(doc)
    if items(spec.get("placementConstraints")):
        yield doc.diagnostic(
            ("spec", "placementConstraints"), "FARGATE does not support placement constraints"
        )
    if spec.get("ipcMode") is not None:
        yield doc.diagnostic(("spec", "ipcMode"), "FARGATE does not support ipcMode")
    pid = spec.get("pidMode")
    if pid is not None and pid != "task":
        yield doc.diagnostic(("spec", "pidMode"), f"FARGATE allows only pidMode task, not {pid!r}")
    for j, v in enumerate(items(spec.get("volumes"))):
        v = mapping(v)
        if host_source_path(v) is not None:
            yield doc.diagnostic(
                ("spec", "volumes", j, "host", "sourcePath"),
                f"FARGATE does not support host volumes (volume {v.get('name')!r})",
            )
        if v.get("dockerVolumeConfiguration") is not None:
            yield doc.diagnostic(
                ("spec", "volumes", j, "dockerVolumeConfiguration"),
                f"FARGATE does not support dockerVolumeConfiguration (volume {v.get('name')!r})",
            )
    for i, c in containers(doc):
        yield from _fargate_container(doc, i, c)


def _fargate_size(doc: document.Document) -> Diagnostics:
    for field in ("cpu", "memory"):
        if doc.spec.get(field) is None:
            yield doc.diagnostic(("spec", field), f"FARGATE requires a task-level {field}")
    cpu, memory = task_size(doc, "cpu"), task_size(doc, "memory")
    if cpu is None:
        return
    options = units.fargate_memory_options(cpu)
    if not options:
        sizes = ", ".join(str(s) for s in units.FARGATE_SIZES)
        yield doc.diagnostic(
            ("spec", "cpu"), f"task cpu {cpu} is not a Fargate size; allowed cpu units: {sizes}"
        )
    elif memory is not None and memory not in options:
        yield doc.diagnostic(
            ("spec", "memory"),
            f"task memory {memory} MiB is not valid on FARGATE with cpu {cpu}; allowed memory (MiB): {units.format_mib_list(options)}",
        )


def _fargate_container(doc: document.Document, i: int, c: Mapping[str, Any]) -> Diagnostics:
    who = f"container {label(c, i)}"
    if c.get("privileged") is True:
        yield doc.diagnostic(
            at_container(i, "privileged"), f"{who} is privileged, which FARGATE does not support"
        )
    if items(c.get("dockerSecurityOptions")):
        yield doc.diagnostic(
            at_container(i, "dockerSecurityOptions"),
            f"{who} sets dockerSecurityOptions, which FARGATE does not support",
        )
    linux = mapping(c.get("linuxParameters"))
    for field in ("devices", "sharedMemorySize", "maxSwap", "swappiness"):
        if linux.get(field) is not None:
            yield doc.diagnostic(
                at_container(i, "linuxParameters", field),
                f"{who} sets linuxParameters.{field}, which FARGATE does not support",
            )
    for k, cap in enumerate(items(mapping(linux.get("capabilities")).get("add"))):
        if cap != "SYS_PTRACE":
            yield doc.diagnostic(
                at_container(i, "linuxParameters", "capabilities", "add", k),
                f"{who} adds capability {cap!r}; FARGATE allows only SYS_PTRACE",
            )
    # A warning, not an error: ECS would refuse the driver, but a Docker host runs it (build.py keeps
    # drivers it can honour and swaps the rest for json-file), so the manifest still works here.
    driver = mapping(c.get("logConfiguration")).get("logDriver")
    if driver is not None and driver not in FARGATE_LOG_DRIVERS:
        yield doc.diagnostic(
            at_container(i, "logConfiguration", "logDriver"),
            f"{who} uses log driver {driver!r}; ECS FARGATE supports only {', '.join(FARGATE_LOG_DRIVERS)}",
            document.WARNING,
        )
    low, high = FARGATE_TIMEOUT_RANGE
    for field in ("startTimeout", "stopTimeout"):
        value = integer(c.get(field))
        if value is not None and not low <= value <= high:
            yield doc.diagnostic(
                at_container(i, field), f"{who} {field} {value} s is outside the FARGATE range {low}-{high} s"
            )


def rule_placement_constraints(doc: document.Document) -> Diagnostics:
    """A task-level constraint (memberOf; the schema allows no other type, nor more than 10) needs an expression."""
    for k, pc in enumerate(items(doc.spec.get("placementConstraints"))):
        pc = mapping(pc)
        if pc.get("type", "memberOf") == "memberOf" and not (string(pc.get("expression")) or "").strip():
            yield doc.diagnostic(
                ("spec", "placementConstraints", k, "expression"), "a memberOf constraint needs an expression"
            )


RULES: tuple[Callable[[document.Document], Diagnostics], ...] = (
    rule_family,
    rule_containers,
    rule_container_memory,
    rule_task_size,
    rule_fargate,
    rule_placement_constraints,
)
