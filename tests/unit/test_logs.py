"""`logs` on fake engines: a stream that breaks is one error line after the others end, and exit 1."""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fakes  # noqa: E402
from fakes import FakeEngine  # noqa: E402

from reconciler import cli  # noqa: E402
from reconciler.engine import api  # noqa: E402
from reconciler.environment import Environment  # noqa: E402

IMAGE = "localhost/busybox:static"
MANIFEST = fakes.manifest(("app", 3))


def run(tmp_path: Path, engine: FakeEngine, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ={},
                      engine_factory=lambda i: engine, state_dir=str(tmp_path / "state"))
    code = cli.run(list(args), env)
    return code, out.getvalue(), err.getvalue()


def test_broken_streams_are_reported_after_the_others_and_exit_1(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "app.yaml").write_text(MANIFEST)
    m = str(tmp_path / "m")
    engine = FakeEngine("unix:///fake/1.sock", images=(IMAGE,))
    assert run(tmp_path, engine, "apply", m, "--yes")[0] == 0
    ids = sorted(c["Id"] for c in engine.running())

    def logs(cid, follow, tail):
        yield b"first line\nhalf a li"
        if cid == ids[0]:
            raise api.Unreachable(engine.endpoint, "event stream broke (connection aborted)")
        if cid == ids[1]:
            raise RuntimeError("decoder exploded")
        yield b"ne\n"

    engine.logs = logs
    code, out, err = run(tmp_path, engine, "logs", "app", m)
    assert code == 1
    assert out.count("first line") == 3
    assert out.count("half a line") == 1 and out.count("half a li\n") == 2, "partial lines are flushed, not lost"
    errors = err.strip().splitlines()
    assert len(errors) == 2, err
    assert any("engine unix:///fake/1.sock: event stream broke" in e for e in errors)
    assert any("RuntimeError: decoder exploded" in e for e in errors)
    assert all(e.startswith("error: logs of ") for e in errors)
    assert "Traceback" not in capsys.readouterr().err


def test_logs_that_end_normally_exit_0(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "app.yaml").write_text(MANIFEST)
    m = str(tmp_path / "m")
    engine = FakeEngine("unix:///fake/1.sock", images=(IMAGE,))
    assert run(tmp_path, engine, "apply", m, "--yes")[0] == 0
    code, out, err = run(tmp_path, engine, "logs", "app", m)
    assert (code, err) == (0, "")
    assert out.count("fake log line") == 3
