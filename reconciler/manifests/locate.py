"""Where a field of a declared object is written: `file:line:col: field: message` for errors found after
validation (a pinned revision the cluster's history does not have).

Owns reading a manifest file again to find the position of one field of one named document. It must not
validate or decide anything; a file that no longer reads gives the path alone.
"""

from __future__ import annotations

from reconciler.manifests import document, loader


def field_error(path: str, kind: str, name: str, pointer: document.Pointer, message: str) -> str:
    """The one-line, located error for `pointer` of the `kind` document named `name` in `path`."""
    try:
        documents, _ = loader.load_file(path)
    except OSError:
        documents = []
    for doc in documents:
        if doc.kind == kind and doc.name == name:
            return doc.diagnostic(pointer, message).format()
    return f"{path}: {document.pointer_str(pointer)}: {message}"
