"""A real PostgreSQL server for the tests and the benchmarks, in a temporary folder.

Debian's binaries (``apt-get install postgresql``; ``.ci/ensure-postgres`` installs them):
``initdb`` and ``pg_ctl`` into a temporary folder, on a free loopback port, its unix socket in
that folder. The server refuses to run as root: as root the commands run as the ``postgres``
system user (or ``nobody``) through ``runuser``. Connections take a password, so that the
tests can look for it where it must never be.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from testsupport.tracker import free_port

#: The database user's password: a secret no log, message, repr or row may show.
PASSWORD = "pgPass7Secret3Xy"
USER = "keitaro"
DATABASE = "postgres"


class PostgresUnavailable(Exception):
    """PostgreSQL's server binaries cannot be had (or run) here; the message says why."""


def server_binaries() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, or Debian's newest."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL's initdb is not installed (apt-get install postgresql; .ci/ensure-postgres)"
        )
    return Path(candidates[-1]).parent


def _unprivileged_user() -> str | None:
    """Who runs the server when we are root (the server refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresUnavailable("running as root with neither a postgres nor a nobody user")


class PostgresServer:
    """One PostgreSQL server: ``with PostgresServer() as server: server.url``.

    ``durable=False`` (the tests) turns fsync off; the benchmark keeps the defaults.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.bin = server_binaries()
        self.user = _unprivileged_user()
        self.folder = Path(tempfile.mkdtemp(prefix="keitaro-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *command: str, timeout: float = 120) -> None:
        prefix = [] if self.user is None else ["runuser", "-u", self.user, "--"]
        done = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=timeout, cwd=self.folder
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(command[0]).name} failed ({done.returncode}): "
                + (done.stderr or done.stdout).strip()[-800:]
            )

    def __enter__(self) -> PostgresServer:
        try:
            if self.user is not None:
                shutil.chown(self.folder, self.user)
            password = self.folder / "password"
            password.write_text(PASSWORD + "\n")
            if self.user is not None:
                shutil.chown(password, self.user)
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                f"--pwfile={password}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                *([] if self.durable else ["--no-sync"]),
            )
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def start(self) -> None:
        """Start the server (again, after :meth:`stop`), and wait until it takes connections."""
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.folder}",
            "-c max_connections=100",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server (fast: open connections are closed)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def log(self) -> str:
        """What the server wrote to its log so far."""
        try:
            return (self.folder / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        except PostgresUnavailable:
            pass  # already stopped
        finally:
            self.remove()
