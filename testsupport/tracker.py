"""Test peers on loopback: a recording Click API tracker and a raw socket server that misbehaves."""

from __future__ import annotations

import json
import socket
import ssl
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that takes a client hanging up mid-answer in its stride.

    Tests make clients give up on purpose (an answer over the size bound, a deadline): the
    server's write then fails, and ``socketserver`` would print that traceback into the
    process's stderr, where a CLI test counts its lines. Any other error is still printed.
    """

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class QuietHTTPSServer(QuietHTTPServer):
    """:class:`QuietHTTPServer` speaking TLS with ``context``: each handshake in its own thread.

    A client that the context refuses (no client certificate, a certificate it does not
    trust) or that refuses the server's certificate is counted in ``refused``.
    """

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context
        self.refused = 0

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(5)
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except OSError:  # ssl.SSLError is one: a failed handshake
            self.refused += 1
            return
        with conn:
            conn.settimeout(None)
            super().finish_request(conn, client_address)


@dataclass
class Call:
    """One request the tracker received."""

    method: str
    path: str
    headers: dict[str, str]
    form: MultiDict[str, str]
    remote_port: int
    #: The form as it came, for reading it the way PHP does (``tests/php.py``).
    body: str = ""


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    #: More HTTP headers of the answer (a ``Set-Cookie``, say).
    headers: tuple[tuple[str, str], ...] = ()


def do_nothing(**info: Any) -> dict[str, Any]:
    """A Click API answer telling the site to show its own page."""
    base = {
        "sub_id": "abc123def4567",
        "campaign_id": 2,
        "stream_id": 11,
        "token": "OFFERTOKEN",
        "uniqueness": {"campaign": True, "stream": True, "global": False},
        "is_bot": False,
        "type": "do_nothing",
    }
    base.update(info)
    return {
        "body": None,
        "contentType": "text/html; charset=utf-8",
        "headers": [],
        "status": 200,
        "uniqueness_cookie": "UCOOKIE",
        "cookies": {},
        "cookies_ttl": 24,
        "info": base,
    }


class RecordingTracker:
    """A real HTTP/1.1 keep-alive server on 127.0.0.1 that records calls and answers scripted JSON.

    Built on ``http.server`` rather than werkzeug's development server, which closes every
    connection: connection reuse by the client must be observable here. With ``tls`` (a
    server context) it speaks HTTPS, and ``refused`` counts the failed handshakes.
    """

    def __init__(self, port: int = 0, *, tls: ssl.SSLContext | None = None) -> None:
        self.calls: list[Call] = []
        self._answers: deque[Answer] = deque()
        self.default = Answer(body=json.dumps(do_nothing()).encode())
        self._lock = threading.Lock()
        tracker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                tracker._handle(self)

            do_POST = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server: QuietHTTPServer
        if tls is None:
            self._server = QuietHTTPServer(("127.0.0.1", port), Handler)
        else:
            self._server = QuietHTTPSServer(("127.0.0.1", port), Handler, tls)
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.daemon = True

    @property
    def refused(self) -> int:
        """How many TLS handshakes failed (always 0 without TLS)."""
        return self._server.refused if isinstance(self._server, QuietHTTPSServer) else 0

    def start(self) -> RecordingTracker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(
        self,
        data: Any = None,
        *,
        status: int = 200,
        raw: bytes | None = None,
        content_type: str = "application/json",
        times: int = 1,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Queue an answer: ``data`` as JSON, or ``raw`` bytes, with more ``headers``."""
        body = raw if raw is not None else json.dumps(data).encode()
        for _ in range(times):
            self._answers.append(Answer(status, body, content_type, headers))

    def always(self, data: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Answer ``data`` (with more HTTP ``headers``) to every call from now on."""
        self.default = Answer(body=json.dumps(data).encode(), headers=headers)

    @property
    def last(self) -> Call:
        assert self.calls, "the tracker received no call"
        return self.calls[-1]

    @property
    def connections(self) -> int:
        """How many TCP connections the calls came over."""
        return len({c.remote_port for c in self.calls})

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode("latin-1")
        path, _, query = handler.path.partition("?")
        pairs = parse_qsl(body if handler.command == "POST" else query, keep_blank_values=True)
        call = Call(
            method=handler.command,
            path=path,
            headers=dict(handler.headers.items()),
            form=MultiDict(pairs),
            remote_port=handler.client_address[1],
            body=body if handler.command == "POST" else query,
        )
        with self._lock:
            self.calls.append(call)
            answer = self._answers.popleft() if self._answers else self.default
        handler.send_response(answer.status)
        handler.send_header("Content-Type", answer.content_type)
        handler.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(answer.body)


class RawServer:
    """A TCP server on 127.0.0.1 whose ``handler(conn)`` misbehaves on purpose."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.accepted = 0
        self.stopping = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> RawServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            self.handler(conn)

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join()
        for t in self._threads:
            t.join()
        self._sock.close()


def read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (head and Content-Length body) from ``conn``."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def free_port() -> int:
    """A loopback port with nothing listening on it (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
