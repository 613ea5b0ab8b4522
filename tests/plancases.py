"""Data-driven planner cases (tests/planner_cases/*.yaml): loading, the world they describe, the compact plan.

Owns the case format (see tests/planner_cases/README.md): reading a case file; building its desired state
through the real pipeline (validate, build); loading its compact observed state into `FakeEngine`s (the
containers are made with `translate.container_request`, so they carry exactly the labels a started task's
containers carry, and brought to their states with the fake engine's own calls, so the Engine API list and
inspect shapes are the fake's); observing them with `observe.observe` (plus `state.recall` for the
last-known tasks of an unreachable engine); the work in flight; the compact form of a plan that a case
expects, its comparison (reasons are substrings) and the rewriting of a case's expectation.

Also, for the idempotence check, `settle`: the world after the work in flight finished and health checks
passed, as it stands when the next passes (`fakes.drive`) carry the plan out.

`python tests/plancases.py CASE.yaml` prints the Engine API list JSON of a case's engines.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fakes import FakeEngine  # noqa: E402

from reconciler import labels as L  # noqa: E402
from reconciler import observe, state  # noqa: E402
from reconciler.engine import pause, translate  # noqa: E402
from reconciler.manifests import build, validate  # noqa: E402
from reconciler.model import inflight as F  # noqa: E402
from reconciler.model import observed as obs  # noqa: E402
from reconciler.model import plan as P  # noqa: E402
from reconciler.model import spec  # noqa: E402
from reconciler.planning import dependencies, planner, resources  # noqa: E402

CASES = Path(__file__).resolve().parent / "planner_cases"
DEFAULT_NOW = 1_000_000_000.0
DEFAULT_AGE = 3600.0  # seconds since a task was created, unless the case says otherwise
SETTLE_AFTER = 3600.0  # the idempotence passes run this much later than the case's `now`
PASS_SECONDS = 10.0  # simulated time between two idempotence passes
UPDATE_ENV = "UPDATE_PLANNER_CASES"
CASE_KEYS = {"description", "xfail", "now", "manifests", "revisions", "observed", "inflight", "options", "settled", "expect"}
SUBSTRING_KEYS = {"reason", "unplacedReason", "warnings", "unreachable"}  # expected text need only be part of the actual


class CaseError(ValueError):
    """A case file that does not follow the format."""


# -- the case file ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    name: str
    path: Path
    data: dict[str, Any]

    @property
    def description(self) -> str:
        return str(self.data.get("description") or "").strip()

    @property
    def xfail(self) -> str | None:
        return self.data.get("xfail")

    @property
    def now(self) -> float:
        return float(self.data.get("now", DEFAULT_NOW))

    @property
    def expect(self) -> dict[str, Any] | None:
        return self.data.get("expect")


def load(path: Path) -> Case:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CaseError(f"{path.name}: a case is a YAML mapping")
    unknown = set(data) - CASE_KEYS
    if unknown:
        raise CaseError(f"{path.name}: unknown keys {sorted(unknown)} (known: {sorted(CASE_KEYS)})")
    return Case(path.stem, path, data)


def discover(directory: Path = CASES) -> list[Path]:
    return sorted(directory.glob("*.yaml"))


# -- the world ---------------------------------------------------------------------------------------------


_STATE_WORDS = re.compile(r"^(running|created|exited|absent)(?:\s+(.*))?$")


def container_state(value: Any) -> dict[str, Any]:
    """`running`, `running starting`, `created`, `exited 137 oom`, `absent`, or a mapping with the same keys
    (state, health, exit, oom, error)."""
    if isinstance(value, Mapping):
        out = dict(value)
        out.setdefault("state", "running")
        return out
    m = _STATE_WORDS.match(str(value).strip())
    if not m:
        raise CaseError(f"container state {value!r}: expected running|created|exited|absent [...]")
    out: dict[str, Any] = {"state": m.group(1)}
    for word in (m.group(2) or "").split():
        if word in ("healthy", "unhealthy", "starting"):
            out["health"] = word
        elif word == "oom":
            out["oom"] = True
        elif re.fullmatch(r"-?\d+", word):
            out["exit"] = int(word)
        else:
            raise CaseError(f"container state {value!r}: unknown word {word!r}")
    return out


class World:
    """A case's desired state, revisions and fake engines, as the planner and the runner see them."""

    def __init__(self, case: Case, workdir: Path):
        self.case = case
        self.workdir = workdir
        self.now = case.now
        self.desired = self._desired(case.data.get("manifests") or [], workdir / "manifests")
        self.revisions = self._revisions(case.data.get("revisions") or {}, workdir / "revisions")
        self.store = state.StateDir(str(workdir / "state"))
        images = {pause.PAUSE_IMAGE}
        for td in [*self.desired.task_definitions.values(), *self.revisions.values()]:
            images |= {c["image"] for c in td.containers}
        self.engines: dict[str, FakeEngine] = {}
        self.instances: dict[str, tuple[str, spec.Instance]] = {}  # name -> (cluster, instance)
        for cluster in self.desired.clusters.values():
            for inst in cluster.all_instances():
                self.instances[inst.name] = (cluster.name, inst)
        observed = case.data.get("observed") or {}
        unknown_clusters = set(observed) - set(self.desired.clusters)
        if unknown_clusters:
            raise CaseError(f"observed clusters {sorted(unknown_clusters)} are not declared")
        for cluster in self.desired.clusters.values():
            raw = (observed.get(cluster.name) or {}).get("instances") or {}
            unknown_instances = set(raw) - {i.name for i in cluster.all_instances()}
            if unknown_instances:
                raise CaseError(f"observed instances {sorted(unknown_instances)} are not declared in {cluster.name}")
            for inst in cluster.all_instances():
                cfg = raw.get(inst.name) or {}
                cpu, memory = int(cfg.get("cpu", 2048)), int(cfg.get("memory", 4096))
                if cpu % 1024:
                    raise CaseError(f"instance {inst.name}: cpu {cpu} is not whole CPUs (use resources in the Cluster)")
                engine = FakeEngine(inst.endpoint, cpus=cpu // 1024, memory_mib=memory, images=tuple(sorted(images)),
                                    architecture=cfg.get("architecture", "x86_64"))
                engine.clock = lambda: self.now
                self.engines[inst.endpoint] = engine
        self.ids: dict[str, str] = {}  # task id -> cluster
        for cluster_name, cstate in observed.items():
            for task in (cstate or {}).get("tasks") or []:
                self.add_task(cluster_name, task)
        for e in self.engines.values():
            e.calls.clear()

    # -- desired state ---------------------------------------------------------------------------

    def _write(self, docs: list[Any], directory: Path, default_kind: str | None = None) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for doc in docs:
            if not isinstance(doc, Mapping):
                raise CaseError(f"a manifest document is a mapping, not {doc!r}")
            doc = {"apiVersion": "reconciler/v1", **({"kind": default_kind} if default_kind else {}), **doc}
            out.append(doc)
        path = directory / "m.yaml"
        path.write_text(yaml.safe_dump_all(out, sort_keys=False), encoding="utf-8")
        return path

    def _validated(self, path: Path) -> spec.DesiredState:
        result = validate.validate_paths([str(path)])
        if not result.ok:
            raise CaseError("invalid manifests:\n" + "\n".join(d.format() for d in result.errors))
        return build.desired_state(result.documents, {})

    def _desired(self, docs: list[Any], directory: Path) -> spec.DesiredState:
        return self._validated(self._write(docs, directory))

    def _revisions(self, raw: Mapping[str, Any], directory: Path) -> dict[str, spec.TaskDefinition]:
        out = {}
        for key, rev in raw.items():
            if not isinstance(rev, Mapping) or "family" not in rev or "spec" not in rev:
                raise CaseError(f"revision {key}: needs family and spec")
            doc = {"kind": "TaskDefinition", "metadata": {"name": rev["family"]}, "spec": rev["spec"]}
            desired = self._validated(self._write([doc], directory / key))
            out[key] = desired.task_definitions[rev["family"]]
        return out

    def revision(self, key: str | None, service: str | None) -> spec.TaskDefinition:
        if key is None:
            svc = self.desired.services.get(service or "")
            if svc is None:
                raise CaseError(f"a task of {service!r}, which no manifest declares, needs a revision")
            return self.desired.task_definitions[svc.task_definition]
        if key in self.revisions:
            return self.revisions[key]
        if key in self.desired.task_definitions:
            return self.desired.task_definitions[key]
        raise CaseError(f"revision {key!r} is neither in revisions nor a task definition of the manifests")

    def _default_service(self, cluster: str) -> str | None:
        services = self.desired.services_of(cluster)
        return services[0].name if len(services) == 1 else None

    # -- tasks on the fake engines ---------------------------------------------------------------

    def add_task(self, cluster: str, task: Mapping[str, Any], age: float | None = None) -> None:
        """Makes the containers of one compact task on its instance's fake engine (see README.md)."""
        known = {"id", "instance", "service", "revision", "age", "state", "health", "containers", "startedBy"}
        if set(task) - known:
            raise CaseError(f"task {task.get('id')}: unknown keys {sorted(set(task) - known)}")
        task_id, instance = str(task["id"]), str(task["instance"])
        if task_id in self.ids:
            raise CaseError(f"task id {task_id} appears twice")
        if instance not in self.instances or self.instances[instance][0] != cluster:
            raise CaseError(f"task {task_id}: instance {instance} is not declared in cluster {cluster}")
        self.ids[task_id] = cluster
        inst = self.instances[instance][1]
        engine = self.engines[inst.endpoint]
        service = task["service"] if "service" in task else self._default_service(cluster)
        td = self.revision(task.get("revision"), service)
        created = self.now - float(task.get("age", DEFAULT_AGE if age is None else age))
        group = f"service:{service}" if service else f"family:{td.family}"
        ctx = translate.TaskContext(
            cluster=cluster, instance=instance, task_id=task_id, family=td.family, task_hash=td.task_hash, group=group,
            service=service, task_spec=td.spec, publish_address=inst.publish_address,
            started_by=str(task.get("startedBy", "reconciler")),
            created_at=datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds"),
        )
        names = [c["name"] for c in td.containers]
        states = task.get("containers") or {}
        pause_key = "~pause"  # the awsvpc namespace holder, as its container label names it
        allowed = set(names) | ({pause_key} if td.network_mode == "awsvpc" else set())
        if set(states) - allowed:
            raise CaseError(f"task {task_id}: containers {sorted(set(states) - allowed)} are not in {td.family}")
        default = container_state(task.get("state", "running"))
        if task.get("health"):
            default["health"] = task["health"]
        made: list[tuple[str, dict[str, Any]]] = []
        if td.network_mode == "awsvpc":
            holder = engine.create_container(translate.pause_request(ctx, pause.PAUSE_IMAGE))
            made.append((holder, container_state(states.get(pause_key, "running"))))
            ctx = dataclasses.replace(ctx, namespace_holder=holder)
        elif td.network_mode == "bridge" and len(names) > 1:
            name = translate.network_name(translate.task_owner(ctx), task_id)
            engine.create_network(name, L.selector(cluster, task=task_id))
            ctx = dataclasses.replace(ctx, network=name)
        ids: dict[str, str] = {}
        for c in dependencies.creation_order(td.containers):
            want = container_state(states[c["name"]]) if c["name"] in states else dict(default)
            if want["state"] == "absent":
                continue
            if want.get("health") and not c.get("healthCheck"):
                if c["name"] in states:
                    raise CaseError(f"task {task_id}: container {c['name']} has no healthCheck, so no health")
                want.pop("health")
            request = translate.container_request(c, dataclasses.replace(ctx, container_ids=dict(ids)), {})
            cid = engine.create_container(request)
            ids[c["name"]] = cid
            made.append((cid, want))
        for cid, want in made:
            if want["state"] == "absent":  # only the namespace holder gets here: made, then gone
                engine.remove_container(cid)
            else:
                self._bring(engine, cid, want, created)

    def _bring(self, engine: FakeEngine, cid: str, want: Mapping[str, Any], created: float) -> None:
        """Brings a created container to the wanted state with the fake engine's own calls, at case times."""
        c = engine.containers[cid]
        c["Created"] = created
        if want["state"] == "created":
            return
        has_check = bool(c["Request"].healthcheck)
        before = engine.health_on_start
        engine.health_on_start = want.get("health", "healthy")  # an exited container's: before it exited
        engine.clock = lambda: created + 1
        try:
            engine.start_container(cid)
            if want["state"] == "exited":
                engine.exit(cid, int(want.get("exit", 0)), oom=bool(want.get("oom")), at=self.now - 1)
                if want.get("error"):
                    c["State"]["Error"] = want["error"]
        finally:
            engine.health_on_start = before
            engine.clock = lambda: self.now
        if not has_check:
            c["State"].pop("Health", None)

    # -- what the planner is given ---------------------------------------------------------------

    def connections(self) -> observe.Engines:
        return observe.Engines(lambda inst: self.engines[inst.endpoint])

    def _unreachable(self) -> dict[str, float]:
        """Instance -> seconds its engine has not answered, for the instances the case marks unreachable."""
        out = {}
        for cstate in (self.case.data.get("observed") or {}).values():
            for name, cfg in ((cstate or {}).get("instances") or {}).items():
                if cfg and cfg.get("reachable", True) is False:
                    out[name] = float(cfg.get("unreachableFor", 0))
        return out

    def observe(self) -> dict[str, obs.ClusterState]:
        """The observation the planner is given. An unreachable engine's tasks are what the state directory
        remembers of it (`state.recall`, as `apply` and the daemon do): its RUNNING service tasks when it last
        answered, an hour ago; it has not answered for the case's `unreachableFor` seconds."""
        down = self._unreachable()
        if not down:
            return observe.observe(self.desired, self.connections())
        for name in down:
            self.engines[self.instances[name][1].endpoint].down = False
        for cstate in observe.observe(self.desired, self.connections()).values():
            state.recall(self.store, cstate, self.now - 3600)
        for name in down:
            self.engines[self.instances[name][1].endpoint].down = True
        out = {}
        for cluster, cstate in observe.observe(self.desired, self.connections()).items():
            cstate = state.recall(self.store, cstate, self.now, write=False)
            instances = dict(cstate.instances)
            for name, seconds in down.items():
                if name in instances:
                    instances[name] = dataclasses.replace(instances[name], unreachable_since=self.now - seconds)
            out[cluster] = dataclasses.replace(cstate, instances=instances)
        return out

    def inflight(self) -> F.InFlight:
        raw = self.case.data.get("inflight") or {}
        starts = []
        for s in raw.get("starts") or []:
            cluster = s.get("cluster") or self.instances[s["instance"]][0]
            service = s["service"] if "service" in s else self._default_service(cluster)
            td = self.revision(s.get("revision"), service)
            res = resources.reservation(td.spec)
            group = f"service:{service}" if service else f"family:{td.family}"
            starts.append(F.PendingStart(cluster, service, s["instance"], str(s["id"]), td.task_hash, group,
                                         res["cpu"], res["memory"], res["ports"]))
        return F.InFlight(tuple(starts), frozenset(map(str, raw.get("stopping") or [])),
                          frozenset(map(str, raw.get("advancing") or [])))

    def options(self, inflight: F.InFlight = F.NOTHING) -> planner.Options:
        return planner.Options(inflight=inflight, **self.case_options())

    def case_options(self) -> dict[str, Any]:
        raw = dict(self.case.data.get("options") or {})
        out: dict[str, Any] = {}
        if "prune" in raw:
            out["prune"] = bool(raw.pop("prune"))
        if "targets" in raw:
            out["targets"] = frozenset(raw.pop("targets"))
        if "unreachableGrace" in raw:
            out["unreachable_grace"] = float(raw.pop("unreachableGrace"))
        if "desiredCounts" in raw:
            out["desired_counts"] = {k: (int(v[0]), str(v[1])) for k, v in raw.pop("desiredCounts").items()}
        if raw:
            raise CaseError(f"unknown options {sorted(raw)}")
        return out

    def plan(self) -> P.Plan:
        """The case's plan: its observation, `now`, work in flight and options."""
        return planner.plan(self.desired, self.observe(), self.now, self.options(self.inflight()))

    def plan_with(self, now: float) -> P.Plan:
        """A plan as the idempotence passes make it: a plain observation, nothing in flight."""
        return planner.plan(self.desired, observe.observe(self.desired, self.connections()), now, self.options())

    # -- the world moving on ---------------------------------------------------------------------

    def settle(self) -> None:
        """The work in flight finished (stops removed their tasks, starts made theirs, advances started the
        created containers) and every health check still starting passed. Unreachable engines stay down."""
        for e in self.engines.values():
            e.down = False
        raw = self.case.data.get("inflight") or {}
        stopping = set(map(str, raw.get("stopping") or []))
        advancing = set(map(str, raw.get("advancing") or []))
        for e in self.engines.values():
            for cid, c in list(e.containers.items()):
                task = c["Config"]["Labels"].get(L.TASK)
                if task in stopping:
                    e.remove_container(cid)
                elif task in advancing and c["State"]["Status"] == "created":
                    e.start_container(cid)
        for s in raw.get("starts") or []:
            cluster = s.get("cluster") or self.instances[s["instance"]][0]
            self.add_task(cluster, {k: v for k, v in s.items() if k != "cluster"}, age=0)
        for e in self.engines.values():
            for cid, c in e.containers.items():
                if c["State"]["Status"] == "running" and (c["State"].get("Health") or {}).get("Status") == "starting":
                    e.set_health(cid, "healthy")
        for name in self._unreachable():
            self.engines[self.instances[name][1].endpoint].down = True
        for e in self.engines.values():
            e.calls.clear()

    def passes(self, now: float, max_passes: int = 200) -> list[P.Plan]:
        """Reconcile passes until settled (`fakes.drive`), time moving on `PASS_SECONDS` between passes."""
        import fakes

        def tick(at: float) -> None:
            self.now = at

        self.now = now
        return fakes.drive(self.desired, self.connections(), now=now, max_passes=max_passes, tick=tick,
                           step=PASS_SECONDS, **self.case_options())

    def running_per_instance(self) -> dict[str, dict[str, int]]:
        """Service -> instance -> RUNNING tasks, from a fresh observation."""
        out: dict[str, dict[str, int]] = {}
        for cstate in observe.observe(self.desired, self.connections()).values():
            for t in cstate.tasks:
                if t.service and t.status().last_status == obs.RUNNING:
                    per = out.setdefault(t.service, {})
                    per[t.instance] = per.get(t.instance, 0) + 1
        return {s: dict(sorted(v.items())) for s, v in sorted(out.items())}


