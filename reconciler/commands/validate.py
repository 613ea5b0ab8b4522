"""`validate`: every problem in the manifests at once, one located line each, or a JSON list.

Owns the command's output and exit status; the checks are `manifests.validate`'s. Notices (ignored
read-only fields) are shown but never fail the run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.commands import common
from reconciler.environment import Environment
from reconciler.errors import ExitStatus
from reconciler.manifests import validate as checks


def validate(env: Environment, paths: Sequence[str], as_json: bool) -> ExitStatus:
    result = checks.validate_paths(list(paths) or list(common.DEFAULT_PATHS))
    if as_json:
        env.out(json.dumps([d.to_dict() for d in result.diagnostics], indent=2))
    else:
        for d in result.diagnostics:
            (env.err if d.severity == "error" else env.out)(d.format())
        if result.ok:
            counts: dict[str, int] = {}
            for doc in result.documents:
                counts[doc.kind] = counts.get(doc.kind, 0) + 1
            summary = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(counts.items())) or "no documents"
            env.out(f"valid: {summary} in {len(result.files)} file{'s' if len(result.files) != 1 else ''}")
        else:
            n = len(result.errors)
            env.err(f"invalid: {n} error{'s' if n != 1 else ''}")
    if result.ok and not result.files:
        if not as_json:
            env.err("error: no manifest files found")
        return ExitStatus.ERROR
    return ExitStatus.OK if result.ok else ExitStatus.ERROR
