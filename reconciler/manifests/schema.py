"""The schema stage: each document's envelope and shape, checked against the JSON Schemas in `schemas/`.

Owns loading `schemas/{cluster,taskdefinition,service,alarm}.schema.json` once, compiling one Draft 2020-12
validator per kind, and turning every schema error into one located, readable `document.Diagnostic`
(unknown fields with a did-you-mean, wrong types, enums, ranges, missing fields). It also reports the
envelope (apiVersion, kind, metadata.name) and, as notices, the read-only describe-task-definition keys
that a TaskDefinition spec may carry. It must not judge anything that needs two fields or two documents
(references, uniqueness, Fargate rules, cpu/memory sums, dependsOn cycles...): `semantic.py` does that.

Where the schemas come from: the project root's `schemas/` directory (`Path(__file__).parents[2]`),
which is where an editable install (the way this project is installed) finds them and where editors
point at them (`# yaml-language-server: $schema=../schemas/service.schema.json`). A wheel has no
project root, so the package directory `reconciler/schemas/` is tried second: packaging the schemas
for a non-editable install means adding them there as package data (a copy or a symlink), nothing here.

How they are compiled: each file is self-contained (its shared pieces live in its own `$defs`, because
a relative `$ref` to another file would make editors fetch `https://reconciler.dev/...` over the
network). The `$ref`s are resolved once, offline, through a `referencing.Registry` that refuses remote
retrieval, and inlined into the in-memory schema so validation does no reference lookups at all; the
files on disk keep their `$ref`s for editors. Integers are strict (no booleans, no 3.0) and no format
checker runs. `patternErrorMessage` (the VS Code / yaml-language-server keyword) words pattern errors.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import exceptions as jsonschema_exceptions

from reconciler.manifests import document

API_VERSION = "reconciler/v1"
SCHEMA_FILES = {
    "Cluster": "cluster.schema.json",
    "TaskDefinition": "taskdefinition.schema.json",
    "Service": "service.schema.json",
    "Alarm": "alarm.schema.json",
}
KINDS = tuple(SCHEMA_FILES)

# Keys of `aws ecs describe-task-definition` output that RegisterTaskDefinition does not take.
READ_ONLY_TASK_DEFINITION_FIELDS = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
)

# ECS and CloudWatch fields that the manifest format leaves out on purpose, with the reason shown for them.
_NO_ACTIONS = (
    "alarms here take no actions: a Service's deploymentConfiguration.alarms names the alarm, "
    "and its ALARM state fails that service's deployment"
)
_NO_CLOUDWATCH = (
    "there is no CloudWatch here: metric says what to read, "
    "as predefinedMetricType with service or as customizedMetric"
)
_NOT_SUPPORTED: dict[tuple[str, document.Pointer], dict[str, str]] = {
    ("Service", ("spec",)): {
        "serviceName": "the service name is metadata.name",
        "deploymentController": "reconciler deploys with the ECS rolling controller only",
        "role": "not used: reconciler registers load balancer targets itself",
        "serviceConnectConfiguration": "Service Connect is not supported",
        "volumeConfigurations": "managed EBS volumes are not supported",
        "vpcLatticeConfigurations": "VPC Lattice is not supported",
        "clientToken": "not used: manifests are idempotent",
        "availabilityZoneRebalancing": "not supported",
        "enableECSManagedTags": "not supported",
    },
    ("Alarm", ("spec",)): {
        "alarmName": "the alarm name is metadata.name",
        "alarmActions": _NO_ACTIONS,
        "okActions": _NO_ACTIONS,
        "insufficientDataActions": _NO_ACTIONS,
        "actionsEnabled": _NO_ACTIONS,
        "namespace": _NO_CLOUDWATCH,
        "metricName": _NO_CLOUDWATCH,
        "dimensions": _NO_CLOUDWATCH,
        "unit": "units are not supported: a metric is the number its source returns",
        "extendedStatistic": "percentile statistics are not supported: use statistic",
        "evaluateLowSampleCountPercentile": "percentile statistics are not supported: use statistic",
        "metrics": "metric math is not supported: an alarm watches one metric",
        "thresholdMetricId": "anomaly detection bands are not supported: use a static threshold",
        "tags": "alarms take no tags: use metadata.labels",
    },
    ("Cluster", ("spec",)): {
        "clusterName": "the cluster name is metadata.name",
        "capacityProviders": "capacity providers are not supported: use instances and fargate",
        "defaultCapacityProviderStrategy": "capacity providers are not supported: use instances and fargate",
        "configuration": "not supported",
        "serviceConnectDefaults": "Service Connect is not supported",
    },
}

_TIMESTAMP_FORMATS = ("date-time", "date")  # where a YAML timestamp (datetime.date) stands for the string
_ANNOTATIONS = frozenset(
    {
        "description",
        "title",
        "$comment",
        "examples",
        "default",
        "readOnly",
        "deprecated",
        "patternErrorMessage",
    }
)
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
_MAX_SHOWN = 60


class SchemaSetupError(RuntimeError):
    """The schema files are missing or broken: a fault of the installation, not of a manifest."""


def schema_dir() -> Path:
    """The directory holding the schema files, one per kind (see the module docstring for the search order)."""
    here = Path(__file__).resolve()
    candidates = (here.parents[2] / "schemas", here.parents[1] / "schemas")
    for candidate in candidates:
        if all((candidate / name).is_file() for name in SCHEMA_FILES.values()):
            return candidate
    raise SchemaSetupError("schema files not found in " + " or ".join(str(c) for c in candidates))


def _refuse_remote(uri: str) -> referencing.Resource:
    raise referencing.exceptions.NoSuchResource(ref=uri)


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _mapping_is_object(checker: Any, instance: Any) -> bool:
    return isinstance(instance, Mapping)


def _tuple_is_array(checker: Any, instance: Any) -> bool:
    return isinstance(instance, (list, tuple))


_TYPE_CHECKER = (
    jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)
    .redefine("object", _mapping_is_object)
    .redefine("array", _tuple_is_array)
)
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPE_CHECKER)


def _inline(node: Any, resolver: referencing.Resolver, depth: int = 0) -> Any:
    """`node` with every `$ref` replaced by what it points to (the schemas are not recursive)."""
    if depth > 64:
        raise SchemaSetupError("schema $ref chain too deep (recursive schema?)")
    if isinstance(node, list):
        return [_inline(item, resolver, depth) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("$ref", "$defs", "$schema", "$id"):
            continue
        if key in _DATA_KEYWORDS:
            out[key] = value
        elif key in _SCHEMA_MAPS and isinstance(value, dict):  # keys are names, values are schemas
            out[key] = {name: _inline(sub, resolver, depth) for name, sub in value.items()}
        else:
            out[key] = _inline(value, resolver, depth)
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return out
    resolved = resolver.lookup(ref)
    target = _inline(resolved.contents, resolved.resolver, depth + 1)
    if not isinstance(target, dict) or any(key not in _ANNOTATIONS for key in out):
        return {**out, "allOf": [target, *out.get("allOf", [])]}
    return {**target, **out}


@functools.cache
def _validators() -> dict[str, Any]:
    """One compiled validator per kind; built on first use and kept for the life of the process."""
    directory = schema_dir()
    contents: dict[str, dict[str, Any]] = {}
    for kind, name in SCHEMA_FILES.items():
        try:
            loaded = json.loads((directory / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SchemaSetupError(f"cannot read {directory / name}: {e}") from e
        contents[kind] = loaded  # checked against the 2020-12 metaschema by the tests, not on every start
    registry: referencing.Registry = referencing.Registry(retrieve=_refuse_remote).with_resources(
        (
            c["$id"],
            referencing.Resource.from_contents(c, default_specification=referencing.jsonschema.DRAFT202012),
        )
        for c in contents.values()
    )
    validators = {}
    for kind, c in contents.items():
        resolved = _inline(c, registry.resolver(base_uri=c["$id"]))
        validators[kind] = _Validator(resolved, registry=registry)
    return validators


def schemas() -> dict[str, dict[str, Any]]:
    """The compiled (ref-inlined) schema of each kind, for tools and tests."""
    return {kind: v.schema for kind, v in _validators().items()}


# ------------------------------------------------------------------------------------------ fast path
#
# jsonschema spends ~5 us per schema node it descends into, which puts 2,000 documents near a second.
# Most documents are valid, so each kind also gets a plain-closure predicate compiled from the same
# (inlined) schema: when it says "valid", jsonschema is not run; otherwise jsonschema produces the
# errors. The predicate only has to be *never more lenient* than jsonschema (a stricter answer costs
# time, not correctness); tests/unit/test_schema.py checks that both agree on many documents. A
# keyword it does not know makes the kind fall back to jsonschema alone rather than guess.

Predicate = Callable[[Any], bool]


class _Uncompilable(Exception):
    pass


_FAST_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "items",
        "maxProperties",
        "propertyNames",
        "required",
        "properties",
        "patternProperties",
        "additionalProperties",
        "dependentRequired",
        "anyOf",
        "oneOf",
        "allOf",
    }
)
_FAST_IGNORED = _ANNOTATIONS | {"format"}


def _is_object(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _is_array(value: Any) -> bool:
    return type(value) is list or isinstance(value, tuple)


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_integer(value: Any) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) or (isinstance(value, numbers.Number) and not isinstance(value, bool))


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _is_null(value: Any) -> bool:
    return value is None


def _is_timestamp(value: Any) -> bool:
    return isinstance(value, datetime.date)


_TYPE_TESTS: dict[str, Predicate] = {
    "object": _is_object,
    "array": _is_array,
    "string": _is_string,
    "integer": _is_integer,
    "number": _is_number,
    "boolean": _is_boolean,
    "null": _is_null,
    "timestamp": _is_timestamp,
}


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _all_of(checks: Sequence[Predicate]) -> Predicate:
    checks = tuple(c for c in checks if c is not _always)
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]

    def run(value: Any) -> bool:
        for check in checks:
            if not check(value):
                return False
        return True

    return run


def _compile_predicate(schema: Any) -> Predicate:
    """A function telling whether a value is valid under `schema`: the verdict only, no errors."""
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, Mapping):
        raise _Uncompilable(repr(schema))
    unknown = set(schema) - _FAST_IGNORED - _FAST_KEYWORDS
    if unknown:
        raise _Uncompilable(", ".join(sorted(unknown)))
    types = schema.get("type")
    type_names = [types] if isinstance(types, str) else list(types or [])
    if type_names == ["object"]:
        checks = [_object_node(schema)]  # checks the type itself
    else:
        if schema.get("format") in _TIMESTAMP_FORMATS and "string" in type_names:
            type_names = [*type_names, "timestamp"]  # as `_explain` accepts YAML timestamps there
        checks = [_type_check(type_names)] if type_names else []
        checks += _object_checks(schema)
    checks += _value_checks(schema) + _number_checks(schema) + _string_checks(schema) + _array_checks(schema)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            subs = tuple(_compile_predicate(sub) for sub in schema[key])
            if key == "anyOf":
                checks.append(lambda value, subs=subs: any(sub(value) for sub in subs))
            elif key == "oneOf":
                checks.append(lambda value, subs=subs: sum(1 for sub in subs if sub(value)) == 1)
            else:
                checks.append(_all_of(subs))
    return _all_of(checks)


def _type_check(type_names: list[str]) -> Predicate:
    tests = tuple(_TYPE_TESTS[name] for name in type_names)
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


def _value_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    if "enum" not in schema and "const" not in schema:
        return []
    allowed = schema["enum"] if "enum" in schema else [schema["const"]]
    if not all(isinstance(v, str) for v in allowed):
        raise _Uncompilable("enum or const with non-string values")
    allowed_set = frozenset(allowed)
    return [lambda value: isinstance(value, str) and value in allowed_set]


def _number_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    out: list[Predicate] = []
    if "minimum" in schema:
        low = schema["minimum"]
        out.append(lambda v: not _is_number(v) or v >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        out.append(lambda v: not _is_number(v) or v <= high)
    if "exclusiveMinimum" in schema:
        xlow = schema["exclusiveMinimum"]
        out.append(lambda v: not _is_number(v) or v > xlow)
    return out


def _string_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    out: list[Predicate] = []
    if "minLength" in schema:
        shortest = schema["minLength"]
        out.append(lambda v: not isinstance(v, str) or len(v) >= shortest)
    if "maxLength" in schema:
        longest = schema["maxLength"]
        out.append(lambda v: not isinstance(v, str) or len(v) <= longest)
    if "pattern" in schema:
        search = re.compile(schema["pattern"]).search
        out.append(lambda v: not isinstance(v, str) or search(v) is not None)
    return out


def _array_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    out: list[Predicate] = []
    if "minItems" in schema:
        fewest = schema["minItems"]
        out.append(lambda v: not _is_array(v) or len(v) >= fewest)
    if "maxItems" in schema:
        most = schema["maxItems"]
        out.append(lambda v: not _is_array(v) or len(v) <= most)
    if "items" in schema:
        item = _compile_predicate(schema["items"])
        if item is not _always:

            def items_ok(value: Any) -> bool:
                if not _is_array(value):
                    return True
                for element in value:
                    if not item(element):
                        return False
                return True

            out.append(items_ok)
    return out


def _object_node(schema: Mapping[str, Any]) -> Predicate:
    """The check of a `type: object` schema, in one closure: type, required, size and members."""
    rest = _all_of(_object_checks(schema, members=False))
    members = _members_check(schema)
    required = tuple(schema.get("required", ()))

    def object_ok(value: Any) -> bool:
        if not (type(value) is dict or isinstance(value, Mapping)):
            return False
        for key in required:
            if key not in value:
                return False
        return members(value) and rest(value)

    return object_ok


def _object_checks(schema: Mapping[str, Any], members: bool = True) -> list[Predicate]:
    """Object keywords of a schema that may not be about objects only (they pass non-objects)."""
    out: list[Predicate] = []
    if "maxProperties" in schema:
        most = schema["maxProperties"]
        out.append(lambda v: not _is_object(v) or len(v) <= most)
    if "propertyNames" in schema:
        name_ok = _compile_predicate(schema["propertyNames"])
        out.append(lambda v: not _is_object(v) or all(name_ok(k) for k in v))
    if "dependentRequired" in schema:
        pairs = tuple((key, tuple(needed)) for key, needed in schema["dependentRequired"].items())
        out.append(
            lambda v: not _is_object(v) or all(n in v for key, needed in pairs if key in v for n in needed)
        )
    if members:
        if "required" in schema:
            required = tuple(schema["required"])
            out.append(lambda v: not _is_object(v) or all(k in v for k in required))
        if {"properties", "patternProperties", "additionalProperties"} & set(schema):
            check = _members_check(schema)
            out.append(lambda v: not _is_object(v) or check(v))
    return out


def _members_check(schema: Mapping[str, Any]) -> Predicate:
    """properties, patternProperties and additionalProperties of an object known to be a mapping."""
    properties = {k: _compile_predicate(s) for k, s in schema.get("properties", {}).items()}
    patterns = tuple(
        (re.compile(p).search, _compile_predicate(s)) for p, s in schema.get("patternProperties", {}).items()
    )
    extra = (
        _compile_predicate(schema["additionalProperties"]) if "additionalProperties" in schema else _always
    )
    if not properties and not patterns and extra is _always:
        return _always

    def members_ok(value: Any) -> bool:
        for key, member in value.items():
            check = properties.get(key)
            matched = check is not None
            if matched and not check(member):
                return False
            for search, pattern_check in patterns:
                if search(key):
                    matched = True
                    if not pattern_check(member):
                        return False
            if not matched and not extra(member):
                return False
        return True

    return members_ok


@functools.cache
def _predicates() -> dict[str, Predicate | None]:
    """The fast validity predicate of each kind, or None where the schema uses a keyword it cannot mirror."""
    out: dict[str, Predicate | None] = {}
    for kind, validator in _validators().items():
        try:
            out[kind] = _compile_predicate(validator.schema)
        except (_Uncompilable, KeyError, re.error):
            out[kind] = None
    return out


# ---------------------------------------------------------------------------------------------- entry


def check(documents: list[document.Document]) -> list[document.Diagnostic]:
    """Envelope and schema diagnostics for `documents`, in document order; never raises on a document."""
    validators = _validators()
    predicates = _predicates()
    out: list[document.Diagnostic] = []
    for doc in documents:
        out.extend(_check_document(doc, validators, predicates))
    return out


def _check_document(
    doc: document.Document, validators: Mapping[str, Any], predicates: Mapping[str, Predicate | None]
) -> list[document.Diagnostic]:
    try:
        envelope, kind, suppressed = _envelope(doc)
        if kind is None:
            return envelope
        found = (
            []
            if _fast_valid(predicates[kind], doc.body)
            else _schema_diagnostics(doc, validators[kind], suppressed)
        )
        if kind == "TaskDefinition":
            found.extend(_read_only_notices(doc))
    except RecursionError:
        return [doc.diagnostic((), "document is nested too deeply to check")]
    except Exception as e:  # noqa: BLE001 - a document must never crash the pipeline
        return [doc.diagnostic((), f"cannot check document against the schema: {type(e).__name__}: {e}")]
    found.sort(key=lambda d: (d.line, d.col, d.pointer, d.message))
    return envelope + found


# ------------------------------------------------------------------------------------------- envelope


def _envelope(doc: document.Document) -> tuple[list[document.Diagnostic], str | None, set[tuple[Any, ...]]]:
    """apiVersion, kind and metadata.name; the kind to validate against (None: don't); schema errors to drop."""
    body = doc.body
    if not isinstance(body, Mapping):
        name = _type_name(body)
        article = "an" if name[:1] in "aeiou" else "a"
        return [doc.diagnostic((), f"document is {article} {name}, expected a mapping")], None, set()
    diags: list[document.Diagnostic] = []
    # Schema errors the envelope already reports: (path, keyword, property or None).
    suppressed: set[tuple[Any, ...]] = {
        ((), "required", "apiVersion"),
        ((), "required", "kind"),
        ((), "required", "metadata"),
        (("metadata",), "required", "name"),
        (("apiVersion",), "*", None),
        (("kind",), "*", None),
    }

    if "apiVersion" not in body:
        diags.append(doc.diagnostic((), f"missing required field 'apiVersion' (expected '{API_VERSION}')"))
    elif body["apiVersion"] != API_VERSION or not isinstance(body["apiVersion"], str):
        got = body["apiVersion"]
        if isinstance(got, str):
            message = f"unknown apiVersion {_show(got)} (expected '{API_VERSION}')"
        else:
            message = f"expected string '{API_VERSION}', got {_describe(got)}"
        diags.append(doc.diagnostic(("apiVersion",), message))

    kind: str | None = None
    if "kind" not in body:
        diags.append(doc.diagnostic((), f"missing required field 'kind' (one of: {', '.join(KINDS)})"))
    elif isinstance(body["kind"], str) and body["kind"] in SCHEMA_FILES:
        kind = body["kind"]
    elif isinstance(body["kind"], str):
        guess = document.guess(body["kind"], KINDS)
        hint = f"did you mean '{guess}'?" if guess else f"expected one of: {', '.join(KINDS)}"
        diags.append(doc.diagnostic(("kind",), f"unknown kind {_show(body['kind'])} ({hint})"))
    else:
        diags.append(
            doc.diagnostic(
                ("kind",), f"expected string (one of: {', '.join(KINDS)}), got {_describe(body['kind'])}"
            )
        )

    meta = body.get("metadata")
    if "metadata" not in body:
        diags.append(doc.diagnostic((), "missing required field 'metadata.name'"))
    elif isinstance(meta, Mapping) and "name" not in meta:
        diags.append(doc.diagnostic(("metadata",), "missing required field 'metadata.name'"))
    elif isinstance(meta, Mapping) and meta.get("name") == "?" and _is_bare_task_definition(doc):
        suppressed.add((("metadata", "name"), "*", None))
        diags.append(
            doc.diagnostic(
                ("metadata", "name"),
                "missing required field 'family' (a bare ECS task definition takes its name from family)",
            )
        )
    return diags, kind, suppressed


def _is_bare_task_definition(doc: document.Document) -> bool:
    """True for a document the loader built from a bare ECS task definition (it has no envelope positions)."""
    positions = doc.positions
    return bool(positions) and ("kind",) not in positions and ("apiVersion",) not in positions


def _read_only_notices(doc: document.Document) -> list[document.Diagnostic]:
    spec = doc.body.get("spec")
    if not isinstance(spec, Mapping):
        return []
    return [
        doc.diagnostic(
            ("spec", key),
            f"read-only field '{key}' from describe-task-definition output is ignored",
            severity=document.NOTICE,
        )
        for key in spec
        if key in READ_ONLY_TASK_DEFINITION_FIELDS
    ]


# --------------------------------------------------------------------------------------- schema errors


def _fast_valid(predicate: Predicate | None, body: Any) -> bool:
    if predicate is None:
        return False
    try:
        return bool(predicate(body))
    except Exception:  # noqa: BLE001 - odd values: let jsonschema (and its fallbacks) decide
        return False


def _schema_diagnostics(
    doc: document.Document, validator: Any, suppressed: set[tuple[Any, ...]]
) -> list[document.Diagnostic]:
    try:
        errors = list(validator.iter_errors(doc.body))
    except (TypeError, ValueError, AttributeError, re.error):
        # Keys that are not strings, or values no JSON document holds: check a plain copy instead.
        errors = list(validator.iter_errors(_plain(doc.body)))
    explained: list[Explained] = []
    for error in errors:
        explained.extend(
            e for e in _explain(error, doc.kind) if not _is_suppressed(suppressed, e[0], e[2], e[3])
        )
    # A value of the wrong type breaks every other rule at its place too: say only the type.
    wrong_type = {pointer for pointer, _, keyword, _ in explained if keyword == "type"}
    out: list[document.Diagnostic] = []
    seen: set[tuple[document.Pointer, str]] = set()
    for pointer, message, keyword, _ in explained:
        if (pointer in wrong_type and keyword != "type") or (pointer, message) in seen:
            continue
        seen.add((pointer, message))
        out.append(doc.diagnostic(pointer, message))
    return out


def _is_suppressed(
    suppressed: set[tuple[Any, ...]], pointer: document.Pointer, keyword: str, detail: Any
) -> bool:
    """True when the envelope already reported this: the exact error, or anything at or under a `*` pointer."""
    if (pointer, keyword, detail) in suppressed:
        return True
    return any((pointer[:n], "*", None) in suppressed for n in range(1, len(pointer) + 1))


Explained = tuple[document.Pointer, str, str, Any]


def _explain(error: jsonschema_exceptions.ValidationError, kind: str) -> Iterator[Explained]:
    """One or more (pointer, sentence, keyword, detail) for a jsonschema error."""
    keyword = error.validator
    path: document.Pointer = tuple(error.absolute_path)
    instance = error.instance
    value = error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}

    if keyword in ("anyOf", "oneOf"):
        yield from _explain_alternatives(error, kind)
    elif keyword == "additionalProperties" and isinstance(instance, Mapping):
        allowed = list(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for key in instance:
            name = key if isinstance(key, str) else str(key)
            if name in allowed or any(re.search(p, name) for p in patterns):
                continue
            yield path + (key,), _unknown_field(name, allowed, kind, path), keyword, name
    elif keyword == "required" and isinstance(instance, Mapping):
        for name in value:
            if name not in instance:
                yield path, f"missing required field '{name}'", keyword, name
    elif keyword == "dependentRequired" and isinstance(instance, Mapping) and isinstance(value, Mapping):
        for key, needed in value.items():
            for name in needed if key in instance else ():
                if name not in instance:
                    yield path, f"missing required field '{name}' (it goes with '{key}')", keyword, name
    elif keyword == "type":
        if isinstance(instance, datetime.date) and schema.get("format") in _TIMESTAMP_FORMATS:
            return  # a YAML timestamp where an ISO 8601 string is expected: accepted as is
        yield path, _type_message(value, instance), keyword, None
    elif "propertyNames" in error.relative_schema_path:
        yield path + (instance,), f"invalid name {_show(instance)}: {_rule(error)}", "propertyNames", instance
    elif keyword is None:  # a `false` schema
        yield path, "field is not allowed here", "false", None
    else:
        yield path, _rule_message(error), keyword, None


def _rule(error: jsonschema_exceptions.ValidationError) -> str:
    """The rule broken, without the value (used for property names)."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "pattern":
        return schema.get("patternErrorMessage") or f"must match the pattern {error.validator_value}"
    return _rule_message(error)


def _rule_message(error: jsonschema_exceptions.ValidationError) -> str:
    keyword = error.validator
    value = error.validator_value
    instance = error.instance
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if keyword == "enum":
        return f"must be one of: {', '.join(_plain_str(v) for v in value)} (got {_show(instance)})"
    if keyword == "const":
        return f"must be {_show(value)} (got {_show(instance)})"
    if keyword == "minimum":
        return f"must be at least {_number(value)} (got {_show(instance)})"
    if keyword == "maximum":
        return f"must be at most {_number(value)} (got {_show(instance)})"
    if keyword == "exclusiveMinimum":
        return f"must be greater than {_number(value)} (got {_show(instance)})"
    if keyword == "exclusiveMaximum":
        return f"must be less than {_number(value)} (got {_show(instance)})"
    if keyword == "multipleOf":
        return f"must be a multiple of {_number(value)} (got {_show(instance)})"
    if keyword == "minItems":
        return f"must have at least {_count(value, 'item')} (got {_len(instance)})"
    if keyword == "maxItems":
        return f"must have at most {_count(value, 'item')} (got {_len(instance)})"
    if keyword == "minProperties":
        return f"must have at least {_count(value, 'entry', 'entries')} (got {_len(instance)})"
    if keyword == "maxProperties":
        return f"must have at most {_count(value, 'entry', 'entries')} (got {_len(instance)})"
    if keyword == "minLength":
        if value == 1:
            return "must not be empty"
        return f"must be at least {_count(value, 'character')} long (got {_len(instance)})"
    if keyword == "maxLength":
        return f"must be at most {_count(value, 'character')} long (got {_len(instance)})"
    if keyword == "pattern":
        hint = schema.get("patternErrorMessage") or f"must match the pattern {value}"
        return f"{hint} (got {_show(instance)})"
    if keyword == "uniqueItems":
        return "must not contain duplicate items"
    if keyword == "not":
        return "is not allowed here"
    return error.message


def _explain_alternatives(error: jsonschema_exceptions.ValidationError, kind: str) -> Iterator[Explained]:
    """The most relevant reason an anyOf/oneOf failed, instead of 'not valid under any of the given schemas'."""
    path: document.Pointer = tuple(error.absolute_path)
    instance = error.instance
    branches = error.validator_value if isinstance(error.validator_value, list) else []

    if branches and all(isinstance(b, Mapping) and set(b) == {"required"} for b in branches):
        names = [name for b in branches for name in b["required"]]
        present = [name for name in names if isinstance(instance, Mapping) and name in instance]
        listed = " or ".join(f"'{name}'" for name in names)
        if len(present) > 1:
            yield path, f"set only one of {listed}", "oneOf", None
        else:
            yield path, f"missing required field {listed}", "oneOf", None
        return
    if not error.context:
        yield path, "must match exactly one of the allowed forms, not several", error.validator, None
        return

    by_branch: dict[int, list[jsonschema_exceptions.ValidationError]] = {}
    for sub in error.context:
        index = sub.relative_schema_path[0] if sub.relative_schema_path else 0
        by_branch.setdefault(index if isinstance(index, int) else 0, []).append(sub)

    def type_mismatch(subs: list[jsonschema_exceptions.ValidationError]) -> bool:
        return any(sub.validator == "type" and tuple(sub.absolute_path) == path for sub in subs)

    candidates = [subs for _, subs in sorted(by_branch.items()) if not type_mismatch(subs)]
    if not candidates:
        expected: list[str] = []
        for branch in branches:
            types = branch.get("type") if isinstance(branch, Mapping) else None
            for t in [types] if isinstance(types, str) else list(types or []):
                if t not in expected:
                    expected.append(t)
        if expected:
            yield path, f"expected {' or '.join(expected)}, got {_describe(instance)}", "type", None
        else:
            yield path, error.message, error.validator, None
        return
    best = min(candidates, key=lambda subs: (-max(len(s.absolute_path) for s in subs), len(subs)))
    for sub in best:
        yield from _explain(sub, kind)


def _unknown_field(key: str, allowed: Sequence[str], kind: str, path: document.Pointer) -> str:
    reason = _NOT_SUPPORTED.get((kind, path), {}).get(key)
    if reason:
        return f"unknown field '{key}' ({reason})"
    guess = document.guess(key, allowed)
    return f"unknown field '{key}' (did you mean '{guess}'?)" if guess else f"unknown field '{key}'"


# ------------------------------------------------------------------------------------------ wording


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, datetime.datetime):
        return "timestamp"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, _Opaque):
        return value.type_name
    return type(value).__name__


def _describe(value: Any) -> str:
    """A value with its type, as in `got string "3"`."""
    name = _type_name(value)
    if value is None:
        return "null (leave the field out to unset it)"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"{name} {_clip(repr(value))}"
    if isinstance(value, str):
        return f"string {_clip(json.dumps(value, ensure_ascii=False))}"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"{name} {value.isoformat()}"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return name


def _show(value: Any) -> str:
    """A value as it would be written, strings in single quotes: 'Bridge', 12, true."""
    if isinstance(value, str):
        return _clip(f"'{value}'")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _clip(repr(value))
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return _clip(repr(value))


def _plain_str(value: Any) -> str:
    return value if isinstance(value, str) else _show(value)


def _number(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _count(n: Any, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def _len(value: Any) -> str:
    try:
        return str(len(value))
    except TypeError:
        return "?"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _type_message(expected: Any, instance: Any) -> str:
    names = [expected] if isinstance(expected, str) else [str(t) for t in expected]
    return f"expected {' or '.join(names)}, got {_describe(instance)}"


class _Opaque:
    """Stands in for a value no YAML or JSON document holds (complex, bytes, objects...): it has no JSON type."""

    def __init__(self, value: Any):
        self.type_name = type(value).__name__

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


_PLAIN_SCALARS = (str, bool, int, float, type(None), datetime.date)


def _plain(value: Any, depth: int = 0) -> Any:
    """A copy with string keys, lists and JSON scalars only, for bodies that carry non-JSON shapes."""
    if depth > 200:
        raise RecursionError("document nested more than 200 levels deep")
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, _PLAIN_SCALARS) and (
        not isinstance(value, (int, float)) or type(value) in (int, float, bool)
    ):
        return value
    return _Opaque(value)
