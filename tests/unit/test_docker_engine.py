"""`DockerEngine`'s error mapping, without an engine: what goes wrong surfaces as an `engine.api` error
naming the endpoint (and the file, for TLS), never as an SDK exception."""

from __future__ import annotations

import pytest
import requests.exceptions

from reconciler import environment, observe
from reconciler.engine import api, docker_engine
from reconciler.model import spec


@pytest.mark.parametrize("field", ["ca", "cert", "key"])
def test_a_missing_tls_file_is_unreachable_naming_the_file(tmp_path, field):
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for name, path in files.items():
        if name != field:
            path.write_text("-----BEGIN-----\n")
    tls = spec.TLS(ca=str(files["ca"]), cert=str(files["cert"]), key=str(files["key"]))
    with pytest.raises(api.Unreachable) as caught:
        docker_engine.DockerEngine("tcp://127.0.0.1:2376", tls)
    assert caught.value.endpoint == "tcp://127.0.0.1:2376"
    assert caught.value.message.startswith("TLS: ")
    assert str(files[field]) in caught.value.message


def test_a_missing_tls_file_makes_one_instance_unreachable_not_the_observation(tmp_path):
    broken = spec.Instance("n1", "tcp://127.0.0.1:2376", tls=spec.TLS(ca=str(tmp_path / "nope.pem")))
    state, tasks = observe.observe_instance("c1", broken, observe.Engines(environment.docker_engine_factory))
    assert not state.reachable and tasks == []
    assert "TLS: CA certificate file" in state.error and "nope.pem" in state.error


def test_a_timeout_reads_as_a_timeout():
    engine = docker_engine.DockerEngine("unix:///nonexistent/docker.sock")

    def slow():
        raise requests.exceptions.ReadTimeout("read timed out")

    def refused():
        raise requests.exceptions.ConnectionError("Connection refused")

    with pytest.raises(api.Unreachable, match="engine timed out"):
        engine._call(slow)
    with pytest.raises(api.Unreachable, match=r"engine does not answer \(connection refused\)"):
        engine._call(refused)
    engine.close()
