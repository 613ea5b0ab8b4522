"""CPU and memory use of tasks from Docker's stats JSON, as ECS service utilization (percent of reservation).

Owns reading the Linux stats payloads of the Docker Engine API (`GET /containers/{id}/stats`, docker-py
`c.stats(stream=False, one_shot=True)`), cgroup v1 and v2 shapes:

* CPU: `one_shot=True` returns a sample whose `precpu_stats` is empty (zeros, no `system_cpu_usage`), so CPU
  use needs two samples of the same container: the caller keeps the previous one. Used CPU units =
  delta `cpu_usage.total_usage` / delta `system_cpu_usage` * `online_cpus` * 1024 (what `docker stats`
  computes); without system counters, delta total_usage ns / delta `read` wall-clock ns * 1024. A sample with
  a filled `precpu_stats` (`stream=False` without one_shot) is enough on its own.
* Memory: `memory_stats.usage` minus the page cache the kernel can reclaim, as `docker stats` does:
  cgroup v1 `stats.total_inactive_file` (older engines: `stats.cache`), cgroup v2 `stats.inactive_file`;
  subtracted only when smaller than usage.
* Utilization as ECS defines it: used CPU over the task's reserved CPU units (task-level `cpu`, else the sum
  of its containers' `cpu`; with no reservation at all, one full vCPU = 1024 units, so a task may exceed
  100 %), used memory over its reserved MiB (task `memory`, else the sum of containers' memoryReservation or
  memory; with none at all, the sum of the containers' cgroup limits).

Pure: no I/O and no engine calls (the daemon fetches the payloads); Windows stats payloads are not handled.
Returns None rather than raising for payloads it cannot use (a stopped container, a restarted counter).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CPU_UNITS_PER_CORE = 1024
BYTES_PER_MIB = 1024 * 1024
_READ = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
_ZERO_TIME_YEAR = "0001-"  # Go's zero time: `preread` of a one-shot sample

Stats = Mapping[str, Any]


def read_ns(timestamp: Any) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 `read` timestamp with up to 9 fractional digits."""
    if not isinstance(timestamp, str) or timestamp.startswith(_ZERO_TIME_YEAR):
        return None
    m = _READ.match(timestamp.strip())
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    whole = dt.datetime.fromisoformat(m.group(1) + zone)
    fraction = int((m.group(2) or "0").ljust(9, "0"))
    return int(whole.timestamp()) * 1_000_000_000 + fraction


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cpu_view(sample: Stats | None, *, pre: bool = False) -> tuple[Mapping[str, Any], Any] | None:
    """(cpu_stats, read timestamp) of a sample, or of its `precpu_stats`; None when empty."""
    if not isinstance(sample, Mapping):
        return None
    cpu = sample.get("precpu_stats" if pre else "cpu_stats")
    read = sample.get("preread" if pre else "read")
    if not isinstance(cpu, Mapping):
        return None
    total = _number((cpu.get("cpu_usage") or {}).get("total_usage"))
    if total is None or (pre and not total and not _number(cpu.get("system_cpu_usage"))):
        return None
    return cpu, read


def _online_cpus(cpu: Mapping[str, Any]) -> float:
    online = _number(cpu.get("online_cpus"))
    if online:
        return online
    percpu = (cpu.get("cpu_usage") or {}).get("percpu_usage")
    return float(len(percpu)) if isinstance(percpu, list) and percpu else 1.0


def cpu_units_used(prev: Stats | None, cur: Stats) -> float | None:
    """CPU units (1024 = one core) used between two samples of one container; None when not measurable.

    `prev` may be None (or unusable) when `cur` carries a filled `precpu_stats`. A counter that went back (the
    container restarted) or samples of different containers give None.
    """
    now = _cpu_view(cur)
    before = _cpu_view(prev) or _cpu_view(cur, pre=True)
    if now is None or before is None:
        return None
    if isinstance(prev, Mapping) and prev.get("id") and cur.get("id") and prev.get("id") != cur.get("id"):
        return None
    (cpu, read), (old, old_read) = now, before
    used = float(cpu["cpu_usage"]["total_usage"]) - float(old["cpu_usage"]["total_usage"])
    if used < 0:
        return None
    system, old_system = _number(cpu.get("system_cpu_usage")), _number(old.get("system_cpu_usage"))
    if system and old_system and system > old_system:
        return used / (system - old_system) * _online_cpus(cpu) * CPU_UNITS_PER_CORE
    wall, old_wall = read_ns(read), read_ns(old_read)
    if wall is not None and old_wall is not None and wall > old_wall:
        return used / (wall - old_wall) * CPU_UNITS_PER_CORE
    return None


def _page_cache(stats: Mapping[str, Any]) -> float | None:
    for key in ("total_inactive_file", "cache", "inactive_file"):  # v1 totals, old v1, v2
        value = _number(stats.get(key))
        if value is not None:
            return value
    return None


def memory_mib_used(cur: Stats) -> float | None:
    """Memory in MiB a container uses, without reclaimable page cache; None for an empty `memory_stats`."""
    memory = cur.get("memory_stats") if isinstance(cur, Mapping) else None
    if not isinstance(memory, Mapping):
        return None
    usage = _number(memory.get("usage"))
    if usage is None:
        return None
    cache = _page_cache(memory.get("stats") or {})
    if cache is not None and cache < usage:
        usage -= cache
    return usage / BYTES_PER_MIB


def memory_limit_mib(cur: Stats) -> float | None:
    memory = cur.get("memory_stats") if isinstance(cur, Mapping) else None
    limit = _number(memory.get("limit")) if isinstance(memory, Mapping) else None
    return None if not limit else limit / BYTES_PER_MIB


def task_utilization(
    containers: Sequence[tuple[Stats | None, Stats]], reserved_cpu_units: int, reserved_memory_mib: int
) -> tuple[float | None, float | None]:
    """(CPU %, memory %) of one task from (previous, current) samples of each of its containers.

    A container without a measurable value (just started, restarted, stopped) contributes nothing; a
    dimension is None only when no container of the task has a value.
    """
    cpu = [v for v in (cpu_units_used(prev, cur) for prev, cur in containers) if v is not None]
    memory = [v for v in (memory_mib_used(cur) for _, cur in containers) if v is not None]
    cpu_percent = sum(cpu) / (reserved_cpu_units or CPU_UNITS_PER_CORE) * 100 if cpu else None
    memory_percent = None
    if memory:
        reserved = float(reserved_memory_mib) or sum(
            v for v in (memory_limit_mib(cur) for _, cur in containers) if v is not None
        )
        memory_percent = sum(memory) / reserved * 100 if reserved else None
    return cpu_percent, memory_percent


def service_utilization(
    tasks: Iterable[tuple[float | None, float | None]],
) -> tuple[float | None, float | None]:
    """The service average (CPU %, memory %): the mean over its tasks that have a value.

    Equal to ECS's sum(used) / sum(reserved) when the tasks share a task definition; during a deployment
    across revisions with different reservations, each task weighs the same.
    """
    cpu: list[float] = []
    memory: list[float] = []
    for c, m in tasks:
        if c is not None:
            cpu.append(c)
        if m is not None:
            memory.append(m)
    return (sum(cpu) / len(cpu) if cpu else None, sum(memory) / len(memory) if memory else None)
