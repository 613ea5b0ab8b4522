"""How a Service names its cluster and its task definition: short names, `family:N` pins and ECS ARNs.

Owns reading the two reference strings of a Service spec (`cluster`, `taskDefinition`) in every form
ECS accepts: a cluster name or `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`; a task definition as `family`,
`family:N` or `arn:aws:ecs:REGION:ACCOUNT:task-definition/family[:N]`. The semantic rules and `build` both
read references through here, so what is checked is what is built. The schema's patterns say which
strings are well formed; this only splits them. Pure; never raises.
"""

from __future__ import annotations

from typing import Any

DEFAULT_CLUSTER = "default"
_CLUSTER_ARN = ":cluster/"
_TASK_DEFINITION_ARN = ":task-definition/"


def cluster_name(value: Any) -> str | None:
    """The cluster a `cluster` value names: `default` when unset, NAME of a cluster ARN; None when not a string."""
    if value is None:
        return DEFAULT_CLUSTER
    if not isinstance(value, str):
        return None
    if value.startswith("arn:") and _CLUSTER_ARN in value:
        return value.split(_CLUSTER_ARN, 1)[1]
    return value


def task_definition(value: Any) -> tuple[str, str | None] | None:
    """(family, revision as written or None) of a `taskDefinition` value; None when not a string."""
    if not isinstance(value, str):
        return None
    if value.startswith("arn:") and _TASK_DEFINITION_ARN in value:
        value = value.split(_TASK_DEFINITION_ARN, 1)[1]
    family, colon, revision = value.partition(":")
    return family, (revision if colon else None)


def revision_number(revision: str | None) -> int | None:
    """A pinned revision as a number: an integer >= 1, else None (unpinned, or not a revision)."""
    if revision is None or not revision.isascii() or not revision.isdigit():
        return None
    number = int(revision)
    return number if number >= 1 else None
