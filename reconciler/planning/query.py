"""The ECS cluster query language: parse a `memberOf` expression once, evaluate it against instances.

Owns the grammar (ecs-reference.md §5.3), the error messages with the column of the problem, the
meaning of every operator, and the canonical text of an expression (`str(expr)`, used in reasons
such as ``did not match memberOf(attribute:zone == b)``). It must not do I/O, read a clock or know
about Docker: an instance is seen only through the `Facts` protocol.

Grammar (keywords and operator words are case-insensitive, subjects and values are not)::

    expr    := and (('or' | '||') and)*
    and     := unary (('and' | '&&') unary)*
    unary   := ('not' | '!') unary | '(' expr ')' | clause
    clause  := subject operator [argument | '[' argument (',' argument)* ']']
    argument:= bare word | 'single quoted' (a quote inside is doubled: 'it''s')

Subjects: ``attribute:NAME``, ``instanceId`` (alias ``ec2InstanceId``), ``agentConnected``,
``runningTasksCount`` and ``task:group``.

Semantics decided here, where ECS says nothing:

* A clause on an attribute the instance lacks is false, and so its negated forms (``!=``, ``!in``,
  ``!~``, ``!exists``) are true: a negated operator is always exactly ``not`` of its positive form.
* ``==`` and ``in`` compare text exactly (``runningTasksCount`` and ``agentConnected`` excepted).
* Ordered operators compare two integers as numbers, two dotted numbers (``1.10``, ``20.10.7``) as
  versions segment by segment (so ``1.10 > 1.9``), and anything else as text.
* ``=~`` patterns match the whole value; ``*`` is the only wildcard and every other character,
  ``.`` included, is literal.
* ``task:group`` is a set: ``==``/``in``/``=~`` hold if any group on the instance satisfies them;
  ``exists`` holds if the instance runs any task.
* ``runningTasksCount`` counts the tasks that hold resources on the instance (RUNNING or PENDING).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

MAX_LENGTH = 2000


class QueryError(ValueError):
    """A malformed expression; `column` is 1-based."""

    def __init__(self, message: str, column: int, expression: str = "", hint: str = ""):
        super().__init__(f"{message} at column {column}" + (f"; {hint}" if hint else ""))
        self.message = message
        self.column = column
        self.expression = expression
        self.hint = hint


class Facts(Protocol):
    """What an expression can see of an instance."""

    @property
    def instance_id(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, str]: ...
    @property
    def agent_connected(self) -> bool: ...
    @property
    def running_tasks_count(self) -> int: ...
    @property
    def task_groups(self) -> Collection[str]: ...


@dataclass(frozen=True)
class InstanceFacts:
    """A plain `Facts` value, for callers and tests that have no richer object at hand."""

    instance_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    agent_connected: bool = True
    running_tasks_count: int = 0
    task_groups: Collection[str] = frozenset()


# ---------------------------------------------------------------------------------------------------
# Vocabulary

INSTANCE_ID = "instanceId"
AGENT_CONNECTED = "agentConnected"
RUNNING_TASKS_COUNT = "runningTasksCount"
TASK_GROUP = "task:group"
ATTRIBUTE_PREFIX = "attribute:"

_SUBJECT_ALIASES = {
    "instanceId": INSTANCE_ID,
    "ec2InstanceId": INSTANCE_ID,
    "agentConnected": AGENT_CONNECTED,
    "runningTasksCount": RUNNING_TASKS_COUNT,
    "task:group": TASK_GROUP,
}
_DYNAMIC_SUBJECTS = frozenset({RUNNING_TASKS_COUNT, TASK_GROUP})

# Canonical operator -> spellings accepted.
_OPERATOR_SPELLINGS = {
    "==": ("==", "equals"),
    "!=": ("!=", "not_equals"),
    ">": (">", "greater_than"),
    ">=": (">=", "greater_than_equal"),
    "<": ("<", "less_than"),
    "<=": ("<=", "less_than_equal"),
    "exists": ("exists",),
    "!exists": ("!exists", "not_exists"),
    "in": ("in",),
    "!in": ("!in", "not_in"),
    "=~": ("=~", "matches"),
    "!~": ("!~", "not_matches"),
}
_OPERATORS = {spelling: canon for canon, spellings in _OPERATOR_SPELLINGS.items() for spelling in spellings}
_NEGATED = {"!=": "==", "!exists": "exists", "!in": "in", "!~": "=~"}
_ORDERED = frozenset({">", ">=", "<", "<="})
_NO_ARGUMENT = frozenset({"exists", "!exists"})
_LIST_ARGUMENT = frozenset({"in", "!in"})
_KEYWORDS = frozenset({"and", "or", "not"})

_ALLOWED_OPERATORS = {
    AGENT_CONNECTED: frozenset({"==", "!=", "exists", "!exists"}),
    RUNNING_TASKS_COUNT: frozenset({"==", "!=", ">", ">=", "<", "<=", "in", "!in", "exists", "!exists"}),
    TASK_GROUP: frozenset({"==", "!=", "in", "!in", "=~", "!~", "exists", "!exists"}),
}

_WORD_CHARS = r"A-Za-z0-9._\-:/\\*@"
_WORD_RE = re.compile(rf"[{_WORD_CHARS}]+")
_ATTRIBUTE_NAME_RE = re.compile(r"[A-Za-z0-9._\-/\\]+")
_INTEGER_RE = re.compile(r"-?\d+")
_VERSION_RE = re.compile(r"\d+(?:\.\d+)+")


# ---------------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # WORD STRING OP ( ) [ ] , END
    text: str  # for STRING the unquoted value
    column: int


_SYMBOLS = ("==", "!=", ">=", "<=", "=~", "!~", "&&", "||", ">", "<", "!")
_PUNCTUATION = "()[],"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _PUNCTUATION:
            tokens.append(_Token(ch, ch, i + 1))
            i += 1
        elif ch == "'":
            value, end = _read_quoted(text, i)
            tokens.append(_Token("STRING", value, i + 1))
            i = end
        elif (match := _WORD_RE.match(text, i)) is not None:
            tokens.append(_Token("WORD", match.group(), i + 1))
            i = match.end()
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
            if symbol is None:
                raise QueryError(f"unexpected character {ch!r}", i + 1, text)
            if symbol == "!":
                symbol = _bang_operator(text, i)
            tokens.append(_Token("OP", symbol, i + 1))
            i += len(symbol)
    tokens.append(_Token("END", "", n + 1))
    return tokens


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read 'a ''quoted'' string' at `start`; return its value and the index after it."""
    parts: list[str] = []
    i = start + 1
    while True:
        end = text.find("'", i)
        if end < 0:
            raise QueryError("unterminated quoted string starting", start + 1, text)
        parts.append(text[i:end])
        if text.startswith("''", end):
            parts.append("'")
            i = end + 2
            continue
        return "".join(parts), end + 1


