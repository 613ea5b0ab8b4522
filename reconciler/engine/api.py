"""The engine interface: the small surface the rest of the reconciler uses to talk to one Docker engine.

Owns the `Engine` protocol (only the calls the reconciler makes), the neutral request value
`ContainerCreate`, the engine errors, and the size cap of a file read out of a container
(`MAX_FILE_BYTES`). Raw
answers are Docker Engine API JSON (the list and inspect shapes), never SDK objects, so parsing them is
pure and testable from captured JSON. Only `engine.docker_engine` implements this against the docker
SDK; `tests/fakes.py` implements it in memory. This module must not import `docker`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_FILE_BYTES = 16 * 1024 * 1024  # the most `Engine.get_file` reads; a larger file is an EngineError


class EngineError(Exception):
    """An engine call failed. `endpoint` names the engine; `transient` says whether a retry may help."""

    def __init__(self, endpoint: str, message: str, transient: bool = False, status: int | None = None):
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint
        self.message = message
        self.transient = transient
        self.status = status


class Unreachable(EngineError):
    def __init__(self, endpoint: str, message: str):
        super().__init__(endpoint, message, transient=True)


class NotFound(EngineError):
    pass


class ImageUnavailable(EngineError):
    """The image is not on the engine and could not be pulled (ECS: CannotPullContainerError)."""


@dataclass(frozen=True)
class EngineInfo:
    endpoint: str
    cpus: int
    memory_bytes: int
    os_type: str = "linux"
    architecture: str = "x86_64"
    server_version: str = ""
    name: str = ""


@dataclass(frozen=True)
class ContainerCreate:
    """Everything needed to create one container; host_config uses the Engine API's HostConfig names
    in docker-py's keyword form (`mem_limit`, `cpu_shares`, ...)."""

    name: str
    image: str
    labels: Mapping[str, str]
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    healthcheck: Mapping[str, Any] | None = None
    stop_timeout: int | None = None
    tty: bool = False
    stdin_open: bool = False
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    host_config: Mapping[str, Any] = field(default_factory=dict)
    network: str | None = None  # user-defined network to attach at create time
    aliases: tuple[str, ...] = ()


class Engine(Protocol):
    endpoint: str

    def info(self) -> EngineInfo: ...

    def list_containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every container (running or not) carrying all `labels`, in the Engine API list shape."""
        ...

    def inspect_container(self, container_id: str) -> dict[str, Any]: ...

    def create_container(self, request: ContainerCreate) -> str: ...

    def start_container(self, container_id: str) -> None: ...

    def stop_container(self, container_id: str, timeout: int) -> None: ...

    def remove_container(self, container_id: str) -> None:
        """Force-remove, with anonymous volumes; a container already gone is not an error."""
        ...

    def put_file(self, container_id: str, path: str, data: bytes) -> None:
        """Writes `data` as the regular file `path` (absolute; its directory must exist) of the container,
        through the archive endpoint: works on a created, never started container, volumes included. An
        existing file of that name is replaced (unlinked, then written anew: not atomically). NotFound when
        the container or the directory is missing."""
        ...

    def get_file(self, container_id: str, path: str) -> bytes | None:
        """The content of the regular file `path` of the container (started or not, volumes included);
        None when there is no such file. NotFound when the container is missing; EngineError when `path`
        is no regular file or is larger than MAX_FILE_BYTES."""
        ...

    def has_image(self, ref: str) -> bool: ...

    def pull_image(self, ref: str, auth: Mapping[str, str] | None = None) -> None: ...

    def load_image_tar(self, data: bytes, ref: str) -> None:
        """Import a root filesystem tarball as image `ref`."""
        ...

    def create_network(self, name: str, labels: Mapping[str, str]) -> str: ...

    def remove_network(self, name: str) -> None: ...

    def list_networks(self, labels: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def create_volume(self, name: str, driver: str, driver_opts: Mapping[str, str], labels: Mapping[str, str]) -> None: ...

    def has_volume(self, name: str) -> bool: ...

    def remove_volume(self, name: str) -> None: ...

    def list_volumes(self, labels: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def logs(self, container_id: str, follow: bool, tail: int | None) -> Iterator[bytes]: ...

    def stats(self, container_id: str) -> dict[str, Any]: ...

    def exec(self, container_id: str, command: list[str], interactive: bool = False) -> int: ...

    def events(
        self, labels: Mapping[str, str], since: float | None = None, until: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Container events of labelled containers from `since`; the stream ends at `until` if given."""
        ...

    def close(self) -> None: ...
