"""The scheduler: which container instance gets each new task, and which tasks go on scale-in.

Owns the placement inputs (`Instance`, `PlacedTask`, `TaskRequest` with its `Constraint`s and
`Strategy`s), the incrementally maintained `ClusterView`, the filters that say why an instance was
rejected (Nomad's FilterNode), the ECS strategies (random, spread, binpack) and the ECS default
placement. It must not do I/O, read a clock, use unseeded randomness or import docker: every
decision is a function of the view, the request and the seed.

How a task is placed (ecs-reference.md §4.3):

1. Filters, in this order; an instance is counted under the first one it fails: status ACTIVE,
   agent connected, every `memberOf` expression, `distinctInstance`, cpu, memory, static host ports.
2. Strategies, in the order given, each narrowing the candidates left by the previous one:
   ``spread(instanceId|host)`` keeps the instances with the fewest tasks of the group;
   ``spread(attribute:NAME)`` keeps the instances whose value of NAME has the fewest tasks of the group
   in the whole cluster; ``binpack(cpu|memory)`` keeps the instances with the least of it remaining;
   ``random`` picks one of the candidates with the seeded RNG (strategies after it have nothing left
   to decide). No strategy means ``spread(attribute:ecs.availability-zone), spread(instanceId)``.
3. Remaining ties go to the first candidate in this order: the values of the chain's attribute spreads
   (in chain order, an instance lacking the attribute after every value), then the instance id.
   ``random`` picks uniformly from the candidates in that same order.

Decisions where ECS is unspecific:

* Instances lacking a spread attribute are not excluded (a strategy ranks, it never filters): together
  they form one more bucket, which is balanced like any other value.
* Spread counts include every task of the group in the view, wherever it runs.
* An unplaced reason counts each instance once, under the first filter it fails; the parts are listed
  by count, and among equal counts requirement failures come before instance states (DRAINING,
  disconnected).
* `place` and `choose_to_stop` apply what they decide to the view, so successive calls see each other's
  effects; pass ``view.copy()`` to ask "what if".
* Scale-in first stops tasks on instances that cannot take placements (unknown, not ACTIVE or agent
  disconnected). Then, strategy by strategy, it keeps the candidates on the fullest spread bucket /
  instance, or for ``binpack`` on the least utilised instance (highest fraction of the resource
  remaining), so binpack empties whole instances; the last tie goes to the lowest instance id, then the
  lowest task id.

Two implementations of `place` exist: `place_naive`, which re-runs every filter on every instance for
each task (obviously correct, O(instances) per task), and the fast path behind `place`, which keeps the
candidates in buckets of spread values, each holding a heap of per-instance keys, and re-examines only
the instance that just received a task. Tests check that both agree.
"""

from __future__ import annotations

import functools
import heapq
import random
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from reconciler.model import spec
from reconciler.planning import query

ACTIVE = "ACTIVE"
DRAINING = "DRAINING"
AVAILABILITY_ZONE = "ecs.availability-zone"


class PlacementSpecError(ValueError):
    """A constraint or strategy that cannot be applied (unknown type, missing or extra field)."""


# ---------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    cpu: int
    memory: int
    attributes: Mapping[str, str] = field(default_factory=dict)
    status: str = ACTIVE  # ACTIVE | DRAINING
    connected: bool = True


@dataclass(frozen=True, slots=True)
class PlacedTask:
    """A RUNNING or PENDING task holding resources on an instance."""

    instance_id: str
    group: str  # service:NAME | family:NAME
    cpu: int = 0
    memory: int = 0
    ports: frozenset[tuple[int, str]] = frozenset()  # static host ports with their protocol
    task_id: str = ""  # empty: the view assigns one


# The manifest's own values: distinctInstance | memberOf with an expression; random | spread | binpack.
Constraint = spec.Constraint
Strategy = spec.Strategy


@dataclass(frozen=True)
class TaskRequest:
    group: str
    cpu: int = 0
    memory: int = 0
    ports: frozenset[tuple[int, str]] = frozenset()
    constraints: tuple[Constraint, ...] = ()
    strategies: tuple[Strategy, ...] = ()


DEFAULT_STRATEGIES = (Strategy("spread", f"attribute:{AVAILABILITY_ZONE}"), Strategy("spread", "instanceId"))


