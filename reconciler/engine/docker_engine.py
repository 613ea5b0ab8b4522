"""The one module that imports the docker SDK: `DockerEngine` implements `engine.api.Engine`.

Owns connecting to an endpoint (unix://, tcp:// with optional TLS client certificates, ssh://), turning
SDK and transport failures into `engine.api` errors that name the endpoint (a missing TLS file too, at
construction: `api.Unreachable` naming the file; nothing SDK-specific escapes), and mapping the neutral
`ContainerCreate` onto the low-level API, and files in and out of containers as in-memory tarballs
through the archive endpoints (reads capped at `api.MAX_FILE_BYTES`). It returns Engine API JSON and
must not decide anything: no planning, no retries beyond what the SDK does, no knowledge of tasks or
services. No other module imports it but the engine factory (`environment.py`), so the SDK loads only
where engines are reached.
"""

from __future__ import annotations

import http.client
import io
import os
import posixpath
import select
import sys
import tarfile
import termios
import time
import tty
from collections.abc import Iterator, Mapping
from typing import Any

import docker
import docker.errors
import docker.tls
import docker.types
import docker.utils
import requests.exceptions
import urllib3.exceptions

from reconciler.engine import api

API_VERSION = "1.41"
DEFAULT_TIMEOUT = 120
EVENTS_READ_MARGIN = 10.0  # seconds a windowed event read may run past the window's end
_TAR_SLACK = 64 * 1024  # tar headers and padding around a file of at most api.MAX_FILE_BYTES
_MODE_DIR = 1 << 31  # Go's os.ModeDir in the archive endpoint's path stat


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in labels.items()]


