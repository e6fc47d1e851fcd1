"""The Click API call's HTTP transport: a pool of keep-alive connections and one hard deadline.

``requests`` builds the pool (its adapter's TLS and CA-bundle rules apply as they are), and
urllib3 makes, checks and keeps its connections. A call takes a connection from that pool and
does the exchange itself: the request, whose every byte this module chooses, goes out in one
write, and the standard library's ``http.client`` reads the answer. urllib3's request and
response layer (its per-call retry, timeout, header and decoding objects) would cost more CPU
than the rest of the click put together, for a call whose shape never changes.

The deadline is ``connect + read`` seconds after the call starts, and every step of the call
draws on it: waiting for a free pooled connection, name resolution, connecting, the TLS
handshake, sending, and each read of the status line, the headers and the body. A tracker
that trickles its answer a byte at a time cannot hold a visitor past it.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import queue
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import connection, parse_url

from ._version import __version__
from .characters import REQUEST_LINE_BREAK
from .errors import InvalidTrackerResponse, TrackerError, TrackerTimeout, TrackerUnavailable

#: The largest answer accepted from the tracker; a larger one is an ``InvalidTrackerResponse``.
MAX_ANSWER_BYTES = 16 * 1024 * 1024

#: How many name resolutions may wait on a stuck resolver at once. A resolution cannot be
#: cancelled: it holds a thread until the system resolver gives up, so their number is capped.
MAX_PENDING_RESOLUTIONS = 8

_pending_resolutions = threading.BoundedSemaphore(MAX_PENDING_RESOLUTIONS)


@dataclass(frozen=True)
class Budget:
    """The time one call may take: at most ``connect`` s to connect, all of it by ``deadline``."""

    deadline: float
    connect: float

    @classmethod
    def start(cls, timeout: tuple[float, float]) -> Budget:
        """The budget of a call starting now with ``(connect, read)`` seconds."""
        return cls(time.monotonic() + timeout[0] + timeout[1], timeout[0])

    def remaining(self) -> float:
        """Seconds left; raises ``TimeoutError`` when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's deadline passed")
        return left


# The budget of the call running in this thread (or task): the connection classes below read
# it at each step, since urllib3 hands nothing of the caller's down to them.
_budget: ContextVar[Budget] = ContextVar("flask_keitaro_call_budget")


def resolve(host: str, port: int, budget: Budget) -> list[str]:
    """The addresses of ``host``, in the resolver's order, within ``budget``.

    The system resolver has no timeout of its own: it runs in a daemon thread while the
    caller waits at most the time left. Raises ``TimeoutError`` or ``OSError``.
    """
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    if not _pending_resolutions.acquire(timeout=budget.remaining()):
        raise TimeoutError(f"too many resolutions of {host!r} are pending")
    answer: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run() -> None:
        try:
            answer.put(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller's thread
            answer.put(exc)
        finally:
            _pending_resolutions.release()

    threading.Thread(target=run, name="flask-keitaro-resolve", daemon=True).start()
    try:
        found = answer.get(timeout=budget.remaining())
    except queue.Empty:
        raise TimeoutError(f"resolving {host!r} took too long") from None
    if isinstance(found, Exception):
        raise found
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class _DeadlineReader(io.RawIOBase):
    """The socket reader under the HTTP response: each read waits at most the time left."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        super().__init__()
        # makefile keeps the socket open for this reader when the connection lets go of it.
        self._raw = sock.makefile("rb", buffering=0)
        self._socket = sock
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._socket.settimeout(self._budget.remaining())
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineSocket:
    """What ``http.client``'s response reads from: the socket, read with deadlines."""

    def __init__(self, sock: socket.socket, budget: Budget) -> None:
        self._socket = sock
        self._budget = budget

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._socket, self._budget))