@dataclass
class PlacementResult:
    placements: list[str]  # instance id per placed task, in placement order
    unplaced: int = 0
    reason: str | None = None  # why the first unplaced task found no instance
    rejections: dict[str, int] = field(default_factory=dict)  # filter summary -> instances, at that moment


class DaemonTargets(list[str]):
    """The instance ids that should run one task of the group (a plain list of them), plus
    `to_place`: the targets not running one yet, and `left_out`: instance id -> why it is no target."""

    def __init__(self, targets: Iterable[str], to_place: Iterable[str], left_out: Mapping[str, str]):
        super().__init__(targets)
        self.to_place = list(to_place)
        self.left_out = dict(left_out)


# ---------------------------------------------------------------------------------------------------
# The cluster view


class _Node:
    """One instance and what is currently placed on it; also the `query.Facts` of the instance."""

    __slots__ = (
        "index",
        "instance",
        "instance_id",
        "attributes",
        "agent_connected",
        "schedulable",
        "remaining_cpu",
        "remaining_memory",
        "ports",
        "group_counts",
        "tasks",
    )

    def __init__(self, index: int, instance: Instance):
        self.index = index
        self.instance = instance
        self.instance_id = instance.id
        self.attributes = instance.attributes
        self.agent_connected = instance.connected
        self.schedulable = instance.status == ACTIVE and instance.connected
        self.remaining_cpu = instance.cpu
        self.remaining_memory = instance.memory
        self.ports: set[tuple[int, str]] = set()
        self.group_counts: dict[str, int] = {}
        self.tasks: dict[str, PlacedTask] = {}

    @property
    def running_tasks_count(self) -> int:
        return len(self.tasks)

    @property
    def task_groups(self) -> dict[str, int]:
        return self.group_counts

    def copy(self) -> _Node:
        other = _Node(self.index, self.instance)
        other.remaining_cpu = self.remaining_cpu
        other.remaining_memory = self.remaining_memory
        other.ports = set(self.ports)
        other.group_counts = dict(self.group_counts)
        other.tasks = dict(self.tasks)
        return other