# -- the compact plan ----------------------------------------------------------------------------------------


def step_shape(step: P.Step) -> str:
    parts = [f"{sign}{len(items)}" for sign, items in (("+", step.starts), ("-", step.stops), (">", step.advances)) if items]
    text = " ".join(parts) or "(nothing)"
    return f"{text} once {step.after}" if step.after else text


def summarize(plan: P.Plan) -> dict[str, Any]:
    """The compact form a case expects (see README.md)."""
    names = [sp.service for sp in plan.services]
    services: dict[str, Any] = {}
    for sp in plan.services:
        key = sp.service if names.count(sp.service) == 1 else f"{sp.cluster}/{sp.service}"
        d: dict[str, Any] = {
            "desired": sp.desired,
            "running": sp.running,
            "counts": {"add": sp.add, "replace": sp.replace, "remove": sp.remove, "unplaced": sp.unplaced,
                       "advance": sp.advance},
        }
        if sp.unplaced_reason:
            d["unplacedReason"] = sp.unplaced_reason
        now: dict[str, Any] = {}
        step = sp.now
        if step.starts:
            now["starts"] = [{"instance": a.instance, "reason": a.reason} for a in step.starts]
        if step.stops:
            now["stops"] = [{"task": a.task_id, "code": a.stop_code, "reason": a.reason} for a in step.stops]
        if step.advances:
            now["advances"] = [{"task": a.task_id, "containers": list(a.containers), "reason": a.reason} for a in step.advances]
        d["now"] = now
        d["waiting"] = list(sp.waiting)
        d["steps"] = [step_shape(s) for s in sp.steps]
        if sp.diff:
            d["diff"] = list(sp.diff)
        if sp.warnings:
            d["warnings"] = list(sp.warnings)
        if sp.pruned:
            d["pruned"] = True
        if sp.desired_source != "manifest":
            d["desiredSource"] = sp.desired_source
        services[key] = d
    out: dict[str, Any] = {"services": services}
    if plan.orphans:
        out["orphans"] = list(plan.orphans)
    if plan.unreachable:
        out["unreachable"] = dict(sorted(plan.unreachable.items()))
    if plan.strangers:
        out["strangers"] = list(plan.strangers)
    if plan.one_off:
        one_off = []
        for a in plan.one_off:
            if isinstance(a, P.StartContainers):
                one_off.append({"action": "start-containers", "task": a.task_id, "containers": list(a.containers),
                                "reason": a.reason})
            else:
                one_off.append({"action": "stop", "task": a.task_id, "code": a.stop_code, "reason": a.reason})
        out["oneOff"] = one_off
    return out


