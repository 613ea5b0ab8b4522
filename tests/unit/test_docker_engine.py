"""`DockerEngine` without an engine: what goes wrong surfaces as an `engine.api` error naming the endpoint
(and the file, for TLS), never as an SDK exception; files in and out of containers as one-member tarballs,
with a missing path told from a missing container and reads capped."""

from __future__ import annotations

import base64
import io
import json
import tarfile

import docker.errors
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


# -- files through the archive endpoints -------------------------------------------------------------------


def _tar(name: str, content: bytes, directory: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        member = tarfile.TarInfo(name)
        if directory:
            member.type = tarfile.DIRTYPE
            tar.addfile(member)
        else:
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return buf.getvalue()


class _Answer:
    """An archive endpoint's streamed answer: the path stat header and the body in chunks."""

    def __init__(self, body: bytes, stat: dict | None = None):
        self.body = body
        stat = stat if stat is not None else {"name": "x", "size": len(body), "mode": 0o644}
        self.headers = {"x-docker-container-path-stat": base64.b64encode(json.dumps(stat).encode()).decode()}
        self.closed = False

    def iter_content(self, chunk_size, decode_unicode=False):
        for i in range(0, len(self.body), chunk_size):
            yield self.body[i:i + chunk_size]

    def close(self):
        self.closed = True


def _engine(monkeypatch, answer: _Answer | None = None, error: Exception | None = None):
    engine = docker_engine.DockerEngine("unix:///nonexistent/docker.sock")
    calls: list = []
    monkeypatch.setattr(engine.api, "_get", lambda url, **kw: calls.append((url, kw)) or answer)

    def raise_for_status(response):
        if error is not None:
            raise error

    monkeypatch.setattr(engine.api, "_raise_for_status", raise_for_status)
    return engine, calls


def test_put_file_sends_a_tar_of_one_regular_file_to_its_directory(monkeypatch):
    engine = docker_engine.DockerEngine("unix:///nonexistent/docker.sock")
    sent = {}
    monkeypatch.setattr(engine.api, "put_archive", lambda c, path, data: sent.update(c=c, path=path, data=data) or True)
    engine.put_file("hist", "/history/c1.a.json", b'{"generation": 1}')
    assert (sent["c"], sent["path"]) == ("hist", "/history")
    with tarfile.open(fileobj=io.BytesIO(sent["data"])) as tar:
        (member,) = tar.getmembers()
        assert member.name == "c1.a.json" and member.isfile() and member.mode == 0o644 and member.mtime > 0
        assert tar.extractfile(member).read() == b'{"generation": 1}'
    with pytest.raises(api.EngineError, match="absolute file path"):
        engine.put_file("hist", "history/x", b"")


def test_get_file_returns_the_content_and_closes_the_stream(monkeypatch):
    answer = _Answer(_tar("c1.a.json", b"hello"))
    engine, calls = _engine(monkeypatch, answer)
    assert engine.get_file("hist", "/history/c1.a.json") == b"hello"
    ((url, kw),) = calls
    assert url.endswith("/containers/hist/archive") and kw["params"] == {"path": "/history/c1.a.json"} and kw["stream"]
    assert answer.closed


def test_get_file_of_a_missing_path_is_none_and_of_a_missing_container_not_found(monkeypatch):
    missing = docker.errors.NotFound("404", explanation="Could not find the file /history/x in container hist")
    engine, _ = _engine(monkeypatch, _Answer(b""), missing)
    monkeypatch.setattr(engine.api, "inspect_container", lambda c: {"Id": c})
    assert engine.get_file("hist", "/history/x") is None

    gone = docker.errors.NotFound("404", explanation="No such container: hist")
    engine, _ = _engine(monkeypatch, _Answer(b""), gone)
    with pytest.raises(api.NotFound, match="No such container: hist"):
        engine.get_file("hist", "/history/x")


@pytest.mark.parametrize(
    "answer,message",
    [
        (lambda: _Answer(_tar("h", b"", directory=True), {"name": "h", "size": 4096, "mode": (1 << 31) | 0o755}),
         "is a directory, not a file"),
        (lambda: _Answer(b"", {"name": "x", "size": api.MAX_FILE_BYTES + 1, "mode": 0o644}), "bytes, over the"),
        (lambda: _Answer(b"\0" * (api.MAX_FILE_BYTES + 70 * 1024), {"name": "x", "size": 10, "mode": 0o644}),
         "is over 16777216 bytes"),
        (lambda: _Answer(_tar("l", b"", directory=True), {"name": "l", "size": 0, "mode": 0o644}), "is no regular file"),
        (lambda: _Answer(b"not a tar at all" * 64), "bad archive"),
    ],
)
def test_get_file_refuses_directories_oversized_files_and_bad_archives(monkeypatch, answer, message):
    engine, _ = _engine(monkeypatch, answer())
    with pytest.raises(api.EngineError, match=message):
        engine.get_file("hist", "/history/x")