class ClusterView:
    """Instances and the tasks on them, kept up to date one task at a time.

    Maintained incrementally: remaining cpu/memory, used ports and per-group task counts per instance,
    per (group, attribute) task counts per attribute value (for spread), and caches of static
    `memberOf` results per instance (instances never change inside a view).
    """

    def __init__(self, instances: Iterable[Instance], tasks: Iterable[PlacedTask] = ()):
        ordered = sorted(instances, key=lambda instance: instance.id)
        self._nodes = [_Node(index, instance) for index, instance in enumerate(ordered)]
        self._by_id = {node.instance_id: node for node in self._nodes}
        if len(self._by_id) != len(self._nodes):
            duplicates = sorted(k for k, n in Counter(i.id for i in ordered).items() if n > 1)
            raise ValueError(f"duplicate instance ids: {', '.join(duplicates)}")
        self._tasks: dict[str, PlacedTask] = {}
        self._group_tasks: dict[str, dict[str, PlacedTask]] = {}
        self._spread: dict[str, dict[str, dict[str | None, int]]] = {}  # group -> attribute -> value -> n
        self._matches: dict[query.Expr, bytearray] = {}  # static expression -> 1/0 per node index
        self._static_candidates: dict[tuple[query.Expr, ...], list[int]] = {}
        self._sequence = 0
        for task in tasks:
            self.add_task(task)

    # -- reading ------------------------------------------------------------------------------------

    @property
    def instances(self) -> tuple[Instance, ...]:
        return tuple(node.instance for node in self._nodes)

    def instance(self, instance_id: str) -> Instance:
        return self._by_id[instance_id].instance

    def remaining(self, instance_id: str) -> tuple[int, int]:
        """(cpu, memory) not yet held by tasks."""
        node = self._by_id[instance_id]
        return node.remaining_cpu, node.remaining_memory

    def used_ports(self, instance_id: str) -> frozenset[tuple[int, str]]:
        return frozenset(self._by_id[instance_id].ports)

    def group_count(self, instance_id: str, group: str) -> int:
        return self._by_id[instance_id].group_counts.get(group, 0)

    def tasks(self, group: str | None = None) -> list[PlacedTask]:
        if group is None:
            return list(self._tasks.values())
        return list(self._group_tasks.get(group, {}).values())

    def task(self, task_id: str) -> PlacedTask:
        return self._tasks[task_id]

    # -- changing -----------------------------------------------------------------------------------

    def add_task(self, task: PlacedTask) -> PlacedTask:
        """Record a task; one with an empty task_id gets a fresh one. Tasks on unknown instances are
        kept (scale-in stops them first) but hold no resources."""
        if not task.task_id:
            task = replace(task, task_id=self._new_task_id())
        if task.task_id in self._tasks:
            raise ValueError(f"duplicate task id {task.task_id!r}")
        self._tasks[task.task_id] = task
        self._group_tasks.setdefault(task.group, {})[task.task_id] = task
        node = self._by_id.get(task.instance_id)
        if node is not None:
            self._hold(node, task, +1)
        return task

    def remove_task(self, task_id: str) -> PlacedTask:
        task = self._tasks.pop(task_id)
        group_tasks = self._group_tasks[task.group]
        del group_tasks[task_id]
        if not group_tasks:
            del self._group_tasks[task.group]
        node = self._by_id.get(task.instance_id)
        if node is not None:
            self._hold(node, task, -1)
        return task

    def copy(self) -> ClusterView:
        other = ClusterView.__new__(ClusterView)
        other._nodes = [node.copy() for node in self._nodes]
        other._by_id = {node.instance_id: node for node in other._nodes}
        other._tasks = dict(self._tasks)
        other._group_tasks = {group: dict(tasks) for group, tasks in self._group_tasks.items()}
        other._spread = {
            group: {attribute: dict(counts) for attribute, counts in by_attribute.items()}
            for group, by_attribute in self._spread.items()
        }
        other._matches = self._matches  # static facts only: safe to share
        other._static_candidates = self._static_candidates
        other._sequence = self._sequence
        return other

    def _new_task_id(self) -> str:
        while True:
            self._sequence += 1
            task_id = f"new-{self._sequence}"
            if task_id not in self._tasks:
                return task_id

    def _hold(self, node: _Node, task: PlacedTask, sign: int) -> None:
        node.remaining_cpu -= sign * task.cpu
        node.remaining_memory -= sign * task.memory
        group = task.group
        count = node.group_counts.get(group, 0) + sign
        if count:
            node.group_counts[group] = count
        else:
            del node.group_counts[group]
        if sign > 0:
            node.tasks[task.task_id] = task
            node.ports.update(task.ports)
        else:
            del node.tasks[task.task_id]
            node.ports.difference_update(task.ports)
            for other in node.tasks.values():  # two tasks may share a port on different protocols only
                node.ports.update(other.ports)
        tracked = self._spread.get(group)
        if tracked:
            for attribute, counts in tracked.items():
                value = node.attributes.get(attribute)
                counts[value] = counts.get(value, 0) + sign

    # -- indexes used by the scheduler ----------------------------------------------------------------

    def _spread_counts(self, group: str, attribute: str) -> dict[str | None, int]:
        """Tasks of `group` per value of `attribute` (None: instances lacking it), kept up to date."""
        by_attribute = self._spread.setdefault(group, {})
        counts = by_attribute.get(attribute)
        if counts is None:
            counts = {}
            for task in self._group_tasks.get(group, {}).values():
                node = self._by_id.get(task.instance_id)
                if node is not None:
                    value = node.attributes.get(attribute)
                    counts[value] = counts.get(value, 0) + 1
            by_attribute[attribute] = counts
        return counts

    def _static_match(self, expr: query.Expr) -> bytearray:
        matches = self._matches.get(expr)
        if matches is None:
            evaluate = expr.evaluate
            matches = bytearray(1 if evaluate(node) else 0 for node in self._nodes)
            self._matches[expr] = matches
        return matches

    def _candidates(self, static_exprs: tuple[query.Expr, ...]) -> list[int]:
        """Indexes of the ACTIVE, connected instances matching every static expression."""
        indexes = self._static_candidates.get(static_exprs)
        if indexes is None:
            bitmaps = [self._static_match(expr) for expr in static_exprs]
            indexes = [
                node.index
                for node in self._nodes
                if node.schedulable and all(bitmap[node.index] for bitmap in bitmaps)
            ]
            self._static_candidates[static_exprs] = indexes
        return indexes


# ---------------------------------------------------------------------------------------------------
# Requests compiled once: parsed constraints and the effective strategy chain

