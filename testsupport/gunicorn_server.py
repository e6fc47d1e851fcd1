"""A real gunicorn server in a subprocess, on a loopback socket this process binds (port 0)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from testsupport.faults import Seen
from testsupport.processes import process_tree

ROOT = Path(__file__).resolve().parent.parent


class GunicornServer:
    """``tests.gunicorn_app`` under gunicorn (gthread worker), serving ``apps``.

    Its stderr goes to a file: :attr:`errors` is what gunicorn and Flask logged there.
    """

    def __init__(self, apps: dict[str, dict[str, Any]], *, threads: int = 8) -> None:
        self.apps = apps
        self.threads = threads
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = int(self._sock.getsockname()[1])
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GunicornServer:
        fd = self._sock.fileno()
        env = {**os.environ, "FAULT_APPS": json.dumps(self.apps), "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--workers", "1",
             "--worker-class", "gthread", "--threads", str(self.threads),
             "--graceful-timeout", "1", "--log-level", "warning", "--chdir", str(ROOT),
             "testsupport.gunicorn_app:create_app()"],
            pass_fds=(fd,),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.get("/plain").status == 200:
                    return self
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{self.errors}")
            time.sleep(0.05)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(30)
        self._sock.close()
        self._log.close()

    def worker(self) -> int:
        """The process id of gunicorn's (one) worker."""
        assert self._process is not None
        (pid,) = process_tree(self._process.pid)[1:]
        return pid

    @property
    def errors(self) -> str:
        """What was written to gunicorn's stderr so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def get(self, path: str, host: str = "127.0.0.1", timeout: float = 30) -> Seen:
        """One visit over a new connection: what the visitor got, and how long it took."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            started = time.monotonic()
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            body = response.read()
            seconds = time.monotonic() - started
            return Seen(response.status, response.getheaders(), body, seconds)
        finally:
            conn.close()
