"""reconciler: an ECS-style container orchestrator for plain Docker hosts, driven by Git.

Manifests (Cluster, TaskDefinition, Service, Alarm) are validated against `schemas/`, planned against the
containers observed on every engine, and converged by `apply` or the `watch` daemon.
"""

__version__ = "0.1.0"
