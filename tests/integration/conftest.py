"""Fixtures of reconciler's real-engine tests (the engines themselves come from tests/conftest.py).

Owns `ws`: a `helpers.Workspace` in tmp_path whose cluster `test` has the one instance i1 = the test's private
engine, and the engine's docker SDK client for assertions (`ws.client`, `ws.engine`). Background CLI runs a
test starts are killed by their recorded pid at teardown. Also `engine_reports_oom`, which skips (fails under
CI=true) a test that needs Docker's `State.OOMKilled` on an engine that cannot report it.
Must not: start, stop or reset engines.
"""

from __future__ import annotations

import contextlib
import os

import daemon_helpers as dh
import helpers
import pytest

_OOM_SUPPORT: dict[str, bool] = {}


@pytest.fixture
def ws(engine, run_cli, tmp_path):
    workspace = helpers.Workspace(tmp_path, run_cli)
    workspace.write("cluster.yaml", helpers.cluster("test", [engine.endpoint]))
    workspace.engine = engine
    with contextlib.closing(engine.client()) as client:
        workspace.client = client
        try:
            yield workspace
        finally:
            workspace.stop_background()


def _engine_reports_oom(engine) -> bool:
    """Whether the engine sets State.OOMKilled for a container the kernel OOM-killed (plain docker, no reconciler).

    It cannot when containerd fails to load a container's cgroup, e.g. when cgroup v1 controllers listed in
    /proc/self/cgroup (net_cls, perf_event, ...) are not mounted: the engine log then says "loading cgroup for
    PID ... cannot find cgroup mount destination", there is no `oom` event, and OOMKilled stays false.
    The probe uses the tests' own workload, so a skip here is about the engine, not a race of the workload.
    """
    with contextlib.closing(engine.client()) as client:
        container = client.containers.run(
            helpers.IMAGE, ["sh", "-c", helpers.OOM], detach=True, mem_limit="16m", labels={"probe": "oom"}
        )
        try:
            container.wait(timeout=30)
            container.reload()
            return bool(container.attrs["State"]["OOMKilled"])
        finally:
            container.remove(force=True)


@pytest.fixture
def engine_reports_oom(engine):
    if engine.name not in _OOM_SUPPORT:
        _OOM_SUPPORT[engine.name] = _engine_reports_oom(engine)
    if not _OOM_SUPPORT[engine.name]:
        message = (
            "this engine does not report OOM kills (State.OOMKilled stayed false for a container the kernel "
            f"OOM-killed), so reconciler cannot either; look for 'cannot find cgroup mount destination' in "
            f"{engine.logfile}: then mount every cgroup v1 controller of /proc/self/cgroup for dockerd"
        )
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message + " (CI=true: failing instead of skipping)", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def daemons(ws):
    """Daemons started in the workspace (cwd tmp_path, its state dir), killed by pid at teardown. Depends on `ws`,
    so the daemons are gone before the engine is reset for the next test."""
    started = dh.Daemons(ws.root, ws.state)
    try:
        yield started
    finally:
        started.close()
        print(started.logs())  # shown by pytest for a failing test only
