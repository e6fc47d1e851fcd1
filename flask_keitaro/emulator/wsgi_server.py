"""A threaded WSGI server that keeps HTTP/1.1 connections alive, for the emulator.

werkzeug's development server closes every connection, so each Click API call
from a pooled client pays a new TCP handshake. This one keeps a connection open
for as long as the client wants it (up to :attr:`KeepAliveHandler.timeout` idle
seconds), one thread per connection. Each request body is read whole, up to a
bound, before the app runs, so the next request on the connection always starts
where it should; the answer is buffered and sent with its ``Content-Length``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import sys
import threading
from collections.abc import Iterable
from http import HTTPStatus
from http.server import HTTPServer
from traceback import format_exc
from typing import IO, Any, cast

from werkzeug.serving import DechunkedInput, WSGIRequestHandler

log = logging.getLogger("flask_keitaro.emulator")

#: Headers the server itself sets on every answer.
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


class KeepAliveHandler(WSGIRequestHandler):
    """Runs the server's WSGI app for each request of a kept-alive connection."""

    protocol_version = "HTTP/1.1"
    #: Seconds a connection may sit idle (or a client take to send a request) before it closes.
    timeout = 30
    # Buffered writes: the status line, headers and body leave in one packet.
    wbufsize = -1

    @property
    def _server(self) -> KeepAliveWSGIServer:
        return cast(KeepAliveWSGIServer, self.server)

    def setup(self) -> None:
        super().setup()
        # A small answer must not wait for the client's delayed ACK (Nagle's algorithm).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_expect_100(self) -> bool:
        # http.server answers "100 Continue" while parsing; writes are buffered here.
        answered = super().handle_expect_100()
        self.wfile.flush()
        return answered

    def log_error(self, format: str, *args: Any) -> None:
        # An idle keep-alive connection timing out is routine, not an error.
        if format.startswith("Request timed out"):
            log.debug("%s idle connection closed", self.address_string())
        else:
            super().log_error(format, *args)

    def run_wsgi(self) -> None:
        """Read the body, run the app, send its answer with a ``Content-Length``."""
        body = self._read_body()
        if body is None:
            return
        environ = self.make_environ()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        status, headers, chunks = self._call_app(environ)
        code_text, _, reason = status.partition(" ")
        code = int(code_text)
        self.send_response(code, reason)
        length = None
        for name, value in headers:
            if name.lower() == "content-length":
                length = value
            elif name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        data = b"".join(chunks)
        if self.command == "HEAD" or code in (204, 304) or code < 200:
            # No body; HEAD keeps the length the app gave for the GET it stands for.
            if self.command == "HEAD" and length is not None:
                self.send_header("Content-Length", length)
            data = b""
        else:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _read_body(self) -> bytes | None:
        """The whole request body, or ``None`` after answering an error (and closing)."""
        limit = self._server.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunked = DechunkedInput(cast(IO[bytes], self.rfile))
            parts: list[bytes] = []
            size = 0
            try:
                while part := chunked.read(65536):
                    size += len(part)
                    if size > limit:
                        self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                        return None
                    parts.append(part)
            except OSError:
                self._refuse(HTTPStatus.BAD_REQUEST)
                return None
            return b"".join(parts)
        text = self.headers.get("Content-Length", "0").strip() or "0"
        if not (text.isascii() and text.isdigit()):
            self._refuse(HTTPStatus.BAD_REQUEST)
            return None
        length = int(text)
        if length > limit:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) != length:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def _refuse(self, status: HTTPStatus) -> None:
        # The rest of the body is unread, so the connection cannot carry another request.
        self.close_connection = True
        body = f'{{"error": "{status.phrase}"}}'.encode()
        self.send_response(status.value, status.phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], list[bytes]]:
        answer: list[Any] = ["500 Internal Server Error", [("Content-Type", "text/plain")]]
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            # Nothing is sent before the app returns, so a later call may replace the answer.
            answer[:] = [status, headers]
            chunks.clear()
            return chunks.append

        try:
            result: Iterable[bytes] = self._server.app(environ, start_response)
            try:
                chunks.extend(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:
            # Through log_error, so a subclass that masks secrets in the log masks these too.
            self.log_error("error running the app for %r:\n%s", self.requestline, format_exc())
            self.close_connection = True
            return "500 Internal Server Error", [("Content-Type", "text/plain")], [b"error\n"]
        return answer[0], answer[1], chunks


class KeepAliveWSGIServer(HTTPServer):
    """Serves a WSGI app with :class:`KeepAliveHandler`, one daemon thread per connection.

    :meth:`server_close` also closes the connections still open and waits for their
    threads, so nothing answers from a stopped server.
    """

    # What werkzeug's handler reads of its server.
    multithread = True
    multiprocess = False
    ssl_context = None
    _server_version = "flask-keitaro-emulator"
    passthrough_errors = False

    #: Connections the kernel queues before they are accepted (socketserver's default is 5).
    request_queue_size = 128
    #: Connections served at once; more are closed at once (each holds a thread).
    max_connections = 512

    def __init__(
        self,
        host: str,
        port: int,
        app: Any,
        handler: type[KeepAliveHandler] = KeepAliveHandler,
        *,
        max_body: int = 1024 * 1024,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.app = app
        self.max_body = max_body
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__((host, port), handler)
        self.port: int = self.server_address[1]

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS; the address is enough.
        super(HTTPServer, self).server_bind()
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a daemon thread of its own."""
        with self._lock:
            if len(self._connections) >= self.max_connections:
                self.shutdown_request(request)
                return
            thread = threading.Thread(
                target=self._serve_connection, args=(request, client_address), daemon=True
            )
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._connections.pop(request, None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log an error of a connection (socketserver prints a traceback to stderr)."""
        log.error("emulator connection error", exc_info=sys.exc_info())

    def server_close(self) -> None:
        """Stop listening, close the open connections and wait for their threads."""
        super().server_close()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in connections.values():
            if thread is not threading.current_thread():
                thread.join(timeout=5)
