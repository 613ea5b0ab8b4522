"""Alarm states on disk: `alarms.json` in the state directory, for `reconciler get alarms` and restarts.

Owns the file's JSON shape (`{"version": 1, "writtenAt": epoch, "pid": writer, "alarms": {name: state}}`,
each state with its value, reason, `stateUpdatedTimestamp`, `evaluatedAt`, the latest metric error and
the datapoints of its evaluation range) and its atomic replacement: a unique temporary file in the same
directory, flushed to disk, then renamed over the old one, so a reader in another process sees the old
file or the new one, never half of one. `evaluatedAt` lets a reader tell a state nobody keeps current
(no daemon running) from a live one. Loading is lenient: a missing, unreadable or foreign file, or an
entry that does not parse, is no state rather than an error.

It must not evaluate alarms or decide staleness (`alarms.report` does), and it writes no other file;
the state directory's other files are `reconciler.state`'s.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from reconciler.alarms import evaluate as E
from reconciler.state import StateDir, write_text

FILE = "alarms.json"
VERSION = 1


def to_dict(state: E.AlarmState) -> dict[str, Any]:
    return {
        "stateValue": state.state,
        "stateReason": state.reason,
        "stateUpdatedTimestamp": state.updated_at,
        "evaluatedAt": state.evaluated_at,
        "error": state.error,
        "basis": state.basis,
        "datapoints": [[p.timestamp, p.value, p.sample_count] for p in state.datapoints],
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def from_dict(name: str, entry: Any) -> E.AlarmState | None:
    """The state saved under `name`; None when the entry is not one."""
    if not isinstance(entry, Mapping) or entry.get("stateValue") not in E.STATES:
        return None
    points = []
    for item in entry.get("datapoints") or ():
        if isinstance(item, list) and len(item) == 3 and _number(item[0]) is not None and isinstance(item[2], int):
            points.append(E.Datapoint(float(item[0]), _number(item[1]), item[2]))
    error = entry.get("error")
    return E.AlarmState(
        name=name,
        state=entry["stateValue"],
        reason=str(entry.get("stateReason") or ""),
        updated_at=_number(entry.get("stateUpdatedTimestamp")),
        datapoints=tuple(points),
        evaluated_at=_number(entry.get("evaluatedAt")),
        error=str(error) if error else None,
        basis=str(entry.get("basis") or ""),
    )


class AlarmStore:
    """`alarms.json` of one state directory."""

    def __init__(self, state_dir: StateDir | str):
        self.directory = state_dir.path if isinstance(state_dir, StateDir) else str(state_dir)

    @property
    def path(self) -> str:
        return os.path.join(self.directory, FILE)

    def save(self, states: Mapping[str, E.AlarmState], now: float) -> None:
        """Replaces the file with `states` (all of them: an alarm left out is gone). Raises OSError."""
        document = {
            "version": VERSION,
            "writtenAt": now,
            "pid": os.getpid(),
            "alarms": {name: to_dict(s) for name, s in sorted(states.items())},
        }
        os.makedirs(self.directory, exist_ok=True)
        write_text(self.path, json.dumps(document, sort_keys=True, indent=1) + "\n", sync=True)

    def load(self) -> dict[str, E.AlarmState]:
        """The saved states by alarm name; {} without a readable file."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                document = json.load(fh)
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("version") != VERSION:
            return {}
        entries = document.get("alarms")
        out = {}
        for name, entry in (entries.items() if isinstance(entries, dict) else ()):
            state = from_dict(str(name), entry)
            if state is not None:
                out[str(name)] = state
        return out
