"""A postback receiver on loopback: takes ``/<key>/postback`` like Keitaro, fails when told to."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict

from testsupport.tracker import QuietHTTPServer

#: The receiver's postback key: a secret that must never show in a log, a message or a repr.
KEY = "pbKey7Secret9Zq4"


@dataclass
class Received:
    """One postback the receiver got (recorded before it answers, or does not)."""

    method: str
    path: str
    headers: dict[str, str]
    form: MultiDict[str, str]
    remote_port: int


class PostbackReceiver:
    """A real HTTP/1.1 keep-alive server on 127.0.0.1 that records postbacks.

    Modes: ``ok()`` answers 200; ``fail(status)`` answers ``status``; ``hang()`` records a
    postback and then holds the connection without answering until :meth:`ok` is called.
    A ``subid`` starting with ``retry-`` is answered 503 the first time, whatever the mode.
    A path other than ``/<KEY>/postback`` is a 404, as a wrong key is on a tracker.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        #: Called with each postback as it arrives, before it is answered (or held).
        self.on_receive: Callable[[Received], None] | None = None
        self._status = 200
        self._hang = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                receiver._handle(self)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self.url = f"{self.base_url}/{KEY}/postback"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.daemon = True

    def start(self) -> PostbackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def ok(self) -> None:
        """Answer 200 from now on (and let go of held connections)."""
        self._status = 200
        self._hang.clear()
        self._release.set()

    def fail(self, status: int = 503) -> None:
        """Answer ``status`` from now on."""
        self._status = status

    def hang(self) -> None:
        """Record each postback and never answer it (until :meth:`ok`)."""
        self._release.clear()
        self._hang.set()

    def subids(self) -> list[str]:
        """The ``subid`` of every postback received, in order."""
        with self._lock:
            return [r.form.get("subid", "") for r in self.received]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode("utf-8")
        path, _, query = handler.path.partition("?")
        pairs = parse_qsl(body if handler.command == "POST" else query, keep_blank_values=True)
        call = Received(
            handler.command,
            path,
            dict(handler.headers.items()),
            MultiDict(pairs),
            handler.client_address[1],
        )
        subid = call.form.get("subid", "")
        with self._lock:
            self.received.append(call)
            self._seen[subid] += 1
            first_retry = subid.startswith("retry-") and self._seen[subid] == 1
        if self.on_receive is not None:
            self.on_receive(call)
        if self._hang.is_set() and not first_retry:
            self._release.wait(30)
            handler.close_connection = True
            return
        status = self._status
        if path != f"/{KEY}/postback":
            status = 404
        elif first_retry:
            status = 503
        text = b"OK" if status == 200 else b"error"
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        handler.wfile.write(text)