class DockerEngine:
    def __init__(
        self,
        endpoint: str,
        tls: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = 128,
    ):
        self.endpoint = endpoint
        kwargs: dict[str, Any] = {"base_url": endpoint, "version": API_VERSION, "timeout": timeout}
        if endpoint.startswith("ssh://"):
            kwargs["use_ssh_client"] = True
        else:
            kwargs["max_pool_size"] = pool_size
        if tls is not None and endpoint.startswith("tcp://"):
            kwargs["tls"] = _tls_config(endpoint, tls)
            kwargs["base_url"] = endpoint.replace("tcp://", "https://", 1)
        try:
            self.client = docker.DockerClient(**kwargs)
        except docker.errors.DockerException as e:
            raise api.Unreachable(endpoint, _short(e)) from None
        self.api = self.client.api

    # -- error mapping ---------------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except docker.errors.NotFound as e:
            raise api.NotFound(self.endpoint, _explanation(e), status=404) from None
        except docker.errors.APIError as e:
            status = e.status_code
            raise api.EngineError(self.endpoint, _explanation(e), transient=bool(status and status >= 500), status=status) from None
        except requests.exceptions.Timeout:  # an OSError too: before the generic branch, for the clearer message
            raise api.Unreachable(self.endpoint, "engine timed out") from None
        except (OSError, docker.errors.DockerException) as e:
            raise api.Unreachable(self.endpoint, f"engine does not answer ({_short(e)})") from None

    # -- engine ----------------------------------------------------------------------------------

    def info(self) -> api.EngineInfo:
        raw = self._call(self.api.info)
        return api.EngineInfo(
            endpoint=self.endpoint,
            cpus=int(raw.get("NCPU") or 1),
            memory_bytes=int(raw.get("MemTotal") or 0),
            os_type=str(raw.get("OSType") or "linux"),
            architecture=str(raw.get("Architecture") or "x86_64"),
            server_version=str(raw.get("ServerVersion") or ""),
            name=str(raw.get("Name") or ""),
        )

    # -- containers ------------------------------------------------------------------------------

    def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return self._call(self.api.containers, all=True, filters={"label": _label_filter(labels)})

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return self._call(self.api.inspect_container, container_id)

    def create_container(self, request: api.ContainerCreate) -> str:
        hc = dict(request.host_config)
        ulimits = hc.pop("ulimits", None)
        if ulimits:
            hc["ulimits"] = [docker.types.Ulimit(**u) for u in ulimits]
        log_config = hc.pop("log_config", None)
        if log_config:
            hc["log_config"] = docker.types.LogConfig(type=log_config["type"], config=log_config.get("config") or {})
        host_config = self._call(self.api.create_host_config, **hc)
        networking = None
        if request.network:
            networking = self.api.create_networking_config(
                {request.network: self.api.create_endpoint_config(aliases=list(request.aliases) or None)}
            )
        created = self._call(
            self.api.create_container,
            image=request.image,
            command=list(request.command) if request.command is not None else None,
            entrypoint=list(request.entrypoint) if request.entrypoint is not None else None,
            environment=dict(request.environment) or None,
            working_dir=request.working_dir,
            user=request.user,
            hostname=request.hostname,
            labels=dict(request.labels),
            healthcheck=dict(request.healthcheck) if request.healthcheck else None,
            stop_timeout=request.stop_timeout,
            tty=request.tty,
            stdin_open=request.stdin_open,
            ports=[_port_tuple(p) for p in request.exposed_ports] or None,
            host_config=host_config,
            networking_config=networking,
            name=request.name,
        )
        return created["Id"]

    def start_container(self, container_id: str) -> None:
        self._call(self.api.start, container_id)

    def stop_container(self, container_id: str, timeout: int) -> None:
        self._call(self.api.stop, container_id, timeout=timeout)

    def remove_container(self, container_id: str) -> None:
        try:
            self._call(self.api.remove_container, container_id, force=True, v=True)
        except api.NotFound:
            pass
        except api.EngineError as e:
            if e.status == 409 and "already in progress" in e.message:
                return
            raise

    # -- files -----------------------------------------------------------------------------------

    def put_file(self, container_id: str, path: str, data: bytes) -> None:
        directory, name = posixpath.split(path)
        if not name or not posixpath.isabs(path):
            raise api.EngineError(self.endpoint, f"put_file needs an absolute file path, not {path!r}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            member = tarfile.TarInfo(name)
            member.size, member.mode, member.mtime = len(data), 0o644, int(time.time())
            tar.addfile(member, io.BytesIO(data))
        self._call(self.api.put_archive, container_id, directory, buf.getvalue())

    def get_file(self, container_id: str, path: str) -> bytes | None:
        """The request is made here rather than through the SDK's `get_archive`, whose stream turns the
        socket's timeout off (a silently dead engine would block the read forever)."""
        url = self.api._url("/containers/{0}/archive", container_id)
        response = self._call(self.api._get, url, params={"path": path}, stream=True,
                              headers={"Accept-Encoding": "identity"})
        try:
            try:
                self._call(self.api._raise_for_status, response)
            except api.NotFound as e:
                if "no such container" in e.message.lower():
                    raise
                self.inspect_container(container_id)  # a missing path, unless the container is gone (NotFound)
                return None
            stat = docker.utils.decode_json_header(response.headers.get("x-docker-container-path-stat") or "e30=")
            if int(stat.get("mode") or 0) & _MODE_DIR:
                raise api.EngineError(self.endpoint, f"{path} in container {container_id} is a directory, not a file")
            if int(stat.get("size") or 0) > api.MAX_FILE_BYTES:
                raise api.EngineError(self.endpoint, f"{path} in container {container_id} is {stat['size']} bytes, "
                                                     f"over the {api.MAX_FILE_BYTES} a read takes")
            raw = self._call(_read_capped, response, api.MAX_FILE_BYTES + _TAR_SLACK)
        finally:
            response.close()
        if raw is None:
            raise api.EngineError(self.endpoint, f"{path} in container {container_id} is over {api.MAX_FILE_BYTES} bytes")
        return self._untar_one(raw, path, container_id)

    def _untar_one(self, raw: bytes, path: str, container_id: str) -> bytes:
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
                member = tar.next()
                content = tar.extractfile(member) if member is not None and member.isfile() else None
                if content is None:
                    raise api.EngineError(self.endpoint, f"{path} in container {container_id} is no regular file")
                return content.read()
        except tarfile.TarError as e:
            raise api.EngineError(self.endpoint, f"reading {path} from container {container_id}: bad archive ({e})") from None

    # -- images ----------------------------------------------------------------------------------

    def has_image(self, ref: str) -> bool:
        try:
            self._call(self.api.inspect_image, ref)
            return True
        except api.NotFound:
            return False

    def pull_image(self, ref: str, auth: Mapping[str, str] | None = None) -> None:
        repo, tag = _split_ref(ref)
        try:
            for line in self.api.pull(repo, tag=tag, stream=True, decode=True, auth_config=dict(auth) if auth else None):
                if "error" in line:
                    raise api.ImageUnavailable(self.endpoint, f"CannotPullContainerError: {line['error']}")
        except docker.errors.APIError as e:
            raise api.ImageUnavailable(self.endpoint, f"CannotPullContainerError: {_explanation(e)}") from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as e:
            raise api.ImageUnavailable(self.endpoint, f"CannotPullContainerError: {_short(e)}") from None

    def load_image_tar(self, data: bytes, ref: str) -> None:
        repo, tag = _split_ref(ref)
        self._call(self.api.import_image_from_data, data, repository=repo, tag=tag)

    # -- networks and volumes --------------------------------------------------------------------

    def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        created = self._call(self.api.create_network, name, driver="bridge", labels=dict(labels), check_duplicate=True)
        return created["Id"]

    def remove_network(self, name: str) -> None:
        try:
            self._call(self.api.remove_network, name)
        except api.NotFound:
            pass

    def list_networks(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return self._call(self.api.networks, filters={"label": _label_filter(labels)})

    def create_volume(self, name: str, driver: str, driver_opts: Mapping[str, str], labels: Mapping[str, str]) -> None:
        self._call(self.api.create_volume, name=name, driver=driver, driver_opts=dict(driver_opts) or None, labels=dict(labels))

    def has_volume(self, name: str) -> bool:
        try:
            self._call(self.api.inspect_volume, name)
            return True
        except api.NotFound:
            return False

    def remove_volume(self, name: str) -> None:
        try:
            self._call(self.api.remove_volume, name, force=True)
        except api.NotFound:
            pass

    def list_volumes(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        raw = self._call(self.api.volumes, filters={"label": _label_filter(labels)})
        return list((raw or {}).get("Volumes") or [])

    # -- streams ---------------------------------------------------------------------------------

    def logs(self, container_id: str, follow: bool, tail: int | None) -> Iterator[bytes]:
        stream = self._call(
            self.api.logs, container_id, stream=True, follow=follow, tail=tail if tail is not None else "all"
        )
        yield from stream

    def stats(self, container_id: str) -> dict[str, Any]:
        return self._call(self.api.stats, container_id, stream=False, one_shot=True)

    def exec(self, container_id: str, command: list[str], interactive: bool = False) -> int:
        """Runs `command` in the container and returns its exit code. One-shot: output is streamed here.
        Interactive (a terminal on both ends): a TTY in the container wired to this terminal, in raw mode."""
        if interactive:
            return self._exec_tty(container_id, command)
        created = self._call(self.api.exec_create, container_id, command, stdin=False, tty=False)
        for out, err in self._call(self.api.exec_start, created["Id"], stream=True, demux=True):
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.flush()
        return int(self._call(self.api.exec_inspect, created["Id"]).get("ExitCode") or 0)

    def _exec_tty(self, container_id: str, command: list[str]) -> int:
        size = os.get_terminal_size(sys.stdout.fileno())
        created = self._call(self.api.exec_create, container_id, command, stdin=True, tty=True)
        sock = self._call(self.api.exec_start, created["Id"], socket=True, tty=True)
        raw = getattr(sock, "_sock", sock)
        try:
            self._call(self.api.exec_resize, created["Id"], height=size.lines, width=size.columns)
        except api.EngineError:
            pass  # the process may not have started yet; its terminal keeps the default size
        stdin = sys.stdin.fileno()
        saved = termios.tcgetattr(stdin)
        try:
            tty.setraw(stdin)
            while True:
                ready, _, _ = select.select([raw, stdin], [], [])
                if raw in ready:
                    data = raw.recv(65536)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                if stdin in ready:
                    data = os.read(stdin, 65536)
                    if not data:
                        break
                    raw.sendall(data)
        finally:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            raw.close()
        return int(self._call(self.api.exec_inspect, created["Id"]).get("ExitCode") or 0)

    def events(
        self, labels: Mapping[str, str], since: float | None = None, until: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Container events of labelled containers. With `until`, every read is bounded (the SDK's own
        `events` sends no timeout at all, so a silently dead engine would block a reader forever): no
        read may wait longer than the time left to `until` plus a margin."""
        params = {
            "since": since,
            "until": until,
            "filters": docker.utils.convert_filters({"type": ["container"], "label": _label_filter(labels)}),
        }
        timeout = None if until is None else max(until - time.time(), 0.0) + EVENTS_READ_MARGIN
        response = self._call(self.api._get, self.api._url("/events"), params=params, stream=True, timeout=timeout)
        try:
            self._call(self.api._raise_for_status, response)
            yield from self.api._stream_helper(response, decode=True)
        except (
            requests.exceptions.RequestException,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            docker.errors.DockerException,
            OSError,
            ValueError,
        ) as e:  # an engine going away mid-stream surfaces as any of these, depending on where the read was
            raise api.Unreachable(self.endpoint, f"event stream broke ({_short(e)})") from None
        finally:
            response.close()

    def close(self) -> None:
        self.client.close()


def _tls_config(endpoint: str, tls: Any) -> docker.tls.TLSConfig:
    """The SDK's TLS settings for `tls` (a `spec.TLS`); a named file that is missing or unreadable is an
    `api.Unreachable` naming that file, so one bad instance never stops the observation of the others."""
    for what, path in (("CA certificate", tls.ca), ("client certificate", tls.cert), ("client key", tls.key)):
        if path and not os.path.isfile(path):
            raise api.Unreachable(endpoint, f"TLS: {what} file {path} does not exist")
        if path and not os.access(path, os.R_OK):
            raise api.Unreachable(endpoint, f"TLS: {what} file {path} is not readable")
    try:
        return docker.tls.TLSConfig(
            client_cert=(tls.cert, tls.key) if tls.cert and tls.key else None,
            ca_cert=tls.ca,
            verify=tls.ca if (tls.verify and tls.ca) else tls.verify,
        )
    except docker.errors.TLSParameterError as e:
        named = ", ".join(p for p in (tls.ca, tls.cert, tls.key) if p) or "no files"
        raise api.Unreachable(endpoint, f"TLS: {_short(e)} ({named})") from None


def _read_capped(response: requests.Response, cap: int) -> bytes | None:
    """The body of `response`, or None once it grows past `cap` bytes."""
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024, decode_unicode=False):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _port_tuple(exposed: str) -> tuple[int, str]:
    """"80/tcp" -> (80, "tcp"): the SDK appends the protocol itself."""
    port, _, proto = exposed.partition("/")
    return int(port), proto or "tcp"


def _split_ref(ref: str) -> tuple[str, str | None]:
    if "@" in ref:
        return ref, None
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, "latest"


def _explanation(e: docker.errors.APIError) -> str:
    text = e.explanation if isinstance(e.explanation, str) else str(e)
    return text.strip() or str(e)


def _short(e: BaseException) -> str:
    text = str(e)
    for marker in ("Connection aborted", "Connection refused", "No such file or directory", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(e).__name__