_SPREAD_ATTRIBUTE, _SPREAD_INSTANCE, _BINPACK_CPU, _BINPACK_MEMORY, _RANDOM = (
    "spread-attribute",
    "spread-instance",
    "binpack-cpu",
    "binpack-memory",
    "random",
)
_PER_INSTANCE = frozenset({_SPREAD_INSTANCE, _BINPACK_CPU, _BINPACK_MEMORY})


@dataclass(frozen=True)
class _Rule:
    kind: str
    attribute: str | None = None


@dataclass(frozen=True)
class _Compiled:
    request: TaskRequest
    member_of: tuple[query.Expr, ...]
    static_exprs: tuple[query.Expr, ...]
    dynamic_exprs: tuple[query.Expr, ...]
    distinct: bool
    chain: tuple[_Rule, ...]
    tie_attributes: tuple[str, ...]  # attribute spreads of the chain, in order: tie-break order

    @property
    def group(self) -> str:
        return self.request.group

    @property
    def uses_random(self) -> bool:
        return bool(self.chain) and self.chain[-1].kind == _RANDOM

    @property
    def fast(self) -> bool:
        """The fast path handles chains shaped attribute-spreads*, per-instance keys*, [random]."""
        kinds = [rule.kind for rule in self.chain if rule.kind != _RANDOM]
        first_per_instance = next((i for i, k in enumerate(kinds) if k in _PER_INSTANCE), len(kinds))
        return all(kind in _PER_INSTANCE for kind in kinds[first_per_instance:])


def _compile(request: TaskRequest) -> _Compiled:
    """Parse and check a request once (cached); requests holding lists instead of tuples still work."""
    try:
        return _compile_cached(request)
    except TypeError:  # unhashable field
        return _compile_request(request)


@functools.lru_cache(maxsize=1024)
def _compile_cached(request: TaskRequest) -> _Compiled:
    return _compile_request(request)


def _compile_request(request: TaskRequest) -> _Compiled:
    member_of: list[query.Expr] = []
    distinct = False
    for constraint in request.constraints:
        if constraint.type == "distinctInstance":
            if constraint.expression:
                raise PlacementSpecError("a distinctInstance constraint takes no expression")
            distinct = True
        elif constraint.type == "memberOf":
            if not constraint.expression:
                raise PlacementSpecError("a memberOf constraint needs an expression")
            member_of.append(query.parse(constraint.expression))
        else:
            raise PlacementSpecError(f"unknown placement constraint type {constraint.type!r}")
    chain = _chain(request.strategies or DEFAULT_STRATEGIES)
    return _Compiled(
        request=request,
        member_of=tuple(member_of),
        static_exprs=tuple(e for e in member_of if not e.dynamic),
        dynamic_exprs=tuple(e for e in member_of if e.dynamic),
        distinct=distinct,
        chain=chain,
        tie_attributes=tuple(rule.attribute for rule in chain if rule.kind == _SPREAD_ATTRIBUTE),  # type: ignore[misc]
    )


def _chain(strategies: Iterable[Strategy]) -> tuple[_Rule, ...]:
    rules: list[_Rule] = []
    for strategy in strategies:
        rule = _rule(strategy)
        rules.append(rule)
        if rule.kind == _RANDOM:
            break  # nothing is left to decide after a random pick
    return tuple(rules)


def _rule(strategy: Strategy) -> _Rule:
    kind, name = strategy.type, strategy.field
    if kind == "random":
        return _Rule(_RANDOM)
    if kind == "spread":
        if name in ("instanceId", "host"):
            return _Rule(_SPREAD_INSTANCE)
        if name and name.startswith("attribute:") and len(name) > len("attribute:"):
            return _Rule(_SPREAD_ATTRIBUTE, name[len("attribute:") :])
        raise PlacementSpecError(f"spread needs field instanceId, host or attribute:NAME, not {name!r}")
    if kind == "binpack":
        if name == "cpu":
            return _Rule(_BINPACK_CPU)
        if name == "memory":
            return _Rule(_BINPACK_MEMORY)
        raise PlacementSpecError(f"binpack needs field cpu or memory, not {name!r}")
    raise PlacementSpecError(f"unknown placement strategy type {kind!r}")


# ---------------------------------------------------------------------------------------------------
# Filters: each returns why the instance cannot take the task, or None


@dataclass(frozen=True)
class _Rejection:
    stage: int  # position of the filter: orders the summary
    summary: str  # after a count: "2 had insufficient memory"
    detail: str  # for one instance: "insufficient memory: needs 512 MiB, 256 MiB remaining"


