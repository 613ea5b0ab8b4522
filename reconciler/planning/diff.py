"""Field-level differences between two canonical task specs, as readable lines.

Owns turning a running task's recorded spec and the desired one into lines such as
`containerDefinitions[web].environment[GREETING]: 'hello' -> 'bonjour'`. Lists of named items
(containers, environment, secrets, ulimits, volumes) are keyed by name first so a reorder is no change
and a change names its item. It must not decide anything about replacing; the planner does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import deepdiff

_NAMED_LISTS = {
    "containerDefinitions": "name",
    "environment": "name",
    "secrets": "name",
    "ulimits": "name",
    "volumes": "name",
    "dependsOn": "containerName",
    "extraHosts": "hostname",
    "mountPoints": "containerPath",
    "volumesFrom": "sourceContainer",
    "tmpfs": "containerPath",
}


def _keyed(value: Any, parent: str | None = None) -> Any:
    if isinstance(value, Mapping):
        return {k: _keyed(v, k) for k, v in value.items()}
    if isinstance(value, list):
        key = _NAMED_LISTS.get(parent or "")
        if key and all(isinstance(v, Mapping) and key in v for v in value):
            if parent in ("environment", "secrets"):
                field = "value" if parent == "environment" else "valueFrom"
                return {v[key]: v.get(field) for v in value}
            return {str(v[key]): _keyed({k: x for k, x in v.items() if k != key}) for v in value}
        return [_keyed(v) for v in value]
    return value


def _path(path: list[Any]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        elif out and _is_item(out):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _is_item(prefix: str) -> bool:
    last = prefix.rsplit(".", 1)[-1].split("[")[0]
    return last in _NAMED_LISTS and not prefix.endswith("]")


def _show(value: Any) -> str:
    if value is deepdiff.helper.notpresent or value is None:
        return "(absent)"
    return repr(value)


def spec_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Readable field-level changes from `old` to `new` (both canonical), sorted."""
    dd = deepdiff.DeepDiff(_keyed(dict(old)), _keyed(dict(new)), ignore_order=False, view="tree", verbose_level=2)
    lines = []
    for kind, items in dd.items():
        for item in items:
            where = _path(item.path(output_format="list"))
            if kind in ("dictionary_item_added", "iterable_item_added"):
                lines.append(f"{where}: (absent) -> {_show(item.t2)}")
            elif kind in ("dictionary_item_removed", "iterable_item_removed"):
                lines.append(f"{where}: {_show(item.t1)} -> (absent)")
            else:
                lines.append(f"{where}: {_show(item.t1)} -> {_show(item.t2)}")
    return sorted(lines)
