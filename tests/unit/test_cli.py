"""The command line through the real parser, on fake engines: exit statuses and one-line errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402
from fakes import FakeEngine  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.environment import Environment  # noqa: E402

IMAGE = "localhost/busybox:static"
MANIFEST = fakes.manifest(("app", 2))


class Run:
    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.engine = FakeEngine("unix:///fake/1.sock", images=(IMAGE,))
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "app.yaml").write_text(MANIFEST)

    def __call__(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        env = Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ={},
                          engine_factory=lambda i: self.engine, state_dir=str(self.tmp_path / "state"))
        code = cli.run(list(args), env)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run(tmp_path) -> Run:
    return Run(tmp_path)


def test_validate_ok_and_json(run):
    m = str(run.tmp_path / "m")
    code, out, _ = run("validate", m)
    assert code == 0 and "valid: 1 Cluster, 1 Service, 1 TaskDefinition in 1 file" in out
    code, out, _ = run("validate", m, "--json")
    assert code == 0 and json.loads(out) == []


def test_validate_reports_every_error_located(run):
    (run.tmp_path / "m" / "bad.yaml").write_text("apiVersion: reconciler/v1\nkind: Service\nmetadata: {name: b}\nspec: {desiredCont: 1}\n")
    code, _, err = run("validate", str(run.tmp_path / "m"))
    assert code == 1
    assert "bad.yaml:4:8: Service/b: /spec/desiredCont: unknown field 'desiredCont' (did you mean 'desiredCount'?)" in err
    assert "Traceback" not in err


def test_plan_detailed_exit_codes_and_idempotent_apply(run):
    m = str(run.tmp_path / "m")
    code, out, _ = run("plan", m, "--detailed-exitcode")
    assert code == 2 and "Plan: 2 to add, 0 to replace, 0 to remove." in out
    code, out, _ = run("apply", m, "--yes")
    assert code == 0 and "Apply complete: 2 started, 0 stopped, 0 failed." in out
    code, out, _ = run("plan", m, "--detailed-exitcode")
    assert code == 0 and "Plan: 0 to add, 0 to replace, 0 to remove." in out
    code, out, _ = run("plan", m, "--json")
    assert json.loads(out)["summary"] == {"add": 0, "replace": 0, "remove": 0, "unplaced": 0}


def test_apply_without_terminal_refuses_and_changes_nothing(run):
    code, _, err = run("apply", str(run.tmp_path / "m"))
    assert code == 1 and "pass --yes" in err
    assert run.engine.containers == {}


def test_engine_down_is_one_line_naming_the_endpoint(run):
    run.engine.down = True
    code, _, err = run("plan", str(run.tmp_path / "m"), "--detailed-exitcode")
    assert code == 1
    assert "engine unix:///fake/1.sock (instance i1, cluster c1) is unreachable" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["plan", "--target", "web"], "--target web: expected service/NAME"),
        (["apply", "--lock-wait", "soon", "--yes"], "--lock-wait soon"),
        (["get", "nodes"], "invalid choice: 'nodes'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["plan", "/does/not/exist"], "/does/not/exist:1:1: -: /: no such file or directory"),
    ],
)
def test_bad_flags_and_paths_are_one_line_errors(run, args, message):
    code, _, err = run(*args)
    assert code == 1
    assert message in err
    assert "Traceback" not in err


def test_get_and_describe_in_ecs_shapes(run):
    m = str(run.tmp_path / "m")
    run("apply", m, "--yes")
    code, out, _ = run("get", "services", m, "--json")
    svc = json.loads(out)["services"][0]
    assert (svc["serviceName"], svc["desiredCount"], svc["runningCount"]) == ("app", 2, 2)
    code, out, _ = run("get", "instances", m, "--json")
    inst = json.loads(out)["containerInstances"][0]
    assert inst["runningTasksCount"] == 2 and inst["remainingResources"]["MEMORY"] == inst["registeredResources"]["MEMORY"] - 64
    code, out, _ = run("describe", "service", "app", m)
    assert code == 0 and len(json.loads(out)["services"][0]["tasks"]) == 2
