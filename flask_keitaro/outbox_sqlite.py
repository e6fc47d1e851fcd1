"""The outbox in a SQLite file: stdlib ``sqlite3`` in WAL mode, for the processes of one host.

A connection is opened for each operation and closed after it, so nothing here outlives a
fork or crosses a thread. Several processes may share one file: a row is claimed in a
``BEGIN IMMEDIATE`` transaction before it is sent. The file is made by the first conversion
stored; reading an outbox that does not exist yet finds it empty and makes nothing.

A full disk must not keep what is stored from going out: delivering writes too (a claim, a
delete). So beside the file a reserve of :data:`RESERVE` bytes is kept (``<file>-reserve``).
When the disk is full a delivery spends it (deletes it) and goes on; new conversions are then
not stored (they are sent directly) until the reserve can be made again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from .errors import OutboxError
from .outbox import MAX_PENDING, WAIT, Outbox, RetryPolicy, Row, Store

logger = logging.getLogger("flask_keitaro")

T = TypeVar("T")

#: Bytes kept free beside the file for delivering when the disk is full.
RESERVE = 256 * 1024

# Less free space than this, and an I/O error writing the outbox is taken for a full disk.
_ROOM = 64 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS postbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fields TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    claim TEXT,
    claim_until REAL,
    set_aside TEXT
);
CREATE INDEX IF NOT EXISTS postbacks_next_attempt ON postbacks (next_attempt);
"""

_COLUMNS = "id, fields, created, attempts, next_attempt, last_error, claim_until, set_aside"

# A value of another type than the column's (an edit by hand) is due: reading it sets it aside.
_NOT_NUMBER = "typeof({0}) NOT IN ('integer', 'real')"


