"""Cluster query language: parsing, evaluation of every operator and combinator, errors, rendering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.planning import query

WEB = query.InstanceFacts(
    instance_id="i-web-1",
    attributes={
        "ecs.availability-zone": "eu-west-1a",
        "ecs.instance-type": "t3.large",
        "ecs.os-type": "linux",
        "ecs.cpu-architecture": "arm64",
        "stack": "production",
        "gpu": "",
        "kernel": "5.10.0",
        "disks": "12",
        "label": "it's here",
    },
    agent_connected=True,
    running_tasks_count=3,
    task_groups=frozenset({"service:web", "family:batch"}),
)
BARE = query.InstanceFacts(instance_id="i-bare", agent_connected=False)


EVALUATION_CASES = [
    # == / equals
    ("attribute:ecs.instance-type == t3.large", True, False),
    ("attribute:ecs.instance-type equals t3.large", True, False),
    ("attribute:ecs.instance-type == t3.small", False, False),
    ("attribute:ecs.instance-type == 'T3.LARGE'", False, False),
    # != / not_equals: a missing attribute is "not equal"
    ("attribute:ecs.os-type != windows", True, True),
    ("attribute:ecs.os-type not_equals linux", False, True),
    # ordered: integers, versions, text
    ("attribute:disks > 9", True, False),
    ("attribute:disks greater_than 12", False, False),
    ("attribute:disks >= 12", True, False),
    ("attribute:disks greater_than_equal 13", False, False),
    ("attribute:disks < 100", True, False),
    ("attribute:disks less_than_equal 12", True, False),
    ("attribute:kernel > 5.9", True, False),
    ("attribute:kernel < 5.10.1", True, False),
    ("attribute:kernel <= 5.10.0", True, False),
    ("attribute:stack > prod", True, False),
    ("attribute:stack less_than a", False, False),
    # exists / !exists / not_exists (valueless capability attributes exist)
    ("attribute:gpu exists", True, False),
    ("attribute:gpu !exists", False, True),
    ("attribute:fpga not_exists", True, True),
    # in / !in / not_in
    ("attribute:ecs.availability-zone in [eu-west-1a, eu-west-1b]", True, False),
    ("attribute:ecs.availability-zone in ['eu-west-1c']", False, False),
    ("attribute:ecs.availability-zone !in [eu-west-1b]", True, True),
    ("attribute:ecs.availability-zone not_in [eu-west-1a,eu-west-1b]", False, True),
    # =~ / matches / !~ / not_matches: '*' is the only wildcard, '.' is literal
    ("attribute:ecs.instance-type =~ t3.*", True, False),
    ("attribute:ecs.instance-type matches *.large", True, False),
    ("attribute:ecs.instance-type =~ t3", False, False),
    ("attribute:ecs.instance-type =~ 't3?large'", False, False),
    ("attribute:ecs.instance-type !~ m5.*", True, True),
    ("attribute:ecs.instance-type not_matches t*", False, True),
    # quoted arguments, with a doubled quote inside
    ("attribute:label == 'it''s here'", True, False),
    # instanceId and its alias
    ("instanceId == i-web-1", True, False),
    ("ec2InstanceId in ['i-0abc', 'i-web-1']", True, False),
    ("instanceId =~ i-bar*", False, True),
    # agentConnected
    ("agentConnected == true", True, False),
    ("agentConnected != TRUE", False, True),
    ("agentConnected == false", False, True),
    # runningTasksCount
    ("runningTasksCount < 5", True, True),
    ("runningTasksCount == 3", True, False),
    ("runningTasksCount > 3", False, False),
    ("runningTasksCount in [0, 1]", False, True),
    # task:group: a set of groups
    ("task:group == service:web", True, False),
    ("task:group != service:web", False, True),
    ("task:group in [service:db, family:batch]", True, False),
    ("task:group =~ service:*", True, False),
    ("task:group exists", True, False),
    ("task:group !exists", False, True),
    # combinators and precedence
    ("attribute:ecs.os-type == linux and attribute:ecs.cpu-architecture == arm64", True, False),
    ("attribute:ecs.os-type == linux && attribute:stack == staging", False, False),
    ("attribute:stack == staging or instanceId == i-web-1", True, False),
    ("attribute:stack == staging || instanceId == i-bare", False, True),
    ("not(task:group == service:db)", True, True),
    ("not task:group == service:web", False, True),
    ("!(task:group == service:web)", False, True),
    ("! attribute:gpu exists", False, True),
    ("NOT attribute:gpu exists AND agentConnected == false", False, True),
    ("instanceId == x or instanceId == i-web-1 and attribute:stack == staging", False, False),
    ("(instanceId == x or instanceId == i-web-1) and attribute:stack == production", True, False),
    ("attribute:ecs.instance-type =~ t3.* and attribute:ecs.availability-zone != us-east-1d", True, False),
    ("attribute:stack==production&&(attribute:gpu exists||attribute:fpga exists)", True, False),
]


@pytest.mark.parametrize(("expression", "on_web", "on_bare"), EVALUATION_CASES)
def test_evaluate(expression: str, on_web: bool, on_bare: bool) -> None:
    expr = query.parse(expression)
    assert expr.evaluate(WEB) is on_web
    assert expr.evaluate(BARE) is on_bare


@pytest.mark.parametrize(("expression", "_on_web", "_on_bare"), EVALUATION_CASES)
def test_rendering_round_trips(expression: str, _on_web: bool, _on_bare: bool) -> None:
    expr = query.parse(expression)
    assert query.parse(str(expr)) == expr
    assert str(query.parse(str(expr))) == str(expr)


@pytest.mark.parametrize(
    ("expression", "canonical"),
    [
        ("attribute:x   equals   a", "attribute:x == a"),
        ("attribute:x not_exists", "attribute:x !exists"),
        ("attribute:x not_in [a,b]", "attribute:x !in [a, b]"),
        ("attribute:x matches 'a*'", "attribute:x =~ a*"),
        ("ec2InstanceId == i-1", "instanceId == i-1"),
        ("attribute:x == 'a b'", "attribute:x == 'a b'"),
        ("attribute:x == 'and'", "attribute:x == 'and'"),
        ("attribute:x == 'it''s'", "attribute:x == 'it''s'"),
        ("not(task:group == service:db)", "not (task:group == service:db)"),
        (
            "(attribute:a exists or attribute:b exists) and attribute:c exists",
            "(attribute:a exists or attribute:b exists) and attribute:c exists",
        ),
        (
            "attribute:a exists or (attribute:b exists and attribute:c exists)",
            "attribute:a exists or attribute:b exists and attribute:c exists",
        ),
        ("((attribute:a exists))", "attribute:a exists"),
        (
            "attribute:a exists && attribute:b exists && attribute:c exists",
            "attribute:a exists and attribute:b exists and attribute:c exists",
        ),
    ],
)
def test_canonical_text(expression: str, canonical: str) -> None:
    assert str(query.parse(expression)) == canonical


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("attribute:x == a foo", "unexpected token 'foo'", 18),
        ("attribute:x ==", "unexpected end of expression", 15),
        ("attribute:x", "unexpected end of expression", 12),
        ("attribute:x = a", "unexpected character '='", 13),
        ("attribute:x == a and", "unexpected end of expression", 21),
        ("(attribute:x exists", "unexpected end of expression", 20),
        ("attribute:x exists)", "unexpected token ')'", 19),
        ("attribute:x in a", "unexpected token 'a'", 16),
        ("attribute:x in [a b]", "unexpected token 'b'", 19),
        ("attribute:x in []", "unexpected token ']'", 17),
        ("attribute:x == 'abc", "unterminated quoted string starting", 16),
        ("zone == a", "unknown subject 'zone'", 1),
        ("attribute: == a", "invalid attribute name ''", 1),
        ("attribute:x like a", "unexpected token 'like'", 13),
        ("runningTasksCount > many", "runningTasksCount compares with integers, not 'many'", 21),
        ("runningTasksCount =~ 1*", "operator '=~' does not apply to runningTasksCount", 19),
        ("agentConnected == yes", "agentConnected compares with true or false, not 'yes'", 19),
        ("task:group > service:a", "operator '>' does not apply to task:group", 12),
        ("", "empty expression", 1),
        ("   ", "empty expression", 4),
        ("and attribute:x exists", "unexpected token 'and'", 1),
        ("attribute:x exists attribute:y exists", "unexpected token 'attribute:y'", 20),
    ],
)
def test_errors_name_the_column(expression: str, message: str, column: int) -> None:
    with pytest.raises(query.QueryError) as caught:
        query.parse(expression)
    assert caught.value.message == message
    assert caught.value.column == column
    assert str(caught.value).startswith(f"{message} at column {column}")


def test_error_text_matches_the_ecs_style() -> None:
    with pytest.raises(query.QueryError, match=r"^unexpected token 'foo' at column 18; expected"):
        query.parse("attribute:x == a foo")


def test_length_limit() -> None:
    head = "attribute:x == "
    longest = head + "a" * (query.MAX_LENGTH - len(head))
    assert len(longest) == query.MAX_LENGTH
    assert str(query.parse(longest)) == longest
    with pytest.raises(query.QueryError, match="more than the 2000 allowed at column 2001"):
        query.parse(longest + "a")


def test_parse_is_cached() -> None:
    assert query.parse("attribute:cached == yes") is query.parse("attribute:cached == yes")


def test_dynamic_subjects_are_flagged() -> None:
    assert not query.parse("attribute:a exists and instanceId == x and agentConnected == true").dynamic
    assert query.parse("attribute:a exists and not (task:group == service:x)").dynamic
    assert query.parse("attribute:a exists or runningTasksCount < 3").dynamic


def test_matches_helper() -> None:
    assert query.matches("attribute:stack == production", WEB)


# -- property: rendering is a fixed point, evaluation survives it -----------------------------------

_VALUES = st.one_of(
    st.sampled_from(["a", "b", "t3.large", "1", "10", "1.9", "1.10", "x y", "it's", "and", "in", "", "*"]),
    st.text(alphabet="ab.-' *:", max_size=4),
)
_SUBJECTS = st.sampled_from(["attribute:a", "attribute:b", "instanceId", "task:group"])
_OPERATORS = st.sampled_from(["==", "!=", ">", ">=", "<", "<=", "exists", "!exists", "in", "!in", "=~", "!~"])


@st.composite
def _clauses(draw: st.DrawFn) -> query.Expr:
    subject = draw(_SUBJECTS)
    operator = draw(_OPERATORS)
    if subject == "task:group" and operator in (">", ">=", "<", "<="):
        operator = "=="
    if operator in ("exists", "!exists"):
        arguments: tuple[str, ...] = ()
    elif operator in ("in", "!in"):
        arguments = tuple(draw(st.lists(_VALUES, min_size=1, max_size=3)))
    else:
        arguments = (draw(_VALUES),)
    return query.Clause(subject, operator, arguments)


_EXPRESSIONS = st.recursive(
    _clauses(),
    lambda children: st.one_of(
        children.map(query.Not),
        st.lists(children, min_size=2, max_size=3).map(lambda items: query.And(tuple(items))),
        st.lists(children, min_size=2, max_size=3).map(lambda items: query.Or(tuple(items))),
    ),
    max_leaves=6,
)
_FACTS = st.builds(
    query.InstanceFacts,
    instance_id=_VALUES,
    attributes=st.dictionaries(st.sampled_from(["a", "b"]), _VALUES, max_size=2),
    task_groups=st.frozensets(_VALUES, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(_EXPRESSIONS, _FACTS)
def test_rendered_text_parses_to_an_equivalent_expression(
    expr: query.Expr, facts: query.InstanceFacts
) -> None:
    reparsed = query.parse(str(expr))
    assert str(reparsed) == str(expr)
    assert reparsed.evaluate(facts) == expr.evaluate(facts)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="attribute:ab=!<>~ []',()&|notandor", max_size=40))
def test_garbage_raises_query_error_or_parses(text: str) -> None:
    try:
        expr = query.parse(text)
    except query.QueryError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        assert query.parse(str(expr)) == expr
