"""One test per hook of the allow-list: each fails if the installed version stops calling it.

The package's deadline and answer checks live in classes it installs into requests and urllib3
through their public hooks (``tests/package/test_private_names.py`` lists them). A release
that renamed or stopped calling one would leave the package running without the guarantee
it gives; each test here shows the guarantee through the hook, against a real loopback peer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from werkzeug.local import LocalProxy

from flask_keitaro.deadline import (
    POOL_CLASSES,
    DeadlineAdapter,
    DeadlineHTTPSConnection,
    DeadlineHTTPSPool,
    DeadlinePool,
    InvalidAnswer,
)
from tests.package.test_private_names import ALLOWED_BY_NAME, ALLOWED_HOOKS
from testsupport.fault_server import (
    FaultServer,
    ReadRequest,
    Send,
    Trickle,
    http_answer,
    self_signed_certificate,
)
from testsupport.faults import OK_ANSWER
from testsupport.tracker import RawServer, RecordingTracker, free_port, read_request

NAME = "tracker.test"


def _prepared(url: str) -> requests.PreparedRequest:
    return requests.Request("POST", url, data=b"a=1").prepare()


def _send(
    adapter: DeadlineAdapter, url: str, timeout: tuple[float, float] = (1.0, 2.0), **kw: Any
) -> requests.Response:
    return adapter.send(_prepared(url), timeout=timeout, **kw)


@pytest.fixture
def adapter() -> Iterator[DeadlineAdapter]:
    made = DeadlineAdapter(2)
    yield made
    made.close()


@pytest.fixture
def tracker_name(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``tracker.test`` resolves to 127.0.0.1; every resolution is recorded with its thread."""
    real = socket.getaddrinfo
    seen: list[tuple[str, str]] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append((str(host), threading.current_thread().name))
        return real("127.0.0.1" if host == NAME else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def test_every_hook_has_its_test() -> None:
    tested = {
        name.removeprefix("test_hook_") for name in globals() if name.startswith("test_hook_")
    }
    expected = {hook.rpartition(".")[2] for hook in [*ALLOWED_HOOKS, *ALLOWED_BY_NAME]}
    assert tested == expected


def test_hook_init_poolmanager(adapter: DeadlineAdapter) -> None:
    """requests' adapter builds its pool manager through the hook: the deadline pools."""
    assert adapter.poolmanager.pool_classes_by_scheme == POOL_CLASSES


def test_hook_pool_classes_by_scheme(adapter: DeadlineAdapter) -> None:
    """urllib3's pool manager makes the pools its ``pool_classes_by_scheme`` names."""
    assert isinstance(adapter.poolmanager.connection_from_url("http://127.0.0.1:9/"), DeadlinePool)
    pool = adapter.poolmanager.connection_from_url("https://127.0.0.1:9/")
    assert isinstance(pool, DeadlineHTTPSPool)


def test_hook_proxy_manager_for(adapter: DeadlineAdapter) -> None:
    """A proxy's pool manager comes from the hook, so calls through a proxy have the deadline."""
    proxies = {"http": "http://127.0.0.1:9", "https": "http://127.0.0.1:9"}
    for url, kind in (
        ("http://tracker.test/", DeadlinePool),
        ("https://x.test/", DeadlineHTTPSPool),
    ):
        pool = adapter.get_connection_with_tls_context(_prepared(url), True, proxies)
        assert isinstance(pool, kind)
    assert list(adapter.proxy_manager) == ["http://127.0.0.1:9"]


def test_hook_get_connection_with_tls_context(adapter: DeadlineAdapter) -> None:
    """requests' send asks the hook for the pool: the one kept is the one that served."""
    tracker = RecordingTracker().start()
    try:
        for _ in range(3):
            assert _send(adapter, tracker.url + "/click_api/v3").status_code == 200
    finally:
        tracker.stop()
    (kept,) = adapter.pools.values()
    pool = kept()
    assert isinstance(pool, DeadlinePool) and pool.num_requests == 3


def test_hook_build_response(adapter: DeadlineAdapter) -> None:
    """The hook builds the response: the tracker's Set-Cookie is not taken into a jar."""
    answer = http_answer(b"{}").replace(b"\r\n\r\n", b"\r\nSet-Cookie: visitor=A; Path=/\r\n\r\n")
    with FaultServer(ReadRequest(), Send(answer)) as server:
        response = _send(adapter, server.url)
    assert response.headers["Set-Cookie"] == "visitor=A; Path=/"
    assert len(response.cookies) == 0


def test_hook_send() -> None:
    """requests calls the adapter's ``send``: mounted on a Session, the whole call has the
    deadline, though each byte of a trickled answer comes well within the read timeout."""
    session = requests.Session()
    session.mount("http://", DeadlineAdapter(1))
    with FaultServer(ReadRequest(), Trickle(OK_ANSWER, every=0.05)) as server:
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            session.post(server.url, data=b"a=1", timeout=(0.2, 0.3))
        took = time.monotonic() - started
    session.close()
    assert took < 3.0  # the trickle alone takes over 10 s


def test_hook_ConnectionCls(adapter: DeadlineAdapter, tracker_name: Any) -> None:
    """The pools make the package's connections: a stuck resolver holds no call past its budget."""
    release = threading.Event()
    real = socket.getaddrinfo

    def stuck(host: Any, *args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return real(host, *args, **kwargs)

    tracker = RecordingTracker().start()
    port = tracker.url.rsplit(":", 1)[1]
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(socket, "getaddrinfo", stuck)
            started = time.monotonic()
            with pytest.raises(requests.ConnectionError):
                _send(adapter, f"http://{NAME}:{port}/", timeout=(0.2, 0.2))
            took = time.monotonic() - started
    finally:
        release.set()
        tracker.stop()
    assert took < 3.0  # the resolver is stuck for 10 s
    assert tracker.calls == []


def test_hook_connect(adapter: DeadlineAdapter) -> None:
    """urllib3 connects through the hook: a refused connection is tried once more there."""
    attempts: list[float] = []
    port = free_port()
    import urllib3.util.connection

    real = urllib3.util.connection.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(address[1])
        return real(address, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urllib3.util.connection, "create_connection", counting)
        with pytest.raises(requests.ConnectionError):
            _send(adapter, f"http://127.0.0.1:{port}/")
    assert attempts == [port, port]


def test_hook_host(adapter: DeadlineAdapter, tracker_name: list[tuple[str, str]]) -> None:
    """The connection's ``host`` is the address while connecting, the name again after it:
    the name is resolved once (within the budget, in the resolver's thread), the request
    still names it."""
    heads: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        while request := read_request(conn):
            heads.append(request.partition(b"\r\n\r\n")[0])
            conn.sendall(OK_ANSWER)

    server = RawServer(handle).start()
    port = server.url.rsplit(":", 1)[1]
    try:
        for _ in range(2):  # the second on the same connection
            assert _send(adapter, f"http://{NAME}:{port}/x").status_code == 200
    finally:
        adapter.close()  # the server's read of a next request ends
        server.stop()
    assert server.accepted == 1
    assert [name for name, _ in tracker_name if name == NAME] == [NAME]
    assert [thread for name, thread in tracker_name if name == NAME] == ["flask-keitaro-resolve"]
    for head in heads:
        assert f"Host: {NAME}:{port}".encode() in head.split(b"\r\n")
    assert len(heads) == 2


def test_hook_server_hostname(adapter: DeadlineAdapter, tracker_name: Any) -> None:
    """TLS checks the tracker's name, not the address connected to: a certificate for
    ``tracker.test`` alone is accepted at 127.0.0.1."""
    cert, _ = self_signed_certificate(f"DNS:{NAME}")
    with FaultServer(ReadRequest(), Send(OK_ANSWER), tls=True, names=(f"DNS:{NAME}",)) as server:
        port = server.url.rsplit(":", 1)[1]
        response = _send(adapter, f"https://{NAME}:{port}/", verify=cert)
    assert response.status_code == 200
    assert response.content == OK_ANSWER.partition(b"\r\n\r\n")[2]


def test_hook_proxy_is_tunneling() -> None:
    """urllib3 says when a connection goes through a CONNECT tunnel (then it names the TLS
    peer itself, and the package leaves ``server_hostname`` alone)."""
    conn = DeadlineHTTPSConnection("proxy.test", 3128)
    assert conn.proxy_is_tunneling is False
    conn.set_tunnel(NAME, 443)
    assert conn.proxy_is_tunneling is True


def test_hook_response_class(adapter: DeadlineAdapter) -> None:
    """http.client makes the package's response: a tracker trickling its answer is cut off at
    the deadline, though each byte comes well within the read timeout."""
    with FaultServer(ReadRequest(), Trickle(OK_ANSWER, every=0.05)) as server:
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            _send(adapter, server.url, timeout=(0.2, 0.3))
        took = time.monotonic() - started
    assert took < 3.0  # the trickle alone takes over 10 s


def test_hook_begin(adapter: DeadlineAdapter) -> None:
    """http.client reads the head through the hook: an interim 103 is read past."""
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    with FaultServer(ReadRequest(), Send(early), Send(OK_ANSWER)) as server:
        response = _send(adapter, server.url)
    assert response.status_code == 200
    assert response.content == OK_ANSWER.partition(b"\r\n\r\n")[2]
    switching = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    with (
        FaultServer(ReadRequest(), Send(switching)) as server,
        pytest.raises(InvalidAnswer, match="101"),
    ):
        _send(adapter, server.url)


def test_hook__get_current_object() -> None:
    """werkzeug's context proxies still give the object behind them by this name."""
    target = object()
    proxy: Any = LocalProxy(lambda: target)
    assert proxy._get_current_object() is target
