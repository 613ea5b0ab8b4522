"""The scheduler: filters with reasons, ECS strategies, scale-in, DAEMON targets, and fast == naive."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.planning import placement as p

WEB = "service:web"
AZ = "ecs.availability-zone"


def instance(name: str, cpu: int = 1024, memory: int = 2048, zone: str | None = None, **extra) -> p.Instance:
    status = extra.pop("status", p.ACTIVE)
    connected = extra.pop("connected", True)
    attributes = {AZ: zone} if zone else {}
    attributes.update(extra)
    return p.Instance(name, cpu, memory, attributes, status, connected)


def request(cpu: int = 128, memory: int = 256, *, ports=(), constraints=(), strategies=(), group=WEB):
    return p.TaskRequest(group, cpu, memory, frozenset(ports), tuple(constraints), tuple(strategies))


SPREAD_AZ = p.Strategy("spread", f"attribute:{AZ}")
SPREAD_HOST = p.Strategy("spread", "instanceId")
BINPACK_MEMORY = p.Strategy("binpack", "memory")
BINPACK_CPU = p.Strategy("binpack", "cpu")
RANDOM = p.Strategy("random")
DISTINCT = p.Constraint("distinctInstance")


def member_of(expression: str) -> p.Constraint:
    return p.Constraint("memberOf", expression)


def counts(placements: list[str]) -> dict[str, int]:
    return dict(sorted(Counter(placements).items()))


@pytest.fixture(params=[p.place, p.place_naive], ids=["fast", "naive"])
def place(request):
    return request.param


# -- spread -------------------------------------------------------------------------------------------


def test_six_tasks_over_three_instances_spread_evenly(place) -> None:
    view = p.ClusterView([instance("a"), instance("b"), instance("c")])
    result = place(view, request(), 6, seed=1)
    assert counts(result.placements) == {"a": 2, "b": 2, "c": 2}
    assert result.placements == ["a", "b", "c", "a", "b", "c"]
    assert (result.unplaced, result.reason) == (0, None)


def test_default_spreads_over_zones_then_instances(place) -> None:
    view = p.ClusterView(
        [
            instance("a", zone="z1"),
            instance("b", zone="z1"),
            instance("c", zone="z2"),
            instance("d", zone="z3"),
        ]
    )
    result = place(view, request(), 6, seed=1)
    assert counts(result.placements) == {"a": 1, "b": 1, "c": 2, "d": 2}
    assert result.placements[:3] == ["a", "c", "d"]


def test_spread_counts_existing_tasks_of_the_group_only(place) -> None:
    view = p.ClusterView(
        [instance("a", zone="z1"), instance("b", zone="z2")],
        [
            p.PlacedTask("a", WEB, 128, 256, task_id="w1"),
            p.PlacedTask("a", WEB, 128, 256, task_id="w2"),
            p.PlacedTask("b", "service:other", 128, 256, task_id="o1"),
        ],
    )
    result = place(view, request(), 3, seed=1)
    assert result.placements == ["b", "b", "a"]


def test_spread_puts_instances_lacking_the_attribute_in_their_own_bucket(place) -> None:
    view = p.ClusterView([instance("a", rack="r1"), instance("b", rack="r1"), instance("c")])
    strategies = [p.Strategy("spread", "attribute:rack"), SPREAD_HOST]
    result = place(view, request(strategies=strategies), 4, seed=1)
    assert counts(result.placements) == {"a": 1, "b": 1, "c": 2}


def test_spread_host_is_an_alias_of_instance_id(place) -> None:
    view = p.ClusterView([instance("a"), instance("b")])
    result = place(view, request(strategies=[p.Strategy("spread", "host")]), 4, seed=1)
    assert counts(result.placements) == {"a": 2, "b": 2}


# -- binpack ------------------------------------------------------------------------------------------


def test_binpack_memory_fills_one_instance_first(place) -> None:
    view = p.ClusterView([instance("a"), instance("b"), instance("c")])
    result = place(view, request(memory=512, strategies=[BINPACK_MEMORY]), 6, seed=1)
    assert result.placements == ["a", "a", "a", "a", "b", "b"]
    assert view.remaining("a") == (1024 - 4 * 128, 0)


def test_binpack_prefers_the_least_remaining_that_still_fits(place) -> None:
    view = p.ClusterView(
        [instance("big", memory=4096), instance("small", memory=1024), instance("tiny", memory=256)]
    )
    result = place(view, request(memory=512, strategies=[BINPACK_MEMORY]), 3, seed=1)
    assert result.placements == ["small", "small", "big"]


def test_spread_then_binpack(place) -> None:
    view = p.ClusterView(
        [
            instance("a1", memory=4096, zone="z1"),
            instance("a2", memory=1024, zone="z1"),
            instance("b1", memory=2048, zone="z2"),
            instance("b2", memory=8192, zone="z2"),
        ]
    )
    result = place(view, request(memory=512, strategies=[SPREAD_AZ, BINPACK_MEMORY]), 4, seed=1)
    assert result.placements == ["a2", "b1", "a2", "b1"]


def test_binpack_cpu(place) -> None:
    view = p.ClusterView([instance("a", cpu=4096), instance("b", cpu=512)])
    result = place(view, request(cpu=256, strategies=[BINPACK_CPU]), 3, seed=1)
    assert result.placements == ["b", "b", "a"]


# -- constraints and filters ---------------------------------------------------------------------------


def test_member_of_keeps_tasks_on_matching_instances(place) -> None:
    view = p.ClusterView(
        [instance("a", stack="prod"), instance("b", stack="dev"), instance("c", stack="prod"), instance("d")]
    )
    result = place(view, request(constraints=[member_of("attribute:stack == prod")]), 6, seed=1)
    assert counts(result.placements) == {"a": 3, "c": 3}


def test_distinct_instance(place) -> None:
    view = p.ClusterView(
        [instance("a"), instance("b"), instance("c")], [p.PlacedTask("b", WEB, task_id="t1")]
    )
    result = place(view, request(constraints=[DISTINCT]), 3, seed=1)
    assert result.placements == ["a", "c"]
    assert result.unplaced == 1
    assert (
        result.reason
        == "no container instance met all requirements: 3 already ran a task of service:web (distinctInstance)"
    )


def test_anti_affinity_through_task_group_is_re_evaluated_after_each_placement(place) -> None:
    view = p.ClusterView(
        [instance("a"), instance("b"), instance("c")], [p.PlacedTask("c", "service:db", task_id="d")]
    )
    constraint = member_of("not(task:group == service:db) and not(task:group == service:web)")
    result = place(view, request(constraints=[constraint]), 3, seed=1)
    assert result.placements == ["a", "b"]
    assert result.reason == (
        "no container instance met all requirements: "
        "3 did not match memberOf(not (task:group == service:db) and not (task:group == service:web))"
    )


def test_affinity_through_task_group(place) -> None:
    view = p.ClusterView([instance("a"), instance("b")], [p.PlacedTask("b", "service:cache", task_id="c")])
    result = place(view, request(constraints=[member_of("task:group == service:cache")]), 2, seed=1)
    assert result.placements == ["b", "b"]


def test_static_ports_conflict_per_instance_and_protocol(place) -> None:
    view = p.ClusterView(
        [instance("a"), instance("b"), instance("c")],
        [p.PlacedTask("a", "service:other", ports=frozenset({(80, "tcp")}), task_id="o")],
    )
    result = place(view, request(ports={(80, "tcp")}), 3, seed=1)
    assert sorted(result.placements) == ["b", "c"]
    assert result.reason == "no container instance met all requirements: 3 had port 80/tcp in use"
    assert place(view, request(ports={(80, "udp")}, group="service:dns"), 3, seed=1).placements == [
        "a",
        "b",
        "c",
    ]


def test_too_big_task_is_unplaced_with_the_exact_reason(place) -> None:
    view = p.ClusterView(
        [
            instance("a", memory=512, zone="a"),
            instance("b", memory=512, zone="b"),
            instance("c", memory=8192, zone="c"),
            instance("d", memory=8192, zone="b", status=p.DRAINING),
        ]
    )
    req = request(memory=1024, constraints=[member_of(f"attribute:{AZ} != c")])
    result = place(view, req, 2, seed=1)
    assert result.placements == []
    assert result.unplaced == 2
    assert result.reason == (
        "no container instance met all requirements: "
        f"2 had insufficient memory, 1 did not match memberOf(attribute:{AZ} != c), 1 is DRAINING"
    )
    assert result.rejections == {
        "had insufficient memory": 2,
        f"did not match memberOf(attribute:{AZ} != c)": 1,
        "is DRAINING": 1,
    }


def test_partial_placement_reports_the_rest(place) -> None:
    view = p.ClusterView([instance("a", memory=1024), instance("b", memory=512)])
    result = place(view, request(memory=512), 5, seed=1)
    assert counts(result.placements) == {"a": 2, "b": 1}
    assert result.unplaced == 2
    assert result.reason == "no container instance met all requirements: 2 had insufficient memory"


def test_draining_and_disconnected_instances_get_nothing(place) -> None:
    view = p.ClusterView(
        [instance("a", status=p.DRAINING), instance("b", connected=False), instance("c", memory=1 << 20)]
    )
    result = place(view, request(), 5, seed=1)
    assert result.placements == ["c"] * 5


def test_no_instances() -> None:
    result = p.place(p.ClusterView([]), request(), 2)
    assert (result.unplaced, result.reason) == (2, "no container instances are registered")


def test_zero_count_places_nothing() -> None:
    assert p.place(p.ClusterView([instance("a")]), request(), 0) == p.PlacementResult([])


# -- explain and DAEMON --------------------------------------------------------------------------------


def test_explain_gives_one_reason_per_instance() -> None:
    view = p.ClusterView(
        [
            instance("a", memory=256),
            instance("b", status=p.DRAINING),
            instance("c", connected=False),
            instance("d", stack="dev"),
            instance("e", stack="prod"),
        ]
    )
    explained = p.explain(
        view, request(memory=512, constraints=[member_of("attribute:stack == prod or instanceId == a")])
    )
    assert explained == {
        "a": "insufficient memory: needs 512 MiB, 256 MiB remaining",
        "b": "is DRAINING",
        "c": "agent disconnected",
        "d": "did not match memberOf(attribute:stack == prod or instanceId == a)",
        "e": None,
    }


def test_daemon_targets() -> None:
    view = p.ClusterView(
        [
            instance("a", memory=256),  # already runs the daemon: stays a target although full
            instance("b", memory=128),  # too small for a new one
            instance("c", status=p.DRAINING),
            instance("d", os="windows"),
            instance("e"),
        ],
        [p.PlacedTask("a", WEB, memory=256, task_id="d1")],
    )
    targets = p.daemon_targets(view, request(memory=256, constraints=[member_of("attribute:os !exists")]))
    assert targets == ["a", "e"]
    assert set(targets) == {"a", "e"}
    assert targets.to_place == ["e"]
    assert targets.left_out == {
        "b": "insufficient memory: needs 256 MiB, 128 MiB remaining",
        "c": "is DRAINING",
        "d": "did not match memberOf(attribute:os !exists)",
    }


# -- scale-in ----------------------------------------------------------------------------------------------


def _tasks(layout: dict[str, int], group: str = WEB, memory: int = 256) -> list[p.PlacedTask]:
    return [
        p.PlacedTask(name, group, 128, memory, task_id=f"{name}-{i}")
        for name, n in layout.items()
        for i in range(n)
    ]


def test_scale_in_by_default_spread_takes_from_the_fullest_zone_then_instance() -> None:
    view = p.ClusterView(
        [instance("a", zone="z1"), instance("b", zone="z1"), instance("c", zone="z2")],
        _tasks({"a": 3, "b": 1, "c": 2}),
    )
    stopped = p.choose_to_stop(view, WEB, 3, ())
    assert stopped == ["a-0", "a-1", "c-0"]  # z1 4 vs z2 2: a, a; then zones tie 2-2 and c holds the most
    remaining = Counter(t.instance_id for t in view.tasks(WEB))
    assert remaining == {"a": 1, "b": 1, "c": 1}


def test_scale_in_by_spread_on_instances() -> None:
    view = p.ClusterView([instance("a"), instance("b"), instance("c")], _tasks({"a": 1, "b": 3, "c": 2}))
    stopped = p.choose_to_stop(view, WEB, 3, (SPREAD_HOST,))
    assert stopped == ["b-0", "b-1", "c-0"]
    assert Counter(t.instance_id for t in view.tasks(WEB)) == {"a": 1, "b": 1, "c": 1}


def test_scale_in_by_binpack_empties_the_least_utilised_instance() -> None:
    view = p.ClusterView(
        [instance("a", memory=2048), instance("b", memory=2048), instance("c", memory=4096)],
        _tasks({"a": 4, "b": 2, "c": 3}, memory=256),
    )
    stopped = p.choose_to_stop(view, WEB, 4, (BINPACK_MEMORY,))
    # memory free: a 1/2, b 3/4, c 13/16: c is the least utilised and only gets emptier; then b
    assert stopped == ["c-0", "c-1", "c-2", "b-0"]


def test_scale_in_stops_tasks_on_draining_and_unknown_instances_first() -> None:
    view = p.ClusterView(
        [instance("a"), instance("b", status=p.DRAINING)],
        _tasks({"a": 3, "b": 1}) + [p.PlacedTask("gone", WEB, task_id="gone-0")],
    )
    assert p.choose_to_stop(view, WEB, 3, (SPREAD_HOST,)) == ["b-0", "gone-0", "a-0"]


def test_scale_in_never_stops_more_than_there_are() -> None:
    view = p.ClusterView([instance("a")], _tasks({"a": 2}))
    assert p.choose_to_stop(view, WEB, 5) == ["a-0", "a-1"]
    assert view.tasks(WEB) == []


def test_scale_in_random_is_seeded() -> None:
    def run(seed: int) -> list[str]:
        view = p.ClusterView([instance(n) for n in "abcd"], _tasks({n: 3 for n in "abcd"}))
        return p.choose_to_stop(view, WEB, 4, (RANDOM,), seed=seed)

    assert run(7) == run(7)
    assert len({tuple(run(seed)) for seed in range(10)}) > 1


# -- determinism -------------------------------------------------------------------------------------------


def _cluster() -> p.ClusterView:
    return p.ClusterView(
        [
            instance(f"i{n:02}", memory=2048 + 512 * (n % 3), zone=f"z{n % 3}", rack=f"r{n % 4}")
            for n in range(12)
        ]
    )


@pytest.mark.parametrize(
    "strategies",
    [(), (SPREAD_AZ, BINPACK_MEMORY), (BINPACK_CPU,), (p.Strategy("spread", "attribute:rack"), SPREAD_HOST)],
)
def test_non_random_placement_does_not_depend_on_the_seed(place, strategies) -> None:
    runs = {
        tuple(place(_cluster(), request(strategies=strategies), 20, seed=seed).placements)
        for seed in range(5)
    }
    assert len(runs) == 1


@pytest.mark.parametrize(
    "strategies", [(RANDOM,), (SPREAD_AZ, RANDOM), (BINPACK_MEMORY, RANDOM, SPREAD_HOST)]
)
def test_random_placement_is_seeded(place, strategies) -> None:
    def run(seed: int) -> list[str]:
        return place(_cluster(), request(strategies=strategies), 20, seed=seed).placements

    assert run(3) == run(3)
    assert len({tuple(run(seed)) for seed in range(10)}) > 1


def test_spread_then_random_keeps_zones_balanced() -> None:
    result = p.place(_cluster(), request(strategies=(SPREAD_AZ, RANDOM)), 30, seed=5)
    zones = Counter(f"z{int(name[1:]) % 3}" for name in result.placements)
    assert zones == {"z0": 10, "z1": 10, "z2": 10}


# -- the view ------------------------------------------------------------------------------------------------


def test_view_is_updated_incrementally_and_copies_are_independent() -> None:
    view = p.ClusterView([instance("a", cpu=1000, memory=1000)])
    trial = view.copy()
    result = p.place(trial, request(cpu=100, memory=300, ports={(53, "udp")}), 2)
    assert (result.placements, result.unplaced) == (["a"], 1)  # the port is taken by the first task
    assert p.place(trial, request(cpu=100, memory=300, group="service:api"), 1).placements == ["a"]
    assert trial.remaining("a") == (800, 400)
    assert trial.used_ports("a") == {(53, "udp")}
    assert trial.group_count("a", WEB) == 1
    assert view.remaining("a") == (1000, 1000)
    assert view.tasks() == []
    (web_task,) = trial.tasks(WEB)
    trial.remove_task(web_task.task_id)
    assert trial.remaining("a") == (900, 700)
    assert trial.used_ports("a") == frozenset()
    assert trial.group_count("a", WEB) == 0


def test_view_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate instance ids: a"):
        p.ClusterView([instance("a"), instance("a")])
    with pytest.raises(ValueError, match="duplicate task id 't'"):
        p.ClusterView(
            [instance("a")], [p.PlacedTask("a", WEB, task_id="t"), p.PlacedTask("a", WEB, task_id="t")]
        )


@pytest.mark.parametrize(
    ("constraints", "strategies", "message"),
    [
        ([p.Constraint("distinctInstance", "x")], (), "takes no expression"),
        ([p.Constraint("memberOf")], (), "needs an expression"),
        ([p.Constraint("sameZone")], (), "unknown placement constraint type 'sameZone'"),
        ((), [p.Strategy("spread", "zone")], "spread needs field"),
        ((), [p.Strategy("binpack", "disk")], "binpack needs field cpu or memory"),
        ((), [p.Strategy("pack")], "unknown placement strategy type 'pack'"),
    ],
)
def test_invalid_requests(constraints, strategies, message) -> None:
    with pytest.raises(p.PlacementSpecError, match=message):
        p.place(p.ClusterView([instance("a")]), request(constraints=constraints, strategies=strategies), 1)


def test_invalid_member_of_expression_raises_query_error() -> None:
    from reconciler.planning import query

    with pytest.raises(query.QueryError, match="at column 11"):
        p.place(p.ClusterView([instance("a")]), request(constraints=[member_of("instanceId")]), 1)


# -- property: the fast path decides exactly like the naive one --------------------------------------------

_GROUPS = ["service:web", "service:db", "family:batch"]
_EXPRESSIONS = [
    "attribute:stack == prod",
    "attribute:ecs.availability-zone in [z1, z2]",
    "not(task:group == service:db)",
    "runningTasksCount < 3",
    "task:group == service:web or attribute:stack exists",
]
_STRATEGIES = [
    SPREAD_AZ,
    SPREAD_HOST,
    BINPACK_CPU,
    BINPACK_MEMORY,
    RANDOM,
    p.Strategy("spread", "attribute:stack"),
]


@st.composite
def _instances(draw: st.DrawFn) -> list[p.Instance]:
    n = draw(st.integers(0, 7))
    out = []
    for i in range(n):
        attributes = {}
        if draw(st.booleans()) or i == 0:
            attributes[AZ] = draw(st.sampled_from(["z1", "z2", "z3"]))
        if draw(st.booleans()):
            attributes["stack"] = draw(st.sampled_from(["prod", "dev"]))
        out.append(
            p.Instance(
                f"i{i}",
                draw(st.sampled_from([256, 512, 1024])),
                draw(st.sampled_from([256, 512, 1024, 2048])),
                attributes,
                draw(st.sampled_from([p.ACTIVE] * 4 + [p.DRAINING])),
                draw(st.sampled_from([True] * 4 + [False])),
            )
        )
    return out


@st.composite
def _scenarios(draw: st.DrawFn):
    instances = draw(_instances())
    names = [i.id for i in instances] or ["i0"]
    tasks = [
        p.PlacedTask(
            draw(st.sampled_from(names + ["gone"])),
            draw(st.sampled_from(_GROUPS)),
            draw(st.sampled_from([0, 64, 128])),
            draw(st.sampled_from([0, 128, 256])),
            frozenset(draw(st.sets(st.sampled_from([(80, "tcp"), (80, "udp"), (443, "tcp")]), max_size=1))),
            f"t{k}",
        )
        for k in range(draw(st.integers(0, 6)))
    ]
    constraints = []
    if draw(st.booleans()):
        constraints.append(DISTINCT)
    constraints += [member_of(e) for e in draw(st.lists(st.sampled_from(_EXPRESSIONS), max_size=2))]
    req = p.TaskRequest(
        draw(st.sampled_from(_GROUPS)),
        draw(st.sampled_from([0, 64, 128, 256])),
        draw(st.sampled_from([0, 128, 256, 512])),
        frozenset(draw(st.sets(st.sampled_from([(80, "tcp"), (443, "tcp")]), max_size=1))),
        tuple(constraints),
        tuple(draw(st.lists(st.sampled_from(_STRATEGIES), max_size=3))),
    )
    return instances, tasks, req, draw(st.integers(0, 12)), draw(st.integers(0, 3))


def _state(view: p.ClusterView) -> list:
    return sorted((t.instance_id, t.group, t.cpu, t.memory, sorted(t.ports)) for t in view.tasks())


@settings(max_examples=400, deadline=None)
@given(_scenarios())
def test_fast_path_matches_the_naive_path(scenario) -> None:
    instances, tasks, req, count, seed = scenario
    fast_view, naive_view = p.ClusterView(instances, tasks), p.ClusterView(instances, tasks)
    fast = p.place(fast_view, req, count, seed)
    naive = p.place_naive(naive_view, req, count, seed)
    assert fast == naive
    assert _state(fast_view) == _state(naive_view)
    assert len(fast.placements) + fast.unplaced == count
    # every placement was feasible when made: replaying on a fresh view, explain says so
    replay = p.ClusterView(instances, tasks)
    for instance_id in fast.placements:
        assert p.explain(replay, req)[instance_id] is None
        replay.add_task(p.PlacedTask(instance_id, req.group, req.cpu, req.memory, req.ports))
    if fast.unplaced:
        assert all(reason is not None for reason in p.explain(replay, req).values())


@settings(max_examples=200, deadline=None)
@given(_scenarios(), st.lists(st.sampled_from(_STRATEGIES), max_size=2))
def test_scale_in_is_deterministic_and_stops_only_the_group(scenario, strategies) -> None:
    instances, tasks, req, count, seed = scenario
    first = p.choose_to_stop(p.ClusterView(instances, tasks), req.group, count, tuple(strategies), seed)
    second = p.choose_to_stop(p.ClusterView(instances, tasks), req.group, count, tuple(strategies), seed)
    assert first == second
    of_group = {t.task_id for t in tasks if t.group == req.group}
    assert set(first) <= of_group
    assert len(first) == min(count, len(of_group))


def test_requests_with_lists_instead_of_tuples_still_work() -> None:
    req = p.TaskRequest(WEB, 128, 256, {(80, "tcp")}, [DISTINCT], [BINPACK_MEMORY])  # type: ignore[arg-type]
    assert p.place(p.ClusterView([instance("a"), instance("b")]), req, 3).placements == ["a", "b"]
