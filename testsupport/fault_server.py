"""A scriptable fault server on loopback: raw sockets that answer slowly, partly, or not at all.

Each connection runs the same script of steps: read the request, send bytes, trickle bytes,
hang, reset. With ``tls=True`` the connection is TLS with a self-signed certificate made
at run time by the ``openssl`` command (no Python crypto package needed).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from testsupport.tracker import RawServer, read_request


class Gone(Exception):
    """The client went away: the script ends."""


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


Step = ReadRequest | Send | Trickle | Hang | Reset


def http_answer(
    body: bytes, status: str = "200 OK", content_type: str = "application/json"
) -> bytes:
    """A complete HTTP/1.1 response with a ``Content-Length``."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


class FaultServer:
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

    def start(self) -> FaultServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, conn: socket.socket) -> None:
        stopping = self._server.stopping
        try:
            if self._context is not None:
                conn.settimeout(5)
                conn = self._context.wrap_socket(conn, server_side=True)
            for step in self.steps:
                step.run(conn, stopping)
        except (Gone, OSError):
            pass  # the client gave up or refused the certificate
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