def _check_status(node: _Node, c: _Compiled) -> _Rejection | None:
    status = node.instance.status
    return None if status == ACTIVE else _Rejection(0, f"is {status}", f"is {status}")


def _check_agent(node: _Node, c: _Compiled) -> _Rejection | None:
    if node.agent_connected:
        return None
    return _Rejection(1, "had its agent disconnected", "agent disconnected")


def _check_member_of(node: _Node, c: _Compiled) -> _Rejection | None:
    for expr in c.member_of:
        if not expr.evaluate(node):
            text = f"did not match memberOf({expr})"
            return _Rejection(2, text, text)
    return None


def _check_distinct(node: _Node, c: _Compiled) -> _Rejection | None:
    if c.distinct and c.group in node.group_counts:
        return _Rejection(
            3,
            f"already ran a task of {c.group} (distinctInstance)",
            f"already runs a task of {c.group} (distinctInstance)",
        )
    return None


def _check_cpu(node: _Node, c: _Compiled) -> _Rejection | None:
    if node.remaining_cpu >= c.request.cpu:
        return None
    detail = f"insufficient cpu: needs {c.request.cpu} units, {node.remaining_cpu} remaining"
    return _Rejection(4, "had insufficient cpu", detail)


def _check_memory(node: _Node, c: _Compiled) -> _Rejection | None:
    if node.remaining_memory >= c.request.memory:
        return None
    detail = f"insufficient memory: needs {c.request.memory} MiB, {node.remaining_memory} MiB remaining"
    return _Rejection(5, "had insufficient memory", detail)


def _check_ports(node: _Node, c: _Compiled) -> _Rejection | None:
    taken = c.request.ports & node.ports
    if not taken:
        return None
    ports = ", ".join(f"{port}/{protocol}" for port, protocol in sorted(taken))
    noun = "port" if len(taken) == 1 else "ports"
    return _Rejection(6, f"had {noun} {ports} in use", f"{noun} {ports} already in use")


Filter = Callable[[_Node, _Compiled], "_Rejection | None"]
FILTERS: tuple[Filter, ...] = (
    _check_status,
    _check_agent,
    _check_member_of,
    _check_distinct,
    _check_cpu,
    _check_memory,
    _check_ports,
)
_PRESENCE_FILTERS: tuple[Filter, ...] = (_check_status, _check_agent, _check_member_of)


def _first_rejection(node: _Node, c: _Compiled, filters: tuple[Filter, ...] = FILTERS) -> _Rejection | None:
    for check in filters:
        rejection = check(node, c)
        if rejection is not None:
            return rejection
    return None


def _fits(node: _Node, c: _Compiled) -> bool:
    """The filters that can change as tasks are placed (the fast path pre-filters the static ones).
    Must agree with FILTERS: the property tests compare the fast and the naive paths."""
    request = c.request
    if node.remaining_cpu < request.cpu or node.remaining_memory < request.memory:
        return False
    if request.ports and not request.ports.isdisjoint(node.ports):
        return False
    if c.distinct and request.group in node.group_counts:
        return False
    for expr in c.dynamic_exprs:
        if not expr.evaluate(node):
            return False
    return True


def _display_rank(rejection: _Rejection) -> int:
    """Among equal counts, requirement failures read first and instance states (DRAINING,
    disconnected) last: the former are what a user can act on in the service."""
    return rejection.stage + (len(FILTERS) if rejection.stage < 2 else 0)


def _unplaced_reason(view: ClusterView, c: _Compiled) -> tuple[str, dict[str, int]]:
    if not view._nodes:
        return "no container instances are registered", {}
    counts: Counter[_Rejection] = Counter()
    for node in view._nodes:
        rejection = _first_rejection(node, c)
        if rejection is not None:
            counts[_Rejection(rejection.stage, rejection.summary, "")] += 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], _display_rank(item[0]), item[0].summary))
    rejections = {rejection.summary: n for rejection, n in ordered}
    parts = ", ".join(f"{n} {summary}" for summary, n in rejections.items())
    return f"no container instance met all requirements: {parts}", rejections


# ---------------------------------------------------------------------------------------------------
# Strategy keys


def _value_order(value: str | None) -> tuple[int, str]:
    """Attribute values in tie-break order; instances lacking the attribute come last."""
    return (1, "") if value is None else (0, value)