def _bang_operator(text: str, i: int) -> str:
    """`!exists` and `!in` are single operators; any other `!` is negation."""
    match = _WORD_RE.match(text, i + 1)
    if match is not None and match.group().lower() in ("exists", "in"):
        return "!" + match.group()
    return "!"


# ---------------------------------------------------------------------------------------------------
# Expression tree


class Expr:
    """A parsed expression: immutable, shared through the parse cache."""

    _fn: Callable[[Facts], bool]

    def evaluate(self, facts: Facts) -> bool:
        return self._fn(facts)

    @property
    def dynamic(self) -> bool:
        """True when the result can change as tasks are placed (task:group, runningTasksCount)."""
        raise NotImplementedError

    def _render(self, parent_precedence: int) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self._render(0)


_PRECEDENCE_OR, _PRECEDENCE_AND, _PRECEDENCE_UNARY = 1, 2, 3


@dataclass(frozen=True, eq=True)
class Clause(Expr):
    subject: str  # canonical: instanceId, agentConnected, runningTasksCount, task:group, attribute:NAME
    operator: str  # canonical spelling, see _OPERATOR_SPELLINGS
    arguments: tuple[str, ...] = ()
    _fn: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fn", _compile_clause(self.subject, self.operator, self.arguments))

    @property
    def dynamic(self) -> bool:
        return self.subject in _DYNAMIC_SUBJECTS

    def _render(self, parent_precedence: int) -> str:
        head = f"{self.subject} {self.operator}"
        if self.operator in _NO_ARGUMENT:
            return head
        if self.operator in _LIST_ARGUMENT:
            return f"{head} [{', '.join(_quote(a) for a in self.arguments)}]"
        return f"{head} {_quote(self.arguments[0])}"


