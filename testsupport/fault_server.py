"""A scriptable fault server on loopback: raw sockets that answer slowly, partly, or not at all.

Each connection runs the same script of steps: read the request, send bytes, trickle bytes,
pause, flood, hang, reset; answer each request on a kept-alive connection with interim
answers, late or unasked bytes around the visit's own answer. With ``tls=True`` the
connection is TLS with a self-signed certificate made at run time by the ``openssl`` command
(no Python crypto package needed).
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl

from testsupport.service import Service
from testsupport.tracker import RawServer, do_nothing, read_request


class Gone(Exception):
    """The client went away: the script ends."""


def http_answer(
    body: bytes, status: str = "200 OK", content_type: str = "application/json"
) -> bytes:
    """A complete HTTP/1.1 response with a ``Content-Length``."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@dataclass(frozen=True)
class ReadRequest:
    """Read one HTTP request (its head and Content-Length body)."""

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        if not read_request(conn):
            raise Gone


@dataclass(frozen=True)
class Send:
    """Send ``data`` at once."""

    data: bytes

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        try:
            conn.sendall(self.data)
        except OSError as exc:
            raise Gone from exc


@dataclass(frozen=True)
class Trickle:
    """Send ``data`` in pieces of ``size`` bytes, one every ``every`` seconds."""

    data: bytes
    every: float = 0.2
    size: int = 1

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        for start in range(0, len(self.data), self.size):
            if stopping.wait(self.every):
                raise Gone
            Send(self.data[start : start + self.size]).run(conn, stopping)


@dataclass(frozen=True)
class Pause:
    """Send nothing for ``seconds``."""

    seconds: float

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        if stopping.wait(self.seconds):
            raise Gone


@dataclass(frozen=True)
class Flood:
    """Send ``total`` bytes of ``filler``, a piece at a time, until they are sent or the
    client goes away."""

    total: int
    filler: bytes = b"x"

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        piece = self.filler * max(1024 * 1024 // len(self.filler), 1)
        sent = 0
        while sent < self.total and not stopping.is_set():
            Send(piece[: self.total - sent]).run(conn, stopping)
            sent += len(piece)


def visit_of(request: bytes) -> str:
    """The ``visit`` field of a Click API call (the visitor's query parameter, forwarded)."""
    form = dict(parse_qsl(request.partition(b"\r\n\r\n")[2].decode("latin-1")))
    return form.get("visit", "")


def own_answer(visit: str) -> bytes:
    """A Click API answer for this visit alone: its ``sub_id`` is ``own-<visit>``."""
    return http_answer(json.dumps(do_nothing(sub_id=f"own-{visit}")).encode())


#: An answer no one asked for: a click of someone else.
INTRUDER = http_answer(json.dumps(do_nothing(sub_id="intruder")).encode())


#: In an :class:`Exchange`: the visit's own answer.
OWN = own_answer


@dataclass(frozen=True)
class Exchange:
    """Read one request, then send ``parts`` in turn: bytes as they are, a callable's bytes
    for the request's ``visit`` (:data:`OWN`), a number as a pause of that many seconds."""

    parts: tuple[bytes | Callable[[str], bytes] | float, ...]

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        request = read_request(conn)
        if not request:
            raise Gone
        for part in self.parts:
            if isinstance(part, bytes):
                Send(part).run(conn, stopping)
            elif callable(part):
                Send(part(visit_of(request))).run(conn, stopping)
            else:
                Pause(part).run(conn, stopping)


@dataclass(frozen=True)
class Serve:
    """Run ``exchange`` for every request on the connection, until the client goes away."""

    exchange: Exchange

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self.exchange.run(conn, stopping)


@dataclass(frozen=True)
class Hang:
    """Keep the connection open and send nothing until the server stops."""

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        stopping.wait(60)


@dataclass(frozen=True)
class Reset:
    """Abort the connection with a TCP reset."""

    def run(self, conn: socket.socket, stopping: threading.Event) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        raise Gone


Step = ReadRequest | Send | Trickle | Pause | Flood | Exchange | Serve | Hang | Reset


class FaultServer(Service):
    """A TCP (or TLS) server on 127.0.0.1 that runs ``steps`` on every connection it accepts.

    With ``tls=True`` its certificate is for 127.0.0.1, or for ``names`` (``"DNS:x.test"``).
    """

    def __init__(self, *steps: Step, tls: bool = False, names: tuple[str, ...] = ()) -> None:
        self.steps = steps
        self._context: ssl.SSLContext | None = None
        if tls:
            cert, key = self_signed_certificate(*names)
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(cert, key)
        self._server = RawServer(self._run)
        scheme = "https" if tls else "http"
        self.url = self._server.url.replace("http://", f"{scheme}://")

    @property
    def accepted(self) -> int:
        """How many connections were accepted."""
        return self._server.accepted

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _run(self, conn: socket.socket) -> None:
        stopping = self._server.stopping
        try:
            if self._context is not None:
                conn.settimeout(5)
                conn = self._context.wrap_socket(conn, server_side=True)
            for step in self.steps:
                step.run(conn, stopping)
        except (Gone, OSError):
            pass  # the client gave up, went away or refused the certificate
        finally:
            conn.close()


_certificates: dict[tuple[str, ...], tuple[str, str]] = {}
_certificate_lock = threading.Lock()


def self_signed_certificate(*names: str) -> tuple[str, str]:
    """``(cert, key)`` paths of a self-signed certificate, made once per process and names.

    ``names`` are its subject alternative names (``"IP:127.0.0.1"``, the default, or
    ``"DNS:tracker.test"``). The certificate doubles as the CA bundle that makes a client
    trust it.
    """
    names = names or ("IP:127.0.0.1",)
    with _certificate_lock:
        if names not in _certificates:
            directory = Path(tempfile.mkdtemp(prefix="flask-keitaro-tls-"))
            atexit.register(shutil.rmtree, directory, True)
            cert, key = directory / "cert.pem", directory / "key.pem"
            common = names[0].partition(":")[2]
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", f"/CN={common}", "-addext", f"subjectAltName={','.join(names)}",
                 "-keyout", str(key), "-out", str(cert)],
                check=True,
                capture_output=True,
                timeout=60,
            )  # fmt: skip
            _certificates[names] = (str(cert), str(key))
        return _certificates[names]