def _tie_order(c: _Compiled) -> Callable[[_Node], tuple]:
    attributes = c.tie_attributes
    return lambda node: (tuple(_value_order(node.attributes.get(a)) for a in attributes), node.index)


def _instance_getter(rule: _Rule, group: str) -> Callable[[_Node], int]:
    if rule.kind == _SPREAD_INSTANCE:
        return lambda node: node.group_counts.get(group, 0)
    if rule.kind == _BINPACK_CPU:
        return lambda node: node.remaining_cpu
    return lambda node: node.remaining_memory


def _rule_key(view: ClusterView, c: _Compiled, rule: _Rule) -> Callable[[_Node], int]:
    """Smaller is preferred when placing."""
    if rule.kind == _SPREAD_ATTRIBUTE:
        counts, attribute = view._spread_counts(c.group, rule.attribute), rule.attribute  # type: ignore[arg-type]
        return lambda node: counts.get(node.attributes.get(attribute), 0)
    return _instance_getter(rule, c.group)


# ---------------------------------------------------------------------------------------------------
# Placement: the naive path


def place_naive(view: ClusterView, request: TaskRequest, count: int, seed: int | str = 0) -> PlacementResult:
    """Place `count` tasks by re-running every filter on every instance for each task."""
    c = _compile(request)
    rng = random.Random(seed)
    placements: list[str] = []
    for _ in range(count):
        candidates = [node for node in view._nodes if _first_rejection(node, c) is None]
        if not candidates:
            return _partial(view, c, placements, count)
        node = _choose_naive(view, c, candidates, rng)
        _record(view, c, node)
        placements.append(node.instance_id)
    return PlacementResult(placements)


def _choose_naive(view: ClusterView, c: _Compiled, candidates: list[_Node], rng: random.Random) -> _Node:
    for rule in c.chain:
        if rule.kind == _RANDOM:
            ordered = sorted(candidates, key=_tie_order(c))
            return ordered[rng.randrange(len(ordered))]
        key = _rule_key(view, c, rule)
        best = min(key(node) for node in candidates)
        candidates = [node for node in candidates if key(node) == best]
    return min(candidates, key=_tie_order(c))


def _record(view: ClusterView, c: _Compiled, node: _Node) -> None:
    request = c.request
    view.add_task(PlacedTask(node.instance_id, request.group, request.cpu, request.memory, request.ports))


def _partial(view: ClusterView, c: _Compiled, placements: list[str], count: int) -> PlacementResult:
    reason, rejections = _unplaced_reason(view, c)
    return PlacementResult(placements, count - len(placements), reason, rejections)


# ---------------------------------------------------------------------------------------------------
# Placement: the fast path


class _TieIndex:
    """Items grouped by a comparable key: the smallest key in O(log n), the items sharing a key in
    sorted order. Heap entries go stale when a key loses its last item and are dropped lazily."""

    __slots__ = ("_key_of", "_members", "_heap")

    def __init__(self) -> None:
        self._key_of: dict[Hashable, tuple] = {}
        self._members: dict[tuple, list] = {}
        self._heap: list[tuple] = []

    def __bool__(self) -> bool:
        return bool(self._key_of)

    def add(self, item: Hashable, key: tuple) -> None:
        self._key_of[item] = key
        members = self._members.get(key)
        if members is None:
            self._members[key] = [item]
            heapq.heappush(self._heap, key)
        else:
            insort(members, item)

    def discard(self, item: Hashable) -> None:
        key = self._key_of.pop(item, None)
        if key is None:
            return
        members = self._members[key]
        if len(members) == 1:
            del self._members[key]
        else:
            del members[bisect_left(members, item)]

    def min_key(self) -> tuple | None:
        heap, members = self._heap, self._members
        while heap:
            key = heap[0]
            if key in members:
                return key
            heapq.heappop(heap)
        return None

    def members(self, key: tuple) -> list:
        return self._members[key]


