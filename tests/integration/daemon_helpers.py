"""Helpers for the daemon's real-engine tests: a `reconciler watch` subprocess, its log and its HTTP listener.

Owns `Daemon` (one `python -m reconciler watch ...` process started with its own free loopback port, JSON logs
and the test's state directory; its stdout and stderr go to a log file the test can read and assert on; it is
stopped by its recorded pid only), `Daemons` (every daemon a test started, stopped at teardown), editor-like
manifest writes, a bare Git repository with a work clone to commit manifests from, and small polling helpers.
Must not: start, stop or reset engines, touch a process by name, or reach anything but 127.0.0.1 and the
engines a test was given. The manifest documents and engine queries themselves come from `helpers`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import helpers as h
import yaml

DEFAULT_ARGS = ("--resync", "30s", "--log-format", "json")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the system picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without DOCKER_* variables (never the system engine by accident), plus `extra`."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    out.update(extra or {})
    return out


class Daemon:
    """One `reconciler watch` process. Start with `start()`; `stop()` (SIGTERM) or `kill()` (SIGKILL) by pid."""

    def __init__(self, cwd: Path, state: Path, args: Iterable[str], log_path: Path, env: Mapping[str, str] | None = None):
        self.cwd = Path(cwd)
        self.state = Path(state)
        self.args = list(args)
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "daemon not started"
        return self.proc.pid

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "reconciler", "watch",
            "--state-dir", str(self.state), "--listen", f"127.0.0.1:{self.port}",
            *DEFAULT_ARGS, *self.args,  # the test's own args last: they override the defaults
        ]  # fmt: skip

    def start(self) -> Daemon:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.cwd,
            env=cli_environ(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- its log
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def entries(self) -> list[dict[str, Any]]:
        """The JSON log entries so far (a line that is not JSON, e.g. a traceback, becomes {"raw": line})."""
        out = []
        for line in self.log_text().splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"raw": line, "msg": line}
            out.append(entry if isinstance(entry, dict) else {"raw": line, "msg": line})
        return out

    def messages(self) -> list[str]:
        return [str(e.get("msg", "")) for e in self.entries()]

    def logged(self, needle: str) -> list[dict[str, Any]]:
        return [e for e in self.entries() if needle in str(e.get("msg", ""))]

    def wait_logged(self, needle: str, timeout: float = 30.0) -> dict[str, Any]:
        found = wait_for(lambda: self.logged(needle), timeout, what=f"the daemon to log {needle!r}", daemon=self)
        return found[0]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # ---- its HTTP listener
    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str, str]:
        """(status, body, content type) of GET path; HTTP errors are answers too."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as reply:
                return reply.status, reply.read().decode(), reply.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers.get("Content-Type", "")

    def status(self) -> dict[str, Any]:
        code, body, _ = self.get("/status")
        assert code == 200, f"/status answered {code}: {body}"
        return json.loads(body)

    def service_status(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.status()["services"] if s["serviceName"] == name), None)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits until /readyz answers 200 (the first full reconcile pass is done)."""

        def ready() -> bool:
            self.check_alive()
            try:
                return self.get("/readyz", timeout=2)[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout, what="the daemon's /readyz to answer 200", daemon=self)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with status {self.proc.returncode}; its log:\n{self.tail()}")

    # ---- stopping, by the recorded pid only
    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then waits for the exit; returns the exit status (SIGKILL and an assertion after timeout)."""
        assert self.proc is not None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the daemon did not exit within {timeout:.0f} s of SIGTERM; its log:\n{self.tail()}") from None

    def kill(self) -> None:
        """SIGKILL (a crash) and reap."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def close(self) -> None:
        """Teardown: kills the process if it still runs (by its pid), reaps it, closes the log file."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Daemons:
    """Every daemon of one test, in tmp_path with the workspace's state directory; `close()` stops them all."""

    def __init__(self, root: Path, state: Path):
        self.root = Path(root)
        self.state = Path(state)
        self.started: list[Daemon] = []

    def start(self, *args: str, env: Mapping[str, str] | None = None, ready: bool = True) -> Daemon:
        """Starts `reconciler watch ARGS`, logging to tmp_path/daemon-N.log; waits for /readyz unless told not to."""
        log_path = self.root / f"daemon-{len(self.started) + 1}.log"
        daemon = Daemon(self.root, self.state, args, log_path, env)
        self.started.append(daemon)
        daemon.start()
        if ready:
            daemon.wait_ready()
        return daemon

    def close(self) -> None:
        for daemon in self.started:
            daemon.close()

    def logs(self) -> str:
        return "\n".join(f"--- {d.log_path.name} (pid {d.proc.pid if d.proc else '-'}):\n{d.tail(200)}" for d in self.started)


