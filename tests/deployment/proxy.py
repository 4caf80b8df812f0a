"""A loopback proxy in front of the api-server for the workers' Task Execution API calls, run as its own process
(so it never competes for the test process's GIL with the emulator). It adds a delay to every ``/variables/``
request: a slow Variable API. Standard library only.

    python proxy.py UPSTREAM_URL PORT

Control: ``POST /_proxy/delay?seconds=0.3``; ``GET /_proxy/stats`` → ``{"variable_requests": n, "delay": s}``.
"""

from __future__ import annotations

import http.client
import http.server
import json
import sys
import threading
import time
import urllib.parse
from typing import Any


class Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, port: int) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.delay = 0.0
        self.variable_requests = 0
        self.counter_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: headers and body go out in separate writes: with Nagle on, the client's delayed ACK holds the body back
    #: ~40 ms, which made every proxied Variable call 5x slower than the api-server itself (52 ms vs 10 ms)
    disable_nagle_algorithm = True
    server: Proxy

    def _control(self) -> bool:
        if not self.path.startswith("/_proxy/"):
            return False
        split = urllib.parse.urlsplit(self.path)
        if split.path == "/_proxy/delay":
            self.server.delay = float(urllib.parse.parse_qs(split.query)["seconds"][0])
        payload = json.dumps(
            {"variable_requests": self.server.variable_requests, "delay": self.server.delay}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        return True

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self._control():
            return
        if "/variables/" in self.path:
            with self.server.counter_lock:
                self.server.variable_requests += 1
            if self.server.delay:
                time.sleep(self.server.delay)  # the slow Variable API under test
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        try:
            answer, payload = self._upstream(body, headers)
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the worker's client went away (its task ended)

    def _upstream(self, body: bytes, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, bytes]:
        """One kept-alive upstream connection per client connection; a new one if it was closed."""
        up = self.server.upstream
        for fresh in (False, True):
            conn: http.client.HTTPConnection | None = getattr(self, "upstream_conn", None)
            if conn is None or fresh:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
                self.upstream_conn = conn
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                answer = conn.getresponse()
                return answer, answer.read()
            except (http.client.HTTPException, OSError):
                if fresh:
                    raise
        raise AssertionError("unreachable")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    upstream, port = sys.argv[1], int(sys.argv[2])
    Proxy(upstream, port).serve_forever()


if __name__ == "__main__":
    main()