class _FastPlacer:
    """Candidates bucketed by the values of the leading attribute spreads; each bucket a `_TieIndex` of
    node indexes by their per-instance keys; the buckets themselves in a `_TieIndex` by their spread
    counts. A placement re-examines one node and re-keys the buckets sharing one of its values."""

    def __init__(self, view: ClusterView, c: _Compiled, seed: int | str):
        self.view, self.c = view, c
        self.rng = random.Random(seed)
        self.uses_random = c.uses_random
        self.levels = c.tie_attributes
        self.counters = [view._spread_counts(c.group, attribute) for attribute in self.levels]
        self.instance_key = _instance_key_function(c)
        self.buckets: dict[tuple, _TieIndex] = {}
        self.bucket_values: dict[tuple, tuple[str | None, ...]] = {}
        self.by_level_value: list[dict[str | None, list[tuple]]] = [{} for _ in self.levels]
        self.node_bucket: dict[int, tuple] = {}
        self.top = _TieIndex()
        self._build()

    def _build(self) -> None:
        nodes, c, levels = self.view._nodes, self.c, self.levels
        instance_key = self.instance_key
        for index in self.view._candidates(c.static_exprs):
            node = nodes[index]
            if not _fits(node, c):
                continue
            values = tuple(node.attributes.get(attribute) for attribute in levels)
            bucket_id = tuple(_value_order(value) for value in values)
            bucket = self.buckets.get(bucket_id)
            if bucket is None:
                bucket = self.buckets[bucket_id] = _TieIndex()
                self.bucket_values[bucket_id] = values
                for level, value in enumerate(values):
                    self.by_level_value[level].setdefault(value, []).append(bucket_id)
            bucket.add(index, instance_key(node))
            self.node_bucket[index] = bucket_id
        for bucket_id in self.buckets:
            self.top.add(bucket_id, self._bucket_key(bucket_id))

    def _bucket_key(self, bucket_id: tuple) -> tuple:
        values = self.bucket_values[bucket_id]
        return tuple(counts.get(value, 0) for counts, value in zip(self.counters, values, strict=True))

    def run(self, count: int) -> PlacementResult:
        placements: list[str] = []
        for _ in range(count):
            node = self._pick()
            if node is None:
                return _partial(self.view, self.c, placements, count)
            _record(self.view, self.c, node)
            self._after_placement(node)
            placements.append(node.instance_id)
        return PlacementResult(placements)

    def _pick(self) -> _Node | None:
        bucket_key = self.top.min_key()
        if bucket_key is None:
            return None
        tied = self._tied_nodes(self.top.members(bucket_key))
        if self.uses_random:
            position = self.rng.randrange(sum(len(members) for members in tied))
            for members in tied:
                if position < len(members):
                    return self.view._nodes[members[position]]
                position -= len(members)
        return self.view._nodes[tied[0][0]]

    def _tied_nodes(self, bucket_ids: list[tuple]) -> list[list[int]]:
        """The node indexes tied on every strategy key, as sorted runs in tie-break order."""
        if len(bucket_ids) == 1:
            bucket = self.buckets[bucket_ids[0]]
            return [bucket.members(bucket.min_key())]  # type: ignore[arg-type]
        minimums = [(self.buckets[b].min_key(), b) for b in bucket_ids]
        best = min(key for key, _ in minimums)  # type: ignore[type-var]
        return [self.buckets[b].members(key) for key, b in minimums if key == best]  # type: ignore[arg-type]

    def _after_placement(self, node: _Node) -> None:
        bucket_id = self.node_bucket[node.index]
        bucket = self.buckets[bucket_id]
        bucket.discard(node.index)
        if _fits(node, self.c):
            bucket.add(node.index, self.instance_key(node))
        for affected in self._affected_buckets(bucket_id):
            self.top.discard(affected)
            if self.buckets[affected]:
                self.top.add(affected, self._bucket_key(affected))

    def _affected_buckets(self, bucket_id: tuple) -> Iterable[tuple]:
        """Buckets whose spread counts changed: those sharing a value with the one placed into."""
        values = self.bucket_values[bucket_id]
        if len(values) <= 1:
            return (bucket_id,)
        affected: set[tuple] = set()
        for level, value in enumerate(values):
            affected.update(self.by_level_value[level][value])
        return affected


def _instance_key_function(c: _Compiled) -> Callable[[_Node], tuple]:
    getters = [_instance_getter(rule, c.group) for rule in c.chain if rule.kind in _PER_INSTANCE]
    if not getters:
        return lambda node: ()
    if len(getters) == 1:
        (first,) = getters
        return lambda node: (first(node),)
    if len(getters) == 2:
        first, second = getters
        return lambda node: (first(node), second(node))
    return lambda node: tuple(getter(node) for getter in getters)


# ---------------------------------------------------------------------------------------------------
# Public entry points