class _DeadlineConnection(HTTPConnection):
    """A urllib3 connection whose every step draws on the running call's :class:`Budget`."""

    def _new_conn(self) -> socket.socket:
        budget = _budget.get()
        try:
            addresses = resolve(self._dns_host, self.port, budget)
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"resolving {self.host} took too long") from exc
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except (OSError, UnicodeError) as exc:
            raise NewConnectionError(self, f"cannot resolve {self.host} ({exc})") from exc
        error: OSError | None = None
        for address in addresses:
            try:
                timeout = min(budget.connect, budget.remaining())
                sock = connection.create_connection(
                    (address, self.port),
                    timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                error = exc
                continue
            try:
                # The TLS handshake (one total timeout in CPython) gets what is left.
                sock.settimeout(budget.remaining())
            except TimeoutError as exc:
                sock.close()
                error = exc
                break
            return sock
        if isinstance(error, TimeoutError):
            raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from error
        raise NewConnectionError(self, f"cannot connect to {self.host} ({error})") from error


class _DeadlineHTTPSConnection(_DeadlineConnection, HTTPSConnection):
    """The HTTPS variant of :class:`_DeadlineConnection`."""


#: What every call carries: who calls, and the form it sends.
_HEADERS = {
    "User-Agent": f"flask-keitaro/{__version__}",
    "Accept": "*/*",
    "Content-Type": "application/x-www-form-urlencoded",
}


class Transport:
    """POSTs url-encoded forms to one URL over ``pool_size`` keep-alive connections.

    More concurrent calls than ``pool_size`` wait for a free connection (within their
    deadline) instead of opening extra ones, so the tracker never sees more connections
    from this process than that, and no warning is logged per call. A refused connection is
    tried once more: it never reached the tracker.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: tuple[float, float],
        verify: bool | str = True,
        pool_size: int = 32,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.timeout = timeout
        self._headers = {**_HEADERS, **(headers or {})}
        self._start: list[str] = []
        self._head = b""
        self._adapter = HTTPAdapter(
            pool_connections=1, pool_maxsize=pool_size, max_retries=0, pool_block=True
        )
        self._pool: HTTPConnectionPool | None = None
        try:
            prepared = requests.Request("POST", url).prepare()
        except requests.RequestException:
            return  # no tracker URL (the extension is switched off): every call fails
        pool = cast(
            HTTPConnectionPool, self._adapter.get_connection_with_tls_context(prepared, verify)
        )
        https = url.lower().startswith("https:")
        pool.ConnectionCls = _DeadlineHTTPSConnection if https else _DeadlineConnection
        self._pool = pool
        # What every request starts with; the Content-Length, the call's own headers and the
        # body follow it.
        where = parse_url(str(prepared.url))
        host = f"{where.host}:{where.port}" if where.port else str(where.host)
        self._start = [f"POST {prepared.path_url} HTTP/1.1", f"Host: {host}"]
        self._head = self._head_with(self._headers)

    def close(self) -> None:
        """Close the pooled connections; a call after this fails as ``TrackerUnavailable``."""
        if self._pool is not None:
            self._pool.close()
        self._adapter.close()

    def post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST ``body``; return the status and the answer, or raise a ``TrackerError``."""
        pool = self._pool
        if pool is None:
            raise TrackerUnavailable("there is no tracker URL to call")
        budget = Budget.start(self.timeout)
        token = _budget.set(budget)
        try:
            request = self._request(body, headers)
            for attempt in (1, 2):
                try:
                    return self._exchange(pool, request, budget)
                except NewConnectionError as exc:
                    if attempt == 1 and isinstance(exc.__cause__, ConnectionRefusedError):
                        continue
                    raise _failure(exc) from exc
                except (HTTPError, OSError, http.client.HTTPException) as exc:
                    raise _failure(exc) from exc
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            _budget.reset(token)

    def _head_with(self, headers: Mapping[str, str]) -> bytes:
        """The request line, ``Host`` and ``headers``: how every request starts."""
        return _header_block([*self._start, *(f"{n}: {v}" for n, v in headers.items())])

    def _request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        """The whole request: the head, the length, the call's ``headers``, the body.

        A call's header of the same name as one of every call's replaces it.
        """
        head = self._head
        if not self._headers.keys().isdisjoint(headers):
            head = self._head_with({**self._headers, **headers})
            headers = {}
        lines = [f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return head + _header_block(lines) + b"\r\n" + body

    def _exchange(
        self, pool: HTTPConnectionPool, request: bytes, budget: Budget
    ) -> tuple[int, bytes]:
        """Send ``request`` on a pooled connection; return the answer's status and body.

        The connection goes back to the pool open only when the answer was read whole and
        the tracker keeps it alive; after anything else it is closed first.
        """
        # The pool's own methods: a free connection (a dropped one is reset), and back.
        conn = cast(HTTPConnection, pool._get_conn(timeout=budget.remaining()))
        reusable = False
        try:
            if conn.sock is None:
                conn.timeout = budget.connect
                try:
                    conn.connect()
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    raise SSLError(exc) from exc
            sock = cast(socket.socket, conn.sock)
            sock.settimeout(budget.remaining())  # sendall's timeout is the total for it
            sock.sendall(request)
            response = http.client.HTTPResponse(
                _DeadlineSocket(sock, budget),  # type: ignore[arg-type]
                method="POST",
            )
            try:
                response.begin()
                answer = _read_answer(response)
            finally:
                response.close()
            reusable = not response.will_close
            return response.status, answer
        finally:
            if not reusable:
                conn.close()
            pool._put_conn(conn)


def _read_answer(response: http.client.HTTPResponse) -> bytes:
    """The body of ``response``, read whole; over :data:`MAX_ANSWER_BYTES` is refused."""
    if response.length is not None:
        if response.length > MAX_ANSWER_BYTES:
            raise InvalidTrackerResponse(f"the tracker's answer is over {MAX_ANSWER_BYTES} bytes")
        return response.read()  # the length is known: one read of exactly that much
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read(65536):  # chunked, or until the tracker closes
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise InvalidTrackerResponse(f"the tracker's answer is over {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_block(lines: list[str]) -> bytes:
    """``lines`` as request header lines, each ended by CRLF (Latin-1, as HTTP/1.1 has it)."""
    for line in lines:
        if REQUEST_LINE_BREAK.search(line):
            raise ValueError("a request header line holds a line break or a NUL")
    return "".join(f"{line}\r\n" for line in lines).encode("latin-1")


def _failure(exc: BaseException) -> TrackerError:
    """The ``TrackerError`` a transport failure is reported as."""
    if isinstance(exc, EmptyPoolError):
        return TrackerTimeout("no connection to the tracker came free in time")
    if isinstance(exc, ClosedPoolError):
        return TrackerUnavailable("the client's connections are closed")
    if isinstance(exc, SSLError):
        return TrackerUnavailable("TLS handshake with the tracker failed")
    if isinstance(exc, NameResolutionError):
        return TrackerUnavailable("the tracker's host name could not be resolved")
    if isinstance(exc, NewConnectionError):
        return TrackerUnavailable("the tracker could not be reached")
    if isinstance(exc, Urllib3Timeout | TimeoutError) or _caused_by(exc, TimeoutError):
        return TrackerTimeout("the tracker did not answer in time")
    return TrackerUnavailable("the tracker's answer was cut off")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or anything it wraps (urllib3 nests errors in ``args``) is a ``kind``."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, kind):
            return True
        stack += [cur.__cause__, cur.__context__, *cur.args]
    return False