@dataclass(frozen=True, eq=True)
class Not(Expr):
    operand: Expr
    _fn: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inner = self.operand._fn
        object.__setattr__(self, "_fn", lambda facts: not inner(facts))

    @property
    def dynamic(self) -> bool:
        return self.operand.dynamic

    def _render(self, parent_precedence: int) -> str:
        return f"not ({self.operand._render(0)})"


@dataclass(frozen=True, eq=True)
class _Junction(Expr):
    """`and` / `or` over operands: short-circuit evaluation, rendering with the junction's precedence."""

    operands: tuple[Expr, ...]
    _fn: Callable[[Facts], bool] = field(init=False, repr=False, compare=False)
    _word: ClassVar[str]
    _precedence: ClassVar[int]
    _combine: ClassVar[Callable[[Iterable[bool]], bool]]

    def __post_init__(self) -> None:
        fns = tuple(o._fn for o in self.operands)
        combine = type(self)._combine
        object.__setattr__(self, "_fn", lambda facts: combine(fn(facts) for fn in fns))

    @property
    def dynamic(self) -> bool:
        return any(o.dynamic for o in self.operands)

    def _render(self, parent_precedence: int) -> str:
        text = f" {self._word} ".join(o._render(self._precedence) for o in self.operands)
        return f"({text})" if parent_precedence > self._precedence else text


@dataclass(frozen=True, eq=True)
class And(_Junction):
    _word: ClassVar[str] = "and"
    _precedence: ClassVar[int] = _PRECEDENCE_AND
    _combine: ClassVar[Callable[[Iterable[bool]], bool]] = all


@dataclass(frozen=True, eq=True)
class Or(_Junction):
    _word: ClassVar[str] = "or"
    _precedence: ClassVar[int] = _PRECEDENCE_OR
    _combine: ClassVar[Callable[[Iterable[bool]], bool]] = any


def _quote(value: str) -> str:
    if _WORD_RE.fullmatch(value) and value.lower() not in _KEYWORDS and value.lower() not in _OPERATORS:
        return value
    return "'" + value.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------------
# Evaluation of one clause


def _compile_clause(subject: str, operator: str, arguments: tuple[str, ...]) -> Callable[[Facts], bool]:
    positive = _NEGATED.get(operator, operator)
    test = _compile_test(subject, positive, arguments)
    if subject.startswith(ATTRIBUTE_PREFIX):
        test = _on_attribute(subject[len(ATTRIBUTE_PREFIX) :], positive, test)
    elif subject == TASK_GROUP:
        test = _on_task_groups(positive, test)
    elif subject == INSTANCE_ID:
        test = _on_value(lambda facts: facts.instance_id, positive, test)
    elif subject == RUNNING_TASKS_COUNT:
        test = _on_value(lambda facts: facts.running_tasks_count, positive, test)
    else:
        test = _on_value(lambda facts: facts.agent_connected, positive, test)
    if operator in _NEGATED:
        return lambda facts: not test(facts)
    return test