def place(view: ClusterView, request: TaskRequest, count: int, seed: int | str = 0) -> PlacementResult:
    """Place `count` tasks of `request` one at a time, recording each in `view`.

    Same decisions as `place_naive`; strategy chains the fast path cannot index (an attribute spread
    after a per-instance strategy) fall back to it.
    """
    c = _compile(request)
    if count <= 0:
        return PlacementResult([])
    if not c.fast:
        return place_naive(view, request, count, seed)
    return _FastPlacer(view, c, seed).run(count)


def explain(view: ClusterView, request: TaskRequest) -> dict[str, str | None]:
    """Per instance: why it cannot take one more task of `request` now, or None if it can."""
    c = _compile(request)
    result: dict[str, str | None] = {}
    for node in view._nodes:
        rejection = _first_rejection(node, c)
        result[node.instance_id] = None if rejection is None else rejection.detail
    return result


def daemon_targets(view: ClusterView, request: TaskRequest) -> DaemonTargets:
    """DAEMON scheduling: every ACTIVE, connected instance meeting the constraints should run one task.

    An instance already running a task of the group stays a target without re-checking resources
    and ports (its task holds them); others must fit. distinctInstance is implied.
    """
    c = _compile(request)
    targets: list[str] = []
    to_place: list[str] = []
    left_out: dict[str, str] = {}
    for node in view._nodes:
        running = c.group in node.group_counts
        rejection = _first_rejection(node, c, _PRESENCE_FILTERS if running else FILTERS)
        if rejection is not None:
            left_out[node.instance_id] = rejection.detail
            continue
        targets.append(node.instance_id)
        if not running:
            to_place.append(node.instance_id)
    return DaemonTargets(targets, to_place, left_out)


def choose_to_stop(
    view: ClusterView,
    group: str,
    count: int,
    strategies: tuple[Strategy, ...] = (),
    seed: int | str = 0,
) -> list[str]:
    """Scale-in: choose `count` tasks of `group` to stop, one at a time, removing each from `view`."""
    chain = _chain(strategies or DEFAULT_STRATEGIES)
    rng = random.Random(seed)
    stopped: list[str] = []
    for _ in range(count):
        candidates = view.tasks(group)
        if not candidates:
            break
        task = _choose_stop(view, group, chain, candidates, rng)
        view.remove_task(task.task_id)
        stopped.append(task.task_id)
    return stopped


def _stop_order(view: ClusterView) -> Callable[[PlacedTask], tuple[str, str]]:
    return lambda task: (task.instance_id, task.task_id)


def _choose_stop(
    view: ClusterView, group: str, chain: tuple[_Rule, ...], candidates: list[PlacedTask], rng: random.Random
) -> PlacedTask:
    stranded = [task for task in candidates if not _can_host(view, task.instance_id)]
    if stranded:
        return min(stranded, key=_stop_order(view))
    for rule in chain:
        if rule.kind == _RANDOM:
            ordered = sorted(candidates, key=_stop_order(view))
            return ordered[rng.randrange(len(ordered))]
        key = _stop_key(view, group, rule)
        best = max(key(task) for task in candidates)
        candidates = [task for task in candidates if key(task) == best]
    return min(candidates, key=_stop_order(view))


def _can_host(view: ClusterView, instance_id: str) -> bool:
    node = view._by_id.get(instance_id)
    return node is not None and node.schedulable


def _stop_key(view: ClusterView, group: str, rule: _Rule) -> Callable[[PlacedTask], float]:
    """Larger is stopped first."""
    nodes = view._by_id
    if rule.kind == _SPREAD_ATTRIBUTE:
        counts, attribute = view._spread_counts(group, rule.attribute), rule.attribute  # type: ignore[arg-type]
        return lambda task: counts.get(nodes[task.instance_id].attributes.get(attribute), 0)
    if rule.kind == _SPREAD_INSTANCE:
        return lambda task: nodes[task.instance_id].group_counts.get(group, 0)
    if rule.kind == _BINPACK_CPU:
        return lambda task: _free_fraction(
            nodes[task.instance_id].remaining_cpu, nodes[task.instance_id].instance.cpu
        )
    return lambda task: _free_fraction(
        nodes[task.instance_id].remaining_memory, nodes[task.instance_id].instance.memory
    )


def _free_fraction(remaining: int, registered: int) -> float:
    return remaining / registered if registered > 0 else 0.0
