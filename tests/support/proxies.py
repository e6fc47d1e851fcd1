"""Outbound proxies on loopback, as a site's network may put between it and the tracker.

:class:`ForwardProxy` takes absolute-form requests (``POST http://host:port/path``), the
way a client sends plain HTTP through a proxy, and forwards each to its target.
:class:`ConnectProxy` takes ``CONNECT host:port`` and tunnels the bytes both ways, the way
a client reaches an HTTPS server through a proxy: it never sees inside the TLS. Each
records what passed through it, ``Proxy-Authorization`` included, and answers a request of
the other kind with ``405``.
"""

from __future__ import annotations

import http.client
import selectors
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Self
from urllib.parse import urlsplit

from testsupport.service import Service
from testsupport.tracker import QuietHTTPServer

# Headers that concern one connection, not the request: a proxy does not pass them on.
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "content-length")
)  # fmt: skip


@dataclass(frozen=True)
class Passed:
    """One request a proxy received: ``CONNECT`` and ``host:port``, or a method and a URL."""

    method: str
    target: str
    headers: dict[str, str]


class _Proxy(Service):
    """A threaded HTTP/1.1 proxy server on 127.0.0.1 that records every request it gets."""

    #: The one kind of request the proxy serves (``"CONNECT"``) or any other (``"forward"``).
    kind = ""

    def __init__(self) -> None:
        self.passed: list[Passed] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._serve(self)

            do_GET = do_CONNECT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.daemon = True

    @property
    def targets(self) -> list[str]:
        """What each request asked for: ``host:port`` of a tunnel, or the absolute URL."""
        with self._lock:
            return [passed.target for passed in self.passed]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        passed = Passed(handler.command, handler.path, dict(handler.headers.items()))
        with self._lock:
            self.passed.append(passed)
        if (handler.command == "CONNECT") != (self.kind == "CONNECT"):
            _refuse(handler, 405, "this proxy does not serve that kind of request")
            return
        self._pass(handler)

    def _pass(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


class ForwardProxy(_Proxy):
    """Forwards absolute-form ``http://`` requests to their target, one connection each."""

    kind = "forward"

    def _pass(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        where = urlsplit(handler.path)
        if where.scheme != "http" or where.hostname is None:
            _refuse(handler, 400, "not an absolute http:// URL")
            return
        path = where.path + (f"?{where.query}" if where.query else "")
        upstream = http.client.HTTPConnection(where.hostname, where.port or 80, timeout=10)
        try:
            upstream.putrequest(handler.command, path, skip_host=True, skip_accept_encoding=True)
            for name, value in handler.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError:
            _refuse(handler, 502, "the target could not be reached")
            return
        finally:
            upstream.close()
        handler.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


class ConnectProxy(_Proxy):
    """Opens a tunnel to the ``host:port`` of each ``CONNECT`` and passes bytes both ways."""

    kind = "CONNECT"

    def _pass(self, handler: BaseHTTPRequestHandler) -> None:
        host, _, port = handler.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            _refuse(handler, 502, "the target could not be reached")
            return
        handler.send_response(200, "Connection established")
        handler.end_headers()
        handler.close_connection = True  # what follows is the tunnel's, not HTTP
        with upstream:
            self._tunnel(handler.connection, upstream)

    def _tunnel(self, client: socket.socket, upstream: socket.socket) -> None:
        upstream.settimeout(None)
        client.settimeout(None)
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for sock in other:
                selector.register(sock, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select(timeout=0.05):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = sock.recv(65536)
                        if data:
                            other[sock].sendall(data)
                    except OSError:
                        data = b""
                    if not data:  # one side is done: so is the tunnel
                        return


def _refuse(handler: BaseHTTPRequestHandler, status: int, reason: str) -> None:
    text = reason.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(text)))
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(text)
    handler.close_connection = True
