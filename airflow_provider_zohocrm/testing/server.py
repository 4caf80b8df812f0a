"""HTTP front of the emulator: a real ``ThreadingHTTPServer`` so clients are tested over real sockets.

It only translates HTTP to :meth:`EmulatorBackend.handle` and back; every Zoho rule lives in the backend.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .backend import EmulatorBackend


class _Server(ThreadingHTTPServer):
    """Threading server that remembers open connections so ``stop()`` can close idle keep-alive sockets."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: EmulatorBackend, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.backend = backend
        self.verbose = verbose
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client disconnects are normal in fault tests; only print tracebacks when verbose."""
        if self.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the backend, writes the reply (HTTP/1.1 keep-alive, always Content-Length)."""

    protocol_version = "HTTP/1.1"
    server_version = "ZohoCRMEmulator/1.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without NODELAY, Nagle + delayed ACK add ~40 ms per call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.sockets_lock:
                self.server.open_sockets.discard(self.connection)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header on the emulated clock (``backend.advance`` moves it), as Zoho's own clock."""
        return super().date_time_string(self.server.backend.now() if timestamp is None else timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent unless verbose: test output should show the client's logs, not ours."""
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        host = headers.get("host") or "{}:{}".format(*self.server.server_address[:2])
        reply = self.server.backend.handle(self.command, self.path, headers, body, f"http://{host}")
        if reply.reset:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                if reply.status == 204 and name.lower() == "content-type":
                    continue
                self.send_header(name, value)
            payload = b"" if reply.status == 204 else reply.body
            if reply.status != 204:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class ZohoCRMEmulator:
    """A started-on-demand Zoho accounts server + CRM API on 127.0.0.1 for tests, demos and benchmarks."""

    def __init__(
        self,
        backend: EmulatorBackend | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        verbose: bool = False,
    ) -> None:
        self.backend = backend or EmulatorBackend()
        self.host = host
        self.port = port
        self.verbose = verbose
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL (accounts server and API domain at once), e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("emulator is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> ZohoCRMEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self.backend, self.verbose)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"zohocrm-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idle keep-alive ones included)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.sockets_lock:
            sockets = list(server.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ZohoCRMEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def connection(self, conn_id: str = "zohocrm_default") -> dict[str, Any]:
        """Airflow connection dict (``zohocrm`` type) for the backend's default client.

        ``data_center`` (us) and ``api_version`` (v8) are left at the hook's defaults rather than written out:
        Airflow registers every extra value with its log masker, secret or not, and warns "Skipping masking for a
        secret as it's too short" about values of under 5 characters such as "us" or "v8".
        """
        return {
            "conn_type": "zohocrm",
            "login": self.backend.client_id,
            "password": self.backend.client_secret,
            "extra": {
                "refresh_token": self.backend.refresh_token,
                "accounts_url": self.url,
                "api_domain": self.url,
            },
        }

    def connection_env(self, conn_id: str = "zohocrm_default") -> tuple[str, str]:
        """``(AIRFLOW_CONN_<ID>, json)`` to export so Airflow finds the connection."""
        return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(self.connection(conn_id))
