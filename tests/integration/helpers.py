"""Helpers for the real-engine tests of reconciler: manifests written into a test's tmp_path, the CLI bound
to them, and reading and polling what actually runs on an engine.

Owns: building Cluster / TaskDefinition / Service documents (busybox workloads that stop fast), the
`Workspace` a test works in (its manifests/ and state/ directories, foreground and background CLI runs), and
small docker SDK queries by reconciler's labels. Must not: start or reset engines (tests/conftest.py does),
reach any engine but the ones a test was given, or stop a process other than by the pid it recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

IMAGE = "localhost/busybox:static"
MISSING_IMAGE = "localhost/nope:1"

# Label keys, spelled out here on purpose: the tests check the product's labels, not its constants.
MANAGED = "io.reconciler.managed"
HISTORY = "io.reconciler.history"  # the cluster's history container (never a task's)
SERVICE = "io.reconciler.service"
TASK = "io.reconciler.task-id"
CONTAINER = "io.reconciler.container"
GROUP = "io.reconciler.group"
ROLE = "io.reconciler.role"
CONTAINER_SPEC = "io.reconciler.container-spec"

# Workloads. Each traps SIGTERM so a stop takes well under the (short) stopTimeout.
IDLE = "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"
CHATTY = "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"line $i $GREETING\"; sleep 0.2 & wait; done"
# Allocates until the kernel OOM-kills it. The sleep first: the engine only learns of an OOM kill once the
# container's shim watches its memory cgroup, which it starts doing just after the start; an OOM within the
# first few milliseconds goes unnoticed (State.OOMKilled false) in about 1 run in 30.
OOM = "sleep 1; x=a; while true; do x=$x$x; done"


def httpd(port: int, text: str = "ok") -> str:
    return (
        f"mkdir -p /www && echo {text} > /www/index.html; trap 'exit 0' TERM; "
        f"httpd -f -p {port} -h /www & wait"
    )


T = TypeVar("T")

# --------------------------------------------------------------------------------------------------------------
# Manifest documents


def cluster(name: str, endpoints: Iterable[str], fargate: bool = False, **spec: Any) -> dict[str, Any]:
    """A Cluster whose instances (or Fargate pool) are the given engine endpoints, named i1, i2, ..."""
    members = [{"name": f"i{n}", "endpoint": e} for n, e in enumerate(endpoints, 1)]
    body: dict[str, Any] = {"fargate": {"endpoints": members}} if fargate else {"instances": members}
    body.update(spec)
    return {"apiVersion": "reconciler/v1", "kind": "Cluster", "metadata": {"name": name}, "spec": body}


def container(name: str, script: str | None = IDLE, **fields: Any) -> dict[str, Any]:
    """A busybox container definition running `sh -c script`; stopTimeout 1 and a 16 MiB reservation.
    A field given as None is left out (e.g. memoryReservation=None)."""
    c: dict[str, Any] = {"name": name, "image": IMAGE, "stopTimeout": 1}
    if script is not None:
        c["command"] = ["sh", "-c", script]
    if "memory" not in fields:
        c["memoryReservation"] = 16
    c.update(fields)
    return {k: v for k, v in c.items() if v is not None}


def env(**values: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def task_definition(family: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "reconciler/v1",
        "kind": "TaskDefinition",
        "metadata": {"name": family},
        "spec": {"containerDefinitions": list(containers), **spec},
    }


def service(
    name: str,
    family: str,
    desired: int,
    cluster_name: str = "test",
    max_percent: int | None = None,
    min_healthy: int | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"cluster": cluster_name, "taskDefinition": family, "desiredCount": desired}
    deployment = {}
    if max_percent is not None:
        deployment["maximumPercent"] = max_percent
    if min_healthy is not None:
        deployment["minimumHealthyPercent"] = min_healthy
    if deployment:
        body["deploymentConfiguration"] = deployment
    body.update(spec)
    return {"apiVersion": "reconciler/v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


# --------------------------------------------------------------------------------------------------------------
# A test's working directory and the CLI


def _cli_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without DOCKER_* (never the system engine by accident), plus `extra`; as run_cli."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    out.update(extra or {})
    return out


class Workspace:
    """tmp_path/manifests (the CLI's default path, since commands run in tmp_path) and tmp_path/state."""

    def __init__(self, root: Path, run_cli: Callable[..., Any], env: Mapping[str, str] | None = None):
        self.root = Path(root)
        self.manifests = self.root / "manifests"
        self.state = self.root / "state"
        self.manifests.mkdir(exist_ok=True)
        self.env = dict(env or {})
        self._run_cli = run_cli
        self._background: list[subprocess.Popen[str]] = []

    # ---- manifests
    def write(self, filename: str, *documents: Mapping[str, Any]) -> Path:
        path = self.manifests / filename
        path.write_text(yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False))
        return path

    def remove(self, filename: str) -> None:
        (self.manifests / filename).unlink()

    # ---- the CLI
    def argv(self, command: str, *args: str) -> list[str]:
        return [command, "--state-dir", str(self.state), *map(str, args)]

    def cli(self, command: str, *args: str, timeout: float = 120, check: int | None = None):
        """Runs `reconciler COMMAND --state-dir STATE ARGS` in tmp_path; with `check`, asserts that exit code."""
        result = self._run_cli(*self.argv(command, *args), env=self.env, cwd=self.root, timeout=timeout)
        if check is not None:
            assert result.exit_code == check, describe_run([command, *args], result)
        return result

    def apply(self, *args: str, timeout: float = 120, check: int | None = 0):
        return self.cli("apply", "--yes", *args, timeout=timeout, check=check)

    def plan(self, *args: str, check: int | None = None):
        return self.cli("plan", *args, check=check)

    def json(self, command: str, *args: str) -> Any:
        result = self.cli(command, *args, check=0)
        return json.loads(result.stdout)

    def tasks(self) -> list[dict[str, Any]]:
        """`get tasks --json` (ECS describe-tasks shape)."""
        return self.json("get", "tasks", "--json")["tasks"]

    def services(self) -> dict[str, dict[str, Any]]:
        return {s["serviceName"]: s for s in self.json("get", "services", "--json")["services"]}

    def describe_task(self, task_id: str) -> dict[str, Any]:
        (task,) = self.json("describe", "task", task_id)["tasks"]
        return task

    def describe_service(self, name: str) -> dict[str, Any]:
        (svc,) = self.json("describe", "service", name)["services"]
        return svc

    def assert_converged(self) -> None:
        """`plan --detailed-exitcode` exits 0 and plans nothing."""
        result = self.plan("--detailed-exitcode")
        assert result.exit_code == 0, describe_run(["plan", "--detailed-exitcode"], result)
        assert "Plan: 0 to add, 0 to replace, 0 to remove." in result.stdout, result.stdout

    def start(self, command: str, *args: str, log: str = "background") -> subprocess.Popen[str]:
        """Starts the CLI in the background, output to tmp_path/LOG.out; `stop_background` kills it by pid."""
        out = open(self.root / f"{log}.out", "w")  # noqa: SIM115 - owned by the process, closed in stop_background
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", *self.argv(command, *args)],
            cwd=self.root,
            env=_cli_environ(self.env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        proc.log_path = self.root / f"{log}.out"  # type: ignore[attr-defined]
        proc.log_file = out  # type: ignore[attr-defined]
        self._background.append(proc)
        return proc

    @staticmethod
    def output(proc: subprocess.Popen[str]) -> str:
        proc.log_file.flush()  # type: ignore[attr-defined]
        return proc.log_path.read_text()  # type: ignore[attr-defined]

    def stop_background(self) -> None:
        """Kills (by recorded pid) and reaps every background CLI this workspace started."""
        for proc in self._background:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            proc.log_file.close()  # type: ignore[attr-defined]
        self._background.clear()


def describe_run(argv: list[str], result: Any) -> str:
    return (
        f"`reconciler {' '.join(argv)}` exited {result.exit_code}\n"
        f"--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
    )


# --------------------------------------------------------------------------------------------------------------
# Polling


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> T:
    """Calls `check` until it returns something truthy and returns that; fails after `timeout` seconds.

    The deadline only bounds how long we wait for something that must happen; it is not a speed assertion.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value: {last!r})")
        time.sleep(interval)


def http_get(url: str, timeout: float = 15.0) -> str:
    """GET url, retrying while the server is not up yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --------------------------------------------------------------------------------------------------------------
# What runs on an engine (docker SDK, assertions only)


def managed(client, **labels: str) -> list[dict[str, Any]]:
    """Containers (any state) with io.reconciler.managed=true and the given label values, list shape.

    Keyword names are label suffixes with '_' for '-': service="web", task_id="...".
    """
    wanted = [f"{MANAGED}=true"] + [f"io.reconciler.{k.replace('_', '-')}={v}" for k, v in labels.items()]
    return client.api.containers(all=True, filters={"label": wanted})


def by_task(containers: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for c in containers:
        out.setdefault(c["Labels"][TASK], []).append(c)
    return out


def container_of(client, task_id: str, name: str) -> dict[str, Any]:
    """The inspect JSON of container `name` of task `task_id`."""
    (found,) = managed(client, task_id=task_id, container=name)
    return client.api.inspect_container(found["Id"])


def essential(c: Mapping[str, Any]) -> bool:
    """Whether a listed container is essential, from the container definition its labels carry."""
    return json.loads(c["Labels"].get(CONTAINER_SPEC) or "{}").get("essential", True)


def running_task_ids(client, service_name: str) -> set[str]:
    """Tasks of a service whose essential containers all run."""
    out = set()
    for task_id, members in by_task(managed(client, service=service_name)).items():
        app = [c for c in members if c["Labels"].get(ROLE) != "pause" and essential(c)]
        if app and all(c["State"] == "running" for c in app):
            out.add(task_id)
    return out


def env_of(inspect: Mapping[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in inspect["Config"]["Env"] or [])


def parse_time(value: str) -> datetime:
    """Docker's RFC 3339 timestamps with nanoseconds ("2024-01-02T03:04:05.123456789Z") as aware datetimes."""
    value = value.replace("Z", "+00:00")
    head, _, rest = value.partition(".")
    if rest:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        value = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(value)


# --------------------------------------------------------------------------------------------------------------
# Sampling in the background ("never fewer than N at any poll")


class Sampler:
    """Calls `sample()` every `interval` seconds from a thread, from `start()` (or entering the `with` block) to
    `stop()` (or leaving it): `samples` is [(monotonic time, value)]. `stop()` raises AssertionError naming the
    exception if a call of `sample` raised (sampling ended there)."""

    def __init__(self, sample: Callable[[], Any], interval: float = 0.1):
        import threading

        self.sample = sample
        self.interval = interval
        self.samples: list[tuple[float, Any]] = []
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        try:
            while not self._done.is_set():
                self.samples.append((time.monotonic(), self.sample()))
                self._done.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - raised again by stop()
            self.error = exc

    def start(self) -> Sampler:
        self._thread.start()
        wait_for(lambda: self.samples or self.error, timeout=10, what="the first sample")
        return self

    def wait_past(self, t: float, timeout: float = 10.0) -> None:
        """Waits until a sample was taken after monotonic time `t`."""
        wait_for(lambda: self.error or (self.samples and self.samples[-1][0] > t), timeout, what=f"a sample after {t}")

    def stop(self, check: bool = True) -> None:
        self._done.set()
        self._thread.join(10)
        if check and self.error is not None:
            raise AssertionError(f"sampling failed after {len(self.samples)} samples: {self.error!r}") from self.error

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.stop(check=exc_type is None)  # never hides the error that left the block
