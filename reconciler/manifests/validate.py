"""The validation pipeline: files -> documents -> schema check -> semantic check, every problem at once.

Owns the order of the stages and what reaches each (semantic rules see only documents whose shape the
schema accepted, so they never trip over a wrong type). It must not hold any rule itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.manifests import document, loader, schema, semantic


@dataclass
class Validation:
    documents: list[document.Document] = field(default_factory=list)
    diagnostics: list[document.Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[document.Diagnostic]:
        return [d for d in self.diagnostics if d.severity == document.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_documents(documents: list[document.Document]) -> list[document.Diagnostic]:
    diagnostics = schema.check(documents)
    broken = {(d.path, d.subject) for d in diagnostics if d.severity == document.ERROR}
    valid = [doc for doc in documents if (doc.path, f"{doc.kind}/{doc.name}") not in broken]
    diagnostics.extend(semantic.check(valid, documents))
    return diagnostics


def validate_paths(paths: Iterable[str]) -> Validation:
    loaded = loader.load(list(paths))
    diagnostics = list(loaded.diagnostics)
    diagnostics.extend(validate_documents(loaded.documents))
    return Validation(documents=loaded.documents, diagnostics=sorted(set(diagnostics)), files=loaded.files)