def _compile_test(subject: str, operator: str, arguments: tuple[str, ...]) -> Callable[[object], bool]:
    """A predicate on one value of the subject (a string, an int or a bool)."""
    if operator == "exists":
        return lambda value: True
    if subject == RUNNING_TASKS_COUNT:
        numbers = [int(a) for a in arguments]
        return _compile_comparison(operator, numbers[0], frozenset(numbers))
    if subject == AGENT_CONNECTED:
        wanted = arguments[0].lower() == "true"
        return lambda value: value == wanted
    if operator == "=~":
        pattern = _wildcard(arguments[0])
        return lambda value: pattern.fullmatch(value) is not None
    if operator in _ORDERED:
        return _compile_ordered(operator, arguments[0])
    return _compile_comparison(operator, arguments[0], frozenset(arguments))


def _compile_comparison(operator: str, argument: object, members: frozenset) -> Callable[[object], bool]:
    if operator == "in":
        return lambda value: value in members
    if operator == "==":
        return lambda value: value == argument
    return _ORDERED_TESTS[operator](argument)


_ORDERED_TESTS: dict[str, Callable[[object], Callable[[object], bool]]] = {
    ">": lambda a: lambda v: v > a,
    ">=": lambda a: lambda v: v >= a,
    "<": lambda a: lambda v: v < a,
    "<=": lambda a: lambda v: v <= a,
}


def _compile_ordered(operator: str, argument: str) -> Callable[[object], bool]:
    compare = _ORDERED_TESTS[operator]
    as_text = compare(argument)
    if _INTEGER_RE.fullmatch(argument):
        as_number = compare(int(argument))
        return lambda v: as_number(int(v)) if _INTEGER_RE.fullmatch(v) else as_text(v)
    if _VERSION_RE.fullmatch(argument):
        as_version = compare(_version(argument))
        return lambda v: as_version(_version(v)) if _VERSION_RE.fullmatch(v) else as_text(v)
    return as_text


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _on_attribute(name: str, operator: str, test: Callable[[object], bool]) -> Callable[[Facts], bool]:
    if operator == "exists":
        return lambda facts: name in facts.attributes

    def evaluate(facts: Facts) -> bool:
        value = facts.attributes.get(name)
        return value is not None and test(value)

    return evaluate


def _on_task_groups(operator: str, test: Callable[[object], bool]) -> Callable[[Facts], bool]:
    if operator == "exists":
        return lambda facts: len(facts.task_groups) > 0
    return lambda facts: any(test(group) for group in facts.task_groups)


def _on_value(
    get: Callable[[Facts], object], operator: str, test: Callable[[object], bool]
) -> Callable[[Facts], bool]:
    if operator == "exists":
        return lambda facts: True
    return lambda facts: test(get(facts))


