"""The emulator's HTTP server: kept-alive HTTP/1.1 connections, bounded bodies, a clean stop."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from flask_keitaro.emulator import create_app, get_state
from flask_keitaro.emulator.wsgi_server import KeepAliveHandler, KeepAliveWSGIServer
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.emulator import BROWSER_UA, TOKEN, config, running, stream

FORM = urlencode({"token": TOKEN, "ua": BROWSER_UA, "ip": "198.51.100.7"})


@pytest.fixture(scope="module")
def emulator() -> Iterator[ClickAPIEmulator]:
    with running(config(stream(1, "show_text", text="hi {keyword}"))) as running_emulator:
        yield running_emulator


@contextmanager
def raw_socket(emulator: ClickAPIEmulator) -> Iterator[socket.socket]:
    host, port = emulator.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        yield sock


def read_response(reader: Any) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from a socket's file: status, headers (lower-case names), body."""
    status_line = reader.readline()
    assert status_line, "the server closed the connection"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return status, headers, body


def click_request(method: str = "POST", **headers: str) -> bytes:
    lines = [f"{method} /click_api/v3 HTTP/1.1", "Host: localhost"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if method == "POST":
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(FORM)}"]
        return ("\r\n".join(lines) + "\r\n\r\n" + FORM).encode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_one_connection_carries_many_calls(emulator: ClickAPIEmulator) -> None:
    host, port = emulator.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    local_ports = set()
    for n in range(20):
        connection.request(
            "POST",
            "/click_api/v3",
            body=FORM + f"&keyword=k{n}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        assert json.loads(response.read())["body"] == f"hi k{n}"
        assert response.version == 11
        assert response.getheader("Connection") is None
        assert not response.will_close
        assert connection.sock is not None
        local_ports.add(connection.sock.getsockname()[1])
    connection.close()
    assert len(local_ports) == 1


def test_pipelined_requests_are_answered_in_order(emulator: ClickAPIEmulator) -> None:
    # A POST the app reads, a POST to a route that reads no body, then a GET: the unread
    # body of the second must not be taken for the third request.
    unread = b"POST /no/such/route HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 9\r\n\r\nGET / x\r\n"
    with raw_socket(emulator) as sock:
        sock.sendall(click_request() + unread + click_request("GET"))
        reader = sock.makefile("rb")
        first, second, third = (read_response(reader) for _ in range(3))
    assert first[0] == 200 and json.loads(first[2])["body"] == "hi "
    assert second[0] == 404
    assert third[0] == 401  # a GET without a token: the tracker's answer, not a parse error


def test_connection_close_and_http_1_0_close_after_the_answer(emulator: ClickAPIEmulator) -> None:
    for request in (
        click_request(Connection="close"),
        click_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    ):
        with raw_socket(emulator) as sock:
            sock.sendall(request)
            reader = sock.makefile("rb")
            status, headers, _ = read_response(reader)
            assert status == 200
            assert headers["connection"] == "close"
            assert reader.read() == b""  # closed by the server


def test_a_chunked_body_is_read(emulator: ClickAPIEmulator) -> None:
    body = FORM.encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = (
        b"POST /click_api/v3 HTTP/1.1\r\nHost: [::1]\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
    )
    with raw_socket(emulator) as sock:
        sock.sendall(head + chunked + click_request("GET"))
        reader = sock.makefile("rb")
        status, _, answer = read_response(reader)
        assert status == 200 and json.loads(answer)["body"] == "hi "
        assert read_response(reader)[0] == 401  # the connection goes on


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"Content-Length: 2000000\r\n", 413),
        (b"Content-Length: ten\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
        (b"Transfer-Encoding: chunked\r\n", 400),  # followed by no valid chunk
    ],
)
def test_a_body_that_cannot_be_read_is_refused_and_the_connection_closed(
    emulator: ClickAPIEmulator, head: bytes, status: int
) -> None:
    with raw_socket(emulator) as sock:
        sock.sendall(b"POST /click_api/v3 HTTP/1.1\r\nHost: [::1]\r\n" + head + b"\r\nzz\r\n\r\n")
        reader = sock.makefile("rb")
        answer = read_response(reader)
        assert reader.read() == b""
    assert answer[0] == status
    assert answer[1]["connection"] == "close"
    assert answer[1]["content-type"] == "application/json"
    assert json.loads(answer[2])["error"]


def test_expect_100_continue_is_answered_before_the_body(emulator: ClickAPIEmulator) -> None:
    with raw_socket(emulator) as sock:
        head = click_request(Expect="100-continue").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        sock.sendall(head)
        reader = sock.makefile("rb")
        assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert reader.readline() == b"\r\n"
        sock.sendall(FORM.encode())
        status, _, body = read_response(reader)
    assert status == 200 and json.loads(body)["body"] == "hi "


def test_head_has_the_length_and_no_body(emulator: ClickAPIEmulator) -> None:
    with raw_socket(emulator) as sock:
        sock.sendall(b"HEAD /emulator/ HTTP/1.1\r\nHost: [::1]\r\n\r\n" + click_request("GET"))
        reader = sock.makefile("rb")
        status_line = reader.readline()
        headers = {}
        while (line := reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.lower()] = value.strip()
        assert b" 200 " in status_line
        assert int(headers["content-length"]) > 1000
        assert read_response(reader)[0] == 401  # the next answer follows at once


def test_an_idle_connection_is_closed_after_the_timeout() -> None:
    class QuickTimeout(KeepAliveHandler):
        timeout = 0.2

    app = create_app(config(stream(1)))
    server = KeepAliveWSGIServer("127.0.0.1", 0, app, QuickTimeout)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(click_request())
            reader = sock.makefile("rb")
            assert read_response(reader)[0] == 200
            started = time.monotonic()
            assert reader.read() == b""  # closed by the server, not by our 10 s timeout
            assert time.monotonic() - started < 8
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        get_state(app).close()


def test_stop_closes_kept_alive_connections_at_once() -> None:
    emulator = ClickAPIEmulator(config(stream(1))).start()
    session = requests.Session()
    try:
        response = session.post(emulator.click_api_url, data={"token": TOKEN}, timeout=5)
        assert response.status_code == 200
        with raw_socket(emulator) as sock:
            sock.sendall(click_request())
            reader = sock.makefile("rb")
            assert read_response(reader)[0] == 200
            started = time.monotonic()
            emulator.stop()
            assert time.monotonic() - started < 3
            assert reader.read() == b""
    finally:
        session.close()