def project(actual: Any, expected: Any, key: str | None = None) -> Any:
    """`actual`, with each text the expectation gives as a part of it (reasons, warnings, unplaced and
    unreachable reasons) replaced by that expected part, so that equality means "matches"."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        inherit = key in SUBSTRING_KEYS  # the values of a map of texts (unreachable: endpoint -> error)
        return {k: project(v, expected[k], key if inherit else k) if k in expected else v for k, v in actual.items()}
    if isinstance(actual, list) and isinstance(expected, list):
        return [project(a, e, key) for a, e in zip(actual, expected, strict=False)] + actual[len(expected):]
    if key in SUBSTRING_KEYS and isinstance(actual, str) and isinstance(expected, str) and expected and expected in actual:
        return expected
    return actual


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key; texts holding a single quote in double quotes."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "'" in value else None)


_Dumper.add_representer(str, _text)


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)


def mismatch(actual: dict[str, Any], expected: dict[str, Any]) -> str | None:
    """A unified diff of the expectation against what the planner did (None when they match)."""
    seen = project(actual, expected)
    if seen == expected:
        return None
    lines = difflib.unified_diff(dump(expected).splitlines(), dump(seen).splitlines(), "expected", "actual", lineterm="")
    return "\n".join(lines)


def rewrite_expectation(case: Case, actual: dict[str, Any]) -> None:
    """Replaces the case's `expect:` section (the file's last top-level key) by `actual`, keeping the parts
    of the old expectation that still match; everything above it is kept as written."""
    new = project(actual, case.expect) if case.expect else actual
    text = case.path.read_text(encoding="utf-8")
    m = re.search(r"^expect:.*$", text, flags=re.M)
    head = text[: m.start()] if m else text.rstrip("\n") + "\n"
    body = "\n".join("  " + line if line else line for line in dump(new).splitlines())
    case.path.write_text(f"{head}expect:\n{body}\n", encoding="utf-8")


if __name__ == "__main__":  # python tests/plancases.py CASE.yaml: the Engine API list JSON of its engines
    import tempfile

    for arg in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            world = World(load(Path(arg)), Path(tmp))
            listing = {ep: e.list_containers(L.selector()) for ep, e in world.engines.items()}
            print(json.dumps(listing, indent=2, default=str))
    if len(sys.argv) < 2:
        print(f"usage: {os.path.basename(sys.argv[0])} CASE.yaml...", file=sys.stderr)
