"""Manifest files to `Document`s: discovery, YAML/JSON parsing with positions, bare ECS task definitions.

Owns finding manifest files under the given paths, parsing every document in them with the line and
column of each node, and reporting what cannot be read (missing path, binary or empty file, malformed
YAML or JSON, duplicate keys) as diagnostics. It must not judge what a document says: schemas and
semantic rules do that.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.manifests import document

EXTENSIONS = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_NODES = 1_000_000
API_VERSION = "reconciler/v1"
# libyaml's parser when PyYAML has it (about 8x faster); both record node positions.
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class LoadResult:
    documents: list[document.Document] = field(default_factory=list)
    diagnostics: list[document.Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class _LoadError(Exception):
    def __init__(self, message: str, line: int = 1, col: int = 1):
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col


def _ignored(name: str) -> bool:
    return (
        name.startswith(".")
        or name.startswith("#")
        or name.endswith("~")
        or name.endswith((".swp", ".swx", ".tmp", ".bak", ".orig"))
    )


def discover(paths: Iterable[str]) -> tuple[list[str], list[document.Diagnostic]]:
    """Manifest files under `paths` in a stable order; a missing path is a diagnostic."""
    files: list[str] = []
    problems: list[document.Diagnostic] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            files.append(str(p))
        elif p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not _ignored(d))
                for n in sorted(names):
                    if not _ignored(n) and n.endswith(EXTENSIONS):
                        files.append(os.path.join(root, n))
        else:
            problems.append(document.file_diagnostic(str(raw), "no such file or directory"))
    seen: set[str] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]
    return unique, problems


def load(paths: Iterable[str]) -> LoadResult:
    """Every document of every manifest file under `paths`, with what could not be read."""
    files, problems = discover(paths)
    result = LoadResult(diagnostics=problems, files=files)
    for f in files:
        docs, diags = load_file(f)
        result.documents.extend(docs)
        result.diagnostics.extend(diags)
    return result


def load_file(path: str) -> tuple[list[document.Document], list[document.Diagnostic]]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        return [], [document.file_diagnostic(path, f"cannot read file: {e.strerror or e}")]
    return load_bytes(path, data)


def load_bytes(path: str, data: bytes) -> tuple[list[document.Document], list[document.Diagnostic]]:
    if len(data) > MAX_FILE_BYTES:
        return [], [document.file_diagnostic(path, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")]
    if b"\x00" in data:
        return [], [document.file_diagnostic(path, "binary file (contains NUL bytes), not YAML or JSON")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return [], [document.file_diagnostic(path, f"not UTF-8 text (byte {e.start})")]
    if not text.strip():
        return [], [document.file_diagnostic(path, "file is empty")]
    is_json = path.endswith(".json")
    try:
        if is_json:
            _check_json(text)
            # Tabs are legal whitespace in JSON but not in YAML; a tab inside a JSON string is illegal
            # anyway, so replacing them keeps every column and lets the YAML composer record positions.
            text = text.replace("\t", " ")
        trees = _compose_all(text)
    except _LoadError as e:
        return [], [document.file_diagnostic(path, e.message, e.line, e.col)]
    docs: list[document.Document] = []
    diags: list[document.Diagnostic] = []
    for index, (body, positions) in enumerate(trees):
        if body is None:
            continue
        if not isinstance(body, dict):
            line, col = positions.get((), (1, 1))
            diags.append(
                document.file_diagnostic(path, f"document {index + 1} is a {_type_name(body)}, expected a mapping", line, col)
            )
            continue
        body, positions = _adopt_bare_task_definition(body, positions)
        docs.append(document.Document(path=path, index=index, body=body, positions=positions))
    if not docs and not diags:
        diags.append(document.file_diagnostic(path, "file holds no documents"))
    return docs, diags


def _check_json(text: str) -> None:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    try:
        json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise _LoadError(f"invalid JSON: {e.msg}", e.lineno, e.colno) from None
    except ValueError as e:
        raise _LoadError(f"invalid JSON: {e}") from None
    except RecursionError:
        raise _LoadError("invalid JSON: nested too deeply") from None


def _type_name(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _compose_all(text: str) -> list[tuple[Any, dict[document.Pointer, tuple[int, int]]]]:
    out = []
    try:
        for node in yaml.compose_all(text, Loader=_COMPOSER):
            builder = _Builder()
            out.append((builder.build(node, ()), builder.positions))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = e.problem or e.context or "malformed YAML"
        raise _LoadError(f"invalid YAML: {problem}", line, col) from None
    except yaml.YAMLError as e:
        raise _LoadError(f"invalid YAML: {e}") from None
    except RecursionError:
        raise _LoadError("invalid YAML: nested too deeply") from None
    return out


class _Builder:
    """Builds plain Python data from a YAML node tree, recording where each node starts."""

    def __init__(self) -> None:
        self.positions: dict[document.Pointer, tuple[int, int]] = {}
        self.constructor = yaml.SafeLoader("")
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: yaml.Node | None, pointer: document.Pointer) -> Any:
        if node is None:
            return None
        self.count += 1
        if self.count > MAX_NODES:
            raise _LoadError(f"document has more than {MAX_NODES} nodes (alias expansion?)")
        self.positions[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if id(node) in self.active:
            raise _LoadError("recursive YAML alias", node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as e:
                raise _LoadError(f"invalid value: {getattr(e, 'problem', None) or e}", *_mark(node)) from None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, pointer + (i,)) for i, child in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, pointer)
        finally:
            self.active.discard(id(node))
        raise _LoadError(f"unsupported YAML node {node.tag}", *_mark(node))

    def _mapping(self, node: yaml.MappingNode, pointer: document.Pointer) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                for source in _merge_sources(value_node):
                    value = self.build(source, pointer + ("<<",))
                    if not isinstance(value, dict):
                        raise _LoadError("a merge key (<<) takes a mapping or a list of mappings", *_mark(source))
                    for k, v in value.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise _LoadError("mapping keys must be plain scalars", *_mark(key_node))
            key = self.constructor.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                raise _LoadError(f"duplicate key {key!r}", *_mark(key_node))
            out[key] = self.build(value_node, pointer + (key,))
            self.positions[pointer + (key,)] = _mark(key_node)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out


def _merge_sources(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    else:
        yield node


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _adopt_bare_task_definition(
    body: dict[str, Any], positions: dict[document.Pointer, tuple[int, int]]
) -> tuple[dict[str, Any], dict[document.Pointer, tuple[int, int]]]:
    """Reads a bare ECS task definition (register input or describe output) as a TaskDefinition document."""
    if "kind" in body or "apiVersion" in body:
        return body, positions
    prefix: document.Pointer = ()
    td: Any = body
    if "containerDefinitions" not in body and isinstance(body.get("taskDefinition"), dict):
        prefix = ("taskDefinition",)
        td = body["taskDefinition"]
    if not isinstance(td, dict) or "containerDefinitions" not in td:
        return body, positions
    family = td.get("family")
    spec = {k: v for k, v in td.items() if k != "family"}
    new_body = {
        "apiVersion": API_VERSION,
        "kind": "TaskDefinition",
        "metadata": {"name": family if isinstance(family, str) else "?"},
        "spec": spec,
    }
    if prefix and isinstance(body.get("tags"), list) and "tags" not in spec:
        spec["tags"] = body["tags"]
    new_positions: dict[document.Pointer, tuple[int, int]] = {(): positions.get((), (1, 1))}
    family_pos = positions.get(prefix + ("family",), positions.get(prefix, (1, 1)))
    new_positions[("metadata",)] = family_pos
    new_positions[("metadata", "name")] = family_pos
    new_positions[("spec",)] = positions.get(prefix, (1, 1))
    for ptr, pos in positions.items():
        if ptr[: len(prefix)] == prefix and len(ptr) > len(prefix):
            rest = ptr[len(prefix) :]
            if rest[0] != "family":
                new_positions[("spec",) + rest] = pos
        elif prefix and ptr[:1] == ("tags",):
            new_positions[("spec",) + ptr] = pos
    return new_body, new_positions
