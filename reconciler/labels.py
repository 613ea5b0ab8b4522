"""Container label keys: the only place label names are spelled.

Labels record ownership (managed-by, cluster, service, task id) and drift (the task and container
hashes, and the canonical spec so `plan` can show field-level differences). Only containers carrying
`MANAGED` are ever touched. Keys under `PREFIX` are reserved: validation rejects them in a container's
`dockerLabels`, so ownership cannot be forged from a manifest. This module must not decide anything; it
names labels and builds the label filter.
"""

from __future__ import annotations

PREFIX = "io.reconciler."
MANAGED = PREFIX + "managed"  # "true" on everything the reconciler creates
CLUSTER = PREFIX + "cluster"
INSTANCE = PREFIX + "instance"
SERVICE = PREFIX + "service"  # absent on one-off tasks (run-task)
GROUP = PREFIX + "group"  # "service:NAME" or "family:NAME", as ECS
TASK = PREFIX + "task-id"
FAMILY = PREFIX + "family"
TASK_HASH = PREFIX + "task-hash"
TASK_SPEC = PREFIX + "task-spec"  # canonical task-level JSON (no containers)
CONTAINER = PREFIX + "container"  # container name within the task
CONTAINER_HASH = PREFIX + "container-hash"
CONTAINER_SPEC = PREFIX + "container-spec"  # canonical container JSON (secret references, never values)
ROLE = PREFIX + "role"  # "container", or "pause" for the network holder of an awsvpc task
STARTED_BY = PREFIX + "started-by"
CREATED_AT = PREFIX + "created-at"

ROLE_CONTAINER = "container"
ROLE_PAUSE = "pause"


def selector(cluster: str | None = None) -> dict[str, str]:
    """Label filter for the containers, networks and volumes the reconciler manages (in one cluster)."""
    out = {MANAGED: "true"}
    if cluster:
        out[CLUSTER] = cluster
    return out