# ---------------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.position]

    def advance(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def error(self, message: str, token: _Token | None = None, hint: str = "") -> QueryError:
        return QueryError(message, (token or self.token).column, self.text, hint)

    def unexpected(self, expected: str = "") -> QueryError:
        token = self.token
        hint = f"expected {expected}" if expected else ""
        if token.kind == "END":
            return self.error("unexpected end of expression", hint=hint)
        shown = "'" + token.text.replace("'", "''") + "'"
        return self.error(f"unexpected token {shown}", hint=hint)

    def is_keyword(self, *words: str) -> bool:
        token = self.token
        if token.kind == "WORD":
            return token.text.lower() in words
        return token.kind == "OP" and token.text in words

    def parse(self) -> Expr:
        if self.token.kind == "END":
            raise self.error("empty expression")
        expr = self.parse_or()
        if self.token.kind != "END":
            raise self.unexpected("'and', 'or' or the end")
        return expr

    def parse_or(self) -> Expr:
        operands = [self.parse_and()]
        while self.is_keyword("or", "||"):
            self.advance()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(_flatten(Or, operands))

    def parse_and(self) -> Expr:
        operands = [self.parse_unary()]
        while self.is_keyword("and", "&&"):
            self.advance()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(_flatten(And, operands))

    def parse_unary(self) -> Expr:
        if self.is_keyword("not", "!"):
            self.advance()
            return Not(self.parse_unary())
        if self.token.kind == "(":
            self.advance()
            expr = self.parse_or()
            if self.token.kind != ")":
                raise self.unexpected("')'")
            self.advance()
            return expr
        return self.parse_clause()

    def parse_clause(self) -> Clause:
        subject_token = self.token
        if subject_token.kind != "WORD" or subject_token.text.lower() in _KEYWORDS:
            raise self.unexpected("a subject such as attribute:NAME")
        subject = self.parse_subject()
        operator = self.parse_operator(subject)
        if operator in _NO_ARGUMENT:
            arguments: tuple[str, ...] = ()
        elif operator in _LIST_ARGUMENT:
            arguments = self.parse_list(subject)
        else:
            arguments = (self.parse_argument(subject),)
        return Clause(subject, operator, arguments)

    def parse_subject(self) -> str:
        token = self.advance()
        if token.text.startswith(ATTRIBUTE_PREFIX):
            name = token.text[len(ATTRIBUTE_PREFIX) :]
            if not _ATTRIBUTE_NAME_RE.fullmatch(name):
                raise self.error(f"invalid attribute name {name!r}", token)
            return token.text
        subject = _SUBJECT_ALIASES.get(token.text)
        if subject is None:
            known = "attribute:NAME, instanceId, ec2InstanceId, agentConnected, runningTasksCount, task:group"
            raise self.error(f"unknown subject {token.text!r}", token, hint=f"known subjects: {known}")
        return subject

    def parse_operator(self, subject: str) -> str:
        token = self.token
        spelling = token.text.lower() if token.kind == "WORD" else token.text
        operator = _OPERATORS.get(spelling) if token.kind in ("WORD", "OP") else None
        if operator is None:
            raise self.unexpected(f"an operator after {subject!r}")
        allowed = _ALLOWED_OPERATORS.get(subject)
        if allowed is not None and operator not in allowed:
            raise self.error(f"operator {token.text!r} does not apply to {subject}", token)
        self.advance()
        return operator

    def parse_argument(self, subject: str) -> str:
        token = self.token
        if token.kind not in ("WORD", "STRING"):
            raise self.unexpected("a value")
        if subject == RUNNING_TASKS_COUNT and not _INTEGER_RE.fullmatch(token.text):
            raise self.error(f"runningTasksCount compares with integers, not {token.text!r}")
        if subject == AGENT_CONNECTED and token.text.lower() not in ("true", "false"):
            raise self.error(f"agentConnected compares with true or false, not {token.text!r}")
        self.advance()
        return token.text

    def parse_list(self, subject: str) -> tuple[str, ...]:
        if self.token.kind != "[":
            raise self.unexpected("'[' starting a list")
        self.advance()
        values = [self.parse_argument(subject)]
        while self.token.kind == ",":
            self.advance()
            values.append(self.parse_argument(subject))
        if self.token.kind != "]":
            raise self.unexpected("',' or ']'")
        self.advance()
        return tuple(values)


def _flatten(kind: type, operands: list[Expr]) -> tuple[Expr, ...]:
    flat: list[Expr] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else (operand,))  # type: ignore[attr-defined]
    return tuple(flat)


@functools.lru_cache(maxsize=4096)
def parse(expression: str) -> Expr:
    """Parse a cluster query expression; raise `QueryError` naming the column of the problem."""
    if len(expression) > MAX_LENGTH:
        raise QueryError(
            f"expression is {len(expression)} characters long, more than the {MAX_LENGTH} allowed",
            MAX_LENGTH + 1,
            expression,
        )
    return _Parser(expression).parse()


def matches(expression: str, facts: Facts) -> bool:
    """Convenience: parse (cached) and evaluate."""
    return parse(expression).evaluate(facts)
