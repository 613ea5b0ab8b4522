"""Random YAML and JSON through the whole `validate` command: an exit status and lines, never a traceback."""

from __future__ import annotations

import io
import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import cli
from reconciler.environment import Environment

KINDS = st.sampled_from(["Cluster", "TaskDefinition", "Service", "service", "Pod", None, 3])
KEYS = st.sampled_from(
    ["apiVersion", "kind", "metadata", "name", "spec", "containerDefinitions", "image", "memory", "cpu", "desiredCount",
     "cluster", "taskDefinition", "instances", "endpoint", "portMappings", "dependsOn", "x-note", "<<", "healthCheck"]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False), st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5)), max_leaves=25)
DOCUMENTS = st.fixed_dictionaries(
    {"apiVersion": st.sampled_from(["reconciler/v1", "v2", 1]), "kind": KINDS, "metadata": VALUES, "spec": VALUES}
) | VALUES
RAW = st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#%@`, \n\t0123456789.~?")), max_size=200)


def validate(tmp_path, name: str, data: bytes) -> tuple[int, str]:
    path = tmp_path / name
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["validate", str(path)], Environment(stdout=out, stderr=err, environ={}))
    return code, out.getvalue() + err.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=st.lists(DOCUMENTS, min_size=1, max_size=3))
def test_random_documents_as_yaml(tmp_path, docs):
    code, output = validate(tmp_path, "fuzz.yaml", yaml.safe_dump_all(docs).encode())
    assert code in (0, 1)
    assert "Traceback" not in output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=DOCUMENTS)
def test_random_documents_as_json(tmp_path, doc):
    code, output = validate(tmp_path, "fuzz.json", json.dumps(doc).encode())
    assert code in (0, 1)
    assert "Traceback" not in output


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=RAW)
def test_random_text(tmp_path, text):
    code, output = validate(tmp_path, "fuzz.yaml", text.encode())
    assert code == 1  # never a valid manifest set, but always a located error
    assert "Traceback" not in output
    assert output.strip()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes(tmp_path, data):
    code, output = validate(tmp_path, "fuzz.json", data)
    assert code == 1
    assert "Traceback" not in output
