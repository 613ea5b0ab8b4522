"""Source documents and diagnostics: the values every manifest check speaks in.

Owns `Document` (one parsed manifest with the line/column of every node),
`Diagnostic` (one located message, formatted as `file:line:col: Kind/name: /pointer: message`) and
`guess`, the did-you-mean of every message about a name that is not known.
It must not read files or know any rule; the loader builds documents and the checks report on them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Pointer = tuple[str | int, ...]

ERROR = "error"
WARNING = "warning"
NOTICE = "notice"


def pointer_str(pointer: Pointer) -> str:
    """RFC 6901 form of a pointer: ("spec", "containers", 0) -> "/spec/containers/0"."""
    if not pointer:
        return "/"
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in pointer)


@dataclass(frozen=True)
class Document:
    """One manifest document: where it came from, its kind and name, and its plain data.

    `positions` maps a pointer to the (line, column) where that node starts, both 1-based.
    """

    path: str
    index: int
    body: Mapping[str, Any]
    positions: Mapping[Pointer, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        kind = self.body.get("kind") if isinstance(self.body, Mapping) else None
        return kind if isinstance(kind, str) else "?"

    @property
    def name(self) -> str:
        meta = self.body.get("metadata") if isinstance(self.body, Mapping) else None
        name = meta.get("name") if isinstance(meta, Mapping) else None
        return name if isinstance(name, str) else "?"

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.body.get("spec") if isinstance(self.body, Mapping) else None
        return spec if isinstance(spec, Mapping) else {}

    def locate(self, pointer: Pointer) -> tuple[int, int]:
        """Line and column of the node at `pointer`, or of its nearest located ancestor."""
        p = tuple(pointer)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (1, 1))

    def diagnostic(self, pointer: Pointer, message: str, severity: str = ERROR) -> Diagnostic:
        line, col = self.locate(pointer)
        return Diagnostic(
            path=self.path,
            line=line,
            col=col,
            subject=f"{self.kind}/{self.name}",
            pointer=pointer_str(pointer),
            message=message,
            severity=severity,
        )


@dataclass(frozen=True, order=True)
class Diagnostic:
    """A located message about a manifest. Sorted by file, then position."""

    path: str
    line: int
    col: int
    subject: str
    pointer: str
    message: str
    severity: str = ERROR

    def format(self) -> str:
        prefix = "" if self.severity == ERROR else f"{self.severity}: "
        return f"{self.path}:{self.line}:{self.col}: {prefix}{self.subject}: {self.pointer}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "line": self.line,
            "column": self.col,
            "subject": self.subject,
            "pointer": self.pointer,
            "message": self.message,
            "severity": self.severity,
        }


def file_diagnostic(path: str, message: str, line: int = 1, col: int = 1) -> Diagnostic:
    """A diagnostic about a whole file (unreadable, not YAML) rather than a document in it."""
    return Diagnostic(path=path, line=line, col=col, subject="-", pointer="/", message=message)


def guess(word: str, choices: Sequence[str]) -> str | None:
    """The choice `word` most likely meant: same letters ignoring case and separators, else a close match."""

    def squash(s: str) -> str:
        return re.sub(r"[-_\s]", "", s).lower()

    for choice in choices:
        if squash(choice) == squash(word):
            return choice
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None