# --------------------------------------------------------------------------------------------------------------
# Writing manifests like editors and people do


def dump(*documents: Mapping[str, Any]) -> str:
    return yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False)


def write_atomically(path: Path, text: str) -> None:
    """Writes a sibling temporary file and renames it over `path` (what vim, VS Code and most tools do)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_in_place(path: Path, text: str) -> None:
    """Truncates and rewrites `path` itself (same inode): a plain `>` redirect or a naive editor."""
    with open(path, "r+" if path.exists() else "w", encoding="utf-8") as fh:
        fh.seek(0)
        fh.truncate()
        fh.write(text)


# --------------------------------------------------------------------------------------------------------------
# A Git source: a bare repository and a work clone that commits and pushes to it

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.invalid",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.invalid",
}


class GitRepo:
    """`bare` (the daemon's --git source) and `work`, a clone on branch `branch` that commits and pushes."""

    def __init__(self, root: Path, branch: str = "main"):
        self.bare = Path(root) / "origin.git"
        self.work = Path(root) / "work"
        self.branch = branch
        self.env = {**os.environ, **GIT_IDENTITY, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
        self._git("init", "--quiet", "--bare", "--initial-branch", branch, str(self.bare), cwd=root)
        self._git("init", "--quiet", "--initial-branch", branch, str(self.work), cwd=root)
        self._git("remote", "add", "origin", str(self.bare))

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=cwd or self.work, env=self.env, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.returncode == 0, f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
        return proc.stdout.strip()

    def commit(self, files: Mapping[str, str], message: str) -> str:
        """Writes `files` (path relative to the work tree -> text), commits, pushes; returns the commit sha."""
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self._git("add", "--all")
        self._git("commit", "--quiet", "-m", message)
        self._git("push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}")
        return self._git("rev-parse", "HEAD")


# --------------------------------------------------------------------------------------------------------------
# Polling and engine state


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition",
             daemon: Daemon | None = None) -> Any:
    """`helpers.wait_for`, plus the daemon's log tail in the failure message (and a check that it still runs)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is not None:
            raise AssertionError(
                f"waiting for {what}: the daemon exited with status {daemon.proc.returncode}; log:\n{daemon.tail()}"
            )
        if time.monotonic() > deadline:
            tail = f"\n--- daemon log tail:\n{daemon.tail()}" if daemon is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r}){tail}")
        time.sleep(interval)


def running_tasks(client, service: str) -> set[str]:
    return h.running_task_ids(client, service)


def wait_running(client, service: str, count: int, daemon: Daemon | None = None, timeout: float = 60.0,
                 exact_containers: int | None = None) -> set[str]:
    """Waits until exactly `count` tasks of `service` run and nothing else of it is left on the engine
    (no stopped or half-made task: the managed containers are exactly those tasks' containers)."""
    per_task = exact_containers or 1

    def settled() -> set[str] | None:
        tasks = running_tasks(client, service)
        containers = h.managed(client, service=service)
        if len(tasks) == count and len(containers) == count * per_task:
            return tasks or {"<none>"}
        return None

    found = wait_for(settled, timeout, what=f"exactly {count} running task(s) of {service}", daemon=daemon)
    return set() if found == {"<none>"} else found


def task_networks(client) -> list[dict[str, Any]]:
    """Networks reconciler made (per-task bridge networks), list shape."""
    return client.api.networks(filters={"label": [f"{h.MANAGED}=true"]})
