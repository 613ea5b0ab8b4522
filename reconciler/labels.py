"""Container label keys: the only place label names are spelled.

Labels record ownership (managed-by, cluster, service, task id), drift (the task and container
hashes, and the canonical spec so `plan` can show field-level differences) and the holder of a
cluster's writer lock. Only containers carrying `MANAGED` are ever touched as tasks (the lock's
containers are `clusterlock`'s alone). Keys under `PREFIX` are reserved: validation rejects them in a
container's `dockerLabels`, so ownership and lock holders cannot be forged from a manifest. This module
must not decide anything; it names labels and builds the label filter.
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
REVISION = PREFIX + "revision"  # the task definition's registered revision number (family:N)
DEPLOYMENT = PREFIX + "deployment"  # the deployment (ecs-svc/...) that started a service's task
TASK_SPEC = PREFIX + "task-spec"  # canonical task-level JSON (no containers)
CONTAINER = PREFIX + "container"  # container name within the task
CONTAINER_HASH = PREFIX + "container-hash"
CONTAINER_SPEC = PREFIX + "container-spec"  # canonical container JSON (secret references, never values)
ROLE = PREFIX + "role"  # "container", or "pause" for the network holder of an awsvpc task
STARTED_BY = PREFIX + "started-by"
CREATED_AT = PREFIX + "created-at"

# The cluster writer lock (`clusterlock`): a created, never started container per engine. It carries none of
# the ownership labels above (no `MANAGED`), so nothing that lists managed containers ever sees it.
LOCK = PREFIX + "lock"  # the cluster whose writer lock it is
LOCK_TOKEN = PREFIX + "lock.token"  # unique per acquisition: a holder removes only its own
LOCK_COMMAND = PREFIX + "lock.command"  # apply, destroy, watch, ...
LOCK_HOST = PREFIX + "lock.host"  # the holder's hostname
LOCK_MACHINE = PREFIX + "lock.machine-id"  # /etc/machine-id, to tell hosts of one name apart
LOCK_BOOT = PREFIX + "lock.boot-id"  # a lock from an earlier boot of this host is stale
LOCK_PID = PREFIX + "lock.pid"
LOCK_PID_START = PREFIX + "lock.pid-start"  # the process's start time in /proc/<pid>/stat (clock ticks)
LOCK_STATE_DIR = PREFIX + "lock.state-dir"
LOCK_SINCE = PREFIX + "lock.since"  # acquisition time, RFC 3339 UTC

# The cluster's history (`ledger`): a created, never started container and a named volume per engine. Like the
# lock's, they carry no ownership label (no `MANAGED`), so nothing that lists managed objects ever sees them.
HISTORY = PREFIX + "history"  # the cluster whose history it holds

ROLE_CONTAINER = "container"
ROLE_PAUSE = "pause"


def selector(cluster: str | None = None, task: str | None = None, service: str | None = None) -> dict[str, str]:
    """Label filter for the containers, networks and volumes the reconciler manages (in one cluster, of one
    task or service); also the ownership labels such an object is created with."""
    out = {MANAGED: "true"}
    if cluster:
        out[CLUSTER] = cluster
    if task:
        out[TASK] = task
    if service:
        out[SERVICE] = service
    return out