class _Statements:
    """:class:`~flask_keitaro.outbox.Store` on one ``sqlite3`` connection."""

    def __init__(self, db: sqlite3.Connection, clock: Callable[[], float]) -> None:
        self.db = db
        self.now = clock

    def total(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM postbacks").fetchone()[0])

    def insert(self, fields: str, created: float, claim: str, claim_until: float) -> int:
        cursor = self.db.execute(
            "INSERT INTO postbacks (fields, created, attempts, next_attempt, claim, claim_until)"
            " VALUES (?, ?, 1, ?, ?, ?)",
            (fields, created, created, claim, claim_until),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def next_row(self, after: int, horizon: float, now: float) -> Row | None:
        row: Row | None = self.db.execute(
            f"SELECT {_COLUMNS} FROM postbacks WHERE id > ? AND set_aside IS NULL"
            f" AND (next_attempt <= ? OR {_NOT_NUMBER.format('next_attempt')})"
            f" AND (claim_until IS NULL OR claim_until <= ? OR {_NOT_NUMBER.format('claim_until')})"
            " ORDER BY id LIMIT 1",
            (after, horizon, now),
        ).fetchone()
        return row

    def take(self, row_id: int, claim: str, claim_until: float) -> None:
        self.db.execute(
            "UPDATE postbacks SET claim = ?, claim_until = ?, attempts = attempts + 1 WHERE id = ?",
            (claim, claim_until, row_id),
        )

    def set_aside(self, row_id: int, error: str) -> None:
        self.db.execute(
            "UPDATE postbacks SET set_aside = ?, claim = NULL, claim_until = NULL WHERE id = ?",
            (error, row_id),
        )

    def delete(self, row_id: int, claim: str | None) -> bool:
        if claim is None:
            cursor = self.db.execute("DELETE FROM postbacks WHERE id = ?", (row_id,))
        else:
            cursor = self.db.execute(
                "DELETE FROM postbacks WHERE id = ? AND claim = ?", (row_id, claim)
            )
        return cursor.rowcount == 1

    def release(self, row_id: int, claim: str, error: str, next_attempt: float) -> None:
        self.db.execute(
            "UPDATE postbacks SET claim = NULL, claim_until = NULL, last_error = ?,"
            " next_attempt = ? WHERE id = ? AND claim = ?",
            (error, next_attempt, row_id, claim),
        )

    def rows(self, limit: int) -> list[Row]:
        return self.db.execute(
            f"SELECT {_COLUMNS} FROM postbacks ORDER BY id LIMIT ?", (limit,)
        ).fetchall()

    def waiting(self) -> int:
        query = "SELECT count(*) FROM postbacks WHERE set_aside IS NULL"
        return int(self.db.execute(query).fetchone()[0])

    def next_due(self) -> object:
        return self.db.execute(
            "SELECT min(max(next_attempt, coalesce(claim_until, 0))) FROM postbacks"
            " WHERE set_aside IS NULL"
        ).fetchone()[0]


def _full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the database) is full."""
    if isinstance(exc, OSError) and not isinstance(exc, sqlite3.Error):
        return exc.errno == errno.ENOSPC
    return _code(exc) == sqlite3.SQLITE_FULL


def _code(exc: BaseException) -> int | None:
    """The primary result code of a ``sqlite3`` error (its extended code's low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


class SQLiteOutbox(Outbox):
    """The outbox in one SQLite file, shared by the processes of one host.

    :param path: the SQLite file (made, with its folder, by the first conversion stored).
    :param lease: seconds a claimed row is held; longer than a delivery can take.
    :param retry: the back-off between attempts.
    :param wait: seconds an operation waits for another process's write lock.
    :param reserve: bytes kept free beside the file to deliver from a full disk (0: none).
    :param clock: Unix time (shared by processes; replaceable in tests).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease: float,
        retry: RetryPolicy | None = None,
        max_pending: int = MAX_PENDING,
        wait: float = WAIT,
        reserve: int = RESERVE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(lease=lease, retry=retry, max_pending=max_pending, wait=wait)
        try:
            self.path = os.fspath(path)
        except TypeError:
            kind = type(path).__name__
            raise OutboxError(f"an outbox path must be a string, not {kind}") from None
        if not isinstance(self.path, str) or not self.path.strip() or "\0" in self.path:
            raise OutboxError(f"{self.path!r} is not a path for the outbox file")
        self.reserve = reserve
        self._clock = clock
        self._ready_in: int | None = None  # the process that made sure of the schema

    @property
    def name(self) -> str:
        """The outbox file's path."""
        return self.path

    @property
    def reserve_path(self) -> str:
        """The file that keeps ``reserve`` bytes free beside the outbox.(``reserve``)."""
        return self.path + "-reserve"

    def _run(
        self, work: Callable[[Store], T], *, wait: float, write: bool, create: bool = False
    ) -> T | None:
        if not create and not os.path.exists(self.path):
            return None  # nothing was ever stored: reading makes nothing
        if create:
            self._make_room()
        try:
            return self._transaction(work, wait, write, create)
        except sqlite3.Error as exc:
            full = self._full(exc)
            if not (write and not create and full and self._spend_reserve()):
                raise _error(exc, self.path, full) from exc
        try:
            return self._transaction(work, wait, write, create)
        except sqlite3.Error as exc:
            raise _error(exc, self.path, self._full(exc)) from exc

    def _transaction(self, work: Callable[[Store], T], wait: float, write: bool, create: bool) -> T:
        if create:
            db = sqlite3.connect(self.path, timeout=wait, isolation_level=None)
        else:  # mode=rw: a file removed meanwhile is an error, not a new empty file
            uri = f"file:{quote(os.path.abspath(self.path))}?mode=rw"
            db = sqlite3.connect(uri, timeout=wait, isolation_level=None, uri=True)
        try:
            if self._ready_in != os.getpid():
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                self._ready_in = os.getpid()
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(_Statements(db, self._clock))
                db.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (a full disk among them):
                # a second rollback would raise and hide the first error.
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
            return result
        finally:
            db.close()

    def _full(self, exc: sqlite3.Error) -> bool:
        """Whether ``exc`` comes of a full disk: SQLite says so, or says "disk I/O error"
        (making the WAL file on a full disk) while the disk has no room left."""
        if _full(exc):
            return True
        if _code(exc) != sqlite3.SQLITE_IOERR:
            return False
        try:
            disk = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return False
        return disk.f_bavail * disk.f_frsize < _ROOM

    def _make_room(self) -> None:
        """Make the folder and the reserve before storing; an OutboxError when the disk is full."""
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            if self.reserve <= 0 or os.path.exists(self.reserve_path):
                return
            folder = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
            if folder.f_bavail * folder.f_frsize < self.reserve + 2 * _ROOM:
                # Room for the reserve alone may be what a delivery just freed by spending
                # it: taking it back at once would leave the delivery none.
                raise OSError(errno.ENOSPC, "not room enough for the reserve and more")
            partial = Path(f"{self.reserve_path}.{os.getpid()}")
            try:
                with partial.open("wb") as out:
                    out.write(b"\0" * self.reserve)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(partial, self.reserve_path)
            finally:
                partial.unlink(missing_ok=True)
        except OSError as exc:
            if _full(exc):
                raise OutboxError(
                    f"the disk of the outbox {self.path} is full ({exc.strerror}): new"
                    " conversions are not stored until there is room again"
                ) from exc
            raise OutboxError(f"cannot open the outbox ({type(exc).__name__}: {exc})") from exc

    def _spend_reserve(self) -> bool:
        """Delete the reserve to let a delivery write on a full disk; whether to try again."""
        try:
            os.remove(self.reserve_path)
        except FileNotFoundError:
            return True  # another process spent it: its room may be there still
        except OSError:
            return False
        logger.error(
            "Keitaro postback outbox %s: the disk is full; its reserve is spent on delivering"
            " what it holds, and new conversions are sent directly until there is room again",
            self.path,
        )
        return True


def _error(exc: sqlite3.Error, path: str, full: bool) -> OutboxError:
    if full:
        return OutboxError(f"the disk of the outbox {path} is full ({exc})")
    if _code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return OutboxError(f"the outbox {path} is locked by another process ({exc})")
    return OutboxError(f"the outbox {path} cannot be used ({type(exc).__name__}: {exc})")
