"""Tests of the engine harness itself (tests/engines.py, tests/conftest.py) against real private engines.

Owns: evidence that engines start, answer on both endpoints, carry TEST_IMAGE, publish ports reachable from
the root namespace, reset cleanly, survive stop/start and kill/start, and leave nothing behind when destroyed.
Must not: test reconciler code; that belongs to the other integration tests.
"""

from __future__ import annotations

import os
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import docker
import engines
import pytest

S = 1_000_000_000  # docker durations are in nanoseconds
HTTPD = "busybox mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www"


def http_get(url: str, deadline_s: float = 10.0) -> str:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                return reply.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_engine_answers_on_unix_and_tcp(engine):
    assert engine.is_running() and engine.pid
    assert engine.endpoint == f"unix://{engine.directory}/docker.sock"
    assert len(str(engine.socket_path)) < 108
    for url in (engine.endpoint, engine.tcp_endpoint):
        client = engine.client(base_url=url)
        try:
            assert client.ping()
        finally:
            client.close()


def test_test_image_present_in_three_engines(engines3):
    assert len({e.address for e in engines3}) == 3
    assert len({e.netns for e in engines3}) == 3
    for e in engines3:
        with closing(e.client()) as client:
            config = client.images.get(engines.TEST_IMAGE).attrs["Config"]
            assert config["Cmd"] == ["sh"]
            assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin" in config["Env"]


def test_published_port_reachable_from_root_namespace(engine):
    with closing(engine.client()) as client:
        client.containers.run(
            engines.TEST_IMAGE,
            ["sh", "-c", HTTPD],
            detach=True,
            ports={"80/tcp": ("0.0.0.0", 18080)},
        )
    assert http_get(f"http://{engine.address}:18080/").strip() == "ok"


def test_reset_leaves_no_containers_networks_or_volumes(engine):
    with closing(engine.client()) as client:
        client.networks.create("rce-test-net")
        client.volumes.create("rce-test-vol")
        client.containers.run(
            engines.TEST_IMAGE,
            ["sleep", "3600"],
            detach=True,
            network="rce-test-net",
            volumes={"rce-test-vol": {"bind": "/data", "mode": "rw"}},
        )
        client.containers.create(engines.TEST_IMAGE, ["true"])
    engine.reset()
    with closing(engine.client()) as client:
        assert client.containers.list(all=True) == []
        assert sorted(n.name for n in client.networks.list()) == ["bridge", "host", "none"]
        assert client.volumes.list() == []
        client.images.get(engines.TEST_IMAGE)  # images stay


def test_stop_then_start_keeps_image(engine):
    old_pid = engine.pid
    engine.stop()
    assert not engine.is_running()
    assert not engine.answers()
    engine.start()
    assert engine.pid != old_pid
    with closing(engine.client()) as client:
        client.images.get(engines.TEST_IMAGE)


def test_kill_then_start_recovers_like_a_crashed_host(engine):
    with closing(engine.client()) as client:
        # stop_timeout=1: the restarted engine stops the orphaned container with that grace (default 10 s)
        cid = client.api.create_container(engines.TEST_IMAGE, ["sleep", "3600"], stop_timeout=1)["Id"]
        client.api.start(cid)
    engine.kill()
    assert not engine.is_running()
    assert engine.pidfile.exists()  # a crash leaves pidfile and socket behind
    engine.start()
    with closing(engine.client()) as client:
        assert client.containers.get(cid).status == "exited"


def test_destroy_after_kill_leaves_nothing_behind(engine_pool):  # the pool only for the skip/fail policy
    (own,) = engines.start_engines(1)
    try:
        with closing(own.client()) as client:
            client.containers.run(engines.TEST_IMAGE, ["sleep", "3600"], detach=True)
        own.kill()
    finally:
        own.destroy()
    assert not own.directory.exists()
    assert own.netns not in os.listdir("/run/netns")
    assert not any(
        str(own.directory) in line for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    leftovers = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and str(own.directory).encode() in _cmdline(pid)
    ]
    assert leftovers == []


def test_no_pull_without_registry(engine):
    """The engines have no registry: a missing image fails fast instead of hanging."""
    with closing(engine.client()) as client, pytest.raises(docker.errors.APIError):
        client.images.pull("localhost/does-not-exist", tag="1")


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
