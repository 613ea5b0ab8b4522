"""The one injection point of a command: streams, process environment, engines and state directory.

Commands take an `Environment` instead of reaching for `sys.stdout`, `os.environ`, the clock or the
docker SDK, so tests can run them with captured streams, a manual clock or a fake engine factory. It must not hold logic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO

from reconciler import clock as clocks
from reconciler import state
from reconciler.engine import api
from reconciler.model import spec


def docker_engine_factory(instance: spec.Instance) -> api.Engine:
    from reconciler.engine import docker_engine

    return docker_engine.DockerEngine(instance.endpoint, instance.tls, timeout=60)


@dataclass
class Environment:
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    engine_factory: Callable[[spec.Instance], api.Engine] = docker_engine_factory
    state_dir: str | None = None
    clock: clocks.Clock = field(default_factory=lambda: clocks.SYSTEM)

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def err(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def interactive(self) -> bool:
        try:
            return self.stdin.isatty() and self.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    def state(self) -> state.StateDir:
        return state.StateDir(self.state_dir or state.default_dir(self.environ))
