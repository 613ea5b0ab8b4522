"""What most commands do first: validate the manifests, build the desired state, observe the engines.

Owns the `Session` a command works in (desired state, engine connections, observed state) and the
rule that invalid manifests stop a command before any engine is touched. It must not print plans or
decide anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler import observe, state
from reconciler.environment import Environment
from reconciler.errors import ExitStatus, UserError
from reconciler.manifests import build, document, validate
from reconciler.model import observed as obs
from reconciler.model import spec

DEFAULT_PATHS = ("manifests",)


def load_desired(env: Environment, paths: Iterable[str]) -> spec.DesiredState:
    """The desired state of `paths`; invalid manifests raise UserError after printing every error."""
    result = validate.validate_paths(list(paths) or list(DEFAULT_PATHS))
    for d in result.diagnostics:
        if d.severity != document.NOTICE:
            env.err(d.format())
    if not result.ok:
        n = len(result.errors)
        raise UserError(f"{n} error{'s' if n != 1 else ''} in the manifests; nothing was changed")
    if not result.files:
        raise UserError("no manifest files found")
    return build.desired_state(result.documents, env.environ)


@dataclass
class Session:
    env: Environment
    desired: spec.DesiredState
    engines: observe.Engines
    observed: dict[str, obs.ClusterState] = field(default_factory=dict)
    remember: bool = False  # record what each instance runs, for when its engine stops answering

    def refresh(self, clusters: Iterable[str] | None = None) -> dict[str, obs.ClusterState]:
        wanted = self.desired.clusters
        if clusters is not None:
            names = set(clusters)
            wanted = {k: v for k, v in wanted.items() if k in names}
        store = self.env.state()
        now = time.time()
        for name, cstate in observe.observe(self.desired, self.engines, wanted).items():
            self.observed[name] = state.recall(store, cstate, now, write=self.remember)
        return self.observed

    def report_unreachable(self) -> int:
        count = 0
        for cstate in self.observed.values():
            for inst in cstate.instances.values():
                if not inst.reachable:
                    self.env.err(f"error: engine {inst.endpoint} (instance {inst.name}, cluster {cstate.cluster}) is unreachable: {inst.error}")
                    count += 1
        return count

    def close(self) -> None:
        self.engines.close()


def open_session(env: Environment, paths: Iterable[str], cluster: str | None = None) -> Session:
    desired = load_desired(env, paths)
    if cluster is not None and cluster not in desired.clusters:
        known = ", ".join(sorted(desired.clusters)) or "none"
        raise UserError(f"no cluster named {cluster} in the manifests (clusters: {known})")
    session = Session(env, desired, observe.Engines(env.engine_factory))
    session.refresh([cluster] if cluster else None)
    return session


def parse_target(targets: Iterable[str] | None) -> frozenset[str] | None:
    if not targets:
        return None
    names = set()
    for t in targets:
        kind, sep, name = t.partition("/")
        if not sep or kind != "service" or not name:
            raise UserError(f"--target {t}: expected service/NAME")
        names.add(name)
    return frozenset(names)


def require_services(desired: spec.DesiredState, names: frozenset[str] | None) -> None:
    if names:
        missing = sorted(n for n in names if n not in desired.services)
        if missing:
            raise UserError(f"--target: no service named {', '.join(missing)} in the manifests", ExitStatus.ERROR)
