"""The broken-manifest suite: every tests/broken/*.yaml holds one defect, found by the real pipeline.

Each file is a complete small manifest set (Cluster, TaskDefinition, Service, Alarm as needed) with
exactly one defect. Its first lines say what to expect:

    # expect: <a substring of the error message>
    # pointer: <the JSON pointer of the offending field>

and the offending line ends with the marker comment `# <-`. For a missing field the pointer names the
field and the marker sits on the line of its parent, where the diagnostic is located.

Run through `validate.validate_paths`, each file must fail with exactly one error, and that error has
the expected message fragment, pointer and line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.manifests import document, validate

BROKEN = Path(__file__).resolve().parent.parent / "broken"
FILES = sorted(BROKEN.glob("*.yaml"))
MARKER = re.compile(r"#\s*<-\s*$")


def expectation(path: Path) -> tuple[str, str, int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    head = dict(re.match(r"#\s*(expect|pointer):\s*(.*?)\s*$", line).groups() for line in lines[:2])
    marked = [n for n, line in enumerate(lines, start=1) if MARKER.search(line)]
    assert len(marked) == 1, f"{path.name}: needs exactly one '# <-' marker, found lines {marked}"
    return head["expect"], head["pointer"], marked[0]


def test_suite_is_there():
    assert len(FILES) >= 35


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_broken_manifest(path: Path):
    expect, pointer, line = expectation(path)
    result = validate.validate_paths([str(path)])
    report = "\n".join(d.format() for d in result.diagnostics) or "(no diagnostics)"
    assert not result.ok, f"{path.name} passed validation:\n{report}"
    assert len(result.errors) == 1, f"{path.name} should hold exactly one defect:\n{report}"
    (error,) = result.errors
    assert expect in error.message, report
    assert error.pointer == pointer, report
    assert (error.path, error.line) == (str(path), line), report
    assert error.severity == document.ERROR
