"""The package's Transport Adapter: one deadline for the whole call, and no answer that can cross.

:class:`DeadlineAdapter` is a subclass of requests' :class:`~requests.adapters.HTTPAdapter`
(requests' documented extension point). Its :meth:`~DeadlineAdapter.send` holds the call's
budget — ``connect + read`` seconds from the moment it is called — and one of ``pool_size``
slots around requests' own ``send`` and the reading of the answer; everything else happens
below it, in the pool, connection and response classes the adapter installs through
urllib3's public knobs (``pool_classes_by_scheme``, ``ConnectionCls``, ``response_class``):

* name resolution runs in a thread the call waits on for at most the time left (the system
  resolver has no timeout), connecting and the TLS handshake get at most the connect
  seconds, and every read of the answer at most the time left, so a tracker that trickles
  its answer a byte at a time cannot hold a visitor past the deadline;
* the answer's head is read by :mod:`flask_keitaro.heads`: up to
  :data:`~flask_keitaro.heads.MAX_INTERIM_ANSWERS` interim answers (``102``, ``103``) are
  read past to the final one; a ``101``, a compressed answer, an answer over
  :data:`MAX_ANSWER_BYTES`, a head over http.client's bounds (100 lines, 64 KiB a line) or
  one it would take with a defect is an :exc:`~flask_keitaro.heads.InvalidAnswer`, refused
  before its body is read;
* a connection goes back to the pool only after a final ``200`` read to the end of its
  framing; any other answer closes it, and urllib3 drops a pooled connection that holds
  bytes nobody asked for before it is used again.

Because all of it is below ``HTTPAdapter.send``, a library that patches that method (the
``responses`` mock) still sees every call.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import queue
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from .heads import MAX_INTERIM_ANSWERS, InvalidAnswer, read_head

__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_INTERIM_ANSWERS",
    "WIRE_ALLOWANCE",
    "DeadlineAdapter",
    "InvalidAnswer",
    "NoFreeConnection",
]

#: The largest answer body accepted from the tracker; a larger one is an
#: :exc:`~flask_keitaro.heads.InvalidAnswer`.
MAX_ANSWER_BYTES = 16 * 1024 * 1024

#: What one answer may take on the wire beyond its body: the head, and a chunked body's
#: framing. Together with :data:`MAX_ANSWER_BYTES` it bounds what is read for any framing.
WIRE_ALLOWANCE = 1024 * 1024

#: How many name resolutions may wait on a stuck resolver at once. A resolution cannot be
#: cancelled: it holds a thread until the system resolver gives up, so their number is capped.
MAX_PENDING_RESOLUTIONS = 8

_pending_resolutions = threading.BoundedSemaphore(MAX_PENDING_RESOLUTIONS)


class NoFreeConnection(requests.exceptions.ConnectTimeout):
    """No connection to the tracker came free within the call's deadline."""


class Budget:
    """The time one call may take: at most ``connect`` s to connect, all of it by ``deadline``.

    ``by_name``: the call goes through an HTTPS proxy, whose certificate is checked against
    its name, so the connection is made by name (after the name was resolved in time once).
    """

    __slots__ = ("by_name", "connect", "deadline")

    def __init__(self, deadline: float, connect: float, by_name: bool = False) -> None:
        self.deadline = deadline
        self.connect = connect
        self.by_name = by_name

    @classmethod
    def start(cls, timeout: tuple[float, float], by_name: bool = False) -> Budget:
        """The budget of a call starting now with ``(connect, read)`` seconds."""
        return cls(time.monotonic() + timeout[0] + timeout[1], timeout[0], by_name)

    def remaining(self) -> float:
        """Seconds left; raises ``TimeoutError`` when none are."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's deadline passed")
        return left


# The budget of the call running in this thread (or task): the connection and response
# classes below read it at each step, since urllib3 hands nothing of the caller's down to them.
_budget: ContextVar[Budget] = ContextVar("flask_keitaro_call_budget")


def current_budget() -> Budget:
    """The running call's :class:`Budget`."""
    try:
        return _budget.get()
    except LookupError:
        raise RuntimeError("a deadline connection was used outside DeadlineAdapter.send") from None


