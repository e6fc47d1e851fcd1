"""The stub tracker: Debian's nginx answering every request with one fixed Click API JSON.

nginx answers in microseconds and never becomes the bottleneck, so what a benchmark measures
is the site's side of the click (under load its CPU, about 40 µs a click, shares the cores
with the site's: ``bench.throughput`` prints both). Each stub runs in its own temporary
directory (config, pid file, logs), on a free loopback port, and is stopped when the benchmark
ends. Its access log names the TCP connection of every request, so the connections a client
opened are counted.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from testsupport.processes import process_tree
from testsupport.service import Service

from .measure import Unavailable, end_process

#: The stub's answer: "show your own page", with click data, a uniqueness cookie and a TTL,
#: as a real tracker sends for a landing visit.
ANSWER: dict[str, Any] = {
    "body": None,
    "contentType": "text/html; charset=utf-8",
    "headers": [],
    "status": 200,
    "uniqueness_cookie": (
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdHJlYW1zIjp7IjExIjoxNzE4MDAwMDAwfSwiY2Ft"
        "cGFpZ25zIjp7IjIiOjE3MTgwMDAwMDB9LCJ0aW1lIjoxNzE4MDAwMDAwfQ.c2lnbmF0dXJlLWJlbmNo"
    ),
    "cookies": {},
    "cookies_ttl": 24,
    "info": {
        "sub_id": "5f1c2a9e0b3d7",
        "campaign_id": 2,
        "stream_id": 11,
        "landing_id": 4,
        "offer_id": [7],
        "token": "Yjg0NTc4ZmE3NTUzNDkwOWI0YjI1MWQ1ZjBhYWVkNTQ",
        "uniqueness": {"campaign": True, "stream": True, "global": True},
        "is_bot": False,
        "type": "landings",
        "url": None,
    },
}

_CONFIG = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format counted '$connection $connection_requests $status';
    access_log {dir}/access.log counted;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port}{ssl};
{tls}        location / {{
            default_type application/json;
            return 200 '{answer}';
        }}
    }}
}}
"""


def find_tool(name: str, hint: str) -> str:
    """The path of the program ``name`` (``/usr/sbin`` too), or ``Unavailable`` with ``hint``."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        raise Unavailable(f"{name} not found; {hint}")
    return path


_INSTALL_HINT = "install it with .ci/ensure-bench-tools (Debian: nginx-light, wrk)"


def free_port() -> int:
    """A loopback port that was free a moment ago (for programs that cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 10.0) -> bool:
    """Wait until ``port`` accepts connections; ``False`` if ``process`` exited first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with ``openssl``: (cert, key) paths."""
    openssl = find_tool("openssl", "install Debian's openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class StubTracker(Service):
    """nginx on 127.0.0.1 answering every request with :data:`ANSWER` (HTTPS with ``tls``).

    Use as a context manager, or call :meth:`start` and :meth:`stop`; it is also stopped at
    interpreter exit.
    """

    def __init__(self, *, tls: bool = False, answer: dict[str, Any] | None = None) -> None:
        self.nginx = find_tool("nginx", _INSTALL_HINT)
        self.tls = tls
        self.body = json.dumps(answer if answer is not None else ANSWER, separators=(",", ":"))
        if any(c in self.body for c in "'\\$"):
            raise ValueError("the stub's answer may not contain ', \\ or $ (nginx syntax)")
        self.dir = Path(tempfile.mkdtemp(prefix="keitaro-bench-nginx-"))
        self.cert: Path | None = None
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The tracker's base URL."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> StubTracker:
        """Start nginx on a free port (a few tries: the port may be taken in between)."""
        tls = ""
        if self.tls:
            self.cert, key = make_certificate(self.dir)
            tls = (
                f"        ssl_certificate {self.cert};\n        ssl_certificate_key {key};\n"
                "        ssl_protocols TLSv1.2 TLSv1.3;\n"
            )
        for _ in range(5):
            self.port = free_port()
            config = self.dir / "nginx.conf"
            config.write_text(
                _CONFIG.format(
                    dir=self.dir,
                    port=self.port,
                    ssl=" ssl" if self.tls else "",
                    tls=tls,
                    answer=self.body,
                )
            )
            process = subprocess.Popen(
                [
                    self.nginx,
                    "-p",
                    str(self.dir),
                    "-e",
                    str(self.dir / "error.log"),
                    "-c",
                    str(config),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if wait_for_port(self.port, process):
                self._process = process
                atexit.register(self.stop)
                return self
            process.kill()
            process.wait()
        errors = (self.dir / "error.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nginx did not start; its error log ends with:\n{errors}")

    def stop(self) -> None:
        """Stop nginx and remove its directory."""
        if self._process is not None:
            end_process(self._process, 10)
            self._process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> list[int]:
        """nginx's processes (master and worker) while it runs."""
        return process_tree(self._process.pid) if self._process is not None else []

    def _log(self) -> list[list[str]]:
        """The access log's lines, once nginx has written the last answer's (it logs after
        sending, so a client may read the log a moment before its own line is there)."""
        path = self.dir / "access.log"
        lines: list[str] = []
        for _ in range(50):
            time.sleep(0.02)
            again = path.read_text().splitlines() if path.exists() else []
            if again == lines:
                break
            lines = again
        return [line.split() for line in lines if line.strip()]

    def mark(self) -> int:
        """A bookmark in the access log: pass it to :meth:`requests` or :meth:`connections`."""
        return len(self._log())

    def requests(self, since: int = 0) -> int:
        """How many requests nginx answered since the bookmark ``since``."""
        return len(self._log()[since:])

    def connections(self, since: int = 0) -> int:
        """How many TCP connections carried the requests since the bookmark ``since``."""
        return len({fields[0] for fields in self._log()[since:]})

    def statuses(self, since: int = 0) -> set[str]:
        """The HTTP statuses nginx answered since the bookmark ``since``."""
        return {fields[2] for fields in self._log()[since:]}
