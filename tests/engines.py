"""Private, throwaway Docker engines for integration tests and benchmarks.

Owns: starting, stopping, crashing, restarting and destroying dockerd engines that this process started, one
per network namespace (recipe and traps: /work/shared/docs/docker-engine-notes.md §2-§5), and making sure each
has the test image ``TEST_IMAGE`` (built by ``scripts/build-image``, copied to the others with save/load).

Must not: touch an engine or a process it did not start (never /var/run/docker.sock, never a kill by process
name, never the root namespace's bridges or iptables), import pytest (fixtures live in tests/conftest.py), or
know anything about reconciler itself. Usable from pytest fixtures, benchmark scripts and, for debugging, as a
script: ``python tests/engines.py start N | list | stop RUN_DIR... | gc`` (gc: runs whose owner died).

From a benchmark script (tests/benchmarks/x_bench.py)::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/
    import engines
    hosts = engines.start_engines(3)  # destroyed at exit anyway; destroy_engines(hosts) to do it sooner

Layout of one run (keep it short: a unix socket path has at most 108 bytes)::

    /tmp/rce-<token>/owner          pid and start time of the owning process, or "detached"
    /tmp/rce-<token>/e0/            one engine: docker.sock, docker.pid, log, data/, exec/, engine.json
    netns rce<token>0, veth rce<token>0h (root namespace, HOST_IP) <-> rce<token>0n (inside, NS_IP), one /30
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

TEST_IMAGE = "localhost/busybox:static"

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_IMAGE_SCRIPT = REPO_ROOT / "scripts" / "build-image"
BUSYBOX = Path("/bin/busybox")

RUN_ROOT = Path(os.environ.get("RCE_RUN_ROOT", "/tmp"))
RUN_PREFIX = "rce-"
NETNS_PREFIX = "rce"
# /30 links between the root namespace and each engine's namespace are taken from this pool. Addresses in use
# on this machine (any interface, any route) are skipped, so parallel and stale runs do not clash.
SUBNET_POOL = ipaddress.ip_network(os.environ.get("RCE_SUBNET_POOL", "192.168.251.0/24"))
ALLOCATION_LOCK = RUN_ROOT / "rce-engines.lock"

READY_TIMEOUT = 60.0  # seconds for a new engine to answer ping
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL
TCP_PORT = 2375
DEFAULT_NETWORKS = frozenset({"bridge", "host", "none"})


class EngineError(RuntimeError):
    """An engine could not be created, started, stopped or cleaned up."""


# --------------------------------------------------------------------------------------------------------------
# Small process and system helpers


def _run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise EngineError(f"{cmd[0]} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"`{' '.join(cmd)}` timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise EngineError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {detail}")
    return proc


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process from /proc, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _alive(pid: int) -> bool:
    """True if pid runs. A zombie counts as dead (`kill -0` would say alive; nobody may reap it here)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below directory, deepest (and most recently stacked) first."""
    prefix = str(directory)
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 for spaces and the like
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    found.reverse()  # later mounts stack on earlier ones
    return sorted(found, key=lambda p: p.count("/"), reverse=True)  # stable: keeps stacking order per depth


def _unmount_all(directory: Path) -> None:
    """Unmount everything at or below directory: stale data-root bind mounts, overlays, nsfs, shm."""
    for _ in range(50):
        mounts = _mounts_under(directory)
        if not mounts:
            return
        for point in mounts:
            _run("umount", point, check=False)
    leftovers = _mounts_under(directory)
    for point in leftovers:  # last resort: detach whatever is still busy
        _run("umount", "-l", point, check=False)
    if _mounts_under(directory):
        raise EngineError(f"cannot unmount {', '.join(_mounts_under(directory))}")


def for_each(func, items, workers: int = 16) -> list[BaseException]:
    """Call func on every item in up to `workers` threads; return the exceptions raised (all items are tried).

    Plain threads, not concurrent.futures: executors refuse work once the interpreter shuts down, and the
    atexit cleanup needs this too.
    """
    items = list(items)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not items:
                    return
                item = items.pop(0)
            try:
                func(item)
            except BaseException as exc:  # noqa: B036 - handed to the caller
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(workers, len(items)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def unix_ping(socket_path: str | Path, timeout: float = 2.0) -> bool:
    """True if a Docker engine answers GET /_ping on this unix socket (no docker SDK needed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


# --------------------------------------------------------------------------------------------------------------
# Address allocation


@contextlib.contextmanager
def _allocation_lock():
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    with open(ALLOCATION_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """IPv4 networks of every address and route in the root namespace (other runs' links included)."""
    used = []
    for line in _run("ip", "-4", "-o", "addr", "show").stdout.splitlines():
        tokens = line.split()
        if "inet" in tokens:
            used.append(ipaddress.ip_interface(tokens[tokens.index("inet") + 1]).network)
    for line in _run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        tokens = line.split()
        if tokens and tokens[0] in ("local", "broadcast", "unicast", "multicast", "anycast", "blackhole"):
            tokens = tokens[1:]
        if not tokens or tokens[0] == "default":
            continue
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(tokens[0], strict=False))
    return used


def _pick_link() -> ipaddress.IPv4Network:
    """A free /30 from SUBNET_POOL; call with the allocation lock held."""
    used = _networks_in_use()
    candidates = list(SUBNET_POOL.subnets(new_prefix=30))
    start = secrets.randbelow(len(candidates))  # spread parallel runs over the pool
    for link in candidates[start:] + candidates[:start]:
        if not any(link.overlaps(net) for net in used):
            return link
    raise EngineError(f"no free /30 left in {SUBNET_POOL} (set RCE_SUBNET_POOL to another private range)")


# --------------------------------------------------------------------------------------------------------------
# Engines


class Engine:
    """One private dockerd in its own network namespace, reachable at `endpoint` (unix) or `tcp_endpoint`.

    Containers that publish on 0.0.0.0 are reachable from the root namespace at `address`:PORT.
    """

    def __init__(self, name: str, directory: Path, netns: str, host_ip: str, ns_ip: str) -> None:
        self.name = name
        self.directory = Path(directory)
        self.netns = netns
        self.host_ip = host_ip
        self.ns_ip = ns_ip
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Engine({self.name!r}, {self.endpoint!r}, address={self.address!r}, pid={self.pid})"

    # ---- addresses and files
    @property
    def address(self) -> str:
        """Where published ports are reachable from the root namespace (the namespace side of the veth)."""
        return self.ns_ip

    @property
    def socket_path(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_endpoint(self) -> str:
        return f"tcp://{self.ns_ip}:{TCP_PORT}"

    @property
    def pidfile(self) -> Path:
        return self.directory / "docker.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / "log"

    @property
    def pid(self) -> int | None:
        """The dockerd pid from this engine's own pidfile (None if there is none)."""
        return _read_int(self.pidfile)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # ---- creation and persistence
    @classmethod
    def create(cls, run_dir: Path, index: int) -> Engine:
        """Make the directory, network namespace and veth /30 for engine number index (dockerd not started)."""
        token = run_dir.name.removeprefix(RUN_PREFIX)
        name = f"e{index}"
        netns = f"{NETNS_PREFIX}{token}{index}"
        if len(netns) + 1 > 15:
            raise EngineError(f"netns name {netns!r} too long for interface names")
        directory = run_dir / name
        directory.mkdir(parents=True)
        host_if, ns_if = f"{netns}h", f"{netns}n"
        created_netns = False
        try:
            with _allocation_lock():
                link = _pick_link()
                host_ip, ns_ip = (str(ip) for ip in link.hosts())
                _run("ip", "netns", "add", netns)
                created_netns = True
                _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
                _run("ip", "link", "set", ns_if, "netns", netns)
                _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)  # claims the /30 for other runs
            _run("ip", "link", "set", host_if, "up")
            inside = ("ip", "-n", netns)
            _run(*inside, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            _run(*inside, "link", "set", ns_if, "up")
            _run(*inside, "link", "set", "lo", "up")
        except BaseException:
            if created_netns:
                _run("ip", "netns", "del", netns, check=False)  # takes the veth pair with it
            _run("ip", "link", "del", host_if, check=False)
            shutil.rmtree(directory, ignore_errors=True)
            raise
        engine = cls(name, directory, netns, host_ip, ns_ip)
        engine._save()
        return engine

    def _save(self) -> None:
        data = {
            "name": self.name,
            "directory": str(self.directory),
            "netns": self.netns,
            "host_ip": self.host_ip,
            "ns_ip": self.ns_ip,
        }
        (self.directory / "engine.json").write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Engine:
        """An Engine from its engine.json (for the script's stop/gc; the process is not our child then)."""
        data = json.loads((Path(directory) / "engine.json").read_text())
        return cls(data["name"], Path(data["directory"]), data["netns"], data["host_ip"], data["ns_ip"])

    # ---- process state
    def _our_pid(self) -> int | None:
        """The pidfile's pid if that process is alive and is this engine's dockerd, else None."""
        if self._proc is not None:
            self._proc.poll()  # reap our child so it cannot linger as a zombie
        pid = self.pid
        if pid is None or not _alive(pid):
            return None
        argv = _cmdline(pid)
        if not argv or "dockerd" not in Path(argv[0]).name or self.endpoint not in argv:
            return None  # pid reused by someone else: never touch it
        return pid

    def is_running(self) -> bool:
        return self._our_pid() is not None

    def answers(self, timeout: float = 2.0) -> bool:
        return unix_ping(self.socket_path, timeout)

    # ---- lifecycle
    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT) -> None:
        """Start dockerd with this engine's directories (again, after stop() or kill())."""
        with self._lock:
            if self.is_running():
                raise EngineError(f"engine {self.name} is already running (pid {self.pid})")
            cmd = [
                "nsenter", f"--net=/run/netns/{self.netns}",  # `ip netns exec` would hide the cgroup mounts
                "dockerd",
                "-H", self.endpoint,
                "-H", self.tcp_endpoint, "--tls=false",  # without --tls=false: a 16 s startup delay
                "--data-root", str(self.directory / "data"),
                "--exec-root", str(self.directory / "exec"),
                "--pidfile", str(self.pidfile),
            ]  # fmt: skip
            self._clear_stale_containerd_pidfile()
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
            with open(self.logfile, "ab") as log:
                log.write(f"---- {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env=env,
                )
            _register(self)
        if wait:
            self.wait_ready(timeout)

    def _clear_stale_containerd_pidfile(self) -> None:
        """After a crash, dockerd trusts exec/containerd/containerd.pid if `kill -0` succeeds on it, which it
        does for an unreaped zombie (here PID 1 reaps orphans late): dockerd then waits for a dead containerd
        and fails with "timeout waiting for containerd to start". Remove the pidfile unless it names a live
        containerd of this engine."""
        pidfile = self.directory / "exec" / "containerd" / "containerd.pid"
        pid = _read_int(pidfile)
        if pid is None:
            return
        argv = _cmdline(pid) if _alive(pid) else []
        if not (argv and "containerd" in Path(argv[0]).name and any(str(self.directory) in a for a in argv)):
            pidfile.unlink(missing_ok=True)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the engine answers ping; raise EngineError with the log tail if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers(timeout=2.0):
                return
            if self._proc is not None and self._proc.poll() is not None:
                raise EngineError(
                    f"dockerd for engine {self.name} exited with status {self._proc.returncode} before "
                    f"answering; log {self.logfile}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise EngineError(
            f"engine {self.name} did not answer ping at {self.endpoint} within {timeout:.0f} s; "
            f"log {self.logfile}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM dockerd by its recorded pid, SIGKILL after timeout; then clear orphans and stale mounts."""
        with self._lock:
            pid = self._our_pid()
            if pid is not None:
                _signal(pid, signal.SIGTERM)
                if not self._wait_exit(pid, timeout):
                    _signal(pid, signal.SIGKILL)
                    if not self._wait_exit(pid, 10):
                        raise EngineError(f"dockerd pid {pid} of engine {self.name} survives SIGKILL")
            self._kill_orphan_containers()
            _unmount_all(self.directory)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL dockerd (a crash): containers keep running as orphans, pidfile and socket stay."""
        with self._lock:
            pid = self._our_pid()
            if pid is None:
                raise EngineError(f"engine {self.name} is not running")
            _signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10):
                raise EngineError(f"dockerd pid {pid} of engine {self.name} survives SIGKILL")

    def destroy(self) -> None:
        """Stop the engine, delete its network namespace and directory. Safe to call twice."""
        with self._lock:
            if self.is_running():
                with contextlib.suppress(Exception):
                    self._remove_all_containers()  # else each running container costs its stop timeout
            try:
                self.stop()
            finally:
                _run("ip", "netns", "del", self.netns, check=False)
                _unregister(self)
            if _mounts_under(self.directory):
                raise EngineError(f"not removing {self.directory}: mounts remain")
            shutil.rmtree(self.directory, ignore_errors=True)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=0.05)
            if not _alive(pid):
                return True
            time.sleep(0.05)
        return not _alive(pid)

    def _kill_orphan_containers(self) -> None:
        """After a crash, containers and their shims outlive dockerd: kill them by the pids they recorded.

        Each container's init pid is in its containerd bundle (init.pid); its shim is found by the unique
        `-address <this engine's exec-root>/...` on its command line.
        """
        exec_root = self.directory / "exec"
        tasks = exec_root / "containerd" / "daemon" / "io.containerd.runtime.v2.task"
        for init_pidfile in tasks.glob("*/*/init.pid"):
            cid = init_pidfile.parent.name
            pid = _read_int(init_pidfile)
            if pid is not None and _alive(pid):
                with contextlib.suppress(OSError):
                    if cid in Path(f"/proc/{pid}/cgroup").read_text():
                        _signal(pid, signal.SIGKILL)  # PID 1 of the container: its whole pid namespace dies
        containerd_sock = str(exec_root / "containerd" / "containerd.sock")
        shims = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                argv = _cmdline(int(entry.name))
                if argv and "containerd-shim" in argv[0] and containerd_sock in argv:
                    shims.append(int(entry.name))
        for pid in shims:
            _signal(pid, signal.SIGKILL)
        for pid in shims:
            self._wait_exit(pid, 5)
        for address_file in tasks.glob("*/*/address"):  # shim sockets live in the shared /run/containerd/s
            sock = address_file.read_text().strip().removeprefix("unix://")
            if sock.startswith("/run/containerd/s/"):
                with contextlib.suppress(OSError):
                    os.unlink(sock)

    # ---- clients and cleaning
    def client(self, **kwargs):
        """A docker.DockerClient for this engine (pool sized for parallel work); close it when done."""
        import docker

        options = {"base_url": self.endpoint, "max_pool_size": 32, "timeout": 120, **kwargs}
        return docker.DockerClient(**options)

    def _remove_all_containers(self) -> None:
        import docker

        with contextlib.closing(self.client()) as client:
            ids = [c["Id"] for c in client.api.containers(all=True)]

            def remove(cid: str) -> None:
                for attempt in range(3):
                    try:
                        client.api.remove_container(cid, force=True, v=True)
                        return
                    except docker.errors.NotFound:
                        return
                    except docker.errors.APIError:  # e.g. "removal already in progress"
                        if attempt == 2:
                            raise
                        time.sleep(0.2)

            errors = for_each(remove, ids, workers=8)
            if errors:
                raise errors[0]

    def reset(self) -> None:
        """Make the engine clean for the next test: running, no containers, networks (but the defaults) or
        volumes. Images stay; TEST_IMAGE is rebuilt if a test removed it."""
        with self._lock:
            if not self.is_running():
                self.stop()  # clears orphans and stale mounts left by a kill()
                self.start()
            elif not self.answers():
                self.wait_ready()
            self._remove_all_containers()
            with contextlib.closing(self.client()) as client:
                for net in client.api.networks():
                    if net["Name"] not in DEFAULT_NETWORKS:
                        client.api.remove_network(net["Id"])
                for volume in client.api.volumes().get("Volumes") or []:
                    client.api.remove_volume(volume["Name"], force=True)
                has_image = any(TEST_IMAGE in (img.get("RepoTags") or []) for img in client.api.images())
            if not has_image:
                build_image(self)


# --------------------------------------------------------------------------------------------------------------
# The test image


def build_image(engine: Engine, tag: str = TEST_IMAGE) -> None:
    """Build the busybox image into engine with scripts/build-image (no-op if the tag is present)."""
    proc = _run(str(BUILD_IMAGE_SCRIPT), engine.endpoint, tag, check=False, timeout=120)
    if proc.returncode != 0:
        raise EngineError(f"building {tag} into engine {engine.name} failed:\n{proc.stderr.strip()}")


def ensure_test_image(engines: list[Engine], tag: str = TEST_IMAGE) -> None:
    """Make tag present in every engine: build it in one that lacks it only if none has it, then copy."""
    import docker

    def has(engine: Engine) -> bool:
        with contextlib.closing(engine.client()) as client:
            try:
                client.images.get(tag)
                return True
            except docker.errors.ImageNotFound:
                return False

    present = [e for e in engines if has(e)]
    if not present:
        build_image(engines[0], tag)
        present = [engines[0]]
    missing = [e for e in engines if e not in present]
    if not missing:
        return
    with contextlib.closing(present[0].client()) as src:
        # By name: Image.save() defaults to named=False, which saves by id and loads as <none>:<none>.
        archive = b"".join(src.api.get_image(tag))

    def load(engine: Engine) -> None:
        with contextlib.closing(engine.client()) as dst:
            dst.images.load(archive)

    errors = for_each(load, missing)
    if errors:
        raise EngineError(f"loading {tag} failed: {'; '.join(map(str, errors))}")


# --------------------------------------------------------------------------------------------------------------
# Runs, registry and cleanup at exit

_LIVE: dict[Path, Engine] = {}
_LIVE_LOCK = threading.Lock()
_RUN_DIR: Path | None = None
_NEXT_INDEX = 0
_CLEANUP_INSTALLED = False


def _register(engine: Engine) -> None:
    global _CLEANUP_INSTALLED
    with _LIVE_LOCK:
        _LIVE[engine.directory] = engine
        if not _CLEANUP_INSTALLED:
            atexit.register(destroy_all)
            _install_signal_cleanup()
            _CLEANUP_INSTALLED = True


def _unregister(engine: Engine) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(engine.directory, None)


def _install_signal_cleanup() -> None:
    """On SIGTERM/SIGHUP (which skip atexit), destroy our engines, then die of the signal as before."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        destroy_all()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, handler)


def _owner_stamp() -> str:
    stat = _proc_stat(os.getpid())
    return f"{os.getpid()} {stat[2] if stat else 0}"


def run_dir() -> Path:
    """This process's run directory /tmp/rce-<token> (created on first use)."""
    global _RUN_DIR
    with _LIVE_LOCK:
        if _RUN_DIR is None:
            RUN_ROOT.mkdir(parents=True, exist_ok=True)
            for _ in range(100):
                token = secrets.token_hex(3)
                candidate = RUN_ROOT / f"{RUN_PREFIX}{token}"
                if any(Path("/run/netns").glob(f"{NETNS_PREFIX}{token}*")):
                    continue
                try:
                    candidate.mkdir(mode=0o755)
                except FileExistsError:
                    continue
                (candidate / "owner").write_text(_owner_stamp() + "\n")
                _RUN_DIR = candidate
                break
            else:
                raise EngineError(f"cannot create a run directory under {RUN_ROOT}")
        return _RUN_DIR


def _next_indices(n: int) -> list[int]:
    global _NEXT_INDEX
    with _LIVE_LOCK:
        first, _NEXT_INDEX = _NEXT_INDEX, _NEXT_INDEX + n
    return list(range(first, first + n))


def start_engines(n: int, timeout: float = READY_TIMEOUT) -> list[Engine]:
    """Start n engines concurrently, wait until each answers ping, and load TEST_IMAGE into all of them.

    On any failure every engine of this call is destroyed and EngineError is raised.
    """
    if n < 1:
        return []
    reason = engines_unavailable_reason()
    if reason:
        raise EngineError(f"cannot start Docker engines here: {reason}")
    base = run_dir()
    engines: list[Engine] = []
    try:
        for index in _next_indices(n):
            engines.append(Engine.create(base, index))
        for engine in engines:
            engine.start(wait=False)
        errors = for_each(lambda e: e.wait_ready(timeout), engines)
        if errors:
            raise EngineError("\n\n".join(str(err) for err in errors))
        ensure_test_image(engines)
    except BaseException:
        for_each(Engine.destroy, engines)
        raise
    return engines


def destroy_engines(engines: list[Engine]) -> None:
    """Destroy engines concurrently; raise EngineError naming every failure."""
    errors = for_each(Engine.destroy, list(engines))
    if errors:
        raise EngineError("; ".join(str(err) for err in errors))


def destroy_all() -> None:
    """Destroy every engine this process started and remove the run directory (atexit backstop)."""
    with _LIVE_LOCK:
        engines = list(_LIVE.values())
    errors = for_each(Engine.destroy, engines)
    for err in errors:
        print(f"engines: cleanup failed: {err}", file=sys.stderr)
    if _RUN_DIR is not None and _RUN_DIR.exists() and not any(p.is_dir() for p in _RUN_DIR.iterdir()):
        shutil.rmtree(_RUN_DIR, ignore_errors=True)


class EnginePool:
    """Engines started on demand and shared by many users (a test session): get(n) returns the first n,
    starting the missing ones concurrently. A start failure is remembered and raised again at once."""

    def __init__(self) -> None:
        self.engines: list[Engine] = []
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    def get(self, n: int) -> list[Engine]:
        with self._lock:
            if self._failure is not None:
                raise EngineError(f"engines failed to start earlier in this run: {self._failure}")
            if len(self.engines) < n:
                try:
                    self.engines += start_engines(n - len(self.engines))
                except Exception as exc:
                    self._failure = exc
                    raise
            return self.engines[:n]

    def close(self) -> None:
        with self._lock:
            engines, self.engines = self.engines, []
        destroy_engines(engines)


# --------------------------------------------------------------------------------------------------------------
# Availability


_UNAVAILABLE: list[str | None] = []


def engines_unavailable_reason() -> str | None:
    """Why private engines cannot be started on this machine, or None if they can (result is cached)."""
    if not _UNAVAILABLE:
        _UNAVAILABLE.append(_probe())
    return _UNAVAILABLE[0]


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"private Docker engines need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "not running as root (private engines need network namespaces and dockerd)"
    missing = [tool for tool in ("dockerd", "docker", "nsenter", "ip", "umount") if not shutil.which(tool)]
    if missing:
        hint = " (apt-get install docker.io, or: make deps)" if "dockerd" in missing else ""
        return f"missing command(s): {', '.join(missing)}{hint}"
    if not os.access(BUSYBOX, os.X_OK):
        return (
            f"{BUSYBOX} is missing, needed for the test image (apt-get install busybox-static, or: make deps)"
        )
    if not os.access(BUILD_IMAGE_SCRIPT, os.X_OK):
        return f"{BUILD_IMAGE_SCRIPT} is missing or not executable"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the docker Python package is not installed (pip install -e .[test])"
    probe = f"{NETNS_PREFIX}probe{os.getpid()}"[:15]
    try:
        _run("ip", "netns", "add", probe)
    except EngineError as exc:
        return f"cannot create a network namespace: {exc}"
    finally:
        _run("ip", "netns", "del", probe, check=False)
    return None


# --------------------------------------------------------------------------------------------------------------
# Script mode, for debugging


def _run_dirs() -> list[Path]:
    return sorted(p for p in RUN_ROOT.glob(f"{RUN_PREFIX}*") if p.is_dir() and (p / "owner").exists())


def _owner_alive(directory: Path) -> bool:
    stamp = (directory / "owner").read_text().split()
    if stamp == ["detached"]:
        return True
    pid, start = int(stamp[0]), int(stamp[1])
    stat = _proc_stat(pid)
    return stat is not None and stat[2] == start and stat[0] not in ("Z", "X")


def _destroy_run_dir(directory: Path) -> None:
    engines = [Engine.load(p.parent) for p in directory.glob("e*/engine.json")]
    destroy_engines(engines)
    shutil.rmtree(directory, ignore_errors=True)
    print(f"destroyed {directory} ({len(engines)} engine(s))")


def main(argv: list[str]) -> int:
    usage = (
        "usage: python tests/engines.py start N     start N engines and leave them running (detached)\n"
        "       python tests/engines.py list        list run directories and their engines\n"
        "       python tests/engines.py stop DIR... destroy the given run directories (as printed by start)\n"
        "       python tests/engines.py gc          destroy runs whose owning process is gone"
    )
    if not argv or argv[0] not in ("start", "list", "stop", "gc"):
        print(usage, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    try:
        if command == "start":
            count = int(args[0]) if args else 1
            began = time.monotonic()
            engines = start_engines(count)
            (run_dir() / "owner").write_text("detached\n")
            for engine in engines:
                _unregister(engine)  # keep running after this script exits
            print(f"started {count} engine(s) in {time.monotonic() - began:.1f} s in {run_dir()}")
            for engine in engines:
                print(
                    f"  {engine.name}: DOCKER_HOST={engine.endpoint}  {engine.tcp_endpoint}  "
                    f"address={engine.address}  pid={engine.pid}"
                )
            print(f"stop with: python {sys.argv[0]} stop {run_dir()}")
        elif command == "list":
            for directory in _run_dirs():
                owner = "owner alive" if _owner_alive(directory) else "STALE (owner gone)"
                print(f"{directory}  [{(directory / 'owner').read_text().strip()}, {owner}]")
                for path in sorted(directory.glob("e*/engine.json")):
                    engine = Engine.load(path.parent)
                    state = "running" if engine.is_running() else "stopped"
                    print(f"  {engine.name}: {engine.endpoint}  address={engine.address}  {state}")
        elif command == "stop":
            if not args:  # never guess: other people's detached runs may be listed too
                print("stop needs the run directories printed by `start` (see `list`)", file=sys.stderr)
                return 2
            for directory in map(Path, args):
                _destroy_run_dir(directory.resolve())
        elif command == "gc":
            for directory in _run_dirs():
                if not _owner_alive(directory):
                    _destroy_run_dir(directory)
    except EngineError as exc:
        print(f"engines: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
