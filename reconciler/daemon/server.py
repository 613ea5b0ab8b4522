"""The daemon's HTTP status listener: `/healthz`, `/readyz`, `/metrics` and `/status`.

Owns parsing the `--listen HOST:PORT` value (IPv6 in brackets, `[::1]:9400`), binding the listener with
a one-line error when that fails, and serving the four read-only endpoints from a daemon thread. What
the endpoints say comes from the callables and the `metrics.Metrics` it is given: it must not read
daemon state itself, change anything, or write to stderr (requests are logged at debug level).
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import logging
import re
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Callable

from reconciler.daemon import metrics as M

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9400"
REQUEST_TIMEOUT = 10.0  # seconds a client may take to send its request before the connection is dropped
SHUTDOWN_POLL = 0.1  # seconds between the serving loop's checks for stop(): how long stop() can wait
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"

_LISTEN = re.compile(r"^(?:\[(?P<v6>[^\[\]]*)\]|(?P<host>[^\[\]:]*)):(?P<port>[^:\[\]]*)$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_EXAMPLE = "expected HOST:PORT, e.g. 127.0.0.1:9400 or [::1]:9400"

Ready = Callable[[], bool | tuple[bool, str]]


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) to (host, port); a ValueError says what is wrong with it."""
    where = f"listen address {listen!r}"
    m = _LISTEN.match(listen.strip()) if isinstance(listen, str) else None
    if not m:
        if isinstance(listen, str) and "://" in listen:
            raise ValueError(f"{where}: give HOST:PORT without a scheme, e.g. 127.0.0.1:9400")
        if isinstance(listen, str) and listen.count(":") > 1 and "[" not in listen:
            raise ValueError(f"{where}: put an IPv6 address in brackets, e.g. [::1]:9400")
        raise ValueError(f"{where}: {_EXAMPLE}")
    port_text = m.group("port")
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{where}: port {port_text!r} is not a number ({_EXAMPLE})")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{where}: port {port} is out of range 0-65535")
    if m.group("v6") is not None:
        try:
            return str(ipaddress.IPv6Address(m.group("v6"))), port
        except ValueError:
            raise ValueError(f"{where}: {m.group('v6')!r} is not an IPv6 address") from None
    host = m.group("host")
    if not host:
        raise ValueError(f"{where}: missing host (use 0.0.0.0 to listen on every interface)")
    if re.fullmatch(r"[0-9.]+", host):
        try:
            return str(ipaddress.IPv4Address(host)), port
        except ValueError:
            raise ValueError(f"{where}: {host!r} is not an IPv4 address") from None
    if not _HOSTNAME.match(host):
        raise ValueError(f"{where}: {host!r} is not a host name or IP address")
    return host, port


def _format(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The address family to bind with and the address to bind to (host names are resolved here)."""
    try:
        return socket.AF_INET, str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        return socket.AF_INET6, str(ipaddress.IPv6Address(host))
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, app: StatusServer):
        self.address_family = family  # read by TCPServer.__init__ when it creates the socket
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also resolves its own fully qualified name, a DNS lookup that can hang
        # on a host without network; the name is only used in CGI environments.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("status listener: error serving %s", client_address, exc_info=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "reconciler"
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            status, body, content_type = self.server.app.respond(path)
        except Exception as e:  # a failing callback must not take the listener down
            log.exception("status listener: %s failed", path)
            status, body, content_type = 500, f"internal error: {type(e).__name__}: {e}\n".encode(), TEXT
        self._send(status, body, content_type)

    def _not_allowed(self) -> None:
        self._send(405, b"method not allowed\n", TEXT, {"Allow": "GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("status listener: %s " + format, self.address_string(), *args)


class StatusServer:
    """The HTTP status listener on `listen`, served from a daemon thread between `start()` and `stop()`.

    `ready()` returns a bool, or (bool, reason) to say why the daemon is not ready in the 503 body.
    `status()` returns a JSON-able dict; values JSON cannot represent are written with `str()`.
    """

    def __init__(self, listen: str, status: Callable[[], dict], ready: Ready, metrics: M.Metrics):
        self.host, self._requested_port = parse_listen(listen)
        self.listen = _format(self.host, self._requested_port)
        self._status = status
        self._ready = ready
        self._metrics = metrics
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Binds and starts serving; a ValueError says why the address cannot be listened on."""
        if self._httpd is not None:
            raise RuntimeError(f"status listener on {self.listen} is already started")
        try:
            family, address = _family(self.host, self._requested_port)
            httpd = _HTTPServer((address, self._requested_port), family, self)
        except socket.gaierror as e:
            raise ValueError(f"cannot listen on {self.listen}: cannot resolve host {self.host} ({e.strerror})") from None
        except OSError as e:
            reason = (e.strerror or str(e)).lower()
            raise ValueError(f"cannot listen on {self.listen}: {reason}") from None
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL}, name="reconciler-status", daemon=True
        )
        self._thread.start()
        log.debug("status listener on %s", self.url)

    def stop(self) -> None:
        """Stops serving, closes the socket and waits for the serving thread; does nothing if not started."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> StatusServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the one the system chose when listening on port 0)."""
        if self._httpd is None:
            raise RuntimeError(f"status listener on {self.listen} is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{_format(self.host, self.port)}"

    # -- endpoints -----------------------------------------------------------------------------------

    def respond(self, path: str) -> tuple[int, bytes, str]:
        """Status code, body and content type of a GET of `path`."""
        if path == "/healthz":
            return 200, b"ok\n", TEXT
        if path == "/readyz":
            return self._readiness()
        if path == "/metrics":
            body, content_type = self._metrics.render()
            return 200, body, content_type
        if path == "/status":
            text = json.dumps(self._status(), indent=2, sort_keys=True, default=str) + "\n"
            return 200, text.encode(), JSON
        return 404, b"not found\n", TEXT

    def _readiness(self) -> tuple[int, bytes, str]:
        try:
            answer = self._ready()
        except Exception as e:
            log.debug("readiness check failed", exc_info=True)
            answer = (False, f"readiness check failed: {type(e).__name__}: {e}")
        ok, reason = answer if isinstance(answer, tuple) else (answer, "")
        if ok:
            return 200, b"ok\n", TEXT
        line = " ".join(str(reason).split())  # one line, whatever the callback returned
        return 503, (f"not ready: {line}\n" if line else "not ready\n").encode(), TEXT
