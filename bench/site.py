"""The site the benchmarks load: one plain view, one decorated view, and a visitor's request.

Both views return the same short string, so the difference between them is the click alone.
Visits go through Flask's test client with a browser's headers and an ad's query string.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask
from flask.testing import FlaskClient

from flask_keitaro import KeitaroExtension, keitaro_campaign

from .stub import ANSWER

#: The campaign token of the decorated view.
TOKEN = "bnch7q2m9c8v1b6n3z5k0w2e4r6t8y1x"

#: What both views return.
PAGE = "<h1>Landing</h1>"

#: A browser's request: the headers and query string of a visitor from an ad.
HEADERS: dict[str, str] = {
    "Host": "landing.example",
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"
    ),
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8",
    "Accept-Language": "de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7",
    "Accept-Encoding": "gzip, deflate, br",
    "Referer": "https://www.google.com/",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "cross-site",
}
QUERY = "utm_source=facebook&utm_campaign=spring&sub_id_1=adset42&keyword=shoes"

#: The secret key signing the state cookie.
SECRET_KEY = "bench-secret-key"


def create_app(tracker_url: str, **config: Any) -> Flask:
    """The benchmark site: ``/plain`` and ``/landing`` (decorated), the same page each."""
    app = Flask("bench_site")
    app.config.update(SECRET_KEY=SECRET_KEY, KEITARO_TRACKER_URL=tracker_url)
    app.config.update(config)
    KeitaroExtension(app)

    @app.route("/plain")
    def plain() -> str:
        return PAGE

    @app.route("/landing")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        return PAGE

    return app


def app_from_environment() -> Flask:
    """The site for a WSGI server: the tracker URL from ``BENCH_TRACKER_URL``."""
    return create_app(os.environ["BENCH_TRACKER_URL"])


@dataclass(frozen=True)
class Request:
    """A visitor's GET: what the test client is given for each visit."""

    path: str
    headers: dict[str, str]
    ip: str = "198.51.100.7"
    query: str = QUERY


def request(
    path: str, *, ip: str = "198.51.100.7", cookie: str | None = None, query: str = QUERY
) -> Request:
    """A browser's GET ``path`` from ``ip``, with ``cookie`` when given."""
    headers = dict(HEADERS)
    if cookie:
        headers["Cookie"] = cookie
    return Request(path, headers, ip, query)


@dataclass
class Answer:
    """What a visit got."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def cookie(self, name: str) -> str | None:
        """The ``name=value`` pair of a cookie the response set, if it set one."""
        for header, value in self.headers:
            if header.lower() == "set-cookie" and value.startswith(name + "="):
                return value.split(";", 1)[0]
        return None


def client(app: Flask) -> FlaskClient:
    """A test client that keeps no cookies: each visit sends only what its request says."""
    return app.test_client(use_cookies=False)


def visit(web: FlaskClient, req: Request) -> Answer:
    """One visit through the app, the request's environ built anew each time.

    Flask's test client builds the WSGI environ from the request's parts, as a server does
    when it parses a request, and runs the app; the benchmarks' targets were set on figures
    measured this way.
    """
    response = web.get(
        req.path,
        query_string=req.query,
        headers=req.headers,
        environ_base={"REMOTE_ADDR": req.ip},
    )
    with response:
        return Answer(response.status_code, list(response.headers.items()), response.data)


@dataclass
class Call:
    """One Click API call as it left the site: its form fields and its headers."""

    fields: list[tuple[str, str]]
    headers: dict[str, str]


def capture_call(req: Request, **config: Any) -> Call:
    """The Click API call the extension makes for the request ``req``, read off the wire.

    A site like the benchmark's is pointed at a one-shot loopback server that records the
    call and answers :data:`~bench.stub.ANSWER`; what it recorded is the very call the
    extension sends (so the comparison client sends exactly the same fields).
    """
    calls: list[Call] = []
    answer = json.dumps(ANSWER).encode()

    class Recorder(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
            calls.append(Call(fields, dict(self.headers.items())))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        app = create_app(f"http://127.0.0.1:{server.server_port}", **config)
        answer_ = visit(client(app), req)
        KeitaroExtension.close(app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    if len(calls) != 1 or answer_.status != 200:
        raise RuntimeError(f"expected one Click API call, got {len(calls)} ({answer_.status})")
    return calls[0]
