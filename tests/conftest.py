"""Pytest wiring for private Docker engines, the `docker` marker and the CLI runner.

Owns: the session-wide engine pool (engines start lazily, on the first test that needs them), the per-test
`engine` / `engines3` fixtures that hand out clean engines, auto-marking of tests that use them, the loud
"engines unavailable" report (a skip locally, a failure when CI=true), and `run_cli`.

Must not: start or stop engines itself (tests/engines.py does that), touch the system engine
(/var/run/docker.sock), or grow unrelated fixtures: put those in the conftest.py of a subdirectory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/engines.py, also if tests/ becomes a package
import engines as engines_lib  # noqa: E402

ENGINE_FIXTURES = frozenset({"engine_pool", "engine", "engines3"})
_REASON_KEY = pytest.StashKey[str | None]()
_AFFECTED_KEY = pytest.StashKey[int]()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs real Docker engines started by the test harness")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection, so `-m "not docker"` sees the added marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


def pytest_collection_finish(session: pytest.Session) -> None:
    """If selected tests need engines that cannot run here, say so once, loudly, before the tests run."""
    affected = sum(1 for item in session.items if item.get_closest_marker("docker"))
    session.config.stash[_AFFECTED_KEY] = affected
    reason = engines_lib.engines_unavailable_reason() if affected else None
    session.config.stash[_REASON_KEY] = reason
    if reason:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            verdict = "FAIL (CI=true)" if in_ci() else "be SKIPPED"
            reporter.write_line(
                f"DOCKER ENGINES UNAVAILABLE: {reason} -- {affected} docker test(s) will {verdict}",
                red=True,
                bold=True,
            )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    reason = config.stash.get(_REASON_KEY, None)
    if not reason:
        return
    affected = config.stash.get(_AFFECTED_KEY, 0)
    terminalreporter.section("docker engines unavailable", sep="!", red=True, bold=True)
    outcome = (
        "FAILED (CI=true never skips them)" if in_ci() else "SKIPPED: no real-engine coverage in this run"
    )
    terminalreporter.write_line(f"{affected} docker test(s) {outcome}", red=True, bold=True)
    terminalreporter.write_line(f"reason: {reason}", red=True, bold=True)


def _engines_unavailable(reason: str) -> None:
    message = f"Docker engines unavailable: {reason}"
    if in_ci():
        pytest.fail(message + " (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine_pool():
    """Session-wide pool of private engines; `engine_pool.get(n)` starts the missing ones on demand."""
    reason = engines_lib.engines_unavailable_reason()
    if reason:
        _engines_unavailable(reason)
    pool = engines_lib.EnginePool()
    try:
        yield pool
    finally:
        pool.close()


def _prepare(pool: engines_lib.EnginePool, n: int) -> list[engines_lib.Engine]:
    try:
        started = pool.get(n)
    except engines_lib.EngineError as exc:
        pytest.fail(f"could not start {n} Docker engine(s): {exc}", pytrace=False)
    for engine in started:
        if not engine.is_running() or not engine.answers():
            engine.reset()  # a previous test stopped or crashed it and its own reset failed
    return started


def _reset_all(started: list[engines_lib.Engine]) -> None:
    errors = engines_lib.for_each(engines_lib.Engine.reset, started)
    if errors:
        raise engines_lib.EngineError("reset after test failed: " + "; ".join(map(str, errors)))


@pytest.fixture
def engine(engine_pool) -> engines_lib.Engine:
    """One clean, running engine with TEST_IMAGE; reset (containers, networks, volumes removed) afterwards."""
    (started,) = _prepare(engine_pool, 1)
    yield started
    _reset_all([started])


@pytest.fixture
def engines3(engine_pool) -> list[engines_lib.Engine]:
    """Three clean, running engines with TEST_IMAGE (e.g. for placement); reset afterwards."""
    started = _prepare(engine_pool, 3)
    yield started
    _reset_all(started)


class CliResult(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(tmp_path: Path):
    """run_cli(*args, env=None, cwd=None, timeout=60, input=None) -> CliResult(exit_code, stdout, stderr).

    Runs `python -m reconciler ARGS` in a subprocess. The environment is this one without DOCKER_* variables
    (so the CLI never reaches the system engine by accident) plus `env`; cwd defaults to tmp_path.
    """

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> CliResult:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        full_env.update(env or {})
        cmd = [sys.executable, "-m", "reconciler", *map(str, args)]
        try:
            proc = subprocess.run(
                cmd,
                env=full_env,
                cwd=cwd or tmp_path,
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"`{' '.join(cmd[2:])}` timed out after {timeout} s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}",
                pytrace=False,
            )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run
