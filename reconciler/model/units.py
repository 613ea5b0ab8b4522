"""Quantities written in manifests: CPU units, memory MiB, Fargate task sizes and durations.

Owns turning the spellings ECS accepts for task `cpu` ("1024", "1 vCPU", ".25 vcpu") and `memory`
("512", "2 GB", "0.5GB") into integers, the table of valid Fargate cpu/memory pairs (ECS reference
§1.5), and our own duration strings ("500ms", "30s", "1m30s"). Pure functions: no I/O, no knowledge of
documents or diagnostics; the semantic checks turn a ValueError from here into a located message.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

CPU_UNITS_PER_VCPU = 1024
MIB_PER_GB = 1024

# cpu units -> allowed task memory in MiB (ECS reference §1.5; cfn-lint E3047).
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4096 + 1, 1024)),
    1024: tuple(range(2048, 8192 + 1, 1024)),
    2048: tuple(range(4096, 16384 + 1, 1024)),
    4096: tuple(range(8192, 30720 + 1, 1024)),
    8192: tuple(range(16384, 61440 + 1, 4096)),
    16384: tuple(range(32768, 122880 + 1, 8192)),
}

_DECIMAL = r"(?:\d+(?:\.\d*)?|\.\d+)"
_CPU_VCPU = re.compile(rf"^({_DECIMAL})\s*vcpu$", re.IGNORECASE)
_MEMORY_UNIT = re.compile(rf"^({_DECIMAL})\s*(gb|gib|mib)$", re.IGNORECASE)
_DIGITS = re.compile(r"^\d+$")
_DURATION_PART = re.compile(rf"({_DECIMAL})(ms|h|m|s)", re.IGNORECASE)
_DURATION_ORDER = ("h", "m", "s", "ms")
_DURATION_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _whole_number(value: object, what: str) -> int | None:
    """An int (or integral float) as int; None when `value` is not a number. Rejects bools and negatives."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number or a string, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{what} {value!r} is not a whole number")
        number = int(value)
    else:
        return None
    if number < 0:
        raise ValueError(f"{what} {number} is negative")
    return number


def _scaled(amount: str, factor: int, what: str, raw: str) -> int:
    try:
        result = Decimal(amount) * factor
    except InvalidOperation:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{what} {raw!r} is not a number") from None
    if result != result.to_integral_value():
        raise ValueError(f"{what} {raw!r} is not a whole number of {'CPU units' if what == 'cpu' else 'MiB'}")
    return int(result)


def parse_cpu(value: object) -> int:
    """CPU units from an int, a digit string, or a vCPU string ("1 vCPU", ".25 vcpu", "0.5vCPU"); 1 vCPU = 1024."""
    number = _whole_number(value, "cpu")
    if number is not None:
        return number
    if not isinstance(value, str):
        raise ValueError(
            f"cpu must be CPU units or a vCPU string such as '0.5 vCPU', not {type(value).__name__}"
        )
    text = value.strip()
    if _DIGITS.match(text):
        return int(text)
    m = _CPU_VCPU.match(text)
    if m:
        return _scaled(m.group(1), CPU_UNITS_PER_VCPU, "cpu", value)
    raise ValueError(f'cpu {value!r} is neither CPU units ("1024") nor vCPUs ("1 vCPU", ".25 vCPU")')


def parse_memory(value: object) -> int:
    """MiB from an int, a digit string, or "<n> GB" / "<n> GiB" / "<n> MiB" (any case); 1 GB = 1024 MiB as in ECS."""
    number = _whole_number(value, "memory")
    if number is not None:
        return number
    if not isinstance(value, str):
        raise ValueError(f"memory must be MiB or a GB string such as '2 GB', not {type(value).__name__}")
    text = value.strip()
    if _DIGITS.match(text):
        return int(text)
    m = _MEMORY_UNIT.match(text)
    if m:
        factor = 1 if m.group(2).lower() == "mib" else MIB_PER_GB
        return _scaled(m.group(1), factor, "memory", value)
    raise ValueError(f'memory {value!r} is neither MiB ("512", "512 MiB") nor GB ("2 GB", "0.5GB")')


def fargate_memory_options(cpu: int) -> list[int]:
    """Task memory values (MiB) Fargate accepts for `cpu` units; empty when `cpu` is not a Fargate size."""
    return list(FARGATE_SIZES.get(cpu, ()))


def format_mib_list(values: list[int]) -> str:
    """A short human form of a memory option list: "512, 1024, 2048" or "8192-30720 in steps of 1024"."""
    if len(values) > 3:
        step = values[1] - values[0]
        if all(b - a == step for a, b in zip(values, values[1:], strict=False)):
            return f"{values[0]}-{values[-1]} in steps of {step}"
    return ", ".join(str(v) for v in values)


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string of descending parts: "500ms", "30s", "5m", "1h", "1m30s"."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string such as '30s', not a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"duration {value!r} must be a finite, non-negative number of seconds")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"a duration must be seconds or a string such as '30s', not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("duration is empty")
    if re.fullmatch(_DECIMAL, text):
        return float(text)
    pos = 0
    total = 0.0
    last = -1
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        unit = m.group(2).lower()
        order = _DURATION_ORDER.index(unit)
        if order <= last:
            raise ValueError(
                f"duration {value!r} repeats a unit or has units out of order (use h, m, s, ms in that order)"
            )
        last = order
        total += float(m.group(1)) * _DURATION_SECONDS[unit]
        pos = m.end()
    if pos != len(text) or last < 0:
        raise ValueError(
            f"duration {value!r} is not seconds or a string such as '500ms', '30s', '5m', '1h' or '1m30s'"
        )
    return total
