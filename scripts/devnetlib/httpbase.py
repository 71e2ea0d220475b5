"""Shared HTTP plumbing: threaded HTTP/1.1 keep-alive servers on 127.0.0.1.

TCP_NODELAY matters: BaseHTTPRequestHandler writes headers and body in two
writes, and with Nagle + delayed ACK every reply stalls ~40 ms.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("devnet.http")

MAX_BODY = 40 << 20


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, port: int, handler_class, app):
        self.app = app
        # Connections accepted so far (next() on a count is atomic under the GIL): clients
        # that keep connections alive open few.
        self._accepted = itertools.count()
        self.connections = 0
        super().__init__(("127.0.0.1", port), handler_class)

    def process_request(self, request, client_address):
        self.connections = next(self._accepted) + 1
        super().process_request(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self, name: str) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        thread.start()
        return thread


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "devnet"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet; debug logging only
        log.debug("%s %s", self.address_string(), fmt % args)

    def read_body(self) -> bytes | None:
        """Request body (Content-Length or chunked); None if too large."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def read_body_prefix(self, limit: int, drain: int = MAX_BODY * 2) -> tuple[bytes, bool]:
        """(the first `limit` bytes of the body, whether there was more).
        The rest is read and dropped (up to `drain` bytes; past that the
        connection is closed unread), so the client can send it all and read
        the answer."""
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if not chunked:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, limit)) if length else b""
            rest = max(0, length - limit)
            if rest > drain:
                self.close_connection = True
                return body, True
            while rest > 0:
                got = self.rfile.read(min(rest, 1 << 20))
                if not got:
                    break
                rest -= len(got)
            return body, length > limit
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                body = b"".join(chunks)
                return body[:limit], len(body) > limit
            total += size
            data = self.rfile.read(size)
            if total <= limit + drain:
                chunks.append(data)
            else:
                self.close_connection = True
                return b"".join(chunks)[:limit], True
            self.rfile.readline()

    def send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers: dict | None = None):
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            # the client gave up (e.g. during a stall fault)
            self.close_connection = True