def resolve(host: str, port: int, budget: Budget) -> list[str]:
    """The addresses of ``host``, in the resolver's order, within ``budget``.

    The system resolver has no timeout of its own: it runs in a daemon thread while the
    caller waits at most the time left. Raises ``TimeoutError`` or ``OSError``.
    """
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    pending = _pending_resolutions
    if not pending.acquire(timeout=budget.remaining()):
        raise TimeoutError(f"too many resolutions of {host!r} are pending")
    answer: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run() -> None:
        try:
            answer.put(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller's thread
            answer.put(exc)
        finally:
            pending.release()

    threading.Thread(target=run, name="flask-keitaro-resolve", daemon=True).start()
    try:
        found = answer.get(timeout=budget.remaining())
    except queue.Empty:
        raise TimeoutError(f"resolving {host!r} took too long") from None
    if isinstance(found, Exception):
        raise found
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every error it wraps: causes, contexts, and (as urllib3 nests them) args."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        stack += [cur.__cause__, cur.__context__, *cur.args]


def _too_large() -> InvalidAnswer:
    return InvalidAnswer(f"the tracker's answer is over {MAX_ANSWER_BYTES} bytes")


class _DeadlineReader(io.RawIOBase):
    """The socket under one answer: each read waits at most the time left, and at most
    :data:`MAX_ANSWER_BYTES` and :data:`WIRE_ALLOWANCE` are read, whatever the framing."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, budget: Budget) -> None:
        super().__init__()
        # The socket's reader (a makefile's: it keeps the socket open for this reader when
        # the connection lets go of it).
        self._raw = raw
        self._socket = sock
        self._budget = budget
        self._left = MAX_ANSWER_BYTES + WIRE_ALLOWANCE

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._socket.settimeout(self._budget.remaining())
        count = self._raw.readinto(buffer)
        if count:
            self._left -= count
            if self._left < 0:
                raise _too_large()
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class DeadlineResponse(http.client.HTTPResponse):
    """``http.client``'s response, reading through the call's deadline, refusing what must not
    be taken (see the module's text)."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        #: The request's method (a HEAD's answer has no body).
        self.request_method = method
        # The base class's buffered reader, never read yet, gives up its socket reader to ours.
        raw = self.fp.detach()
        self.fp = io.BufferedReader(_DeadlineReader(raw, sock, current_budget()))

    def begin(self) -> None:
        # What http.client's begin sets, from the head read by flask_keitaro.heads (the same
        # rules, without the email package's parser; interim answers read past).
        if self.headers is not None:
            return
        head = read_head(self.fp, self.request_method)
        self.code = self.status = head.status
        self.reason = head.reason
        self.version = head.version
        self.headers = self.msg = head.message
        self.chunked = head.chunked
        if head.chunked:
            self.chunk_left = None
        self.length = head.length
        self.will_close = head.will_close
        encoding = head.fields.get("content-encoding", "identity").strip().lower()
        if encoding != "identity":
            raise InvalidAnswer("the tracker's answer is encoded, though identity was asked for")
        if head.length is not None and head.length > MAX_ANSWER_BYTES:
            raise _too_large()


class DeadlineConnection(HTTPConnection):
    """A urllib3 connection whose name resolution and connecting draw on the call's budget.

    The name is resolved within the budget; then each address is connected to in turn (the
    connection's ``host`` is the address meanwhile, and TLS checks the name), each within the
    connect seconds. When every address refused, they are tried once more: the call never
    reached the tracker.
    """

    response_class = DeadlineResponse

    def connect(self) -> None:
        budget = current_budget()
        name = self.host
        try:
            addresses = resolve(name, self.port, budget)
        except TimeoutError as exc:
            raise ConnectTimeoutError(self, f"resolving {name} took too long") from exc
        except socket.gaierror as exc:
            raise NameResolutionError(name, self, exc) from exc
        except (OSError, UnicodeError) as exc:
            raise NewConnectionError(self, f"cannot resolve {name} ({exc})") from exc
        if budget.by_name:
            addresses = [name]
        # TLS to the tracker checks its name, not the address; through a tunnel urllib3 takes
        # the tunnel's host.
        tls = self if isinstance(self, HTTPSConnection) else None
        tls_name = tls is not None and tls.server_hostname is None and not self.proxy_is_tunneling
        if tls is not None and tls_name:
            tls.server_hostname = name
        error: ConnectTimeoutError | None = None
        try:
            for _attempt in (1, 2):
                refused = True
                for address in addresses:
                    try:
                        self.timeout = min(budget.connect, budget.remaining())
                    except TimeoutError as exc:
                        raise ConnectTimeoutError(self, f"connecting to {name} timed out") from exc
                    self.host = address
                    try:
                        super().connect()
                    except ConnectTimeoutError as exc:  # NewConnectionError is one too
                        error = exc
                        refused = refused and isinstance(exc.__cause__, ConnectionRefusedError)
                        continue
                    finally:
                        self.host = name
                    _send_within(self, name, budget)
                    return
                if not refused:
                    break
        finally:
            if tls is not None and tls_name:
                tls.server_hostname = None
        assert error is not None
        raise error


def _send_within(conn: HTTPConnection, name: str, budget: Budget) -> None:
    """Give sending on the new connection ``conn`` what is left of ``budget``."""
    try:
        assert conn.sock is not None
        conn.sock.settimeout(budget.remaining())
    except TimeoutError as exc:
        conn.close()
        raise ConnectTimeoutError(conn, f"connecting to {name} timed out") from exc


class DeadlineHTTPSConnection(DeadlineConnection, HTTPSConnection):
    """The HTTPS variant of :class:`DeadlineConnection`."""


class DeadlinePool(HTTPConnectionPool):
    """urllib3's pool, making :class:`DeadlineConnection` connections."""

    ConnectionCls = DeadlineConnection


class DeadlineHTTPSPool(HTTPSConnectionPool):
    """urllib3's HTTPS pool, making :class:`DeadlineHTTPSConnection` connections."""

    ConnectionCls = DeadlineHTTPSConnection


#: The pools the adapter's pool and proxy managers make.
POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": DeadlinePool,
    "https": DeadlineHTTPSPool,
}

# Adapters a forked child inherited while a call was running in the parent: their pools'
# locks may be held for good, so they are kept (never closed, never collected) and left alone.
_ORPHANS: list[HTTPAdapter] = []


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with one deadline for the whole call and ``pool_size`` slots.

    ``timeout`` is ``(connect, read)``: the call takes at most their sum, waiting for a slot
    included. The answer of a ``200`` is read before :meth:`send` returns, into urllib3's
    ``response.raw.data`` (requests' ``content`` is not filled: one read instead of a stream of
    10 KiB pieces); another status is not read, and its connection is closed. No cookie of
    the answer is kept.
    """

    def __init__(self, pool_size: int) -> None:
        #: One per call on the wire: taken with the time left, so none waits past its deadline.
        self.slots = threading.BoundedSemaphore(pool_size)
        #: Calls inside :meth:`send` (read in a forked child, see :meth:`forget`).
        self.in_flight = 0
        self.in_flight_lock = threading.Lock()
        #: The pool of the last URL and settings called (see get_connection_with_tls_context).
        self.pools: dict[tuple[Any, ...], weakref.ref[ConnectionPool]] = {}
        super().__init__(
            pool_connections=1, pool_maxsize=pool_size, max_retries=0, pool_block=False
        )

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(POOL_CLASSES)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(POOL_CLASSES)
        return manager

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> ConnectionPool:
        # requests looks the pool up anew for every call (parsing the URL and the proxies
        # each time); the package's calls go to one URL with the same settings, so the pool
        # found is remembered, while its pool manager keeps it (a weak reference: when the
        # manager lets go of it, as close() does, it is closed and collected as usual).
        key = (request.url, verify, cert, tuple(proxies.items()) if proxies else ())
        kept = self.pools.get(key)
        pool = None if kept is None else kept()
        if isinstance(pool, HTTPConnectionPool) and pool.pool is not None:
            return pool
        found = super().get_connection_with_tls_context(request, verify, proxies, cert)
        self.pools = {key: weakref.ref(found)}
        return found

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        # requests' own, but that the answer's cookies are not taken into a jar (the package
        # never keeps nor forwards a Set-Cookie of the tracker's HTTP answer), and that no
        # text encoding is looked for (the package reads the answer's bytes).
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = str(req.url)
        response.request = req
        response.connection = self
        return response

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` within ``timeout``'s ``connect + read`` seconds, all of it.

        A slot is taken with the time left, then requests' own ``send`` runs with the
        deadline below it; a ``200``'s answer is read before the slot is given back.
        ``stream`` is not looked at. Raises what requests' adapter raises,
        :exc:`NoFreeConnection` when no slot came free in time, and
        :exc:`~flask_keitaro.heads.InvalidAnswer`.
        """
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        by_name = False
        if proxies:
            proxy = select_proxy(str(request.url), proxies)
            by_name = proxy is not None and proxy.lower().startswith("https:")
        budget = Budget.start((float(connect), float(read)), by_name)
        token = _budget.set(budget)
        with self.in_flight_lock:
            self.in_flight += 1
        try:
            if not self.slots.acquire(timeout=max(budget.deadline - time.monotonic(), 0.0)):
                raise NoFreeConnection("no connection to the tracker came free in time")
            try:
                left = budget.remaining()
                response = super().send(
                    request,
                    stream=True,
                    timeout=(min(budget.connect, left), left),
                    verify=verify,
                    cert=cert,
                    proxies=proxies,
                )
                _settle(response)
                return response
            finally:
                self.slots.release()
        finally:
            with self.in_flight_lock:
                self.in_flight -= 1
            _budget.reset(token)

    def forget(self) -> None:
        """In a forked child: let go of the parent's pools.

        Their sockets are the parent's too; this process's copies are closed, unless a call
        was running at the fork (then a lock of the pools may be held for good, and they are
        left alone).
        """
        if self.in_flight:
            _ORPHANS.append(self)
        else:
            self.close()


def _settle(response: requests.Response) -> None:
    """Read a ``200`` answer whole into ``response.raw.data`` (its connection goes back to the
    pool); close any other."""
    if response.status_code != 200:
        response.close()  # a 204 or an error is no Click API answer: nothing of it is kept
        return
    try:
        # One read to the end of the framing, kept by urllib3 (``data``): requests' own
        # ``content`` would read it in 10 KiB pieces through two generators.
        content = response.raw.data
    except BaseException:
        response.close()
        raise
    if len(content) > MAX_ANSWER_BYTES:  # a chunked answer within the wire allowance
        response.close()
        raise _too_large()


def after_fork_in_child() -> None:
    """Remake the resolver's limit: the parent's resolutions are not this process's."""
    global _pending_resolutions
    _pending_resolutions = threading.BoundedSemaphore(MAX_PENDING_RESOLUTIONS)
